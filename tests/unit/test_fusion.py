"""Fused operators: adjacent sync map/filter run as one loop, with per-operator errors
and metrics."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeflow.streams import DeadLetter, Pipeline, Retry, StreamError, StreamPipe, filter, map
from pipeflow.testing import TestSource, VirtualClock


def failing(bad: set[int], fn: Any) -> Any:
    def apply(x: int) -> Any:
        if x in bad:
            raise ValueError(f"bad {x}")
        return fn(x)

    return apply


async def collect(pipe: Any, source: Any) -> tuple[list[Any], Any]:
    async with pipe.stream(source, clock=VirtualClock()) as stream:
        return [x async for x in stream], stream.statistics()


async def test_fused_chain_counts_per_operator() -> None:
    """Each fused operator reports its own items in and out."""
    pipe: Pipeline[int, int] = (
        map(lambda x: x + 1) | filter(lambda x: x % 2 == 0) | map(lambda x: x * 2)
    )
    out, stats = await collect(pipe, range(1000))
    assert [2 * (x + 1) for x in range(1000) if (x + 1) % 2 == 0] == out
    assert [(1000, 1000), (1000, 500), (500, 500)] == [(s.items_in, s.items_out) for s in stats]


async def test_failure_goes_to_the_failing_operators_policy() -> None:
    """A failure in a fused operator is that operator's: its name, policy and input."""
    letters: list[StreamError] = []
    pipe: Pipeline[int, int] = (
        map(lambda x: x + 1, name="inc")
        | map(failing({5, 7}, lambda x: x * 10), name="tenfold", on_error=DeadLetter(letters))
        | filter(lambda x: x != 30, name="not30")
    )
    out, stats = await collect(pipe, range(10))
    assert [10, 20, 40, 60, 80, 90, 100] == out
    assert [(5, "tenfold"), (7, "tenfold")] == [(e.item, e.pipe) for e in letters]
    assert [(10, 10), (10, 8), (8, 7)] == [(s.items_in, s.items_out) for s in stats]
    assert 2 == stats[1].dead_lettered


async def test_recovered_value_continues_through_the_rest_of_the_chain() -> None:
    """A retried item that succeeds goes on through the later operators, which may fail too."""
    attempts: dict[int, int] = {}

    def flaky(x: int) -> int:
        attempts[x] = attempts.get(x, 0) + 1
        if x == 3 and attempts[x] < 3:
            raise OSError("flaky")
        return x

    pipe = (
        map(flaky, on_error=Retry(attempts=3, backoff=0, jitter=0))
        | map(failing({3}, lambda x: x), on_error="skip")
        | map(lambda x: -x)
    )
    out, stats = await collect(pipe, range(6))
    assert [0, -1, -2, -4, -5] == out
    assert 2 == stats[0].retries
    assert 1 == stats[1].skipped


async def test_raise_delivers_results_before_the_failure() -> None:
    """Under "raise", fused operators deliver what came before the failing item, then raise."""
    pipe = map(lambda x: x) | map(failing({300}, lambda x: x))
    got: list[int] = []

    async def drain() -> None:
        async with pipe.stream(range(1000)) as stream:
            async for x in stream:
                got.append(x)

    with pytest.raises(StreamError) as info:
        await drain()
    assert list(range(300)) == got
    assert 300 == info.value.item


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(-50, 50), max_size=600),
    st.sets(st.integers(-50, 50), max_size=5),
    st.sets(st.integers(-50, 50), max_size=5),
)
def test_fused_matches_a_plain_loop(xs: list[int], bad1: set[int], bad2: set[int]) -> None:
    """Fused map/filter/map with skips equals the same logic written as a plain loop."""

    def model() -> list[int]:
        out = []
        for x in xs:
            if x in bad1:
                continue
            y = x * 3
            if y % 2:
                continue
            if y in bad2:
                continue
            out.append(y - 1)
        return out

    pipe = (
        map(failing(bad1, lambda x: x * 3), on_error="skip")
        | filter(lambda y: y % 2 == 0)
        | map(failing(bad2, lambda y: y - 1), on_error="skip")
    )
    out, stats = asyncio.run(collect(pipe, xs))
    assert model() == out
    assert len(xs) == stats[0].items_in
    assert len(out) == stats[-1].items_out


async def test_process_stream_output_is_not_held_while_input_is_quiet() -> None:
    """After a process_stream stage, an output goes on before the stage waits for input."""
    clock = VirtualClock()

    class Evens(StreamPipe[int, int]):
        async def process_stream(self, stream: AsyncIterator[int]) -> AsyncIterator[int]:
            async for x in stream:
                if x % 2 == 0:
                    yield x

    pipe = Evens() | map(lambda x: x * 10)
    source: TestSource[int] = TestSource([2, 3, TestSource.wait(10), 4], clock=clock)
    arrivals: list[tuple[float, int]] = []
    async with pipe.stream(source, clock=clock) as stream:
        async for x in stream:
            arrivals.append((clock.monotonic(), x))
    assert [(0.0, 20), (10.0, 40)] == arrivals


async def test_process_stream_stage_feeds_the_next_stage_in_chunks() -> None:
    """A process_stream stage's outputs reach the next stage whole and in order."""

    class Double(StreamPipe[int, int]):
        async def process_stream(self, stream: AsyncIterator[int]) -> AsyncIterator[int]:
            async for x in stream:
                yield x
                yield x

    out, stats = await collect(Double() | map(lambda x: x + 1), range(1000))
    assert [x + 1 for x in range(1000) for _ in range(2)] == out
    assert [(1000, 2000), (2000, 2000)] == [(s.items_in, s.items_out) for s in stats]
