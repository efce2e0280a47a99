"""The consumer generators written by hand, and the choice among them all.

A consumer generator is what the consumer's ``async for`` iterates: it runs the
last segment of the pipeline in the consumer's task and yields its results.
Each runs in the frame of ``_lifecycle.consuming``. :func:`consumer_for` picks:

- :func:`iterate_chain`, when ``process_stream`` overrides end the pipeline;
- :func:`iterate_batches`, when one batcher by count is the whole pipeline and
  reads an async source item by item;
- ``_fusion.direct_consumer``, when fused operators end it (compiled per shape);
- :func:`iterate`, otherwise, and for a timed run, whose counters move a chunk
  at a time; ``chunked`` for ``Stream.chunks()``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterable
from typing import Any

from ._buffer import MAX_CHUNK
from ._fusion import Reads, direct_consumer
from ._lifecycle import consuming
from ._plan import boundary_before, chain_tail, direct_tail
from ._policies import may_send_to_a_pipe
from ._run import Run
from ._sources import ITERATED, Acknowledging
from ._stream_stage import StreamChain

__all__ = ["consumer_for", "iterate", "iterate_batches", "iterate_chain"]


def consumer_for(run: Run, *, timed: bool) -> AsyncGenerator[Any, None]:
    """The consumer generator for ``run``, not started yet."""
    stages = run.stages
    tail = None if timed else direct_tail(stages)
    chain = None if timed else chain_tail(stages)
    dead_letters = any(may_send_to_a_pipe(p.on_error) for p in stages)
    # Without acknowledgements to time, an async source that the tail's stages
    # read themselves is read item by item. (Nor when a dead-letter pipe may fail
    # the run: with no chunks, there would be no point at which to notice before
    # the next dead letter.)
    source = run.source
    by_item = (
        hasattr(source, "__aiter__") and not isinstance(source, Acknowledging) and not dead_letters
    )
    if chain is not None:
        return iterate_chain(
            run,
            chain,
            check_dead_letters=dead_letters,
            items=by_item and chain == 0 and not boundary_before(stages, 0),
        )
    size = stages[0]._batches_by_count if stages else None
    if size is not None and len(stages) == 1 and by_item and not timed:
        return iterate_batches(run, size)
    if tail is None:
        return iterate(run)
    kinds = []
    for p in stages[tail:]:
        op = p._fused_op()
        assert op is not None, "direct_tail() found fusable stages"
        kinds.append(op[1])
    reads: Reads = "chunks"
    if tail == 0 and not dead_letters:  # the operators are the whole pipeline
        if by_item:
            reads = "async"
        elif type(source) in ITERATED:
            reads = "sequence"
    return direct_consumer(tuple(kinds), reads=reads)(run, tail)


async def iterate(
    run: Run, *, chunked: bool = False, limit: int = MAX_CHUNK
) -> AsyncGenerator[Any, None]:
    """The general consumer generator: results of the last stage, chunk by chunk,
    yielded one by one or, if ``chunked``, in lists of at most ``limit``.

    When the run is timed, the last stage's throughput counts the results as the
    consumer takes them (see ``StageStats.start_delivery``).
    """
    if run.started:
        return
    async with consuming(run):
        up, _ = run.open(len(run.stages))
        clock = run.clock
        segment = run.consumer_segment
        timed = bool(segment) and segment[0].timed
        if timed:
            last = segment[-1]
            last.counted_on_handover = True
        delivered = run.delivered
        async for items, mark in up:
            if items:
                if timed:
                    t = clock.monotonic()
                    for s in segment:
                        s.block(t)
                if chunked:
                    # A stage may emit more than MAX_CHUNK at once (a concurrent
                    # stage catching up, a process_stream filling a buffer): the
                    # consumer gets slices, and the mark once it has them all.
                    for part in (items,) if len(items) <= limit else _split(items, limit):
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
                    for s in segment:
                        s.unblock(t)
                    last.end_delivery(t)
            delivered(mark)


async def iterate_chain(
    run: Run, tail: int, *, check_dead_letters: bool, items: bool = False
) -> AsyncGenerator[Any, None]:
    """The consumer generator when the pipeline ends in ``process_stream``
    overrides: it runs their chain itself and yields the last one's results as
    they come, as a hand-written chain of async generators would.

    Acknowledgements wait for the end (a ``process_stream`` may hold items as
    long as it likes). With dead-letter pipes, their failure is looked for at
    each result. With ``items``, the overrides are the whole pipeline and the
    first reads the async source item by item.
    """
    if run.started:
        return
    async with consuming(run):
        up, _ = run.open(tail, items=items)
        chain = StreamChain(run.tail_chain, up, items=items)
        run.closables.append(chain)
        stats = run.stats.stages[-1]
        out = 0.0  # a float: adding to one costs less than to an int (see _fusion)
        counted = 0

        def flush() -> None:
            nonlocal counted
            stats.items_out += int(out) - counted
            counted = int(out)

        stats.live.append(flush)
        try:
            if check_dead_letters:
                check = run.dead_letters.check
                async for y in chain.outputs:
                    check()
                    out += 1.0
                    yield y
            else:
                async for y in chain.outputs:
                    out += 1.0
                    yield y
        finally:
            flush()
        run.flush()  # the chain's own counts, read item by item, into final_mark too
        run.delivered(chain.final_mark)


async def iterate_batches(run: Run, size: int) -> AsyncGenerator[Any, None]:
    """The consumer generator when one batcher by count is the whole pipeline
    (``Stage._batches_by_count``): it reads the async source item by item,
    appends each item to the pending batch, and processes the batch as its last
    item arrives, as a hand-written batching generator would.

    ``items_in`` moves a batch at a time; the items of the pending batch are
    added by a ``StageStats.live`` flush, so the metrics and the count of what
    was read are exact whenever they are read.
    """
    if run.started:
        return
    async with consuming(run):
        it, _ = run.open(0, items=True)
        step = run.batch_step
        assert step is not None, "the batcher's step"
        stats = run.stats.stages[0]
        delivered = run.delivered
        pending: list[Any] = []
        shown = 0  # items of the pending batch already in items_in

        def flush() -> None:
            nonlocal shown
            stats.items_in += len(pending) - shown
            shown = len(pending)

        stats.live.append(flush)
        stats.held = lambda: len(pending)
        read = 0  # items in the batches processed
        append = pending.append
        async for x in it:
            append(x)
            if len(pending) < size:
                continue
            batch = pending
            pending = []
            append = pending.append
            stats.items_in += size - shown
            shown = 0
            out, error = await step(batch)
            del batch  # freed while its items are still in the cache
            for y in out:
                yield y
            if error is not None:
                raise error
            read += size
            delivered(read)
        flush()
        if pending:  # the last batch, shorter
            batch, pending, shown = pending, [], 0
            out, error = await step(batch)
            for y in out:
                yield y
            if error is not None:
                raise error
            read += len(batch)
        delivered(read)


def _split(items: list[Any], limit: int) -> Iterable[list[Any]]:
    """``items`` in slices of at most ``limit``."""
    return [items[i : i + limit] for i in range(0, len(items), limit)]
