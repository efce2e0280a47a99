"""The concurrent stage's two completions, driven directly over a buffer.

Each test puts chunks into the stage's buffer, gates every call on an event of
its own, and steps the stage's output generator by hand: what leaves, with
which source mark, and how many calls are in flight at each step.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from pipeflow._core._buffer import Chunk, ChunkBuffer
from pipeflow._core._concurrent import AsCompleted, ConcurrentRun, InOrder
from pipeflow._core._policies import ErrorHandler
from pipeflow._core._stages import StageContext
from pipeflow._core._stats import StageStats
from pipeflow.streams import BackpressureConfig
from pipeflow.testing import VirtualClock


class NoSides:
    """A run's side streams, for a handler whose policy sends nowhere."""

    async def send(self, pipe: Any, record: Any) -> None:
        raise AssertionError("nothing is dead-lettered here")


class Gates:
    """``attempt(x)`` waits until ``open(x)``, then returns ``x * 10``."""

    def __init__(self) -> None:
        self.events: dict[int, asyncio.Event] = {}
        self.started: list[int] = []
        self.in_flight = 0

    async def attempt(self, x: int) -> int:
        self.started.append(x)
        self.in_flight += 1
        try:
            await self.events.setdefault(x, asyncio.Event()).wait()
        finally:
            self.in_flight -= 1
        return x * 10

    async def open(self, *xs: int) -> None:
        for x in xs:
            self.events.setdefault(x, asyncio.Event()).set()
        await settle()


async def settle() -> None:
    """Let every task that can run do so (the loop's own steps, no time passes)."""
    for _ in range(10):
        await asyncio.sleep(0)


def context(buffer_size: int = 1000) -> StageContext:
    clock = VirtualClock()
    stats = StageStats("stage", clock, timed=False)
    config = BackpressureConfig(max_buffer_size=buffer_size)
    errors = ErrorHandler("raise", "stage", stats, clock, NoSides())
    return StageContext("stage", stats, clock, errors, config, ChunkBuffer(config, stats))


def results(out: list[Any], item: Any, result: Any) -> None:
    out.append(result)


def feed(ctx: StageContext, *chunks: Chunk, error: BaseException | None = None) -> None:
    assert ctx.buffer is not None
    for items, mark in chunks:
        assert [] == ctx.buffer.put_nowait(items, mark)
    ctx.buffer.close(error)


async def step(outputs: AsyncIterator[Chunk]) -> asyncio.Task[Chunk]:
    """The next output, asked for; done by the time this returns, if it is ready."""
    task = asyncio.ensure_future(anext(outputs))
    await settle()
    return task


async def test_in_order_holds_a_finished_call_behind_the_head() -> None:
    """In order: results leave in input order; a call that finished behind an
    unfinished one waits for it, and no more than ``concurrency`` calls run."""
    gates, ctx = Gates(), context()
    feed(ctx, ([0, 1, 2, 3], 4))
    run = InOrder(gates.attempt, results, ctx, concurrency=2)
    outputs = run.run()
    first = await step(outputs)
    assert [0, 1] == gates.started
    assert 4 == run.held()
    await gates.open(1)
    assert not first.done()
    assert [0, 1, 2] == gates.started  # the finished call's slot is taken at once
    await gates.open(0)
    assert ([0, 10], 0) == first.result()  # the chunk's mark waits for its last item
    assert 2 == run.held()
    await gates.open(3)
    second = await step(outputs)
    assert not second.done()
    await gates.open(2)
    assert ([20, 30], 4) == second.result()
    with pytest.raises(StopAsyncIteration):
        await anext(outputs)
    assert 0 == gates.in_flight


async def test_as_completed_passes_results_on_as_calls_finish() -> None:
    """As completed: each result leaves when its call finishes; the source mark
    still goes on only once every item before it has."""
    gates, ctx = Gates(), context()
    feed(ctx, ([0, 1, 2], 3), ([], 3))
    run = AsCompleted(gates.attempt, results, ctx, concurrency=2)
    outputs = run.run()
    await gates.open(1)
    assert ([10], 0) == (await step(outputs)).result()
    assert 2 == run.held()  # 0 running, 2 started in 1's place
    await gates.open(2)
    assert ([20], 0) == (await step(outputs)).result()
    await gates.open(0)
    assert ([0], 3) == (await step(outputs)).result()
    with pytest.raises(StopAsyncIteration):
        await anext(outputs)


@pytest.mark.parametrize("completion", [InOrder, AsCompleted])
async def test_the_window_bounds_results_held_behind_an_unfinished_call(
    completion: type[ConcurrentRun],
) -> None:
    """Finished calls held behind an unfinished one count against the window
    (the buffer's size, here 3): while they wait, no call starts, though a slot is
    free and input is ready."""
    gates, ctx = Gates(), context(buffer_size=3)
    assert ctx.buffer is not None
    assert [] == ctx.buffer.put_nowait([0, 1, 2], 3)
    outputs = completion(gates.attempt, results, ctx, concurrency=2).run()
    pending = await step(outputs)
    await gates.open(1, 2)
    if completion is AsCompleted:
        assert ([10], 0) == pending.result()
        assert ([20], 0) == (await step(outputs)).result()
        pending = await step(outputs)
    assert [] == ctx.buffer.put_nowait([3], 4)
    await settle()
    assert [0, 1, 2] == gates.started
    assert 1 == gates.in_flight
    await gates.open(0)
    want = ([0, 10, 20], 3) if completion is InOrder else ([0], 3)
    assert want == pending.result()
    ctx.buffer.close()
    await gates.open(3)
    assert [([30], 4)] == [chunk async for chunk in outputs]


@pytest.mark.parametrize("completion", [InOrder, AsCompleted])
async def test_an_upstream_failure_comes_after_the_work_started(
    completion: type[ConcurrentRun],
) -> None:
    """When the input fails, the calls already started are finished and passed
    on first; then the failure is raised."""
    gates, ctx = Gates(), context()
    feed(ctx, ([0, 1], 2), error=RuntimeError("source broke"))
    outputs = completion(gates.attempt, results, ctx, concurrency=4).run()
    await gates.open(0, 1)
    got: list[int] = []
    with pytest.raises(RuntimeError, match="source broke"):
        await drain(outputs, got)
    assert [0, 10] == sorted(got)


async def drain(outputs: AsyncIterator[Chunk], into: list[Any]) -> None:
    async for chunk, _ in outputs:
        into += chunk


async def test_closing_the_stage_cancels_the_calls_in_flight() -> None:
    """Closing the stage's output cancels the calls still running, and waits for them."""
    gates, ctx = Gates(), context()
    feed(ctx, ([0, 1, 2], 3))
    outputs = InOrder(gates.attempt, results, ctx, concurrency=3).run()
    await gates.open(0)
    assert ([0], 0) == (await step(outputs)).result()
    assert 2 == gates.in_flight
    await outputs.aclose()
    assert 0 == gates.in_flight
