"""Reading what an async iterator has ready, without waiting for more.

An async source hands items over with ``await``; most of its awaits complete at
once (the items are already buffered in the client) and a few have to wait (for
the network). ``ReadyReader`` reads the source with ``async for`` in a
coroutine of its own, the pump, and steps the pump by hand: whatever it reads
without waiting goes into one list, and where reading on would wait the list
is handed on first; the wait itself is passed to the event loop exactly as
``await`` would pass it, and the pump goes on from there.
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Coroutine, Generator
from typing import TYPE_CHECKING, Any

from ._buffer import MAX_CHUNK

if TYPE_CHECKING:
    from ._buffer import Chunk
    from ._idle import SourceIdle
    from ._sources import Reading

__all__ = ["ReadyReader", "Resume", "Room"]

#: How many of the items a reader would take at once (the argument) it may take
#: now, waiting until that is at least one.
Room = Callable[[int], Awaitable[int]]

#: The pump's own signal: its list is full.
_FULL = object()
#: The pump has ended (the source is used up).
_ENDED = object()
#: The pump has not started yet. (A wait may signal ``None``: ``asyncio.sleep(0)``.)
_START = object()


@types.coroutine
def _full() -> Generator[Any, None, None]:
    yield _FULL


class _Pump:
    """Reads an async iterator into ``buf``, pausing on ``_FULL`` once ``size``
    items are in it."""

    __slots__ = ("buf", "size")

    def __init__(self) -> None:
        self.buf: list[Any] = []
        self.size = MAX_CHUNK

    async def run(self, it: Any) -> None:
        buf = self.buf
        append = buf.append
        if hasattr(it, "__aiter__"):
            async for x in it:
                append(x)
                if len(buf) >= self.size:
                    await _full()
        else:  # an iterator with __anext__ only
            anext = it.__anext__
            while True:
                try:
                    x = await anext()
                except StopAsyncIteration:
                    return
                append(x)
                if len(buf) >= self.size:
                    await _full()


class _Wait:
    """One wait of the pump, passed to the event loop; awaiting it gives the
    pump's next signal (``_ENDED`` if it ended meanwhile).

    The time it takes is the source's idle time: the reader has nothing at hand.
    """

    __slots__ = ("_coro", "_idle", "_signal")

    def __init__(self, coro: Coroutine[Any, Any, None], signal: Any, idle: SourceIdle | None):
        self._coro = coro
        self._signal = signal
        self._idle = idle

    def __await__(self) -> Generator[Any, Any, Any]:
        idle = self._idle
        if idle is not None:
            idle.begin()
        try:
            sent = yield self._signal
        except GeneratorExit:
            raise  # the reader is being closed: it settles the pump itself
        except BaseException as exc:
            try:
                return self._coro.throw(exc)
            except StopIteration:
                return _ENDED
        finally:
            if idle is not None:
                idle.end()
        try:
            return self._coro.send(sent)
        except StopIteration:
            return _ENDED


class ReadyReader:
    """Reads an async iterator a list at a time: what it hands over without waiting.

    :meth:`chunks` steps the pump from its own frame: while the pump reads, no
    generator of the reader's own stands between it and the reader's consumer.
    (Each item an async generator hands over raises ``StopIteration`` inside
    CPython, which looks through every generator frame running at the time, so a
    level less is work saved per item.)
    """

    __slots__ = ("_buf", "_coro", "_idle", "_pump", "_signal", "ended", "read")

    def __init__(self, it: AsyncIterator[Any], idle: SourceIdle | None = None) -> None:
        self._pump = _Pump()
        self._buf = self._pump.buf
        self._coro = self._pump.run(it)
        self._idle = idle
        #: What the pump waits on, or one of the signals above.
        self._signal: Any = _START
        #: The iterator is used up (or failed): no list follows the last one.
        self.ended = False
        #: Items read so far.
        self.read = 0

    async def chunks(
        self,
        room: Room | None = None,
        *,
        size: int = MAX_CHUNK,
        reading: Reading | None = None,
        close: Callable[[], Awaitable[object]] | None = None,
    ) -> AsyncGenerator[Chunk, None]:
        """Lists of what is at hand, each with the count of items read so far.

        A list ends where reading on would wait, at ``size`` items (or what
        ``room`` allows), or at the end (``ended`` is then true). On a failure,
        what was read before it comes first. A wait with nothing at hand is
        recorded in ``idle``, if given; ``reading.read`` follows the count, if
        given. The iterator is not closed: ``close``, if given, is awaited at the
        end, however it comes.
        """
        buf = self._buf
        try:
            while True:
                self._pump.size = size if room is None else await room(size)
                try:
                    self._step()
                    while not buf and self._signal is not _FULL and self._signal is not _ENDED:
                        self._signal = await _Wait(self._coro, self._signal, self._idle)
                except GeneratorExit:
                    raise  # closed while the pump waits: settled below
                except Exception:
                    self._signal = _ENDED  # the pump is over
                    self.ended = True
                    if buf:  # what was read before the failure still goes on
                        yield self._take(reading)
                    raise
                except BaseException:
                    self._signal = _ENDED  # cancelled, and the source let it through
                    raise
                if self._signal is _ENDED:
                    self.ended = True
                    if buf:
                        yield self._take(reading)
                    return
                yield self._take(reading)
        finally:
            try:
                await self._settle()
            finally:
                if close is not None:
                    await close()

    def _step(self) -> None:
        """Run the pump from where it paused on a full list (or from its start) until
        it pauses again; a pump that is waiting is resumed by its ``_Wait``."""
        if self._signal is _START or self._signal is _FULL:
            try:
                self._signal = self._coro.send(None)
            except StopIteration:
                self._signal = _ENDED

    def _take(self, reading: Reading | None) -> Chunk:
        chunk = self._buf.copy()
        self._buf.clear()
        self.read += len(chunk)
        if reading is not None:
            reading.read = self.read
        return chunk, self.read

    async def _settle(self) -> None:
        signal = self._signal
        self._signal = _ENDED
        if signal is _START or signal is _FULL:
            self._coro.close()
        elif signal is not _ENDED:
            await Resume(self._coro, signal).settle()


class Resume:
    """The rest of an awaitable whose first step yielded ``signal``: awaiting this
    object passes ``signal`` to the event loop and drives the awaitable to its end,
    with the semantics of ``yield from`` (values sent and exceptions thrown in go
    through).
    """

    __slots__ = ("_awaiting", "_signal")

    def __init__(self, awaiting: Generator[Any, Any, Any] | Coroutine[Any, Any, Any], signal: Any):
        self._awaiting = awaiting
        self._signal = signal

    def __await__(self) -> Generator[Any, Any, Any]:
        awaiting, signal = self._awaiting, self._signal
        while True:
            try:
                sent = yield signal
            except BaseException as exc:
                try:
                    signal = awaiting.throw(exc)
                except StopIteration as done:
                    return done.value
            else:
                try:
                    signal = awaiting.send(sent)
                except StopIteration as done:
                    return done.value

    async def settle(self) -> None:
        """Cancel the step in progress and wait for it to finish, as a task's
        ``await`` would be cancelled and waited for.

        A source may catch the ``CancelledError`` and await its own clean-up (a
        client closing its connection): the step is driven to its end, so the
        source is no longer running when it is closed. Whatever the step raises
        is the source's own business; a cancellation of the task doing this is
        passed on.
        """
        task = asyncio.current_task()
        cancelling = task.cancelling() if task is not None else 0
        try:
            signal = self._awaiting.throw(asyncio.CancelledError())
        except (Exception, asyncio.CancelledError):
            return  # it stopped at once (``CancelledError``, ``StopIteration``, ...)
        self._signal = signal
        try:
            await self
        except (Exception, asyncio.CancelledError):
            # Only a cancellation of this task itself goes on (it was thrown into
            # the step, which passed it back out).
            if task is not None and task.cancelling() > cancelling:
                raise
