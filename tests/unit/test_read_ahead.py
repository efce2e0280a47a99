"""Read-ahead: a slow consumer never lets the source run further ahead than the
pipeline's buffers allow, for every kind of stage, buffer size and source.

The promise: items taken from the source and not yet delivered never exceed the
sum of the pipeline's buffer sizes, plus the calls a concurrent stage has in
flight (``concurrency``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from pipeflow import streams as ps
from pipeflow.streams import BackpressureConfig, Pipeable, StreamPipe
from pipeflow.testing import VirtualClock

SIZES = (1, 2, 10, 50, 1000)


class Counted:
    """A fast source that counts the items read, as a sync or an async iterable."""

    def __init__(self, n: int, mode: str) -> None:
        self.n = n
        self.mode = mode
        self.read = 0

    def __iter__(self) -> Iterator[int]:
        for i in range(self.n):
            self.read += 1
            yield i

    async def _items(self) -> AsyncIterator[int]:
        for i in range(self.n):
            if self.mode == "yielding":
                await asyncio.sleep(0)  # hands each item over after a loop turn
            self.read += 1
            yield i

    def source(self) -> Any:
        return iter(self) if self.mode == "sync" else self._items()


class Identity(StreamPipe[int, int]):
    async def process_item(self, item: int) -> int:
        return item


class Passing(StreamPipe[int, int]):
    async def process_stream(self, stream: AsyncIterator[int]) -> AsyncIterator[int]:
        async for x in stream:
            yield x


async def same(x: int) -> int:
    return x


def first(window: Any) -> Any:
    return window[0]


#: Each stage kind: the pipeline for a buffer size, and how many buffers of that
#: size it has, and the calls it may have in flight beyond them.
KINDS: dict[str, tuple[Callable[[BackpressureConfig], Pipeable[int, Any]], int, int]] = {
    "map sync": (lambda c: ps.map(lambda x: x, config=c), 1, 0),
    "map async": (lambda c: ps.map(same, config=c), 1, 0),
    "map concurrency 4": (lambda c: ps.map(same, config=c, concurrency=4), 1, 4),
    "filter": (lambda c: ps.filter(lambda x: True, config=c), 1, 0),
    "flat_map": (lambda c: ps.flat_map(lambda x: [x], config=c), 1, 0),
    "StreamPipe": (lambda c: StreamPipe[int, int](config=c), 1, 0),
    "process_item": (lambda c: Identity(config=c), 1, 0),
    "process_stream": (lambda c: Passing(config=c), 1, 0),
    "count window": (lambda c: ps.WindowedStreamPipe(count=1, config=c) | ps.map(first), 1, 0),
    "batch": (lambda c: ps.BatchStreamPipe(1, config=c) | ps.map(first), 1, 0),
    "three buffered maps": (
        lambda c: ps.map(same, config=c) | ps.map(same, config=c) | ps.map(same, config=c),
        3,
        0,
    ),
    "process_stream, then a buffer": (lambda c: Passing(config=c) | Identity(config=c), 2, 0),
    "window after window": (
        lambda c: (
            ps.WindowedStreamPipe(count=1, config=c)
            | ps.map(first)
            | ps.WindowedStreamPipe(count=1, config=c)
            | ps.map(first)
        ),
        2,
        0,
    ),
}


async def most_read_ahead(pipe: Pipeable[int, Any], counted: Counted, take: int) -> int:
    """Take ``take`` results one virtual second apart; the most items ever read
    and not yet delivered."""
    clock = VirtualClock()
    taken = worst = 0
    async with pipe.stream(counted.source(), clock=clock) as results:
        async for _ in results:
            taken += 1
            await clock.sleep(1)  # everything upstream settles meanwhile
            worst = max(worst, counted.read - taken)
            if taken == take:
                break
    return worst


@pytest.mark.parametrize("mode", ["sync", "async", "yielding"])
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("kind", list(KINDS))
async def test_read_ahead_stays_within_the_buffers(kind: str, size: int, mode: str) -> None:
    """However large the chunks a source hands over, it is read no further ahead
    than the buffers have room for, and the buffers do fill up."""
    make, buffers, in_flight = KINDS[kind]
    config = BackpressureConfig(max_buffer_size=size, throttle_threshold=1.0)
    counted = Counted(buffers * size + 100, mode)
    worst = await most_read_ahead(make(config), counted, take=5)
    assert worst <= buffers * size + in_flight
    # The buffers did fill up (the last one gives its chunk up item by item).
    assert worst >= (buffers - 1) * size + min(size, 2) - 1
