"""``SourceIdle``: the run's source reader records how long an async source keeps it waiting."""

from __future__ import annotations

import asyncio
from typing import Any

from pipeflow._core._idle import SourceIdle
from pipeflow._core._sources import source_chunks
from pipeflow.testing import TestSource, VirtualClock


def state(idle: SourceIdle) -> tuple[float | None, float]:
    """When the wait in progress began, and the seconds idle so far."""
    return idle.since, idle.seconds()


async def test_idle_time_counts_only_while_the_reader_awaits_the_source() -> None:
    """Reading what is ready, and handing it on, is not idle time; waiting for the next
    item is, from when the reader began to wait until the item comes."""
    clock = VirtualClock(autojump=False)
    idle = SourceIdle(clock)
    src: TestSource[Any] = TestSource([1, 2, TestSource.wait(5), 3], clock=clock)
    chunks = source_chunks(src, idle=idle)
    try:
        assert ([1, 2], 2) == await anext(chunks)
        assert (None, 0.0) == state(idle)  # read without waiting, and handed on
        await clock.advance(1)  # downstream takes its time: the source is not idle
        assert (None, 0.0) == state(idle)
        reading = asyncio.ensure_future(anext(chunks))
        await clock.advance(0)  # the reader comes back and waits
        await clock.advance(2)
        assert (1.0, 2.0) == state(idle)  # waiting since the reader came back
        await clock.advance(2)
        assert ([3], 3) == await reading
        assert ((None, 4.0), 4.0) == (state(idle), idle.total)
        await clock.advance(1)
        assert 4.0 == idle.seconds()  # handed on: not idle
    finally:
        await chunks.aclose()


async def test_a_sync_source_is_never_idle() -> None:
    """A sync source hands over every item without waiting: it is never idle."""
    clock = VirtualClock()
    idle = SourceIdle(clock)
    seen: list[tuple[float | None, float]] = []
    async for _ in source_chunks(iter(range(1000)), idle=idle):
        await clock.sleep(1)
        seen.append(state(idle))
    assert [(None, 0.0)] * 4 == seen
