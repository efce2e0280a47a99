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
import sys
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from operator import length_hint
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

from ._acks import SourceCalls
from ._buffer import MAX_CHUNK, Chunk, ChunkBuffer
from ._clock import SYSTEM_CLOCK, Clock
from ._config import BackpressureConfig
from ._fusion import FusedOps, direct_consumer, fused_stage
from ._idle import SourceIdle
from ._pipe import Pipeable, StreamPipe
from ._policies import ErrorHandler, log, may_send_to_a_pipe
from ._sources import Acknowledging, Pausable, check_source, close_source, source_chunks
from ._stages import StageContext
from ._stats import RunStats, StageMetrics, StageStats, StatsSink
from ._stream_stage import ProcessStream, StreamChain, stream_stage

__all__ = ["Stream"]

T = TypeVar("T")
_DEFAULT_CONFIG = BackpressureConfig()


class _Run:
    """One run: its stages, and the tasks and generators it has started.

    Shared by the ``Stream`` and the generator the consumer iterates. The
    generator must not refer to the ``Stream``: a consumer that breaks out of a
    bare ``async for`` drops both, and without a reference cycle the generator
    is finalized (and the run closed) at once rather than at the next GC.
    """

    __slots__ = (
        "_ack",
        "_acked",
        "_calls",
        "_last_mark",
        "_live",
        "clock",
        "delivering",
        "ended",
        "gens",
        "reading",
        "run",
        "segment_stats",
        "sides",
        "source",
        "source_idle",
        "stages",
        "started",
        "tail_chain",
        "tasks",
        "watchers",
    )

    def __init__(
        self,
        stages: list[StreamPipe[Any, Any]],
        source: Any,
        clock: Clock,
        run: RunStats,
        watchers: list[tuple[StatsSink, RunStats]],
    ) -> None:
        self.stages = stages
        self.source = source
        self.clock = clock
        self.run = run
        #: The monitors to tell of the run when it starts (a stream never iterated
        #: is no run of theirs), each with the stages it watches.
        self.watchers = watchers
        self.started = False
        self.sides = _SideStreams(clock)
        self.tasks: list[asyncio.Task[None]] = []
        #: Async generators and other things to close at the end: each has aclose().
        self.gens: list[Any] = []
        #: The stats of the stages running in the consumer's task.
        self.segment_stats: list[StageStats] = []
        self._ack = source.ack if isinstance(source, Acknowledging) else None
        #: Acks, pauses and resumes, awaited in order off the consumer's path.
        self._calls = SourceCalls(self._ack)
        self._acked = self._last_mark = 0
        self.source_idle = SourceIdle(clock)
        #: Fused operators that keep their counters live (see ``flush``).
        self._live: FusedOps | None = None
        self.reading = _Reading()
        #: Whether the run reached its end: the input used up, every result taken.
        self.ended = False
        #: An iterator over the chunk the consumer is being given.
        self.delivering: Iterator[Any] | None = None
        #: The process_stream overrides the consumer's generator chains itself.
        self.tail_chain: list[tuple[ProcessStream, StageContext]] = []

    def open(
        self, tail: int, *, items: bool = False, chained: bool = False
    ) -> tuple[AsyncIterator[Any], FusedOps | None]:
        """Start the stages before ``tail`` and return the chunks they put out.

        The stages from ``tail`` on are fused operators the consumer's generator
        runs itself; they come back as one ``FusedOps`` (``None`` if there are none).
        With ``items`` they are the whole pipeline, and what comes back is the
        async source's own iterator, for the consumer's generator to read item
        by item. With ``chained`` the stages from ``tail`` on are instead a chain
        of ``process_stream`` overrides, left in ``tail_chain`` for the
        consumer's generator to run.
        """
        self.started = True
        for monitor, watched in self.watchers:
            monitor.attach(watched)
        if items:
            it = self.source.__aiter__()
            self.gens.append(_SourceCloser(it, self.source))
            pairs = zip(self.stages, self.run.stages, strict=True)
            self._live = ops = _fused_ops([(p, self._context(p, s)) for p, s in pairs])
            return (it if hasattr(it, "__aiter__") else _Aiter(it)), ops
        stages, source, tasks, gens = self.stages, self.source, self.tasks, self.gens
        # The direct consumer of a sync source takes any slice of it as a chunk.
        reading = self.reading
        untimed = bool(stages) and not self.run.stages[0].timed
        cuts = bool(stages) and stages[0]._takes_slices
        up: AsyncIterator[Any] = source_chunks(
            source,
            lists=tail > 0 or _needs_buffer(stages, 0),
            # A first stage that cuts its input itself, or fused operators alone
            # (a stream read with chunks()), take a list in long slices; not in a
            # timed run, whose counters move a chunk at a time.
            long_slices=untimed
            and (cuts or (not _needs_buffer(stages, 0) and all(p._fusable for p in stages))),
            # An async source's items at hand too, for a first stage that cuts
            # them (acknowledgements then go by its batches and windows anyway).
            long_reads=untimed and cuts,
            close=self._ack is None,
            reading=reading,
            idle=self.source_idle,
        )
        gens.append(up)
        segment_stats: list[StageStats] = []
        # The run of fusable operators being gathered, with their contexts.
        fused: list[tuple[Any, StageContext]] = []
        # The run of process_stream overrides being gathered, to chain in one task.
        chain: list[tuple[ProcessStream, StageContext]] = []
        prev_ctx: StageContext | None = None
        for i, (pipe, stats) in enumerate(zip(stages, self.run.stages, strict=True)):
            config = pipe.config or _DEFAULT_CONFIG
            buffer = None
            needs_buffer = _needs_buffer(stages, i)
            process_stream = pipe._process_stream_fn()
            if chain and (needs_buffer or process_stream is None):
                up = stream_stage(chain, up)
                gens.append(up)
                chain = []
            if fused and (needs_buffer or not pipe._fusable or i == tail):
                up = fused_stage(_fused_ops(fused), up)
                gens.append(up)
                fused = []
            if needs_buffer:
                buffer = ChunkBuffer(config, stats)
                buffer.producers = segment_stats
                if not tasks:
                    reading.buffer = buffer
                    if isinstance(source, Pausable):
                        buffer.on_throttle = _pauser(source, self._calls)
                stats.buffer = buffer
                if prev_ctx is not None:
                    prev_ctx.output = buffer  # the segment's last stage may put directly
                # The segment's last stage counts its throughput as it fills the buffer.
                feeder = segment_stats[-1] if segment_stats and stats.timed else None
                if feeder is not None:
                    feeder.counted_on_handover = True
                tasks.append(
                    asyncio.get_running_loop().create_task(
                        _feed(up, buffer, feeder), name=f"pipeflow: feed {pipe.name!r}"
                    )
                )
                up = buffer.chunks()
                gens.append(up)
                segment_stats = []
            segment_stats.append(stats)
            ctx = prev_ctx = self._context(pipe, stats, buffer)
            if chained and i >= tail:
                assert process_stream is not None
                self.tail_chain.append((process_stream, ctx))
                continue
            if i >= tail or (
                pipe._fusable
                and (
                    fused
                    or (
                        i + 1 < len(stages)
                        and stages[i + 1]._fusable
                        and not _needs_buffer(stages, i + 1)
                    )
                )
            ):
                fused.append((pipe, ctx))
                continue
            if process_stream is not None:
                chain.append((process_stream, ctx))
                continue
            up = pipe._open(up, ctx)
            gens.append(up)
        if chain:
            up = stream_stage(chain, up)
            gens.append(up)
        self.segment_stats = segment_stats
        if tail < len(stages):
            return up, _fused_ops(fused)
        if fused:
            up = fused_stage(_fused_ops(fused), up)
            gens.append(up)
        return up, None

    def _context(
        self, pipe: StreamPipe[Any, Any], stats: StageStats, buffer: ChunkBuffer | None = None
    ) -> StageContext:
        errors = ErrorHandler(pipe.on_error, pipe.name, stats, self.clock, self.sides)
        config = pipe.config or _DEFAULT_CONFIG
        ctx = StageContext(pipe.name, stats, self.clock, errors, config, buffer)
        ctx.acking = self._ack is not None
        ctx.source_idle = self.source_idle
        return ctx

    def flush(self) -> None:
        """Bring the metrics up to date with counters kept live by the consumer."""
        if self._live is not None:
            self._live.flush()

    def delivered(self, mark: int) -> None:
        """The consumer has taken every result of the source's first ``mark`` items.

        Raises the failure of a dead-letter pipe, which fails the run: the consumer
        sees it before the run reads on.
        """
        self.sides.check()
        calls = self._calls
        calls.check()
        # A dead letter still on its way to a dead-letter pipe holds acks back.
        if self._ack is not None and mark > self._acked and self.sides.settled:
            self._acked = mark
            calls.ack(mark)
        self._last_mark = mark

    async def end(self) -> None:
        """The input is used up and every result taken: finish the dead-letter pipes."""
        await self.sides.finish()
        calls = self._calls
        if self._ack is not None and self._last_mark > self._acked:
            self._acked = self._last_mark
            calls.ack(self._last_mark)
        await calls.wait()
        self.ended = True

    async def close(self, *, cancelled: bool) -> None:
        """Stop every task and generator of the run (see :func:`_shutdown`).

        An acknowledging source is closed last, after its last acknowledgement
        (``end``): a broker client can still commit it.
        """
        self.flush()
        if not self.ended:
            self._abandon(sys.exc_info()[1])
        self.run.finish()
        try:
            await _shutdown(self.tasks, self.gens, self.sides, drain_sides=not cancelled)
        finally:
            try:
                await self._calls.close(cancelled=cancelled)
            finally:
                if self._ack is not None:
                    await close_source(self.source)

    def _abandon(self, stopped_by: BaseException | None) -> None:
        """The run stops before its end: count what its stages hold, which will not
        be delivered, and say so in one line."""
        held: dict[str, int] = {}
        total = 0
        stages = self.run.stages
        for i, stats in enumerate(stages):
            buffer = stats.buffer
            n = 0
            if isinstance(buffer, ChunkBuffer):
                n = buffer.queued
                held["in buffers"] = held.get("in buffers", 0) + n
                # What the stages after the buffer took out is in progress, unless
                # one of them holds items itself: they went there (or on) already.
                segment = [stats]
                for later in stages[i + 1 :]:
                    if later.buffer is not None:
                        break
                    segment.append(later)
                if all(s.held is None for s in segment):
                    n += buffer.taken
                    held["in progress"] = held.get("in progress", 0) + buffer.taken
            if stats.held is not None:
                mine = stats.held()
                held[stats.held_in] = held.get(stats.held_in, 0) + mine
                n += mine
            stats.abandoned += n
            total += n
        if isinstance(stopped_by, asyncio.CancelledError):
            how = "was cancelled"
        elif isinstance(stopped_by, GeneratorExit) or stopped_by is None:
            how = "was closed before its end"
        else:
            how = f"failed ({type(stopped_by).__name__})"
        read = max(self.reading.read, self.run.stages[0].items_in if self.run.stages else 0)
        where = ", ".join(f"{n} {place}" for place, n in held.items() if n)
        line = f"run of {self.run.name!r} {how} after reading {_items(read)} from the source"
        line += f"; {_items(total)} held were not delivered ({where})" if total else ""
        untaken = length_hint(self.delivering) if self.delivering is not None else 0
        if untaken:
            line += f"; {untaken} more at hand were not given to the consumer"
        if self._ack is not None:
            line += f"; {_items(read - self._calls.acked)} read were not acknowledged"
        (log.warning if total or untaken else log.info)("%s", line)


def _items(n: int) -> str:
    return f"{n} item" if n == 1 else f"{n} items"


class Stream(Generic[T]):
    """The results of one run. Iterate it with ``async for``; close it with ``async with``.

    Breaking out of the loop, leaving the ``async with``, an exception or a
    cancellation closes the source and every task the run started.
    """

    __slots__ = ("_agen", "_chunked", "_closed", "_run")

    def __init__(
        self,
        pipe: Pipeable[Any, T],
        source: Iterable[Any] | AsyncIterable[Any],
        clock: Clock | None,
    ) -> None:
        check_source(source)
        if clock is None:
            clock = SYSTEM_CLOCK
        elif isinstance(clock, type) or not all(
            callable(getattr(clock, name, None)) for name in ("monotonic", "now", "sleep")
        ):
            hint = f" (an instance: {clock.__name__}())" if isinstance(clock, type) else ""
            msg = f"clock must be a Clock{hint}, got {clock!r:.80}"
            raise TypeError(msg)
        stages = pipe._stages()
        # The pipe's monitor sees the whole run; the monitor of a pipe or pipeline
        # composed into it sees the stages that part covers.
        watched = [
            (m, p, start, stop) for p, start, stop in pipe._parts() if (m := p._monitor) is not None
        ]
        timed = bool(watched)
        run = RunStats(pipe.name, [StageStats(p.name, clock, timed=timed) for p in stages])
        watchers = [
            (monitor, run if p is pipe else run.view(p.name, start, stop))
            for monitor, p, start, stop in watched
        ]
        self._run = _Run(stages, source, clock, run, watchers)
        self._chunked = self._closed = False
        tail = None if timed else _direct_tail(stages)
        chain = None if timed else _chain_tail(stages)
        if chain is not None:
            check = any(may_send_to_a_pipe(p.on_error) for p in stages)
            self._agen: AsyncIterator[T] = _iterate_chain(self._run, chain, check_sides=check)
        elif tail is None:
            self._agen = _iterate(self._run)
        else:
            kinds = tuple(p.kind for p in stages[tail:])  # type: ignore[attr-defined]
            # Without acknowledgements to time, an async source is read item by item.
            # (Nor when a dead-letter pipe may fail the run: with no chunks, there
            # would be no point at which to notice before the next dead letter.)
            async_source = (
                tail == 0
                and hasattr(source, "__aiter__")
                and not isinstance(source, Acknowledging)
                and not any(may_send_to_a_pipe(p.on_error) for p in stages)
            )
            consumer = direct_consumer(kinds, async_source=async_source)
            self._agen = consumer(self._run, tail)

    def __aiter__(self) -> AsyncIterator[T]:
        if self._chunked:
            msg = "this stream is read with chunks(): iterate what chunks() returned"
            raise RuntimeError(msg)
        # A loop that breaks off may be followed by another that goes on; one over
        # a run that is over would silently get nothing.
        if self._run.started and getattr(self._agen, "ag_frame", True) is None:
            self._used_up()
        return self._agen

    def _used_up(self) -> None:
        what = "was closed" if self._closed else "has been read to its end"
        msg = f"this stream {what}: a stream is one run; call stream() again for another"
        raise RuntimeError(msg)

    def chunks(self) -> AsyncIterator[list[T]]:
        """The results in lists: each holds the results at hand, up to ``MAX_CHUNK``,
        and none waits for more to come. For a consumer that writes in bulk.

        Call it instead of iterating the stream itself, before the run starts.
        Closing works as for the stream: ``async with`` the stream around the loop.
        """
        if self._closed:
            self._used_up()
        if self._chunked:
            msg = "chunks() was called already: iterate what it returned"
            raise RuntimeError(msg)
        if self._run.started:
            msg = "chunks() must be called before the stream is iterated"
            raise RuntimeError(msg)
        chunks: AsyncIterator[list[T]] = _iterate(self._run, chunked=True)
        self._agen = chunks  # type: ignore[assignment]
        self._chunked = True
        return chunks

    async def __anext__(self) -> T:
        if self._chunked:
            self.__aiter__()  # raises
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
        self._closed = True
        run = self._run
        if not run.started:
            run.started = True  # a stream closed before it began never begins
            run.run.finish()
            await close_source(run.source)
        await self._agen.aclose()  # type: ignore[attr-defined]

    def statistics(self) -> tuple[StageMetrics, ...]:
        """A snapshot of each stage's counters, in pipeline order."""
        self._run.flush()
        return tuple(s.statistics() for s in self._run.run.stages)


def _needs_buffer(stages: list[StreamPipe[Any, Any]], i: int) -> bool:
    """Whether stage ``i`` gets a buffer of its own in front of it.

    Besides pipes that ask for one, a pipe after an overridden
    ``process_stream`` gets one: such a stage emits item by item, and a buffer
    lets what follows take its output in chunks without holding any of it back.
    Another ``process_stream`` override does not: it is chained to the first
    and reads its output item by item anyway.
    """
    return stages[i]._needs_buffer or (
        i > 0
        and stages[i - 1]._process_stream_fn() is not None
        and stages[i]._process_stream_fn() is None
    )


def _chain_tail(stages: list[StreamPipe[Any, Any]]) -> int | None:
    """Where the chain of ``process_stream`` overrides that ends the pipeline
    begins, if one does: the consumer's generator runs it and yields each result
    of the last as it comes (see ``_iterate_chain``)."""
    start = len(stages)
    while start > 0 and stages[start - 1]._process_stream_fn() is not None:
        if start < len(stages) and _needs_buffer(stages, start):
            break
        start -= 1
    return start if start < len(stages) else None


def _direct_tail(stages: list[StreamPipe[Any, Any]]) -> int | None:
    """Where the fused operators that end the pipeline begin, if any do.

    The consumer's own generator runs them and yields each result as it comes
    (see ``_fusion.direct_consumer``); no buffer may sit between them.
    """
    tail = len(stages)
    while tail > 0 and stages[tail - 1]._fusable:
        if tail < len(stages) and _needs_buffer(stages, tail):
            break
        tail -= 1
    return tail if tail < len(stages) else None


class _Reading:
    """How far the source may be read ahead: as far as the first buffer has room
    for; and how many items have been read.

    Before the first buffer (or with none) the source is read a chunk at a time
    as the stages ask for it, so a chunk is all it runs ahead.
    """

    __slots__ = ("buffer", "read")

    def __init__(self) -> None:
        self.buffer: ChunkBuffer | None = None
        self.read = 0

    async def room(self, wanted: int) -> int:
        buffer = self.buffer
        if buffer is None:
            return wanted
        while (n := buffer.read_room()) <= 0:
            await buffer.wait_for_room()
        return min(n, wanted)


class _SourceCloser:
    """Closes a source the consumer's generator reads itself, with its iterator."""

    def __init__(self, it: Any, source: Any) -> None:
        self._it = it
        self._source = source

    async def aclose(self) -> None:
        try:
            await close_source(self._it)
        finally:
            if self._source is not self._it:
                await close_source(self._source)


class _Aiter:
    """An async iterator made of an object that has ``__anext__`` but no ``__aiter__``."""

    def __init__(self, it: Any) -> None:
        self._anext = it.__anext__

    def __aiter__(self) -> Self:
        return self

    def __anext__(self) -> Any:
        return self._anext()


def _fused_ops(group: list[tuple[Any, StageContext]]) -> FusedOps:
    """A run of fusable operators (``map``/``filter`` with sync functions)."""
    return FusedOps([p.fn for p, _ in group], [p.kind for p, _ in group], [c for _, c in group])


async def _iterate(run: _Run, *, chunked: bool = False) -> AsyncIterator[Any]:
    """The consumer's generator: results of the last stage, chunk by chunk,
    yielded one by one or, if ``chunked``, in lists of at most ``MAX_CHUNK``.

    When the run is timed, the last stage's throughput counts the results as the
    consumer takes them (see ``StageStats.start_delivery``).
    """
    if run.started:
        return
    cancelled = False
    try:
        up, _ = run.open(len(run.stages))
        clock = run.clock
        segment_stats = run.segment_stats
        timed = bool(segment_stats) and segment_stats[0].timed
        if timed:
            last = segment_stats[-1]
            last.counted_on_handover = True
        delivered = run.delivered
        async for items, mark in up:
            if items:
                if timed:
                    t = clock.monotonic()
                    for s in segment_stats:
                        s.block(t)
                if chunked:
                    # A stage may emit more than MAX_CHUNK at once (a concurrent
                    # stage catching up, a process_stream filling a buffer): the
                    # consumer gets slices, and the mark once it has them all.
                    for part in (items,) if len(items) <= MAX_CHUNK else _split(items):
                        if timed:
                            last.record_delivered(len(part), clock.monotonic())
                        yield part
                elif timed:
                    it = run.delivering = iter(items)
                    last.start_delivery(it, len(items), t)
                    for x in it:
                        yield x
                else:
                    it = run.delivering = iter(items)
                    for x in it:
                        yield x
                if timed:
                    t = clock.monotonic()
                    for s in segment_stats:
                        s.unblock(t)
                    last.end_delivery(t)
            delivered(mark)
        await run.end()
    except asyncio.CancelledError:
        cancelled = True
        raise
    finally:
        await run.close(cancelled=cancelled)


async def _iterate_chain(run: _Run, tail: int, *, check_sides: bool) -> AsyncIterator[Any]:
    """The consumer's generator when the pipeline ends in ``process_stream``
    overrides: it runs their chain itself and yields the last one's results as
    they come, as a hand-written chain of async generators would.

    Acknowledgements wait for the end (a ``process_stream`` may hold items as
    long as it likes). With dead-letter pipes, their failure is looked for at
    each result.
    """
    if run.started:
        return
    cancelled = False
    try:
        up, _ = run.open(tail, chained=True)
        chain = StreamChain(run.tail_chain, up)
        run.gens.append(chain)
        stats = run.run.stages[-1]
        if check_sides:
            check = run.sides.check
            async for y in chain.outputs:
                check()
                stats.items_out += 1
                yield y
        else:
            async for y in chain.outputs:
                stats.items_out += 1
                yield y
        run.delivered(chain.final_mark)
        await run.end()
    except asyncio.CancelledError:
        cancelled = True
        raise
    finally:
        await run.close(cancelled=cancelled)


def _split(items: list[Any]) -> list[list[Any]]:
    """``items`` in slices of at most ``MAX_CHUNK``."""
    return [items[i : i + MAX_CHUNK] for i in range(0, len(items), MAX_CHUNK)]


async def _shutdown(
    tasks: list[asyncio.Task[None]],
    gens: list[Any],
    sides: _SideStreams,
    *,
    drain_sides: bool,
) -> None:
    """Cancel the run's tasks, close its generators from the last to the first, and
    let dead-letter pipes deliver what they were given (unless the run is cancelled):
    a record counted as dead-lettered must reach its sink, however the run ends.
    """
    first: BaseException | None = None
    for t in tasks:
        t.cancel()
    if tasks:
        try:
            await asyncio.gather(*tasks, return_exceptions=True)
        except asyncio.CancelledError as exc:  # cancelled again while closing:
            first = exc  # close everything all the same, then let it through
            await asyncio.gather(*tasks, return_exceptions=True)
    for g in reversed(gens):
        try:
            await g.aclose()
        except (Exception, asyncio.CancelledError) as exc:
            first = first or exc
    try:
        if drain_sides and not isinstance(first, asyncio.CancelledError):
            await sides.finish()
    except (Exception, asyncio.CancelledError) as exc:
        first = first or exc
    finally:
        await sides.cancel()
    if first is not None:
        raise first


async def _feed(
    up: AsyncIterator[Chunk], buffer: ChunkBuffer, feeder: StageStats | None = None
) -> None:
    """Run everything upstream of ``buffer`` and fill it; pass on the end or the error.

    ``feeder``, the stats of the stage that fills it in a timed run, counts its
    throughput as items go in.
    """
    put_nowait = buffer.put_nowait
    try:
        async for items, mark in up:
            rest = put_nowait(items, mark)
            if feeder is not None:
                feeder.record_delivered(len(items) - len(rest), feeder.clock.monotonic())
            while rest:  # no room for all of it: wait, as put() does
                await buffer.wait_for_room()
                held = len(rest)
                rest = put_nowait(rest, mark)
                if feeder is not None:
                    feeder.record_delivered(held - len(rest), feeder.clock.monotonic())
    except asyncio.CancelledError:
        raise
    except BaseException as exc:
        buffer.close(exc)
        return
    buffer.close()


def _pauser(source: Pausable, calls: SourceCalls) -> Any:
    def on_throttle(throttled: bool) -> None:
        calls.call(source.pause if throttled else source.resume)

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

    def check(self) -> None:
        """Raise the failure of a dead-letter pipe that stopped before the run ended."""
        for side in self._sides.values():
            if side.task.done():
                side._stopped()

    async def finish(self) -> None:
        """End every side stream normally, letting it deliver what it holds.

        Raises the first failure of a side stream (again, if called again).
        """
        for side in self._sides.values():
            await side.finish()

    async def cancel(self) -> None:
        """Stop every side stream now. Dead letters it had not processed yet are
        logged: their source items were never acknowledged, so a source that
        redelivers brings them back."""
        for side in self._sides.values():
            side.task.cancel()
        tasks = [s.task for s in self._sides.values()]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        for side in self._sides.values():
            if side.sent > side.done:
                log.warning(
                    "dead-letter pipe %r stopped with %d of %d records not confirmed as processed "
                    "(the run was cancelled or failed); their items were not acknowledged",
                    side.name,
                    side.sent - side.done,
                    side.sent,
                )


class _Side:
    """One dead-letter pipe, streamed over the records sent to it.

    Its source acknowledges like any other: ``done`` counts the records whose
    processing by the dead-letter pipe is complete, so the main stream can hold
    its own acknowledgements back until every dead letter has been taken care of.
    """

    def __init__(self, pipe: Pipeable[Any, Any], clock: Clock) -> None:
        self.name = pipe.name
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
        try:
            await asyncio.wait({put, self.task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not put.done():  # the pipe stopped, or this send was cancelled
                put.cancel()
                await asyncio.gather(put, return_exceptions=True)
        if put.cancelled():
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
