"""Pipes that override ``process_stream``: the user's async generators, chained.

Consecutive ``process_stream`` overrides with no buffer of their own run as one
chain in one task, each reading the one before it, as hand-written async
generators would; between two of them a counter, itself an async generator,
counts what passes (in a local of its own, which ``Run.flush`` brings into the
metrics before they are read, in an untimed run). The chain reads the chunks of
its upstream item by item.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from ._buffer import MAX_CHUNK

if TYPE_CHECKING:
    from ._buffer import Chunk, ChunkBuffer
    from ._stages import StageContext
    from ._stats import StageStats

__all__ = ["ProcessStream", "StreamChain", "stream_stage"]

ProcessStream = Callable[[AsyncIterator[Any]], AsyncIterator[Any]]


class StreamChain:
    """The generators of one run of a chain of ``process_stream`` overrides.

    ``outputs`` is the last one's. The chain's input is the items of ``up``'s
    chunks, or with ``items`` the items of ``up`` itself (an async source, read
    item by item); ``final_mark`` is the source position its input has reached.
    ``before_wait``, if set, is awaited whenever the chain has used up what its
    upstream handed over and is about to wait for more.
    """

    __slots__ = ("_gens", "before_wait", "final_mark", "outputs")

    def __init__(
        self,
        chain: list[tuple[ProcessStream, StageContext]],
        up: AsyncIterator[Any],
        *,
        items: bool = False,
    ) -> None:
        self.final_mark = 0
        self.before_wait: Callable[[], Any] | None = None
        first = chain[0][1].stats
        it: AsyncIterator[Any] = self._each(up, first) if items else self._items(up, first)
        self._gens: list[Any] = [it]
        for k, (process_stream, ctx) in enumerate(chain):
            if k:
                it = _counted(it, chain[k - 1][1].stats, ctx.stats)
                self._gens.append(it)
            it = process_stream(it)
            self._gens.append(it)
        self.outputs = it

    async def _items(self, up: AsyncIterator[Chunk], stats: StageStats) -> AsyncIterator[Any]:
        async for chunk, mark in up:
            stats.items_in += len(chunk)
            for x in chunk:
                yield x
            self.final_mark = mark
            if self.before_wait is not None:
                await self.before_wait()

    def _each(self, items: AsyncIterator[Any], stats: StageStats) -> AsyncIterator[Any]:
        """The source's items as they come, counted (``final_mark`` follows)."""

        def add(n: int) -> None:
            stats.items_in += n
            self.final_mark += n

        return _counting(items, add, stats.live)

    async def aclose(self) -> None:
        """Close the generators from the last to the first (each that can be), all
        of them even if one fails; then raise the first failure."""
        first: BaseException | None = None
        for gen in reversed(self._gens):
            aclose = getattr(gen, "aclose", None)
            if aclose is not None:
                try:
                    await aclose()
                except (Exception, asyncio.CancelledError) as exc:
                    first = first or exc
        if first is not None:
            raise first


def _counted(it: AsyncIterator[Any], before: StageStats, after: StageStats) -> AsyncIterator[Any]:
    """``it``, counting each item as the output of one stage and the input of the next."""
    if before.timed:
        return _timed(it, before, after)

    def add(n: int) -> None:
        before.items_out += n
        after.items_in += n

    return _counting(it, add, before.live)


async def _timed(
    it: AsyncIterator[Any], before: StageStats, after: StageStats
) -> AsyncIterator[Any]:
    """``_counted`` in a timed run: the output's time recorded item by item."""
    now = before.clock.monotonic
    async for x in it:
        before.items_out += 1
        before.record_out(1, now())
        after.items_in += 1
        yield x


async def _counting(
    it: AsyncIterator[Any], add: Callable[[int], None], live: list[Callable[[], None]]
) -> AsyncIterator[Any]:
    """``it``, counting what passes in a local; ``add`` is given what is new
    whenever the counts are read (it goes into ``live``) and at the end.

    The count is a float: adding to one takes one from the interpreter's free
    list, where an int past 256 is a new object each time (exact up to 2**53).
    """
    n = 0.0
    counted = 0

    def flush() -> None:
        nonlocal counted
        new = int(n) - counted
        if new:
            counted += new
            add(new)

    live.append(flush)
    try:
        async for x in it:
            n += 1.0
            yield x
    finally:
        flush()


async def stream_stage(
    chain: list[tuple[ProcessStream, StageContext]], up: AsyncIterator[Chunk]
) -> AsyncIterator[Chunk]:
    """Run a chain of ``process_stream`` overrides over the items.

    Outputs go on at once, one by one; or, when the chain feeds a buffer
    directly (its last stage's ``ctx.output``), in pieces: see :class:`_Feed`.

    A ``process_stream`` may hold items for as long as it likes, so the source
    position it completes is only known at its end: its outputs carry the mark
    reached before it started, and the end carries the final mark.
    """
    ctx = chain[-1][1]
    run = StreamChain(chain, up)
    try:
        if ctx.output is not None:
            await _Feed(ctx, ctx.output).feed(run)
        else:
            stats = ctx.stats
            timed = stats.timed
            now = ctx.clock.monotonic
            async for y in run.outputs:
                stats.items_out += 1
                if timed:
                    stats.record_out(1, now())
                yield [y], 0
    finally:
        await run.aclose()
    yield [], run.final_mark


class _Feed:
    """A chain's outputs, gathered (``pending``) and put into the buffer it feeds.

    They are put there in pieces: when ``MAX_CHUNK`` are gathered (waiting for
    room there, as any producer does), before the chain waits for more input,
    whenever the next stage is waiting for them (or finds the buffer empty:
    ``ChunkBuffer.refill``), and before a failure propagates.
    """

    __slots__ = ("ctx", "pending", "sink")

    def __init__(self, ctx: StageContext, sink: ChunkBuffer) -> None:
        self.ctx = ctx
        self.sink = sink
        self.pending: list[Any] = []

    async def feed(self, run: StreamChain) -> None:
        """Gather the chain's outputs and put them into the sink, all of them."""
        sink = self.sink
        run.before_wait = self.flush_held
        sink.refill = self.refill
        try:
            async for y in run.outputs:
                self.pending.append(y)
                if sink.awaited:  # the next stage waits for it: no reason to hold it
                    self.refill()
                elif len(self.pending) >= MAX_CHUNK:
                    await self.flush()
        except Exception:
            await self.flush()  # the results before the failure go on first
            raise
        finally:
            sink.refill = None
        await self.flush()

    def hand_over(self, batch: list[Any]) -> list[Any]:
        """Put what the sink takes now of ``batch``; return the rest."""
        rest = self.sink.put_nowait(batch, 0)
        n = len(batch) - len(rest)
        stats = self.ctx.stats
        stats.items_out += n
        if stats.timed:
            stats.record_delivered(n, self.ctx.clock.monotonic())  # handed on now
        return rest

    def refill(self) -> None:
        """Put what fits of ``pending`` into the sink, which is empty or awaited:
        what fits cannot overflow, whatever its strategy."""
        room = self.sink.room()
        if self.pending and room > 0:
            batch, self.pending = self.pending[:room], self.pending[room:]
            self.hand_over(batch)

    async def flush(self) -> None:
        """Put all of ``pending`` into the sink, waiting for room as needed."""
        self.pending = self.hand_over(self.pending)
        while self.pending:
            await self.sink.wait_for_room()
            self.pending = self.hand_over(self.pending)

    async def flush_held(self) -> None:
        """Flush, if anything is gathered (before the chain waits for more input)."""
        if self.pending:
            await self.flush()
