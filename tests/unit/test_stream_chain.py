"""Consecutive ``process_stream`` overrides run chained, in one task.

Each reads the one before it as hand-written async generators would; the
counters between them stay exact, and closing, failing and acknowledging work
as for any other stage.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

import pipeflow.streams as ps
from helpers import GatedSource
from pipeflow.monitoring import StreamMonitor
from pipeflow.streams import BackpressureConfig, Pipeable, StreamPipe
from pipeflow.testing import TestSource, VirtualClock


class Log:
    def __init__(self) -> None:
        self.closed: list[str] = []
        self.tasks: set[asyncio.Task[object] | None] = set()


class Inc(StreamPipe[int, int]):
    def __init__(self, log: Log, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.log = log

    async def process_stream(self, stream: AsyncIterator[int]) -> AsyncIterator[int]:
        self.log.tasks.add(asyncio.current_task())
        try:
            async for x in stream:
                yield x + 1
        finally:
            self.log.closed.append(self.name)


class KeepEven(Inc):
    async def process_stream(self, stream: AsyncIterator[int]) -> AsyncIterator[int]:
        self.log.tasks.add(asyncio.current_task())
        try:
            async for x in stream:
                if x % 2 == 0:
                    yield x
        finally:
            self.log.closed.append(self.name)


class Pairs(Inc):
    """Holds an item until the next comes: emits sums of pairs."""

    async def process_stream(self, stream: AsyncIterator[int]) -> AsyncIterator[int]:
        self.log.tasks.add(asyncio.current_task())
        held: int | None = None
        try:
            async for x in stream:
                if held is None:
                    held = x
                else:
                    yield held + x
                    held = None
        finally:
            self.log.closed.append(self.name)


class Failing(Inc):
    async def process_stream(self, stream: AsyncIterator[int]) -> AsyncIterator[int]:
        async for x in stream:
            if x == 7:
                raise KeyError(x)
            yield x


def reference(n: int) -> list[int]:
    evens = [x + 1 for x in range(n) if (x + 1) % 2 == 0]
    return [a + b for a, b in zip(evens[::2], evens[1::2], strict=False)]


async def test_a_chain_at_the_end_runs_in_the_consumers_task() -> None:
    """Three overrides at the end of a pipeline: the right results, exact counts,
    every generator closed, and no task but the consumer's."""
    log = Log()
    pipe = Inc(log, name="inc") | KeepEven(log, name="even") | Pairs(log, name="pairs")
    async with pipe.stream(range(1000)) as results:
        out = [x async for x in results]
        stats = results.statistics()
    assert reference(1000) == out
    assert [(1000, 1000), (1000, 500), (500, 250)] == [(s.items_in, s.items_out) for s in stats]
    assert ["inc", "even", "pairs"] == log.closed  # each ends as its input does
    assert {asyncio.current_task()} == log.tasks


async def test_counts_are_exact_at_every_result() -> None:
    """Read while the chain runs, every stage's counts are what has passed so far:
    at the end of the pipeline and where the chain feeds another stage."""
    log = Log()
    pipe = Inc(log, name="inc") | KeepEven(log, name="even") | Pairs(log, name="pairs")
    async with pipe.stream(range(100)) as results:
        async for y in results:
            # Pairs of evens 2 + 4, 6 + 8, ...: the k-th result (8k - 2) comes once
            # inc has handed on 4k items. (Items in are counted a chunk at a time:
            # the 100 items are one.)
            k = (y + 2) // 8
            stats = [(s.items_in, s.items_out) for s in results.statistics()]
            assert [(100, 4 * k), (4 * k, 2 * k), (2 * k, k)] == stats
    assert [(100, 100), (100, 50), (50, 25)] == [
        (s.items_in, s.items_out) for s in results.statistics()
    ]

    # Ahead of another stage the chain runs in a task of its own, behind a buffer.
    pipe2 = (
        Inc(log) | KeepEven(log) | ps.map(lambda x: x, config=BackpressureConfig(max_buffer_size=1))
    )
    async with pipe2.stream(range(100)) as results:
        taken = 0
        async for _ in results:
            taken += 1
            s0, s1, s2 = results.statistics()
            # What the chain handed on so far, though it has not ended: at least
            # what was taken, and what it read.
            assert s0.items_out == s1.items_in >= s1.items_out >= s2.items_in >= taken
    assert [(100, 100), (100, 50), (50, 50)] == [
        (s.items_in, s.items_out) for s in results.statistics()
    ]


async def test_a_chain_over_an_async_source_reads_it_item_by_item() -> None:
    """A chain that is the whole pipeline reads an async source itself: the counts
    are exact at every result, also while the source waits, and breaking out
    closes the source and every generator."""
    log = Log()
    source = GatedSource(40, 100)
    pipe = Inc(log, name="inc") | KeepEven(log, name="even")
    async with pipe.stream(source.items()) as results:
        got: list[int] = []

        async def take() -> None:
            async for y in results:
                got.append(y)
                # y = x + 1 for the item x read last
                stats = [(s.items_in, s.items_out) for s in results.statistics()]
                assert [(y, y), (y, y // 2)] == stats
                if y == 80:
                    break

        consumer = asyncio.ensure_future(take())
        await source.waiting.wait()
        stats = [(s.items_in, s.items_out) for s in results.statistics()]
        assert [(40, 40), (40, 20)] == stats  # read, though the last one is held
        source.gate.set()
        await consumer
    assert list(range(2, 81, 2)) == got
    assert source.closed
    assert ["even", "inc"] == log.closed


async def test_a_chain_between_other_stages() -> None:
    """A chain fed by a buffered stage and feeding an operator: the same results."""
    log = Log()
    pipe: Pipeable[int, int] = (
        ps.map(lambda x: x, config=BackpressureConfig(max_buffer_size=7))
        | Inc(log)
        | KeepEven(log)
        | Pairs(log)
        | ps.map(lambda x: x * 10)
    )
    out = [x async for x in pipe.stream(range(300))]
    assert [x * 10 for x in reference(300)] == out
    assert 1 == len(log.tasks)  # the three in one task


async def test_a_config_decouples_a_stage_from_the_chain() -> None:
    """A process_stream override with a buffer of its own runs in its own task."""
    log = Log()
    pipe = Inc(log) | KeepEven(log, config=BackpressureConfig(max_buffer_size=4)) | Pairs(log)
    out = [x async for x in pipe.stream(range(100))]
    assert reference(100) == out
    assert 2 == len(log.tasks)


async def test_breaking_out_closes_every_generator_and_the_source() -> None:
    """Leaving early closes the chain from the last generator to the first."""
    log = Log()
    source = TestSource(range(100))
    async with (Inc(log, name="a") | KeepEven(log, name="b")).stream(source) as results:
        async for x in results:
            if x == 10:
                break
    assert ["b", "a"] == log.closed
    assert source.closed
    assert {asyncio.current_task()} == asyncio.all_tasks()


async def test_a_failure_in_the_chain_propagates_after_the_results_before_it() -> None:
    """An exception in an override comes out unchanged, after what came before it."""
    log = Log()
    got: list[int] = []

    async def consume() -> None:
        async for x in (Inc(log) | Failing(log) | Inc(log, name="last")).stream(range(20)):
            got.append(x)

    with pytest.raises(KeyError):
        await consume()
    assert [2, 3, 4, 5, 6, 7] == got
    assert {asyncio.current_task()} == asyncio.all_tasks()


async def test_a_chain_acknowledges_at_its_end() -> None:
    """A chain may hold items as long as it likes: everything is acknowledged at the end."""
    log = Log()
    source = TestSource(range(50), one_by_one=True)
    seen: list[int] = []
    async with (Inc(log) | Pairs(log)).stream(source) as results:
        async for _ in results:
            seen.append(source.acked)
    assert {0} == set(seen)
    assert 50 == source.acked


async def test_a_monitored_chain_counts_every_stage() -> None:
    """With a monitor, every stage of the chain has its counts."""
    log = Log()
    pipe = Inc(log, name="inc") | KeepEven(log, name="even") | ps.map(lambda x: x)
    monitor = StreamMonitor()
    pipe.set_monitor(monitor)
    out = [x async for x in pipe.stream(range(100), clock=VirtualClock())]
    assert [x + 1 for x in range(100) if (x + 1) % 2 == 0] == out
    metrics = monitor.get_metrics()
    assert [(100, 100), (100, 50), (50, 50)] == [(s.items_in, s.items_out) for s in metrics.stages]


async def test_a_failing_clean_up_still_closes_the_rest_of_the_chain() -> None:
    """An override whose clean-up raises does not keep the others from being closed;
    its error comes out."""
    log = Log()

    class BadCleanUp(Inc):
        async def process_stream(self, stream: AsyncIterator[int]) -> AsyncIterator[int]:
            try:
                async for x in stream:
                    yield x
            finally:
                raise RuntimeError("clean-up failed")

    async def consume() -> None:
        async with (Inc(log, name="first") | BadCleanUp(log) | Inc(log, name="last")).stream(
            range(100)
        ) as results:
            async for _ in results:
                break

    with pytest.raises(RuntimeError, match="clean-up failed"):
        await consume()
    assert ["last", "first"] == log.closed
    assert {asyncio.current_task()} == asyncio.all_tasks()
