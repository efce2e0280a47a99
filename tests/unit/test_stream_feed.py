"""A ``process_stream`` chain that feeds a buffer directly: when its outputs are
put there, driven directly over a recording buffer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from pipeflow._core._buffer import MAX_CHUNK, Chunk, ChunkBuffer
from pipeflow._core._policies import ErrorHandler
from pipeflow._core._stages import StageContext
from pipeflow._core._stats import StageStats
from pipeflow._core._stream_stage import ProcessStream, stream_stage
from pipeflow.streams import BackpressureConfig
from pipeflow.testing import VirtualClock


class NoSides:
    """A run's side streams, for a handler whose policy sends nowhere."""

    async def send(self, pipe: Any, record: Any) -> None:
        raise AssertionError("nothing is dead-lettered here")


class Recording(ChunkBuffer):
    """A buffer that remembers the size of every put."""

    def __init__(self, config: BackpressureConfig, owner: StageStats) -> None:
        super().__init__(config, owner)
        self.puts: list[int] = []

    def put_nowait(self, items: list[Any], mark: int) -> list[Any]:
        self.puts.append(len(items))
        return super().put_nowait(items, mark)


def feeding(sink_size: int = 10_000) -> tuple[StageContext, Recording]:
    clock = VirtualClock()
    stats = StageStats("chain", clock, timed=False)
    errors = ErrorHandler("raise", "chain", stats, clock, NoSides())
    sink = Recording(
        BackpressureConfig(max_buffer_size=sink_size), StageStats("next", clock, timed=False)
    )
    ctx = StageContext("chain", stats, clock, errors, BackpressureConfig(), None, output=sink)
    return ctx, sink


async def chunks(*chunks: Chunk) -> AsyncIterator[Chunk]:
    for chunk in chunks:
        yield chunk


async def identity(stream: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for x in stream:
        yield x


async def run(chain: ProcessStream, ctx: StageContext, up: AsyncIterator[Chunk]) -> list[Chunk]:
    return [chunk async for chunk in stream_stage([(chain, ctx)], up)]


async def test_outputs_go_in_full_chunks_and_before_the_chain_waits_for_input() -> None:
    """Gathered outputs go into the buffer ``MAX_CHUNK`` at a time, and what is
    gathered when the chain has used up its input goes before it asks for more."""
    ctx, sink = feeding()
    n = 2 * MAX_CHUNK + 88
    ends = await run(identity, ctx, chunks((list(range(n)), n), ([n], n + 1)))
    assert [MAX_CHUNK, MAX_CHUNK, 88, 1, 0] == sink.puts
    assert [([], n + 1)] == ends  # the chain's own output is only its final mark
    assert n + 1 == ctx.stats.items_out


async def test_outputs_wait_for_room_in_the_buffer() -> None:
    """A full buffer makes the chain wait, as any producer waits; every output
    gets there, in order, and the buffer never holds more than its size."""
    ctx, sink = feeding(sink_size=300)
    feed = asyncio.create_task(run(identity, ctx, chunks((list(range(400)), 400))))
    got: list[int] = []
    while len(got) < 400:
        await sink.wait_ready()
        assert sink.size <= 300
        chunk = sink.get_nowait()
        if chunk is not None:
            got += chunk[0]
    assert [([], 400)] == await feed
    assert list(range(400)) == got
    assert 400 == ctx.stats.items_out


async def test_an_output_the_next_stage_waits_for_goes_at_once() -> None:
    """While the next stage waits on the buffer, each output goes there at once,
    not held for a fuller chunk."""
    ctx, sink = feeding()
    more = asyncio.Event()

    async def slow(stream: AsyncIterator[Any]) -> AsyncIterator[Any]:
        async for x in stream:
            yield x
            await more.wait()

    waiting = asyncio.create_task(sink.wait_ready())
    feed = asyncio.create_task(run(slow, ctx, chunks(([1, 2], 2))))
    await waiting
    assert [1] == sink.puts
    assert ([1], 0) == sink.get_nowait()
    more.set()
    assert [([], 2)] == await feed
