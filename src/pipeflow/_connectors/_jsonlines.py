"""JSON Lines files: ``JsonLinesSource`` reads one message per line,
``JsonLinesSink`` appends one line per result."""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator
from datetime import timedelta
from typing import Any

from .._core._clock import Clock
from .._core._errors import EncodeError
from ._blocks import LineSource
from ._checks import check_bool
from ._codecs import CodecLike, JsonCodec, codec_for, codec_name, decode_message, encode_result
from ._files import Output, check_directory, check_path
from ._message import Message

__all__ = ["JsonLinesSink", "JsonLinesSource"]


class JsonLinesSource(LineSource):
    """Messages from a JSON Lines file: one per line, its ``value`` decoded by ``codec``.

    Each message's ``source`` is the path as given, its ``partition`` 0, its
    ``position`` the line's number (from 1) and its ``timestamp`` ``None``.
    Lines end with ``\\n`` or ``\\r\\n``; a last line without a newline is a
    line too. Blank lines (empty, or only whitespace) are skipped and still
    counted. A line the codec cannot decode (not JSON, not UTF-8) becomes an
    ``UndecodableMessage`` at its position, for the first pipe's error policy:
    the source never fails for what a line holds.

    The file is opened when iteration starts, so a missing file raises
    ``FileNotFoundError`` (naming it) from the run, not from the constructor. It
    is closed when the iteration ends, fails, is left or is cancelled, and by
    ``aclose()``. Each iteration reads the file from its start.

    A regular file is read in large blocks with plain reads, the event loop
    getting a turn after each; standard input that is a pipe or a terminal is
    read through the event loop, never blocking it.

    Args:
        path: the file, a ``str`` or ``os.PathLike``; ``"-"`` is standard input.
        follow: like ``tail -f``: at the end of the file, wait for lines to be
            appended and read them as they come; a last line is held until its
            newline arrives. A following source never ends by itself: it ends
            when the run is stopped or cancelled. The file opened is the one
            followed: a file replaced or truncated meanwhile is not noticed.
            Standard input that is a pipe or a terminal ends at its end anyway,
            as nothing can follow it.
        codec: ``"json"`` (the default), ``"text"``, ``"raw"`` or a ``Codec``;
            each line's bytes, without its newline, are decoded.
        poll: how long a following source waits at the end of the file before
            it looks again: a ``timedelta`` or seconds, > 0.
        clock: the clock ``poll`` is waited on; ``SystemClock()`` by default.

    Raises:
        TypeError: for a ``path``, ``follow``, ``codec``, ``poll`` or ``clock``
            of the wrong type.
        ValueError: for an empty path, an unknown codec name or ``poll <= 0``.

    Examples:
        >>> import asyncio, os, tempfile
        >>> from pipeflow import streams as ps
        >>> path = os.path.join(tempfile.mkdtemp(), "in.jsonl")
        >>> with open(path, "w") as f:
        ...     _ = f.write('{"n": 1}\\n\\n{"n": 2}\\n')
        >>> out: list[object] = []
        >>> _ = asyncio.run(ps.map(lambda m: (m.position, m.value)).run(JsonLinesSource(path), out))
        >>> out
        [(1, {'n': 1}), (3, {'n': 2})]
    """

    __slots__ = ("_codec",)

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        follow: bool = False,
        codec: CodecLike = "json",
        poll: timedelta | float = 0.1,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(path, "JsonLinesSource", follow=follow, poll=poll, clock=clock)
        self._codec = codec_for(codec)

    async def _messages(self) -> AsyncGenerator[Message, None]:
        codec, name = self._codec, self._name
        decode = codec.decode
        async with self._lines() as found:
            async for number, block in found:
                for line in block:
                    if line and not line.isspace():
                        try:
                            msg = Message(decode(line), source=name, position=number)
                        except Exception:
                            msg = decode_message(codec, line, source=name, position=number)
                        yield msg
                    number += 1

    def __repr__(self) -> str:
        return self._repr("JsonLinesSource", f"codec={codec_name(self._codec)!r}")


class JsonLinesSink:
    """Appends each result to a JSON Lines file as one line, encoded by ``codec``.

    A ``Message`` result is written by its ``value`` (an ``UndecodableMessage``
    by its raw payload). Each ``write`` encodes the whole list first, then
    appends it with one unbuffered write (and ``os.fsync`` with
    ``fsync=True``): when it returns, the lines are in the file for any reader.
    A write that fails part way (a full disk) is cut back off, so that the
    run's retry of the list does not follow half a line. A result the codec
    cannot encode, or whose encoding would hold a newline (text with a
    ``"\\n"``, for the ``"text"`` codec), fails the write with ``EncodeError``
    and nothing of its list is written.

    The file is created if missing, but not its directory: a missing directory
    is a ``FileNotFoundError`` from the constructor. The file itself is opened
    (for appending) at the first write, so a run without results leaves it as it
    was; it is closed by ``aclose()``.

    Args:
        path: the file, a ``str`` or ``os.PathLike``; ``"-"`` is standard
            output (written from a worker thread; flushed, never closed).
        codec: ``"json"`` (the default), ``"text"``, ``"raw"`` or a ``Codec``.
        fsync: also ``os.fsync`` the file after each write (in a worker
            thread), so the lines survive a crash of the machine, not only of
            the process.

    Raises:
        TypeError: for a ``path``, ``codec`` or ``fsync`` of the wrong type.
        ValueError: for an empty path or an unknown codec name.
        FileNotFoundError: if the file's directory does not exist.
        IsADirectoryError: if ``path`` is a directory.
    """

    __slots__ = ("_check", "_codec", "_name", "_out")

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        codec: CodecLike = "json",
        fsync: bool = False,
    ) -> None:
        self._name = check_path(path, "JsonLinesSink")
        self._codec = codec_for(codec)
        self._out = Output(self._name, f"{self!r}", fsync=check_bool(fsync, "fsync"))
        check_directory(self._name, "JsonLinesSink")
        # orjson never puts a newline in what it writes; other codecs may.
        self._check = type(self._codec) is not JsonCodec

    async def write(self, items: list[Any]) -> None:
        """Append one line per result; return once they are written and flushed.

        Raises:
            EncodeError: for a result that cannot be encoded as one line.
            RuntimeError: after ``aclose()``.
        """
        if self._out.closed:
            msg = f"{self!r} is closed"
            raise RuntimeError(msg)
        codec = self._codec
        payloads = [encode_result(codec, result) for result in items]
        if self._check:
            for result, payload in zip(items, payloads, strict=True):
                if b"\n" in payload or payload.endswith(b"\r"):
                    cause = ValueError("a line must not contain a newline")
                    raise EncodeError(result, codec_name(codec), cause)
        if payloads:
            self._out.open()
            payloads.append(b"")
            await self._out.write(b"\n".join(payloads))

    async def aclose(self) -> None:
        """Close the file; no write may follow."""
        self._out.aclose()

    def __repr__(self) -> str:
        return f"JsonLinesSink({self._name!r}, codec={codec_name(self._codec)!r})"
