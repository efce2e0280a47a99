"""``stop=``: a run ends gracefully once its event is set.

Reading stops (a read that waits is cancelled), what was read reaches the
consumer or sink and is acknowledged, and the source is closed. Windows keep
their open windows unfired for a source that acknowledges (their items are
delivered again); batches put out their partial batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pipeflow import streams as ps
from pipeflow.testing import TestSource, VirtualClock


class Blocking:
    """Hands over ``ready`` items, then waits for ever; counts what it was told."""

    def __init__(self, ready: int, *, stubborn: bool = False) -> None:
        self.ready = ready
        self.acked = 0
        self.closed = False
        self.cancelled = False
        self.cleaned_up = False
        #: Clean up on cancellation with an await of its own, as broker clients do.
        self.stubborn = stubborn

    def __aiter__(self) -> AsyncIterator[int]:
        return self._items()

    async def _items(self) -> AsyncIterator[int]:
        for i in range(self.ready):
            yield i
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled = True
            if self.stubborn:
                await asyncio.sleep(0)
                self.cleaned_up = True
            raise
        yield -1  # never reached

    def ack(self, count: int) -> None:
        self.acked = count

    async def aclose(self) -> None:
        self.closed = True


def stop_after(event: asyncio.Event, n: int) -> Any:
    """A map function that sets ``event`` once it has seen ``n`` items."""
    seen = 0

    def fn(x: Any) -> Any:
        nonlocal seen
        seen += 1
        if seen == n:
            event.set()
        return x

    return fn


async def test_a_waiting_read_is_cancelled_and_the_run_ends() -> None:
    stop = asyncio.Event()
    source = Blocking(5)
    out: list[int] = []
    pipe = ps.map(stop_after(stop, 5))
    summary = await asyncio.wait_for(pipe.run(source, out, stop=stop), 5)
    assert [0, 1, 2, 3, 4] == out
    assert summary.stopped
    assert (5, 5, 0) == (summary.items_in, source.acked, summary.unacknowledged)
    assert source.cancelled
    assert source.closed


async def test_a_source_that_cleans_up_on_cancellation_is_waited_for() -> None:
    stop = asyncio.Event()
    source = Blocking(3, stubborn=True)
    out: list[int] = []
    summary = await asyncio.wait_for(ps.map(stop_after(stop, 3)).run(source, out, stop=stop), 5)
    assert [0, 1, 2] == out
    assert summary.stopped
    assert source.cleaned_up
    assert source.closed


async def test_what_was_read_reaches_a_slow_sink_and_is_acknowledged() -> None:
    clock = VirtualClock()
    stop = asyncio.Event()
    source = TestSource(range(10_000), clock=clock)
    written: list[int] = []

    class Slow:
        async def write(self, items: list[int]) -> None:
            await clock.sleep(1)
            written.extend(items)

        async def aclose(self) -> None:
            pass

    config = ps.BackpressureConfig(max_buffer_size=50)
    pipe = ps.map(stop_after(stop, 120), config=config) | ps.map(lambda x: x + 1, config=config)
    summary = await pipe.run(source, Slow(), clock=clock, stop=stop)
    assert summary.stopped
    assert summary.items_in < 10_000
    assert list(range(1, summary.items_in + 1)) == written
    assert summary.items_in == source.acked
    assert 0 == summary.unacknowledged
    assert 0 < summary.in_flight_at_stop <= summary.items_in
    assert source.closed


async def test_a_stop_set_before_the_run_reads_nothing() -> None:
    stop = asyncio.Event()
    stop.set()
    source = TestSource(range(10))
    out: list[int] = []
    summary = await ps.map(lambda x: x).run(source, out, stop=stop)
    assert [] == out
    assert summary.stopped
    assert 0 == source.read
    assert source.closed


async def test_a_sync_source_stops_between_items() -> None:
    stop = asyncio.Event()

    def numbers() -> Any:
        yield from range(100_000)

    out: list[int] = []
    summary = await ps.map(stop_after(stop, 10)).run(numbers(), out, stop=stop)
    assert summary.stopped
    assert 10 <= len(out) < 100_000
    assert list(range(len(out))) == out


async def test_without_a_stop_the_run_ends_with_its_source() -> None:
    stop = asyncio.Event()
    out: list[int] = []
    summary = await ps.map(lambda x: x).run(TestSource(range(5)), out, stop=stop)
    assert [0, 1, 2, 3, 4] == out
    assert not summary.stopped
    assert 0 == summary.in_flight_at_stop


def _events(n: int) -> list[dict[str, Any]]:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    return [{"t": start + timedelta(seconds=i), "n": i} for i in range(n)]


def _windowed(stop: asyncio.Event, after: int) -> ps.Pipeable[Any, Any]:
    class Count(ps.WindowedStreamPipe[dict[str, Any], int]):
        async def process_window(self, window: ps.Window[dict[str, Any]]) -> int:
            return len(window)

    return ps.map(stop_after(stop, after)) | Count(
        window_size=10, timestamp=lambda e: e["t"], name="count"
    )


async def test_open_windows_stay_unacknowledged_for_an_acknowledging_source() -> None:
    stop = asyncio.Event()
    source = TestSource(_events(1000), one_by_one=True)
    out: list[int] = []
    summary = await _windowed(stop, 25).run(source, out, stop=stop)
    assert summary.stopped
    # Only whole windows came out; the open one's items go back to the source.
    assert out
    assert all(10 == n for n in out)
    # Nothing of the open window is acknowledged (acknowledgements move by the
    # chunks the source handed over, so they may stop short of the last window).
    assert 0 < source.acked <= 10 * len(out) < summary.items_in
    assert summary.unacknowledged == summary.items_in - source.acked > 0


async def test_open_windows_fire_when_the_source_cannot_deliver_again() -> None:
    stop = asyncio.Event()
    out: list[int] = []
    summary = await _windowed(stop, 25).run(iter(_events(1000)), out, stop=stop)
    assert summary.stopped
    assert summary.items_in == sum(out)
    assert 0 == summary.unacknowledged


async def test_a_partial_batch_goes_out_at_a_stop() -> None:
    stop = asyncio.Event()

    class Sum(ps.BatchStreamPipe[int, int]):
        async def process_batch(self, batch: list[int]) -> int:
            return sum(batch)

    source = TestSource(range(1000))
    out: list[int] = []
    pipe = ps.map(stop_after(stop, 15)) | Sum(batch_size=10)
    summary = await pipe.run(source, out, stop=stop)
    assert summary.stopped
    assert sum(range(summary.items_in)) == sum(out)
    assert summary.items_in == source.acked


async def test_a_stream_stops_too() -> None:
    stop = asyncio.Event()
    source = Blocking(4)
    got = []
    async with ps.map(stop_after(stop, 4)).stream(source, stop=stop) as stream:
        async for x in stream:
            got.append(x)
        assert stream.stopped
    assert [0, 1, 2, 3] == got
    assert source.closed


async def test_cancelling_the_task_still_cancels_the_run() -> None:
    stop = asyncio.Event()
    source = Blocking(2)
    task = asyncio.create_task(ps.map(lambda x: x).run(source, [], stop=stop))
    for _ in range(20):
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert source.closed
    assert not stop.is_set()


async def test_a_cancellation_during_a_stop_is_not_taken_for_the_stop() -> None:
    stop = asyncio.Event()
    source = Blocking(2, stubborn=True)
    task = asyncio.create_task(ps.map(lambda x: x).run(source, [], stop=stop))
    for _ in range(20):
        await asyncio.sleep(0)
    stop.set()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert source.closed


async def test_no_task_is_left_behind() -> None:
    before = asyncio.all_tasks()
    stop = asyncio.Event()
    await ps.map(stop_after(stop, 3)).run(Blocking(3), [], stop=stop)
    assert before == asyncio.all_tasks()


@pytest.mark.parametrize("bad", [True, "now", asyncio.Event])
def test_stop_must_be_an_event(bad: object) -> None:
    with pytest.raises(TypeError, match=r"stop must be an asyncio\.Event"):
        ps.map(lambda x: x).stream([1], stop=bad)  # type: ignore[arg-type]


async def test_a_stop_that_comes_between_two_waits_cancels_the_next() -> None:
    stop = asyncio.Event()

    async def source() -> AsyncIterator[int]:
        yield 1
        stop.set()
        await asyncio.sleep(0)  # not parked on a future when the stop comes
        await asyncio.Event().wait()
        yield 2

    out: list[int] = []
    summary = await asyncio.wait_for(ps.map(lambda x: x).run(source(), out, stop=stop), 5)
    assert [1] == out
    assert summary.stopped
