"""``Stream.chunks()``: the results in lists of those at hand, never waiting to fill one."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from helpers import agen
from pipeflow.monitoring import StreamMonitor
from pipeflow.streams import (
    MAX_CHUNK,
    BackpressureConfig,
    Pipeable,
    StreamPipe,
    filter,
    map,
)
from pipeflow.testing import TestSource, VirtualClock


class Inc(StreamPipe[int, int]):
    async def process_item(self, item: int) -> int:
        return item + 1


def fused() -> Pipeable[int, int]:
    return map(lambda x: x + 1) | filter(lambda x: x % 3 != 0)


def buffered() -> Pipeable[int, int]:
    return Inc(config=BackpressureConfig(max_buffer_size=100)) | filter(lambda x: x % 3 != 0)


SHAPES = [fused, buffered]
shapes = pytest.mark.parametrize("shape", SHAPES, ids=lambda s: s.__name__)


@shapes
@pytest.mark.parametrize("source", [list, iter, agen], ids=["list", "iterator", "async"])
@pytest.mark.parametrize("monitored", [False, True])
async def test_chunks_hold_every_result_in_order(shape: Any, source: Any, monitored: bool) -> None:
    """Joined, the chunks are the results the stream gives item by item."""
    pipe = shape()
    if monitored:
        pipe.set_monitor(StreamMonitor())
    stream = pipe.stream(source(range(2000)))
    async with stream:
        chunks = [chunk async for chunk in stream.chunks()]
    assert all(type(c) is list and 0 < len(c) <= MAX_CHUNK for c in chunks)
    assert [x + 1 for x in range(2000) if (x + 1) % 3 != 0] == [x for c in chunks for x in c]
    stats = stream.statistics()
    assert (2000, sum(len(c) for c in chunks)) == (stats[0].items_in, stats[-1].items_out)


@shapes
async def test_a_chunk_goes_on_without_waiting_for_more(shape: Any) -> None:
    """What is at hand goes on at once; the rest follows when it comes."""
    clock = VirtualClock()
    source = TestSource([1, 2, 3, TestSource.wait(10), 4, 5], clock=clock)
    arrivals = []
    stream = shape().stream(source, clock=clock)
    async with stream:
        async for chunk in stream.chunks():
            arrivals.append((clock.monotonic(), chunk))
    assert [(0.0, [2, 4]), (10.0, [5])] == arrivals


class Tenfold(StreamPipe[int, int]):
    """Emits each item ten times: whatever it emits while its input lasts goes into
    the next stage's buffer in one piece."""

    async def process_stream(self, stream: AsyncIterator[int]) -> AsyncIterator[int]:
        async for x in stream:
            for _ in range(10):
                yield x


def slow_first(clock: VirtualClock) -> Pipeable[int, int]:
    """A concurrent map whose first call is slow: the 999 finished calls behind it
    go on together when it completes, at t=1."""

    async def fetch(n: int) -> int:
        await clock.sleep(1.0 if n == 0 else 0.001)
        return n

    return map(fetch, concurrency=8)


LARGE: dict[str, tuple[Callable[[VirtualClock], Pipeable[int, int]], list[int]]] = {
    "concurrent": (slow_first, list(range(1000))),
    "process_stream": (lambda _: Tenfold() | map(abs), [x for x in range(1000) for _ in range(10)]),
}


@pytest.mark.parametrize(("shape", "expected"), LARGE.values(), ids=LARGE.keys())
@pytest.mark.parametrize("monitored", [False, True])
async def test_lists_hold_at_most_max_chunk(
    shape: Callable[[VirtualClock], Pipeable[int, int]], expected: list[int], monitored: bool
) -> None:
    """A stage may emit more than MAX_CHUNK results at once; the consumer still
    gets lists of at most MAX_CHUNK, all of the results, in order."""
    clock = VirtualClock()
    pipe = shape(clock)
    if monitored:
        pipe.set_monitor(StreamMonitor())
    stream = pipe.stream(range(1000), clock=clock)
    async with stream:
        chunks = [chunk async for chunk in stream.chunks()]
    assert max(len(c) for c in chunks) <= MAX_CHUNK
    assert expected == [x for c in chunks for x in c]


async def test_a_large_chunk_is_acknowledged_once_every_list_of_it_is_taken() -> None:
    """The slices of a large chunk go on one by one; the source is acknowledged
    when the consumer asks for the list after the last of them."""
    clock = VirtualClock()
    source: TestSource[int] = TestSource(range(1000), clock=clock)
    lists = []
    stream = slow_first(clock).stream(source, clock=clock)
    async with stream:
        async for chunk in stream.chunks():
            lists.append((clock.monotonic(), len(chunk), source.acked))
            await clock.sleep(1)  # a slow bulk write
    assert [(1.0, 256, 0), (2.0, 256, 0), (3.0, 256, 0), (4.0, 232, 0)] == lists
    assert 1000 == source.acked


async def test_a_list_counts_in_throughput_when_the_consumer_takes_it() -> None:
    """A monitored run's throughput counts each list as the consumer takes it, not
    the large chunk it was cut from: three lists of 256 in the first 3 s."""
    clock = VirtualClock()
    monitor = StreamMonitor()
    pipe = slow_first(clock)
    pipe.set_monitor(monitor)
    stream = pipe.stream(range(1000), clock=clock)
    throughput = []
    async with stream:
        async for _ in stream.chunks():
            await clock.sleep(1)
            throughput.append(monitor.get_metrics().throughput)
    # Lists taken at t=1, 2, 3 and 4; read at t=2, 3, 4 and 5.
    assert [pytest.approx(x) for x in (256 / 2, 512 / 3, 768 / 4, 1000 / 5)] == throughput


async def test_the_source_is_acknowledged_chunk_by_chunk() -> None:
    """A chunk's items are acknowledged once the consumer asks for the next chunk."""
    clock = VirtualClock()
    source: TestSource[int] = TestSource([1, 2, TestSource.wait(1), 3, 4, 5], clock=clock)
    acked = []
    stream = fused().stream(source, clock=clock)
    async with stream:
        async for _ in stream.chunks():
            acked.append(source.acked)
    assert [0, 2] == acked
    assert 5 == source.acked


async def test_break_closes_the_source() -> None:
    """Leaving a chunks() loop inside ``async with`` closes the run."""
    source = TestSource(range(10_000))
    stream = buffered().stream(source)
    async with stream:
        async for _ in stream.chunks():
            break
    assert source.closed


async def test_chunks_after_iteration_began_is_an_error() -> None:
    """A stream is iterated once: item by item or in chunks, not both."""
    stream = fused().stream(range(10))
    async with stream:
        assert 1 == await stream.__anext__()
        with pytest.raises(RuntimeError, match="before the stream is iterated"):
            stream.chunks()


async def test_iterating_the_stream_after_chunks_is_an_error() -> None:
    """Once chunks() is called, its lists are the way to read the stream."""
    stream = fused().stream(range(10))
    async with stream:
        chunks = stream.chunks()
        with pytest.raises(RuntimeError, match="read with chunks"):
            async for _ in stream:
                pass
        assert [[1, 2, 4, 5, 7, 8, 10]] == [c async for c in chunks]
