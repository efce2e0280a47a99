"""One run of a pipe: planning the stages, the tasks between them, and the ``Stream``.

The plan splits the pipeline into segments at every pipe that wants a buffer of
its own (a ``config``, or ``concurrency > 1``). Pipes inside a segment run fused
in one task; each segment boundary is a ``ChunkBuffer`` filled by a feeder task
running everything upstream of it. The last segment runs in the consumer's task,
pulled by its ``async for``.

Every task and generator a run starts is closed by the run: on the end, on an
error, when the consumer breaks out or leaves ``async with``, on cancellation.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

from ._buffer import Chunk, ChunkBuffer
from ._clock import SYSTEM_CLOCK, Clock
from ._config import BackpressureConfig
from ._fusion import fused_stage
from ._pipe import Pipeable, StreamPipe
from ._policies import ErrorHandler
from ._sources import Acknowledging, Pausable, check_source, close_source, source_chunks
from ._stages import StageContext
from ._stats import RunStats, StageMetrics, StageStats

__all__ = ["Stream"]

T = TypeVar("T")
_DEFAULT_CONFIG = BackpressureConfig()


class _RunState:
    """What one run needs; shared by its ``Stream`` and its generator.

    The generator must not refer to the ``Stream``: a consumer that breaks out of
    a bare ``async for`` drops both, and without a reference cycle the generator
    is finalized (and the run closed) at once rather than at the next GC.
    """

    __slots__ = ("clock", "run", "source", "stages", "started")

    def __init__(
        self,
        stages: list[StreamPipe[Any, Any]],
        source: Any,
        clock: Clock,
        run: RunStats,
    ) -> None:
        self.stages = stages
        self.source = source
        self.clock = clock
        self.run = run
        self.started = False


class Stream(Generic[T]):
    """The results of one run. Iterate it with ``async for``; close it with ``async with``.

    Breaking out of the loop, leaving the ``async with``, an exception or a
    cancellation closes the source and every task the run started.
    """

    __slots__ = ("_agen", "_state")

    def __init__(
        self,
        pipe: Pipeable[Any, T],
        source: Iterable[Any] | AsyncIterable[Any],
        clock: Clock | None,
    ) -> None:
        check_source(source)
        clock = clock if clock is not None else SYSTEM_CLOCK
        stages = pipe._stages()
        monitors = [pipe._monitor, *(p._monitor for p in stages)]
        timed = any(m is not None for m in monitors)
        run = RunStats(pipe.name, [StageStats(p.name, clock, timed=timed) for p in stages])
        if pipe._monitor is not None:
            pipe._monitor.attach(run)
        for p, s in zip(stages, run.stages, strict=True):
            if p._monitor is not None and p is not pipe:
                p._monitor.attach(RunStats(p.name, [s]))
        self._state = _RunState(stages, source, clock, run)
        self._agen: AsyncIterator[T] = _iterate(self._state)

    def __aiter__(self) -> AsyncIterator[T]:
        return self._agen

    async def __anext__(self) -> T:
        return await self._agen.__anext__()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the run: close the source and every task and generator it opened."""
        state = self._state
        if not state.started:
            state.started = True  # a stream closed before it began never begins
            state.run.finish()
            await close_source(state.source)
        await self._agen.aclose()  # type: ignore[attr-defined]

    def statistics(self) -> tuple[StageMetrics, ...]:
        """A snapshot of each stage's counters, in pipeline order."""
        return tuple(s.statistics() for s in self._state.run.stages)


def _needs_buffer(stages: list[StreamPipe[Any, Any]], i: int) -> bool:
    """Whether stage ``i`` gets a buffer of its own in front of it.

    Besides pipes that ask for one, the pipe after an overridden
    ``process_stream`` gets one: such a stage emits item by item, and a buffer
    lets what follows take its output in chunks without holding any of it back.
    """
    return stages[i]._needs_buffer or (i > 0 and stages[i - 1]._overrides_process_stream())


async def _iterate(state: _RunState) -> AsyncIterator[Any]:
    if state.started:
        return
    state.started = True
    stages, source, clock = state.stages, state.source, state.clock
    sides = _SideStreams(clock)
    tasks: list[asyncio.Task[None]] = []
    gens: list[AsyncIterator[Chunk]] = []
    cancelled = False
    try:
        acking = isinstance(source, Acknowledging)
        up: AsyncIterator[Chunk] = source_chunks(source)
        gens.append(up)
        segment_stats: list[StageStats] = []
        # The run of fusable operators being gathered, with their contexts.
        fused: list[tuple[Any, StageContext]] = []
        prev_ctx: StageContext | None = None
        for i, (pipe, stats) in enumerate(zip(stages, state.run.stages, strict=True)):
            config = pipe.config or _DEFAULT_CONFIG
            buffer = None
            needs_buffer = _needs_buffer(stages, i)
            if fused and (needs_buffer or not pipe._fusable):
                up = _open_fused(fused, up)
                gens.append(up)
                fused = []
            if needs_buffer:
                buffer = ChunkBuffer(config, stats)
                buffer.producers = segment_stats
                if not tasks and isinstance(source, Pausable):
                    buffer.on_throttle = _pauser(source)
                stats.buffer = buffer
                if prev_ctx is not None:
                    prev_ctx.output = buffer  # the segment's last stage may put directly
                tasks.append(
                    asyncio.get_running_loop().create_task(
                        _feed(up, buffer), name=f"pipeflow: feed {pipe.name!r}"
                    )
                )
                up = buffer.chunks()
                gens.append(up)
                segment_stats = []
            segment_stats.append(stats)
            errors = ErrorHandler(pipe.on_error, pipe.name, stats, clock, sides)
            ctx = prev_ctx = StageContext(pipe.name, stats, clock, errors, config, buffer)
            ctx.acking = acking
            if pipe._fusable and (
                fused
                or (
                    i + 1 < len(stages)
                    and stages[i + 1]._fusable
                    and not _needs_buffer(stages, i + 1)
                )
            ):
                fused.append((pipe, ctx))
                continue
            up = pipe._open(up, ctx)
            gens.append(up)
        if fused:
            up = _open_fused(fused, up)
            gens.append(up)
        ack = source.ack if isinstance(source, Acknowledging) else None
        acked = last_mark = 0
        timed = bool(segment_stats) and segment_stats[0].timed
        async for items, mark in up:
            if items:
                if timed:
                    t = clock.monotonic()
                    for s in segment_stats:
                        s.block(t)
                    for x in items:
                        yield x
                    t = clock.monotonic()
                    for s in segment_stats:
                        s.unblock(t)
                else:
                    for x in items:
                        yield x
            # A dead letter still on its way to a dead-letter pipe holds acks back.
            if ack is not None and mark > acked and sides.settled:
                acked = mark
                ack(mark)
            last_mark = mark
        await sides.finish()
        if ack is not None and last_mark > acked:
            ack(last_mark)
    except asyncio.CancelledError:
        cancelled = True
        raise
    finally:
        state.run.finish()
        await _shutdown(tasks, gens, sides, drain_sides=not cancelled)


def _open_fused(
    group: list[tuple[Any, StageContext]], up: AsyncIterator[Chunk]
) -> AsyncIterator[Chunk]:
    """One loop for a run of fusable operators (``map``/``filter`` with sync functions)."""
    return fused_stage(
        [p.fn for p, _ in group], [p.kind for p, _ in group], [c for _, c in group], up
    )


async def _shutdown(
    tasks: list[asyncio.Task[None]],
    gens: list[AsyncIterator[Chunk]],
    sides: _SideStreams,
    *,
    drain_sides: bool,
) -> None:
    """Cancel the run's tasks, close its generators from the last to the first, and
    let dead-letter pipes deliver what they were given (unless the run is cancelled):
    a record counted as dead-lettered must reach its sink, however the run ends.
    """
    for t in tasks:
        t.cancel()
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)
    first: BaseException | None = None
    for g in reversed(gens):
        try:
            await g.aclose()  # type: ignore[attr-defined]
        except Exception as exc:
            first = first or exc
    try:
        if drain_sides:
            await sides.finish()
    except Exception as exc:
        first = first or exc
    finally:
        await sides.cancel()
    if first is not None:
        raise first


async def _feed(up: AsyncIterator[Chunk], buffer: ChunkBuffer) -> None:
    """Run everything upstream of ``buffer`` and fill it; pass on the end or the error."""
    put_nowait = buffer.put_nowait
    try:
        async for items, mark in up:
            rest = put_nowait(items, mark)
            while rest:  # no room for all of it: wait, as put() does
                await buffer.wait_for_room()
                rest = put_nowait(rest, mark)
    except asyncio.CancelledError:
        raise
    except BaseException as exc:
        buffer.close(exc)
        return
    buffer.close()


def _pauser(source: Pausable) -> Any:
    def on_throttle(throttled: bool) -> None:
        if throttled:
            source.pause()
        else:
            source.resume()

    return on_throttle


class _SideStreams:
    """Dead-letter pipes of one run, each streamed in a task of its own."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._sides: dict[int, _Side] = {}

    async def send(self, pipe: Any, record: Any) -> None:
        side = self._sides.get(id(pipe))
        if side is None:
            side = self._sides[id(pipe)] = _Side(pipe, self._clock)
        await side.send(record)

    @property
    def settled(self) -> bool:
        """Whether every dead letter sent so far has been processed by its pipe."""
        return all(side.settled for side in self._sides.values())

    async def finish(self) -> None:
        """End every side stream normally, letting it deliver what it holds.

        Raises the first failure of a side stream (again, if called again).
        """
        for side in self._sides.values():
            await side.finish()

    async def cancel(self) -> None:
        for side in self._sides.values():
            side.task.cancel()
        tasks = [s.task for s in self._sides.values()]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


class _Side:
    """One dead-letter pipe, streamed over the records sent to it.

    Its source acknowledges like any other: ``done`` counts the records whose
    processing by the dead-letter pipe is complete, so the main stream can hold
    its own acknowledgements back until every dead letter has been taken care of.
    """

    def __init__(self, pipe: Pipeable[Any, Any], clock: Clock) -> None:
        self.buffer = ChunkBuffer(_DEFAULT_CONFIG, StageStats(pipe.name, clock, timed=False))
        self.sent = 0
        self.done = 0
        self.task = asyncio.get_running_loop().create_task(
            self._drain(pipe, clock), name=f"pipeflow: dead letters to {pipe.name!r}"
        )

    async def _drain(self, pipe: Pipeable[Any, Any], clock: Clock) -> None:
        async with pipe.stream(_SideSource(self), clock=clock) as results:
            async for _ in results:
                pass

    @property
    def settled(self) -> bool:
        """Whether the dead-letter pipe has finished with every record sent so far."""
        return self.done >= self.sent

    async def send(self, record: Any) -> None:
        if self.task.done():
            self._stopped()
        self.sent += 1
        rest = self.buffer.put_nowait([record], 0)
        if not rest:
            return
        put = asyncio.ensure_future(self.buffer.put(rest, 0))
        await asyncio.wait({put, self.task}, return_when=asyncio.FIRST_COMPLETED)
        if not put.done():
            put.cancel()
            self._stopped()

    def _stopped(self) -> None:
        exc = self.task.exception() if not self.task.cancelled() else None
        if exc is not None:
            raise exc
        msg = "the dead-letter pipe stopped taking records before the stream ended"
        raise RuntimeError(msg)

    async def finish(self) -> None:
        self.buffer.close()
        await self.task


class _SideSource:
    """The source of a dead-letter pipe's run: the records, and their acknowledgement."""

    def __init__(self, side: _Side) -> None:
        self._side = side

    async def __aiter__(self) -> AsyncIterator[Any]:
        async for items, _ in self._side.buffer.chunks():
            for record in items:
                yield record

    def ack(self, count: int) -> None:
        self._side.done = count
