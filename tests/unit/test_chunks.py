"""``Stream.chunks()``: the results in lists of those at hand, never waiting to fill one."""

from __future__ import annotations

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
