"""Reading a file a block at a time, as lines.

A source reads a regular file with plain blocking reads of ``BLOCK`` bytes,
giving the event loop a turn after each, and a pipe, socket or terminal
(standard input, most often) through the event loop, so a source waiting for
input never blocks the loop. ``lines`` cuts the blocks into lines and, when
following a file, polls for what is appended to it, on the source's clock.
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing, asynccontextmanager
from datetime import timedelta
from typing import IO, Any, Protocol

from .._core._clock import Clock
from ._checks import check_bool
from ._files import STDIO, check_clock, check_path, check_poll

__all__ = ["BLOCK", "Blocks", "LineSource", "lines", "open_blocks"]

#: Bytes read at a time from a file.
BLOCK = 1 << 18


class Blocks(Protocol):
    """An open file, read a block at a time."""

    #: Whether more may come after the end (a regular file may grow; a pipe ended for good).
    growing: bool

    async def read(self) -> bytes:
        """The next bytes, ``b""`` at the end (for now, if ``growing``)."""
        ...

    async def aclose(self) -> None:
        """Close the file; closing twice does no harm."""
        ...


class _FileBlocks:
    """A file read with blocking reads: a regular file, or a device that cannot be polled."""

    __slots__ = ("_file", "growing")

    def __init__(self, file: IO[bytes], growing: bool) -> None:
        self._file = file
        self.growing = growing

    async def read(self) -> bytes:
        data = self._file.read(BLOCK)
        await _turn()
        return data or b""

    async def aclose(self) -> None:
        self._file.close()


async def _turn() -> None:
    """A turn for the rest of the loop between blocks, so that a long file is
    read without holding up other tasks (or a cancellation).

    The wait is on a future, as every wait of a source is, so that a run's
    ``stop`` can cancel it like any other.
    """
    loop = asyncio.get_running_loop()
    turn: asyncio.Future[None] = loop.create_future()
    loop.call_soon(_release, turn)
    await turn


def _release(turn: asyncio.Future[None]) -> None:
    if not turn.done():
        turn.set_result(None)


class _PipeBlocks(asyncio.Protocol):
    """A pipe, socket or terminal, read by the event loop as data arrives."""

    growing = False

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int) -> None:
        self._loop = loop
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._ended = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._closed: asyncio.Future[None] = loop.create_future()
        self._transport: asyncio.ReadTransport | None = None
        self._paused = False
        # The transport makes the descriptor non-blocking; it is put back as it was.
        self._restore: tuple[int, bool] | None = (fd, os.get_blocking(fd))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.ReadTransport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._chunks.append(data)
        self._size += len(data)
        if self._size >= BLOCK and not self._paused and self._transport is not None:
            self._transport.pause_reading()  # enough at hand: let the writer wait
            self._paused = True
        self._wake()

    def eof_received(self) -> bool | None:
        self._ended = True
        self._wake()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._restore is not None:
            # The pipe's file description is shared with the descriptor it was
            # duplicated from: leave it as blocking as it was (the transport
            # closes the pipe after this).
            fd, blocking = self._restore
            self._restore = None
            os.set_blocking(fd, blocking)
        self._ended = True
        self._error = exc
        self._wake()
        if not self._closed.done():
            self._closed.set_result(None)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def read(self) -> bytes:
        while not self._chunks:
            if self._ended:
                if self._error is not None:
                    raise self._error
                return b""
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        data = b"".join(self._chunks)
        self._chunks.clear()
        self._size = 0
        if self._paused and self._transport is not None:
            self._paused = False
            self._transport.resume_reading()
        return data

    async def aclose(self) -> None:
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.close()  # stops reading now; the file closes on the next turn
        if transport is not None:
            await asyncio.shield(self._closed)


async def open_blocks(name: str) -> Blocks:
    """Open ``name`` (``"-"``: standard input) for reading a block at a time.

    Raises:
        FileNotFoundError: for a missing file (as ``open`` does, naming it).
    """
    file = _open_input(name)
    try:
        mode = os.fstat(file.fileno()).st_mode
        pollable = stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or os.isatty(file.fileno())
        if not pollable:
            return _FileBlocks(file, growing=stat.S_ISREG(mode))
        return await _connect_pipe(file)
    except BaseException:
        file.close()
        raise


def _open_input(name: str) -> IO[bytes]:
    if name == STDIO:
        # A descriptor of its own: closing it leaves standard input open.
        return open(os.dup(0), "rb", buffering=0)  # closed by the Blocks
    return open(name, "rb", buffering=0)  # closed by the Blocks


async def _connect_pipe(file: IO[bytes]) -> _PipeBlocks:
    loop = asyncio.get_running_loop()
    fd = file.fileno()
    blocking = os.get_blocking(fd)
    blocks = _PipeBlocks(loop, fd)
    try:
        await loop.connect_read_pipe(lambda: blocks, file)
    except BaseException:
        os.set_blocking(fd, blocking)
        raise
    return blocks


async def lines(
    blocks: Blocks, *, follow: bool, poll: float, clock: Clock, strip_cr: bool = True
) -> AsyncGenerator[tuple[int, list[bytes]], None]:
    """The lines of ``blocks`` as they are read, without their ``\\n`` or ``\\r\\n``
    (or only without their ``\\n``, if not ``strip_cr``), each list with the
    number of its first line (from 1).

    A last line without a newline is a line at the end; when following a file
    that may grow, the end is not the end: the reader waits ``poll`` seconds on
    ``clock`` and reads on, and a last line is held until its newline comes.
    """
    pending: list[bytes] = []  # the pieces of a line whose newline is yet to come
    number = 1
    while True:
        data = await blocks.read()
        if not data:
            if follow and blocks.growing:
                await clock.sleep(poll)
                continue
            if pending:
                last = [b"".join(pending)]
                yield number, _without_cr(last) if strip_cr else last
            return
        if b"\n" not in data:
            pending.append(data)
            continue
        if pending:
            pending.append(data)
            data = b"".join(pending)
            pending = []
        found = data.split(b"\n")
        tail = found.pop()
        if tail:
            pending.append(tail)
        if strip_cr and b"\r" in data:
            found = _without_cr(found)
        yield number, found
        number += len(found)


def _without_cr(found: list[bytes]) -> list[bytes]:
    return [line[:-1] if line.endswith(b"\r") else line for line in found]


class LineSource:
    """What the file sources share: their file options, checked; the file of each
    iteration, opened when it starts and closed when it ends or by ``aclose()``;
    its lines (:meth:`_lines`). A subclass turns lines into messages in
    ``_messages``."""

    __slots__ = ("_clock", "_follow", "_name", "_open", "_poll")

    def __init__(
        self,
        path: Any,
        what: str,
        *,
        follow: bool,
        poll: timedelta | float,
        clock: Clock | None,
    ) -> None:
        self._name = check_path(path, what)
        self._follow = check_bool(follow, "follow")
        self._poll = check_poll(poll)
        self._clock = check_clock(clock)
        self._open: set[Blocks] = set()

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._messages()

    def _messages(self) -> AsyncIterator[Any]:
        raise NotImplementedError

    @asynccontextmanager
    async def _lines(
        self, *, strip_cr: bool = True
    ) -> AsyncIterator[AsyncIterator[tuple[int, list[bytes]]]]:
        """The file opened, and its lines (see :func:`lines`); closed on leaving."""
        blocks = await open_blocks(self._name)
        self._open.add(blocks)
        try:
            found = lines(
                blocks, follow=self._follow, poll=self._poll, clock=self._clock, strip_cr=strip_cr
            )
            async with aclosing(found):
                yield found
        finally:
            self._open.discard(blocks)
            await blocks.aclose()

    async def aclose(self) -> None:
        """Close the file of every iteration still open; an iteration left
        suspended fails if it is read on."""
        while self._open:
            await self._open.pop().aclose()

    def _repr(self, what: str, option: str) -> str:
        follow = ", follow=True" if self._follow else ""
        return f"{what}({self._name!r}{follow}, {option})"
