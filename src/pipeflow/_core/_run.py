"""One run of a pipeline: the loops and tasks its plan describes, and their end.

``Run.open`` builds what ``_plan.plan`` laid out: the source's chunks, then per
group a fused loop, a ``process_stream`` chain or a stage's own loop; at each
boundary a ``ChunkBuffer`` and a feeder task (:func:`feed`) that fills it with
everything upstream. The last segment runs in the consumer's task, pulled by a
consumer generator (``_consumers.py``, ``_fusion.direct_consumer``), which opens,
ends and closes the run in the frame of ``_lifecycle.consuming``.

Every task and generator a run starts is closed by the run (``Run.close``, with
``_shutdown``): on the end, on an error, when the consumer breaks out or leaves
``async with``, on cancellation. What the stages held then is counted and logged.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from operator import length_hint
from typing import Any

from ._acks import SourceCalls
from ._buffer import Chunk, ChunkBuffer
from ._clock import Clock
from ._config import BackpressureConfig
from ._dead_letters import DeadLetterStreams
from ._fusion import FusedOps, fused_stage
from ._idle import SourceIdle
from ._plan import How, boundary_before, plan
from ._policies import ErrorHandler
from ._shutdown import report_abandoned, shutdown
from ._sources import (
    Acknowledging,
    AsyncClosable,
    Pausable,
    Reading,
    SourceCloser,
    as_aiter,
    close_source,
    source_chunks,
)
from ._stage import BatchStep, Stage
from ._stages import StageContext
from ._stats import RunStats, StageStats, StatsSink
from ._stop import StoppingSource
from ._stream_stage import ProcessStream, stream_stage

__all__ = ["Run", "feed", "fused_ops", "process_streams"]

DEFAULT_CONFIG = BackpressureConfig()


class Run:
    """One run: its stages, and the tasks and generators it has started.

    Shared by the ``Stream`` and the consumer generator. The generator must not
    refer to the ``Stream``: a consumer that breaks out of a bare ``async for``
    drops both, and without a reference cycle the generator is finalized (and
    the run closed) at once rather than at the next GC.
    """

    __slots__ = (
        "_ack",
        "_acked",
        "_calls",
        "_last_mark",
        "batch_step",
        "bulk",
        "clock",
        "closables",
        "consumer_segment",
        "dead_letters",
        "delivering",
        "ended",
        "reading",
        "source",
        "source_idle",
        "stages",
        "started",
        "stats",
        "stopping",
        "tail_chain",
        "tasks",
        "unread_at_stop",
        "watchers",
    )

    def __init__(
        self,
        stages: Sequence[Stage],
        source: Any,
        clock: Clock,
        stats: RunStats,
        watchers: list[tuple[StatsSink, RunStats]],
    ) -> None:
        self.stages = stages
        self.source = source
        self.clock = clock
        #: The run's statistics: one ``StageStats`` per stage, in order.
        self.stats = stats
        #: The monitors to tell of the run when it starts (a stream never iterated
        #: is no run of theirs), each with the stages it watches.
        self.watchers = watchers
        #: Whether the run was opened (or closed before it began).
        self.started = False
        self.dead_letters = DeadLetterStreams(clock)
        #: The feeder tasks, one per boundary.
        self.tasks: list[asyncio.Task[None]] = []
        #: The generators (and other closables) to close at the end, in the order opened.
        self.closables: list[AsyncClosable] = []
        #: The stats of the stages running in the consumer's task.
        self.consumer_segment: list[StageStats] = []
        self._ack = source.ack if isinstance(source, Acknowledging) else None
        #: Acks, pauses and resumes, awaited in order off the consumer's path.
        self._calls = SourceCalls(self._ack)
        self._acked = self._last_mark = 0
        self.source_idle = SourceIdle(clock)
        self.reading = Reading()
        #: Whether the run reached its end: the input used up, every result taken.
        self.ended = False
        #: Whether the consumer takes results in bulk (a run into a sink).
        self.bulk = False
        #: An iterator over the chunk the consumer is being given.
        self.delivering: Iterator[Any] | None = None
        #: The batcher by count that is the whole pipeline, for the consumer's
        #: generator to run over the source read item by item (``iterate_batches``).
        self.batch_step: BatchStep | None = None
        #: The process_stream overrides the consumer's generator chains itself.
        self.tail_chain: list[tuple[ProcessStream, StageContext]] = []
        #: The source, when it is read until a stop (``stop=``).
        self.stopping = source if isinstance(source, StoppingSource) else None
        #: Items read and not yet delivered when the stop came (``None``: no stop came).
        self.unread_at_stop: int | None = None
        if self.stopping is not None:
            self.stopping.on_stop = self._stop_noted

    def open(self, tail: int, *, items: bool = False) -> tuple[AsyncIterator[Any], FusedOps | None]:
        """Start the stages before ``tail`` and return the chunks they put out.

        The stages from ``tail`` on are the consumer generator's own (see
        ``_plan.How.TAIL``). Fused operators come back as one ``FusedOps``;
        ``process_stream`` overrides are left in ``tail_chain``; ``None`` comes
        back for them, and when there are none. With ``items`` the fused
        operators or the overrides are the whole pipeline, and what comes back is
        the source's own iterator (an async source's, or a list's or tuple's for
        fused operators), for the consumer's generator to read item by item; so
        too for a batcher by count that is the whole pipeline (its step is left
        in ``batch_step``).
        """
        self.started = True
        for monitor, watched in self.watchers:
            monitor.attach(watched)
        if items:
            return self._open_items()
        up = self._track(self._source_chunks(tail))
        segment: list[StageStats] = []
        last: StageContext | None = None  # the context of the stage before
        ops = None
        for group in plan(self.stages, tail):
            members: list[tuple[Stage, StageContext]] = []
            for i in range(group.start, group.stop):
                pipe, stats = self.stages[i], self.stats.stages[i]
                buffer = None
                if i == group.start and group.boundary:
                    buffer = self._boundary(pipe, stats, up, segment, last)
                    up = self._track(buffer.chunks())
                    segment = []
                segment.append(stats)
                last = self._context(pipe, stats, buffer)
                members.append((pipe, last))
            if group.how is not How.TAIL:
                up = self._track(_build(group.how, members, up))
            elif members[0][0]._process_stream_fn() is not None:
                self.tail_chain = process_streams(members)
            else:
                ops = fused_ops(members)
        self.consumer_segment = segment
        return up, ops

    def _track(self, it: AsyncIterator[Chunk]) -> AsyncIterator[Chunk]:
        """Keep ``it``, a loop of the run, to close at the run's end."""
        if not isinstance(it, AsyncClosable):  # an async generator, as ``Stage._open`` says
            msg = f"a stage's loop must have aclose(), got {type(it).__name__}"
            raise TypeError(msg)
        self.closables.append(it)
        return it

    def _open_items(self) -> tuple[Any, FusedOps | None]:
        """``open`` for a pipeline of fused operators, of ``process_stream``
        overrides (left in ``tail_chain``) or of one batcher by count (its step
        left in ``batch_step``), over a source read item by item."""
        it = self._source_items()
        pairs = zip(self.stages, self.stats.stages, strict=True)
        members = [(p, self._context(p, s)) for p, s in pairs]
        if self.stages[0]._batches_by_count is not None:
            ((pipe, ctx),) = members
            self.batch_step = pipe._batch_step(ctx)
            return it, None
        if self.stages[0]._process_stream_fn() is not None:
            self.tail_chain = process_streams(members)
            return it, None
        ops = fused_ops(members)
        self.stats.stages[0].live.append(ops.flush)
        return it, ops

    def _source_items(self) -> Any:
        """The source's iterator, to be read item by item, closed at the end: an
        async iterator, or an iterator of a list or tuple."""
        source = self.source
        if not hasattr(source, "__aiter__"):
            it = iter(source)
            self.closables.append(SourceCloser(it, source))
            return it
        ait = source.__aiter__()
        self.closables.append(SourceCloser(ait, source))
        return as_aiter(ait)

    def _source_chunks(self, tail: int) -> AsyncIterator[Chunk]:
        """The source read in chunks, as the first stages like it best."""
        stages = self.stages
        untimed = bool(stages) and not self.stats.stages[0].timed
        cuts = bool(stages) and stages[0]._takes_slices
        buffered = bool(stages) and boundary_before(stages, 0)
        return source_chunks(
            self.source,
            lists=tail > 0 or buffered,
            # A first stage that cuts its input itself, or fused operators alone
            # (a stream read with chunks()), take a list in long slices; not in a
            # timed run, whose counters move a chunk at a time.
            long_slices=untimed
            and (cuts or (not buffered and all(p._fused_op() is not None for p in stages))),
            # An async source's items at hand too, for a first stage that cuts
            # them (acknowledgements then go by its batches and windows anyway),
            # and for fused operators alone written to a sink, which then writes
            # what a broker client fetched at once in one call.
            long_reads=(untimed and cuts)
            or (self.bulk and not buffered and all(p._fused_op() is not None for p in stages)),
            close=self._ack is None,
            reading=self.reading,
            idle=self.source_idle,
        )

    def _boundary(
        self,
        pipe: Stage,
        stats: StageStats,
        up: AsyncIterator[Chunk],
        producers: list[StageStats],
        last: StageContext | None,
    ) -> ChunkBuffer:
        """The buffer in front of ``pipe``, and the task that fills it from ``up``."""
        buffer = ChunkBuffer(pipe.config or DEFAULT_CONFIG, stats)
        buffer.producers = producers
        if not self.tasks:  # the first buffer: the source reads no further ahead
            self.reading.buffer = buffer
            if isinstance(self.source, Pausable):
                buffer.on_throttle = _pauser(self.source, self._calls)
        stats.buffer = buffer
        if last is not None:
            last.output = buffer  # the segment's last stage may put directly
        # The segment's last stage counts its throughput as it fills the buffer.
        feeder = producers[-1] if producers and stats.timed else None
        if feeder is not None:
            feeder.counted_on_handover = True
        task = asyncio.get_running_loop().create_task(
            feed(up, buffer, feeder), name=f"pipeflow: feed {pipe.name!r}"
        )
        self.tasks.append(task)
        return buffer

    def _context(
        self, pipe: Stage, stats: StageStats, buffer: ChunkBuffer | None = None
    ) -> StageContext:
        errors = ErrorHandler(pipe.on_error, pipe.name, stats, self.clock, self.dead_letters)
        config = pipe.config or DEFAULT_CONFIG
        ctx = StageContext(pipe.name, stats, self.clock, errors, config, buffer)
        ctx.acking = self._ack is not None
        ctx.source_idle = self.source_idle
        ctx.stopping = self.stopping
        return ctx

    def read(self) -> int:
        """How many items have been read from the source."""
        return max(self.reading.read, self.stats.stages[0].items_in if self.stats.stages else 0)

    def unacknowledged(self) -> int:
        """Items read whose acknowledgement has not completed (0 for a source that
        takes none): a broker delivers them again."""
        return self.read() - self._calls.acked if self._ack is not None else 0

    def _stop_noted(self) -> None:
        self.flush()
        self.unread_at_stop = self.read() - self._last_mark

    def flush(self) -> None:
        """Bring the metrics up to date with the counters that loops keep in locals
        of their own (``StageStats.live``)."""
        for stats in self.stats.stages:
            for flush in stats.live:
                flush()

    def delivered(self, mark: int) -> None:
        """The consumer has taken every result of the source's first ``mark`` items.

        Raises the failure of a dead-letter pipe, which fails the run: the consumer
        sees it before the run reads on.
        """
        self.dead_letters.check()
        calls = self._calls
        calls.check()
        # A dead letter still on its way to a dead-letter pipe holds acks back.
        if self._ack is not None and mark > self._acked and self.dead_letters.settled:
            self._acked = mark
            calls.ack(mark)
        self._last_mark = mark

    async def end(self) -> None:
        """The input is used up and every result taken: finish the dead-letter pipes."""
        await self.dead_letters.finish()
        calls = self._calls
        if self._ack is not None and self._last_mark > self._acked:
            self._acked = self._last_mark
            calls.ack(self._last_mark)
        await calls.wait()
        self.ended = True

    async def close(self, *, stopped_by: BaseException | None) -> None:
        """Stop every task and generator of the run (see ``_shutdown.shutdown``).

        ``stopped_by`` is what stopped a run before its end (``None``: it ended,
        or was closed). An acknowledging source is closed last, after its last
        acknowledgement (``end``): a broker client can still commit it.
        """
        cancelled = isinstance(stopped_by, asyncio.CancelledError)
        self.flush()
        if not self.ended:
            self._abandon(stopped_by)
        self.stats.finish()
        try:
            await shutdown(
                self.tasks, self.closables, self.dead_letters, drain_dead_letters=not cancelled
            )
        finally:
            try:
                await self._calls.close(cancelled=cancelled)
            finally:
                if self._ack is not None:
                    await close_source(self.source)

    def _abandon(self, stopped_by: BaseException | None) -> None:
        """The run stops before its end: count what its stages hold, which will not
        be delivered, and say so in one line."""
        read = self.read()
        untaken = length_hint(self.delivering) if self.delivering is not None else 0
        unacked = read - self._calls.acked if self._ack is not None else None
        report_abandoned(self.stats, stopped_by, read=read, untaken=untaken, unacked=unacked)


def fused_ops(group: list[tuple[Stage, StageContext]]) -> FusedOps:
    """A run of fusable operators, with their contexts, as one ``FusedOps``."""
    fns: list[Callable[[Any], Any]] = []
    kinds = []
    for pipe, _ in group:
        op = pipe._fused_op()
        assert op is not None, "only fusable stages are fused"
        fns.append(op[0])
        kinds.append(op[1])
    return FusedOps(fns, kinds, [ctx for _, ctx in group])


def process_streams(
    group: list[tuple[Stage, StageContext]],
) -> list[tuple[ProcessStream, StageContext]]:
    """A run of ``process_stream`` overrides, with their contexts, to chain."""
    chain: list[tuple[ProcessStream, StageContext]] = []
    for pipe, ctx in group:
        fn = pipe._process_stream_fn()
        assert fn is not None, "only process_stream overrides are chained"
        chain.append((fn, ctx))
    return chain


def _build(
    how: How, members: list[tuple[Stage, StageContext]], up: AsyncIterator[Chunk]
) -> AsyncIterator[Chunk]:
    """The loop of one group of stages (not the tail) over ``up``."""
    if how is How.FUSED:
        return fused_stage(fused_ops(members), up)
    if how is How.CHAIN:
        return stream_stage(process_streams(members), up)
    ((pipe, ctx),) = members
    return pipe._open(up, ctx)


async def feed(
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


def _pauser(source: Pausable, calls: SourceCalls) -> Callable[[bool], None]:
    def on_throttle(throttled: bool) -> None:
        calls.call(source.pause if throttled else source.resume)

    return on_throttle
