"""CSV files: ``CsvSource`` reads one message per row, its value a dict of
strings; ``CsvSink`` appends one row per result."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Mapping, Sequence
from contextlib import aclosing
from datetime import timedelta
from typing import Any

from .._core._clock import Clock
from .._core._errors import DecodeError, EncodeError
from ._files import (
    Blocks,
    Output,
    check_bool,
    check_clock,
    check_directory,
    check_path,
    check_poll,
    lines,
    open_blocks,
)
from ._message import Message, UndecodableMessage

__all__ = ["CsvSink", "CsvSource"]

_QUOTE = b'"'


def _check_delimiter(delimiter: object) -> str:
    if not isinstance(delimiter, str):
        msg = f"delimiter must be a str of one character, got {type(delimiter).__name__}"
        raise TypeError(msg)
    if len(delimiter) != 1 or delimiter in '"\r\n':
        msg = f"delimiter must be one character other than a quote or a newline, got {delimiter!r}"
        raise ValueError(msg)
    return delimiter


def _check_fieldnames(fieldnames: object) -> tuple[str, ...] | None:
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
    _check_unique(names, "fieldnames")
    return names


def _check_unique(names: Sequence[str], what: str) -> None:
    seen: set[str] = set()
    repeated = [name for name in names if name in seen or seen.add(name)]  # type: ignore[func-returns-value]
    if repeated:
        msg = f"{what} must not repeat a name, got {repeated[0]!r} twice in {list(names)}"
        raise ValueError(msg)


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


class CsvSource:
    """Messages from a CSV file: one per row, its ``value`` a dict of the row's
    fields by name, as strings.

    The names come from the file's first row (its header), or from
    ``fieldnames``, in which case the first row is data like the others. Each
    message's ``source`` is the path as given, its ``position`` the number of
    the line its row starts on (from 1). Fields are separated by ``delimiter``
    and may be quoted with ``"`` (a quoted field may hold the delimiter,
    newlines, and ``""`` for a quote). Lines end with ``\\n`` or ``\\r\\n``;
    empty lines are skipped and still counted; a UTF-8 byte order mark at the
    start of the file is ignored.

    A row with more or fewer fields than there are names, or that is not UTF-8,
    becomes an ``UndecodableMessage`` whose ``DecodeError`` names the codec
    ``"csv"``: the first pipe's error policy decides what becomes of it, as for
    any payload a codec refuses. A header that repeats a name fails the run
    with ``ValueError``.

    The file is opened when iteration starts and closed when it ends, fails,
    is left or is cancelled, and by ``aclose()``, as ``JsonLinesSource`` does;
    ``follow``, ``poll`` and ``clock`` work as they do there.

    Args:
        path: the file, a ``str`` or ``os.PathLike``; ``"-"`` is standard input.
        follow: wait for rows appended at the end of the file (like ``tail -f``).
        delimiter: the one character between fields.
        fieldnames: the names of the fields, for a file without a header row.
        poll: how long a following source waits at the end of the file before
            it looks again: a ``timedelta`` or seconds, > 0.
        clock: the clock ``poll`` is waited on; ``SystemClock()`` by default.

    Raises:
        TypeError: for an option of the wrong type.
        ValueError: for an empty path, a delimiter that is not one ordinary
            character, empty or repeated ``fieldnames``, or ``poll <= 0``.
    """

    __slots__ = ("_clock", "_delimiter", "_fieldnames", "_follow", "_name", "_open", "_poll")

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        follow: bool = False,
        delimiter: str = ",",
        fieldnames: Sequence[str] | None = None,
        poll: timedelta | float = 0.1,
        clock: Clock | None = None,
    ) -> None:
        self._name = check_path(path, "CsvSource")
        self._follow = check_bool(follow, "follow")
        self._delimiter = _check_delimiter(delimiter)
        self._fieldnames = _check_fieldnames(fieldnames)
        self._poll = check_poll(poll)
        self._clock = check_clock(clock)
        self._open: set[Blocks] = set()

    def __aiter__(self) -> AsyncIterator[Message]:
        return self._messages()

    async def _messages(self) -> AsyncGenerator[Message, None]:
        blocks = await open_blocks(self._name)
        self._open.add(blocks)
        rows = _Rows(self._name, self._delimiter, self._fieldnames)
        try:
            found = lines(
                blocks, follow=self._follow, poll=self._poll, clock=self._clock, strip_cr=False
            )
            async with aclosing(found):
                async for number, block in found:
                    for line in block:
                        msg = rows.take(line, number)
                        number += 1
                        if msg is not None:
                            yield msg
            msg = rows.end()
            if msg is not None:
                yield msg
        finally:
            self._open.discard(blocks)
            await blocks.aclose()

    async def aclose(self) -> None:
        """Close the file of every iteration still open."""
        while self._open:
            await self._open.pop().aclose()

    def __repr__(self) -> str:
        follow = ", follow=True" if self._follow else ""
        return f"CsvSource({self._name!r}{follow}, delimiter={self._delimiter!r})"


class _Rows:
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
            _check_unique(row, f"the header of {self._name!r} (line {start})")
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


class CsvSink:
    """Appends each result to a CSV file as one row.

    A result is a mapping of field names to values (or a ``Message`` whose
    ``value`` is one); its values are written as text (``None`` as an empty
    field) in the order of ``fieldnames``, a missing field empty. The names are
    ``fieldnames``; without them, the header of the file if it already has one,
    else the keys of the first result. A file that is new or empty gets a header
    row first. Rows end with ``\\r\\n``, as RFC 4180 has it; fields are quoted
    where they need it (a delimiter, a quote, a line break).

    A result that is not a mapping, or that has a key outside the names, fails
    the write with ``EncodeError`` (codec ``"csv"``), and nothing of its list is
    written. Each ``write`` is one write and one flush, as for ``JsonLinesSink``;
    the file is opened at the first write and closed by ``aclose()``.

    Args:
        path: the file, a ``str`` or ``os.PathLike``; ``"-"`` is standard output.
        fieldnames: the names of the fields, in the order of the columns.
        delimiter: the one character between fields.

    Raises:
        TypeError: for an option of the wrong type.
        ValueError: for an empty path, a delimiter that is not one ordinary
            character, or empty or repeated ``fieldnames``; at the first write,
            for a file whose header is not ``fieldnames``.
        FileNotFoundError: if the file's directory does not exist.
        IsADirectoryError: if ``path`` is a directory.
    """

    __slots__ = ("_delimiter", "_fieldnames", "_header", "_known", "_name", "_names", "_out")

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        fieldnames: Sequence[str] | None = None,
        delimiter: str = ",",
    ) -> None:
        self._name = check_path(path, "CsvSink")
        self._fieldnames = _check_fieldnames(fieldnames)
        self._delimiter = _check_delimiter(delimiter)
        check_directory(self._name, "CsvSink")
        self._out = Output(self._name, f"{self!r}", fsync=False)
        self._names: tuple[str, ...] | None = None
        self._known: frozenset[str] = frozenset()
        self._header = False  # a header row goes before the next rows

    async def write(self, items: list[Any]) -> None:
        """Append one row per result; return once they are written and flushed.

        Raises:
            EncodeError: for a result that is not a mapping of the names.
            ValueError: at the first write, for a file whose header is not ``fieldnames``.
            RuntimeError: after ``aclose()``.
        """
        if self._out.closed:
            msg = f"{self!r} is closed"
            raise RuntimeError(msg)
        if not items:
            return
        if self._names is None:
            self._start(items[0])
        text = io.StringIO()
        writer = csv.writer(text, delimiter=self._delimiter, lineterminator="\r\n")
        rows = [self._row(result) for result in items]
        if self._header:
            writer.writerow(self._names or ())
        writer.writerows(rows)
        self._out.open()
        await self._out.write(text.getvalue().encode())
        self._header = False

    def _start(self, first: Any) -> None:
        """Settle the names, and whether a header goes first."""
        header = self._existing_header()
        if header is not None:
            if self._fieldnames is not None and header != self._fieldnames:
                msg = (
                    f"{self!r}: the file's header is {list(header)}, "
                    f"not the fieldnames {list(self._fieldnames)}"
                )
                raise ValueError(msg)
            names = header
        elif self._fieldnames is not None:
            names = self._fieldnames
        else:
            value = _mapping(first)
            odd = [key for key in value if not isinstance(key, str)]
            if odd:
                cause = TypeError(f"field names must be str, got {odd[0]!r}")
                raise EncodeError(first, "csv", cause)
            names = tuple(value)
        self._header = header is None
        self._names = names
        self._known = frozenset(names)

    def _existing_header(self) -> tuple[str, ...] | None:
        file = self._out.existing()
        if file is None:
            return None
        with io.TextIOWrapper(file, encoding="utf-8-sig", newline="") as text:
            row = next(csv.reader(text, delimiter=self._delimiter), None)
        return tuple(row) if row else None

    def _row(self, result: Any) -> list[Any]:
        value = _mapping(result)
        if not value.keys() <= self._known:
            extra = [key for key in value if key not in self._known]
            cause = ValueError(f"fields {extra} are not among {list(self._names or ())}")
            raise EncodeError(result, "csv", cause)
        return [value.get(name) for name in self._names or ()]

    async def aclose(self) -> None:
        """Close the file; no write may follow."""
        self._out.aclose()

    def __repr__(self) -> str:
        return f"CsvSink({self._name!r}, delimiter={self._delimiter!r})"


def _mapping(result: Any) -> Mapping[Any, Any]:
    if isinstance(result, UndecodableMessage):
        raise EncodeError(result, "csv", result._error)
    value = result.value if isinstance(result, Message) else result
    if not isinstance(value, Mapping):
        cause = TypeError(
            f"a CSV row is a mapping of field names to values, got {type(value).__name__}"
        )
        raise EncodeError(result, "csv", cause)
    return value
