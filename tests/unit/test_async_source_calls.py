"""Async ``ack``, ``pause`` and ``resume``: a broker client's calls are awaited.

They are awaited in a task of the run's own, one after the other, never where
results are delivered; a failing one fails the run with its own exception.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from itertools import pairwise

import pytest

import pipeflow.streams as ps
from pipeflow.streams import BackpressureConfig
from pipeflow.testing import VirtualClock


class Broker:
    """An async source whose ``ack`` is a commit taking ``commit_time`` seconds."""

    def __init__(self, n: int, clock: VirtualClock, commit_time: float = 0.0) -> None:
        self.n = n
        self.clock = clock
        self.commit_time = commit_time
        self.committed = 0
        self.commits: list[tuple[float, int]] = []  # (when it completed, count)
        self.in_progress = 0
        self.overlapped = False
        self.closed_at_commit: int | None = None
        self.fail_at: int | None = None
        self.trickle = False  # each item after a loop turn: a chunk per item

    async def _items(self) -> AsyncIterator[int]:
        for i in range(self.n):
            if self.trickle:
                await asyncio.sleep(0)
            yield i

    def __aiter__(self) -> AsyncIterator[int]:
        return self._items()

    async def ack(self, count: int) -> None:
        self.in_progress += 1
        self.overlapped |= self.in_progress > 1
        try:
            if self.commit_time:
                await self.clock.sleep(self.commit_time)
            if self.fail_at is not None and count >= self.fail_at:
                raise ConnectionError("commit refused by the broker")
            assert count > self.committed, "acks go forward"
            self.committed = count
            self.commits.append((self.clock.monotonic(), count))
        finally:
            self.in_progress -= 1

    async def aclose(self) -> None:
        self.closed_at_commit = self.committed


async def test_async_ack_is_awaited_to_the_last_item() -> None:
    """Every item is acknowledged by the end, and the source is closed after that."""
    clock = VirtualClock(autojump=True)
    broker = Broker(1000, clock)
    out = [x async for x in ps.map(lambda x: x + 1).stream(broker, clock=clock)]
    assert list(range(1, 1001)) == out
    assert 1000 == broker.committed
    assert 1000 == broker.closed_at_commit


async def test_slow_commits_do_not_hold_results_back() -> None:
    """Results are delivered while a commit is in progress; commits never overlap,
    go forward in order, and the ones asked for meanwhile fold into the newest."""
    clock = VirtualClock(autojump=True)
    broker = Broker(2000, clock, commit_time=1.0)
    taken_at: list[float] = []
    async with ps.map(lambda x: x).stream(broker, clock=clock) as results:
        async for _ in results:
            taken_at.append(clock.monotonic())
    assert 2000 == len(taken_at)
    assert 0.0 == taken_at[-1]  # nothing waited for a commit
    assert not broker.overlapped
    counts = [count for _, count in broker.commits]
    assert sorted(set(counts)) == counts
    assert 2000 == counts[-1]
    assert [256, 2000] == counts  # the first chunk's, then the newest once that is done
    assert 2000 == broker.closed_at_commit


async def test_a_failing_async_ack_fails_the_run_with_its_exception() -> None:
    """The broker's exception reaches the consumer, with a note naming the call."""
    clock = VirtualClock(autojump=True)
    broker = Broker(5000, clock, commit_time=0.5)
    broker.fail_at = 1
    taken = 0

    async def consume() -> None:
        nonlocal taken
        pipe = ps.map(lambda x: x, config=BackpressureConfig(max_buffer_size=10))
        async with pipe.stream(broker, clock=clock) as results:
            async for _ in results:
                taken += 1
                await clock.sleep(0.1)

    with pytest.raises(ConnectionError, match="commit refused") as caught:
        await consume()
    assert any("the source's ack(" in note for note in caught.value.__notes__)
    assert taken < 5000  # the run stopped
    assert 0 == broker.committed
    assert {asyncio.current_task()} == asyncio.all_tasks()


async def test_a_failing_sync_ack_fails_the_run_with_its_exception() -> None:
    """A plain ``def ack`` that raises stops the run with that exception."""

    class Refusing:
        def __iter__(self) -> Iterator[int]:
            return iter(range(10))

        def ack(self, count: int) -> None:
            raise PermissionError("not allowed to commit")

    with pytest.raises(PermissionError) as caught:
        async for _ in ps.map(lambda x: x).stream(Refusing()):
            pass
    assert ["raised by the source's ack(10): the run stopped"] == caught.value.__notes__


async def test_a_commit_failing_after_the_consumer_left_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """When the consumer breaks out while a commit is in progress, the run waits for
    it before closing the source; if it fails, an error is logged (nothing raises
    into code that has moved on)."""
    clock = VirtualClock(autojump=True)
    broker = Broker(100, clock, commit_time=1.0)
    broker.fail_at = 1
    broker.trickle = True
    with caplog.at_level(logging.ERROR, logger="pipeflow"):
        async with ps.map(lambda x: x).stream(broker, clock=clock) as results:
            async for x in results:
                if x == 50:
                    break
    assert 1.0 == clock.monotonic()  # the commit in progress was waited for
    assert 0 == broker.committed
    assert 0 == broker.closed_at_commit
    (record,) = caplog.records
    assert "a call to the source failed" in record.getMessage()
    assert isinstance(record.exc_info and record.exc_info[1], ConnectionError)


async def test_async_pause_and_resume_are_awaited_in_order() -> None:
    """A source's async pause/resume are awaited one after the other, in the order made."""
    clock = VirtualClock(autojump=True)
    calls: list[tuple[str, float]] = []

    class Pausing:
        def __aiter__(self) -> AsyncIterator[int]:
            return self._items()

        async def _items(self) -> AsyncIterator[int]:
            for i in range(200):
                yield i

        async def pause(self) -> None:
            await clock.sleep(0.25)
            calls.append(("pause", clock.monotonic()))

        async def resume(self) -> None:
            await clock.sleep(0.25)
            calls.append(("resume", clock.monotonic()))

    config = BackpressureConfig(max_buffer_size=10, throttle_threshold=0.5)
    out: list[int] = []
    async with ps.map(lambda x: x, config=config).stream(Pausing(), clock=clock) as results:
        async for x in results:
            out.append(x)
            await clock.sleep(0.1)
    assert list(range(200)) == out
    kinds = [kind for kind, _ in calls]
    assert kinds
    assert "pause" == kinds[0]
    assert all(a != b for a, b in pairwise(kinds))  # they alternate
    times = [t for _, t in calls]
    assert all(b - a >= 0.25 for a, b in pairwise(times))  # one at a time
