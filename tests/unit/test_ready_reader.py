"""``ReadyReader``: what an async source hands over without waiting, a list at a time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import pytest

from pipeflow._core._buffer import MAX_CHUNK
from pipeflow._core._idle import SourceIdle
from pipeflow._core._ready import ReadyReader, Room
from pipeflow._core._sources import Reading
from pipeflow.testing import VirtualClock


async def bursts(sizes: list[int], log: list[str] | None = None) -> AsyncGenerator[int, None]:
    """Items in bursts: each burst at hand at once, a loop turn between bursts."""
    i = 0
    try:
        for size in sizes:
            await asyncio.sleep(0)  # waits: the signal passed to the loop is None
            for _ in range(size):
                yield i
                i += 1
    finally:
        if log is not None:
            log.append("closed")


async def collect(it: Any, room: Room | None = None) -> list[tuple[list[Any], bool]]:
    """Each list, with whether more may follow; the counts are checked on the way."""
    reader = ReadyReader(it)
    pieces = reader.chunks(room)
    got: list[tuple[list[Any], bool]] = []
    read = 0
    try:
        async for items, count in pieces:
            read += len(items)
            assert (read, read) == (count, reader.read)
            got.append((items, not reader.ended))
    finally:
        await pieces.aclose()
    return got


async def test_a_list_ends_where_reading_on_would_wait() -> None:
    """Each burst is one list; the last, which the source's end follows at once,
    says nothing more follows."""
    got = await collect(bursts([3, 1, 5]))
    assert [([0, 1, 2], True), ([3], True), ([4, 5, 6, 7, 8], False)] == got


async def test_a_list_holds_at_most_max_chunk_items() -> None:
    """A burst longer than MAX_CHUNK is cut; nothing is lost or reordered."""
    got = await collect(bursts([MAX_CHUNK * 2 + 5]))
    assert [MAX_CHUNK, MAX_CHUNK, 5] == [len(items) for items, _ in got]
    assert list(range(MAX_CHUNK * 2 + 5)) == [x for items, _ in got for x in items]


async def test_room_caps_each_list() -> None:
    """A list holds no more than the room the reader is given for it."""
    asked: list[int] = []

    async def room(wanted: int) -> int:
        asked.append(wanted)
        return 4

    got = await collect(bursts([10]), room=room)
    assert [4, 4, 2] == [len(items) for items, _ in got]
    assert all(MAX_CHUNK == n for n in asked)


async def test_an_iterator_without_aiter_is_read() -> None:
    """An object with ``__anext__`` only is read like any async iterator."""

    class Countdown:
        def __init__(self) -> None:
            self.n = 3

        async def __anext__(self) -> int:
            if self.n == 0:
                raise StopAsyncIteration
            self.n -= 1
            return self.n

    got = await collect(Countdown())
    assert [2, 1, 0] == [x for items, _ in got for x in items]


async def test_what_was_read_before_a_failure_comes_first() -> None:
    """The items before a failing step are handed on, then the error is raised."""

    async def failing() -> AsyncIterator[int]:
        yield 1
        yield 2
        raise OSError("connection reset")

    reader = ReadyReader(failing())
    pieces = reader.chunks()
    assert ([1, 2], 2) == await pieces.__anext__()
    assert reader.ended  # nothing follows the error
    with pytest.raises(OSError, match="connection reset"):
        await pieces.__anext__()


async def test_closing_while_the_source_waits_settles_it() -> None:
    """A source waiting for its next item is cancelled and runs its clean-up."""
    log: list[str] = []
    source = bursts([2, 2], log)
    pieces = ReadyReader(source).chunks()
    assert ([0, 1], 2) == await pieces.__anext__()
    await pieces.aclose()
    assert ["closed"] == log
    await source.aclose()  # no longer running: closing it again is fine


async def test_closing_a_full_list_leaves_the_source_closable() -> None:
    """Closed between two full lists, the source is not running and closes cleanly."""
    log: list[str] = []
    source = bursts([MAX_CHUNK + 10], log)
    reader = ReadyReader(source)
    pieces = reader.chunks()
    first, count = await pieces.__anext__()
    assert (MAX_CHUNK, MAX_CHUNK, False) == (len(first), count, reader.ended)
    await pieces.aclose()
    assert [] == log
    await source.aclose()
    assert ["closed"] == log


async def test_only_waits_with_nothing_at_hand_are_idle_time() -> None:
    """The source's waits count as idle time while the reader has nothing at hand;
    handing items on does not, even while the source prepares the next one."""
    clock = VirtualClock(autojump=True)

    async def slow() -> AsyncIterator[int]:
        for i in range(3):
            await clock.sleep(2.0)
            yield i

    idle = SourceIdle(clock)
    pieces = ReadyReader(slow(), idle).chunks()
    async for _ in pieces:
        await clock.sleep(1.0)  # handing on takes a second each time
    # Items at t=2, 4 and 6; each next wait began as the item was read, and the
    # reader came back for it a second later: idle 2 + 1 + 1.
    assert 4.0 == idle.seconds()
    assert 7.0 == clock.monotonic()


async def test_reading_follows_the_count_and_close_comes_last() -> None:
    """``reading.read`` is the count of items read; ``close`` is awaited at the end,
    after the source has been settled, also when the reader is closed early."""
    reading = Reading()
    log: list[str] = []

    async def close() -> None:
        log.append("close")

    pieces = ReadyReader(bursts([2, 3], log)).chunks(reading=reading, close=close)
    assert ([0, 1], 2) == await pieces.__anext__()
    assert 2 == reading.read
    await pieces.aclose()
    assert ["closed", "close"] == log

    log.clear()
    got = [c async for c in ReadyReader(bursts([2, 3], log)).chunks(reading=reading, close=close)]
    assert [([0, 1], 2), ([2, 3, 4], 5)] == got
    assert 5 == reading.read
    assert ["closed", "close"] == log
