"""The flat-map stage at concurrency 1, driven directly: how each kind of result
goes out, in chunks of at most ``MAX_CHUNK``, and when it closes them."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator
from typing import Any

from pipeflow._core._buffer import MAX_CHUNK, Chunk
from pipeflow._core._flat import FlatRun
from pipeflow._core._policies import ErrorHandler, ErrorPolicy
from pipeflow._core._stages import StageContext
from pipeflow._core._stats import StageStats
from pipeflow.streams import BackpressureConfig
from pipeflow.testing import VirtualClock


class NoSides:
    """A run's side streams, for a handler whose policy sends nowhere."""

    async def send(self, pipe: Any, record: Any) -> None:
        raise AssertionError("nothing is dead-lettered here")


def context(policy: ErrorPolicy = "raise") -> StageContext:
    clock = VirtualClock()
    stats = StageStats("stage", clock, timed=False)
    errors = ErrorHandler(policy, "stage", stats, clock, NoSides())
    return StageContext("stage", stats, clock, errors, BackpressureConfig(), None)


async def chunks(*chunks: Chunk) -> AsyncIterator[Chunk]:
    for chunk in chunks:
        yield chunk


async def test_lists_tuples_and_sized_results_go_out_with_the_chunk() -> None:
    """Results held whole go out with the chunk's mark, cut at ``MAX_CHUNK``."""
    results = {0: [1, 2], 1: (3,), 2: range(MAX_CHUNK), 3: {4: None}}
    run = FlatRun(results.__getitem__, context(), awaits=False)
    out = [c async for c in run.run(chunks(([0, 1, 2, 3], 4)))]
    assert [[1, 2, 3, *range(MAX_CHUNK - 3)], [*range(MAX_CHUNK - 3, MAX_CHUNK), 4]] == [
        items for items, _ in out
    ]
    assert [0, 4] == [mark for _, mark in out]
    assert (4, MAX_CHUNK + 4) == (run.ctx.stats.items_in, run.ctx.stats.items_out)


async def test_an_endless_iterable_goes_out_a_chunk_at_a_time() -> None:
    """An iterator that never ends is read a chunk's worth at a time, each passed
    on before more is read."""
    read: list[int] = []

    def endless(x: int) -> Iterator[int]:
        for n in itertools.count():
            read.append(n)
            yield n

    outputs = FlatRun(endless, context(), awaits=False).run(chunks(([0], 1)))
    first, mark = await anext(outputs)
    assert (list(range(MAX_CHUNK)), 0) == (first, mark)
    assert MAX_CHUNK == len(read)
    second, _ = await anext(outputs)
    assert list(range(MAX_CHUNK, 2 * MAX_CHUNK)) == second
    await outputs.aclose()


async def test_an_async_iterable_passes_on_what_is_ready_before_waiting() -> None:
    """An async iterable's elements go out as soon as it would wait for more;
    closing the stage early closes it."""
    more = asyncio.Event()
    closed = False

    async def slow(x: int) -> AsyncIterator[int]:
        nonlocal closed
        try:
            yield 1
            yield 2
            await more.wait()
            yield 3
        finally:
            closed = True

    outputs = FlatRun(slow, context(), awaits=False).run(chunks(([0], 1)))
    assert ([1, 2], 0) == await anext(outputs)
    await outputs.aclose()
    assert closed


async def test_an_awaited_result_is_expanded_as_what_it_resolves_to() -> None:
    """With ``awaits``, an awaitable result is awaited first, then expanded."""

    async def pair(x: int) -> list[int]:
        return [x, x]

    async def gen(x: int) -> AsyncIterator[int]:
        yield x

    async def either(x: int) -> Any:
        return await pair(x) if x % 2 else gen(x)

    run = FlatRun(either, context(), awaits=True)
    out = [y async for items, _ in run.run(chunks(([1, 2, 3], 3))) for y in items]
    assert [1, 1, 2, 3, 3] == out


async def test_a_failure_midway_keeps_the_elements_before_it() -> None:
    """A call that fails while its elements are read keeps those read before the
    failure; under ``skip`` the next item's elements follow them."""

    def breaks(x: int) -> Iterator[int]:
        yield x
        if x == 1:
            raise ValueError(x)
        yield x

    run = FlatRun(breaks, context("skip"), awaits=False)
    out = [y async for items, _ in run.run(chunks(([0, 1, 2], 3))) for y in items]
    assert [0, 0, 1, 2, 2] == out
    assert 3 == run.ctx.stats.items_in


async def test_a_failure_in_a_later_chunk_of_an_endless_iterable_keeps_all_before_it() -> None:
    """The chunks an iterator filled before failing stay passed on, and so do the
    elements of the chunk it was filling."""

    def breaks(x: int) -> Iterator[int]:
        if x == 1:
            yield from range(MAX_CHUNK + 2)
            raise ValueError(x)
        yield -1

    run = FlatRun(breaks, context("skip"), awaits=False)
    out = [y async for items, _ in run.run(chunks(([0, 1, 2], 3))) for y in items]
    assert [-1, *range(MAX_CHUNK + 2), -1] == out
    assert MAX_CHUNK + 4 == run.ctx.stats.items_out
