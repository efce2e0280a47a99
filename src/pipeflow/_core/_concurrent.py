"""Concurrent stages: up to ``concurrency`` calls in flight, a task each.

A concurrent stage reads its own :class:`ChunkBuffer` instead of iterating its
upstream, so that it can wait for two things at once: new input and a finished
call. Both resolve one future, ``wake``. Each time it wakes, the stage starts
calls while it has room, passes on the results it may, and waits again.

Every item started is an :class:`_Entry` in ``entries``, in input order; a
chunk's source mark rides on its last entry (an empty chunk is an entry with no
task), so a mark goes on only once every item before it has. Results leave in
one of two orders:

* :class:`InOrder`: from the head of ``entries``, as soon as the head is done;
  a call that finished behind an unfinished one waits for it.
* :class:`AsCompleted`: finished calls queue in ``finished`` and leave at once;
  ``entries`` then drops its emitted head, passing on the marks it carries.

``window`` bounds ``entries`` (finished calls waiting for an earlier one count
too). The buffer keeps the room of the items taken from it until their results
are passed on (``release``); ``concurrency`` of them may be in flight beyond its
capacity (``allowance``).

What a call's result becomes (``emit``) and the call itself (``attempt``, which
does in the item's task all that can fail on the item, so that the error policy
sees it) are the caller's: this module only schedules.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from ._errors import StreamError

if TYPE_CHECKING:
    from ._buffer import Chunk
    from ._stages import StageContext

__all__ = ["AsCompleted", "ConcurrentRun", "InOrder"]

#: ``emit(out, item, result)``: add what ``result`` makes of ``item`` to ``out``.
Emit = Callable[[list[Any], Any, Any], None]


class _Entry:
    """One item handed to a task (or, with no task, an empty chunk), in input order."""

    __slots__ = ("emitted", "item", "mark", "task")

    def __init__(self, task: asyncio.Task[Any] | None, item: Any, mark: int | None) -> None:
        self.task = task
        self.item = item
        #: The chunk's source mark, on the chunk's last entry only.
        self.mark = mark
        self.emitted = False


class ConcurrentRun:
    """One run of a concurrent stage; :class:`InOrder` and :class:`AsCompleted`
    say in which order results leave."""

    __slots__ = (
        "attempt",
        "buf",
        "chunk",
        "chunk_mark",
        "concurrency",
        "ctx",
        "emit",
        "entries",
        "exhausted",
        "handle",
        "last_mark",
        "now",
        "pos",
        "running",
        "stats",
        "timed",
        "upstream_error",
        "wake",
        "window",
    )

    def __init__(
        self,
        attempt: Callable[[Any], Awaitable[Any]],
        emit: Emit,
        ctx: StageContext,
        concurrency: int,
    ) -> None:
        assert ctx.buffer is not None, "a concurrent stage reads its own buffer"
        self.buf = ctx.buffer
        self.ctx = ctx
        self.attempt = attempt
        self.emit = emit
        self.concurrency = concurrency
        self.window = max(concurrency, ctx.config.max_buffer_size)
        self.entries: deque[_Entry] = deque()
        self.running = 0  # tasks not yet done
        self.wake: asyncio.Future[None] | None = None
        self.chunk: list[Any] = []  # the input chunk being started, from ``pos`` on
        self.pos = 0
        self.chunk_mark = 0
        self.exhausted = False  # the buffer has nothing more to give
        self.upstream_error: BaseException | None = None
        self.last_mark = 0  # the mark last passed on
        # What every task reads, bound once.
        self.stats = ctx.stats
        self.timed = ctx.stats.timed
        self.now = ctx.clock.monotonic
        self.handle = ctx.errors.handle

    def held(self) -> int:
        """Items taken from the buffer whose results have not been passed on."""
        started = sum(1 for e in self.entries if e.task is not None and not e.emitted)
        return started + len(self.chunk) - self.pos

    async def run(self) -> AsyncGenerator[Chunk, None]:
        """Start, collect and pass on until the input ends and every result is out."""
        self.buf.auto_release = False
        self.buf.allowance = self.concurrency
        stats = self.ctx.stats
        stats.held = self.held
        try:
            while True:
                self.start_ready()
                out: list[Any] = []
                try:
                    mark, done = self.collect(out)
                except StreamError:
                    if out:
                        stats.items_out += len(out)
                        yield out, self.last_mark
                    raise
                if out or mark != self.last_mark:
                    self.count_out(out)
                    self.last_mark = mark
                    yield out, mark
                    self.buf.release(done)  # passed on: the next stage holds them now
                    continue
                self.buf.release(done)
                if self.exhausted and not self.entries:
                    if self.upstream_error is not None:
                        raise self.upstream_error
                    return
                wake = self.waiter()
                if wake is not None:
                    try:
                        await wake
                    finally:
                        self.wake = None
        finally:
            await self.cancel_all()

    def has_room(self) -> bool:
        """Whether another call may start."""
        return self.running < self.concurrency and len(self.entries) < self.window

    def start_ready(self) -> None:
        """Start calls on the input at hand while there is room."""
        create_task = asyncio.get_running_loop().create_task
        run_one, on_done = self.run_one, self.on_done
        entries = self.entries
        concurrency, window = self.concurrency, self.window
        while self.running < concurrency and len(entries) < window:
            chunk, pos = self.chunk, self.pos
            if pos >= len(chunk):
                if not self.take_chunk():
                    break
                continue
            x = chunk[pos]
            self.pos = pos = pos + 1
            task = create_task(run_one(x))
            entry = _Entry(task, x, self.chunk_mark if pos == len(chunk) else None)
            self.running += 1
            task.add_done_callback(partial(on_done, entry))
            entries.append(entry)

    def take_chunk(self) -> bool:
        """Take the next chunk from the buffer; ``False`` if none is ready or the
        input has ended (``exhausted``)."""
        if self.exhausted:
            return False
        try:
            chunk = self.buf.get_nowait()
        except StopAsyncIteration:
            self.exhausted = True
            return False
        except BaseException as exc:
            # Upstream failed: deliver the work already started, then raise.
            self.upstream_error = exc
            self.exhausted = True
            return False
        if chunk is None:
            return False
        self.chunk, self.chunk_mark = chunk
        self.pos = 0
        self.ctx.stats.items_in += len(self.chunk)
        if not self.chunk:
            self.entries.append(_Entry(None, None, self.chunk_mark))  # its mark, in turn
        return True

    async def run_one(self, item: Any) -> Any:
        """One item's task: its result, after the error policy if the call failed."""
        timed = self.timed
        started = self.now() if timed else 0.0
        try:
            result = await self.attempt(item)
        except Exception as exc:
            result = await self.handle(item, exc, partial(self.attempt, item))
        if timed:
            self.stats.record_latency(self.now() - started)
        return result

    def on_done(self, entry: _Entry, _: asyncio.Task[Any]) -> None:
        """A task's done callback: wake the stage."""
        self.running -= 1
        wake = self.wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    def collect(self, out: list[Any]) -> tuple[int, int]:
        """Put the results that may leave now into ``out``; return the source mark
        they complete and how many items they are the results of."""
        raise NotImplementedError

    def count_out(self, out: list[Any]) -> None:
        """Count ``out`` as passed on."""
        stats = self.ctx.stats
        stats.items_out += len(out)
        if stats.timed and out:
            stats.record_out(len(out), self.ctx.clock.monotonic())

    def waiter(self) -> asyncio.Future[None] | None:
        """A future (``wake``) that a finished call resolves and, if a call may
        start, new input; ``None`` if input is already at hand for room the
        collecting made."""
        room = self.has_room()
        if room and (self.pos < len(self.chunk) or (not self.exhausted and self.buf.ready())):
            return None
        self.wake = wake = asyncio.get_running_loop().create_future()
        if room and not self.exhausted:
            self.buf.set_waiter(wake)
        return wake

    async def cancel_all(self) -> None:
        """Cancel the calls still running and wait for them to end."""
        entries = self.entries
        pending = [e.task for e in entries if e.task is not None and not e.task.done()]
        for t in pending:
            t.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        for e in entries:
            # Retrieve exceptions of finished-but-unemitted tasks so none goes unobserved.
            if e.task is not None and e.task.done() and not e.task.cancelled():
                e.task.exception()


class InOrder(ConcurrentRun):
    """Results leave in input order: a finished call waits for those before it."""

    __slots__ = ()

    def collect(self, out: list[Any]) -> tuple[int, int]:
        entries, emit = self.entries, self.emit
        mark = self.last_mark
        done = 0
        while entries and (entries[0].task is None or entries[0].task.done()):
            e = entries.popleft()
            if e.task is not None:
                done += 1
                emit(out, e.item, e.task.result())
            if e.mark is not None:
                mark = e.mark
        return mark, done


class AsCompleted(ConcurrentRun):
    """Results leave as their calls finish; marks still go on in input order."""

    __slots__ = ("finished",)

    def __init__(
        self,
        attempt: Callable[[Any], Awaitable[Any]],
        emit: Emit,
        ctx: StageContext,
        concurrency: int,
    ) -> None:
        super().__init__(attempt, emit, ctx, concurrency)
        self.finished: deque[_Entry] = deque()  # done and not yet emitted

    def on_done(self, entry: _Entry, _: asyncio.Task[Any]) -> None:
        self.finished.append(entry)
        self.running -= 1
        wake = self.wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    def collect(self, out: list[Any]) -> tuple[int, int]:
        finished, emit = self.finished, self.emit
        done = 0
        while finished:
            e = finished.popleft()
            e.emitted = True
            done += 1
            assert e.task is not None
            emit(out, e.item, e.task.result())
        entries = self.entries
        mark = self.last_mark
        while entries and (entries[0].task is None or entries[0].emitted):
            e = entries.popleft()
            if e.mark is not None:
                mark = e.mark
        return mark, done
