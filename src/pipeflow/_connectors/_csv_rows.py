"""Reading CSV: lines into rows, rows into messages; and the options the CSV
connectors share, checked."""

from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence

from .._core._errors import DecodeError
from ._message import Message, UndecodableMessage

__all__ = ["Rows", "check_delimiter", "check_fieldnames", "check_unique"]

_QUOTE = b'"'


def check_delimiter(delimiter: object) -> str:
    """``delimiter``, checked: one character, not a quote or a line break."""
    if not isinstance(delimiter, str):
        msg = f"delimiter must be a str of one character, got {type(delimiter).__name__}"
        raise TypeError(msg)
    if len(delimiter) != 1 or delimiter in '"\r\n':
        msg = f"delimiter must be one character other than a quote or a newline, got {delimiter!r}"
        raise ValueError(msg)
    return delimiter


def check_fieldnames(fieldnames: object) -> tuple[str, ...] | None:
    """``fieldnames`` as a tuple, checked: ``None``, or distinct ``str`` names."""
    if fieldnames is None:
        return None
    if isinstance(fieldnames, str | bytes) or not isinstance(fieldnames, Sequence):
        msg = (
            "fieldnames must be a sequence of str (a list or a tuple), "
            f"got {type(fieldnames).__name__}: {fieldnames!r:.60}"
        )
        raise TypeError(msg)
    names = tuple(fieldnames)
    odd = [name for name in names if not isinstance(name, str)]
    if odd:
        msg = f"fieldnames must all be str, got {odd[0]!r} ({type(odd[0]).__name__})"
        raise TypeError(msg)
    if not names:
        msg = "fieldnames must name at least one field, got an empty sequence"
        raise ValueError(msg)
    check_unique(names, "fieldnames")
    return names


def check_unique(names: Sequence[str], what: str) -> None:
    """Raise ``ValueError`` if ``names`` (the ``what``, for the message) repeat a name."""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            msg = f"{what} must not repeat a name, got {name!r} twice in {list(names)}"
            raise ValueError(msg)
        seen.add(name)


class _Feed:
    """An iterator handing one line to a ``csv.reader`` at a time, and telling
    whether the reader asked for more (a quoted field is open at its end)."""

    __slots__ = ("line", "starved")

    def __init__(self) -> None:
        self.line: str | None = None
        self.starved = False

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        line = self.line
        if line is None:
            self.starved = True
            raise StopIteration
        self.line = None
        return line


class Rows:
    """Turns a file's lines into rows, and rows into messages, taking the names
    from the header.

    A line with no quote in it is a whole row, unless a quoted field is open.
    Otherwise ``csv`` decides, as it would reading the file itself: a row whose
    quoted field is still open at the end of a line waits for the next lines
    (up to ``csv.field_size_limit()`` bytes: then it is undecodable, and reading
    starts again on the next line).
    """

    __slots__ = ("_feed", "_name", "_names", "_reader", "_record", "_size", "_start")

    def __init__(self, name: str, delimiter: str, names: tuple[str, ...] | None) -> None:
        self._name = name
        self._names = names
        self._feed = _Feed()
        self._reader = csv.reader(self._feed, delimiter=delimiter)
        self._record: list[bytes] = []  # the lines of a row whose quoted field is open
        self._size = 0
        self._start = 0  # the row's first line

    def take(self, line: bytes, number: int) -> Message | None:
        """Read line ``number`` (with its ``\\r``, if any); the message of the
        row it ends, if it ends one."""
        record = self._record
        if record:
            record.append(line)
            self._size += len(line) + 1
            if _QUOTE not in line and self._size <= csv.field_size_limit():
                return None  # an open quoted field cannot close on this line
        elif not line or line == b"\r":
            return None  # an empty line
        else:
            self._record = [line]
            self._size = len(line)
            self._start = number
        return self._row(final=False)

    def end(self) -> Message | None:
        """The message of a row the file ended in, its quoted field still open."""
        return self._row(final=True) if self._record else None

    def _row(self, *, final: bool) -> Message | None:
        record, start = self._record, self._start
        raw = record[0] if len(record) == 1 else b"\n".join(record)
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        feed = self._feed
        try:
            text = raw.decode()
            if start == 1 and text.startswith("\ufeff"):
                text = text[1:]
            feed.line = text
            feed.starved = False
            row = next(self._reader, [])
        except (UnicodeDecodeError, csv.Error) as exc:
            self._record = []
            return self._bad(raw, start, exc)
        if feed.starved and not final:  # a quoted field is open at the end of the line
            if self._size <= csv.field_size_limit():
                return None
            self._record = []
            cause = ValueError(f"a quoted field is still open after {self._size} bytes")
            return self._bad(raw, start, cause)
        self._record = []
        names = self._names
        if names is None:
            check_unique(row, f"the header of {self._name!r} (line {start})")
            self._names = tuple(row)
            return None
        if len(row) != len(names):
            cause = ValueError(f"expected {len(names)} fields {list(names)}, got {len(row)}")
            return self._bad(raw, start, cause)
        return Message(dict(zip(names, row, strict=True)), source=self._name, position=start)

    def _bad(self, raw: bytes, start: int, cause: Exception) -> Message:
        if self._names is None:
            msg = f"{self._name!r} line {start}: cannot read the header: {cause}"
            raise ValueError(msg) from cause
        error = DecodeError(raw, "csv", f"{self._name}[0]@{start}", cause)
        return UndecodableMessage(raw, error, source=self._name, position=start)
