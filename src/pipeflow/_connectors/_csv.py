"""CSV files: ``CsvSource`` reads one message per row, its value a dict of
strings; ``CsvSink`` appends one row per result."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import AsyncGenerator, Mapping, Sequence
from datetime import timedelta
from typing import Any

from .._core._clock import Clock
from .._core._errors import EncodeError
from ._blocks import LineSource
from ._csv_rows import Rows, check_delimiter, check_fieldnames
from ._files import Output, check_directory, check_path
from ._message import Message, UndecodableMessage

__all__ = ["CsvSink", "CsvSource"]


class CsvSource(LineSource):
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

    __slots__ = ("_delimiter", "_fieldnames")

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
        super().__init__(path, "CsvSource", follow=follow, poll=poll, clock=clock)
        self._delimiter = check_delimiter(delimiter)
        self._fieldnames = check_fieldnames(fieldnames)

    async def _messages(self) -> AsyncGenerator[Message, None]:
        rows = Rows(self._name, self._delimiter, self._fieldnames)
        async with self._lines(strip_cr=False) as found:
            async for number, block in found:
                for line in block:
                    msg = rows.take(line, number)
                    number += 1
                    if msg is not None:
                        yield msg
            msg = rows.end()
            if msg is not None:
                yield msg

    def __repr__(self) -> str:
        return self._repr("CsvSource", f"delimiter={self._delimiter!r}")


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
            character, or empty or repeated ``fieldnames``; for a file whose
            header is not ``fieldnames`` (here, or at the first write if the
            file appeared meanwhile).
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
        self._fieldnames = check_fieldnames(fieldnames)
        self._delimiter = check_delimiter(delimiter)
        check_directory(self._name, "CsvSink")
        self._out = Output(self._name, f"{self!r}", fsync=False)
        self._names: tuple[str, ...] | None = None
        self._known: frozenset[str] = frozenset()
        self._header = False  # a header row goes before the next rows
        if self._fieldnames is not None:
            self._check_header(self._existing_header())  # early, if the file is there

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
            self._check_header(header)
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

    def _check_header(self, header: tuple[str, ...] | None) -> None:
        """Raise if the file has a header and it is not the ``fieldnames`` given."""
        wanted = self._fieldnames
        if header is not None and wanted is not None and header != wanted:
            msg = (
                f"{self!r}: the file's header is {list(header)}, not the fieldnames {list(wanted)}"
            )
            raise ValueError(msg)

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
