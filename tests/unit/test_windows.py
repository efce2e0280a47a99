"""WindowedStreamPipe end to end: timers on a VirtualClock, event time, lateness, keys, errors.

Processing-time windows are aligned to the Unix epoch; VirtualClock starts at
2026-01-01T00:00:00Z, a whole second (and minute), so monotonic() == 1.0 is the
end of the first one-second window.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, TypeVar

import pytest

from helpers import agen, collect, collect_timed, collect_until_error
from pipeflow._core._buffer import MAX_CHUNK
from pipeflow._windows._pipe import LatePolicy
from pipeflow.monitoring import StreamMonitor
from pipeflow.streams import (
    DeadLetter,
    LateItemError,
    Retry,
    StreamError,
    StreamPipe,
    Window,
    WindowedStreamPipe,
    map,
)
from pipeflow.testing import TestSource, VirtualClock

T = TypeVar("T")

START = datetime(2026, 1, 1, tzinfo=UTC)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Event = tuple[float, str]  # (event time in epoch seconds, key)


def wall(seconds: float) -> datetime:
    """The VirtualClock's wall time when its monotonic() reads ``seconds``."""
    return START + timedelta(seconds=seconds)


def epoch(seconds: float) -> datetime:
    """An aware UTC datetime ``seconds`` after the Unix epoch."""
    return EPOCH + timedelta(seconds=seconds)


def ts_of(e: Event) -> float:
    return e[0]


def key_of(e: Event) -> str:
    return e[1]


def contents(windows: Iterable[Window[T]]) -> list[list[T]]:
    return [list(w) for w in windows]


def spans(windows: Iterable[Window[Any]]) -> list[tuple[datetime, datetime, Any, list[Any]]]:
    return [(w.start, w.end, w.key, list(w)) for w in windows]


def event_pipe(size: float, **kwargs: Any) -> WindowedStreamPipe[float, Window[float]]:
    """Event-time windows over items that are their own epoch-second timestamps."""
    return WindowedStreamPipe(size, timestamp=float, **kwargs)


class CountPerWindow(WindowedStreamPipe[Any, int]):
    def aggregate_window(self, window: Window[Any]) -> int:
        return len(window)


class Summary(WindowedStreamPipe[Event, tuple[Any, datetime, int]]):
    async def process_window(self, window: Window[Event]) -> tuple[Any, datetime, int]:
        await asyncio.sleep(0)
        return window.key, window.start, len(window)


class FailOn(WindowedStreamPipe[float, list[float]]):
    """Fails on the window that holds ``bad``."""

    def __init__(self, bad: float, **kwargs: Any) -> None:
        super().__init__(10, timestamp=float, **kwargs)
        self.bad = bad

    async def process_window(self, window: Window[float]) -> list[float]:
        if self.bad in window:
            raise RuntimeError("window failed")
        return list(window)


# -- processing time: timers ------------------------------------------------------


async def test_processing_time_window_fires_on_timer_while_source_is_quiet() -> None:
    """A processing-time window is emitted at the instant its end passes, with no new item."""
    clock = VirtualClock()
    pipe: WindowedStreamPipe[str, Window[str]] = WindowedStreamPipe(1.0)
    src: TestSource[Any] = TestSource(
        ["a", "b", TestSource.wait(0.25), "c", TestSource.wait(10)], clock=clock
    )
    out = await collect_timed(pipe.stream(src, clock=clock), clock)
    assert [(1.0, ["a", "b", "c"])] == [(t, list(w)) for t, w in out]
    assert (wall(0), wall(1)) == (out[0][1].start, out[0][1].end)


async def test_processing_time_item_at_window_end_goes_to_next_window() -> None:
    """An item arriving exactly when a window ends belongs to the next window."""
    clock = VirtualClock()
    pipe: WindowedStreamPipe[str, Window[str]] = WindowedStreamPipe(1.0)
    src: TestSource[Any] = TestSource(
        ["a", TestSource.at(1.0, "b"), TestSource.wait(5)], clock=clock
    )
    out = await collect_timed(pipe.stream(src, clock=clock), clock)
    assert [(1.0, ["a"]), (2.0, ["b"])] == [(t, list(w)) for t, w in out]
    assert (wall(1), wall(2)) == (out[1][1].start, out[1][1].end)


async def test_processing_time_windows_align_to_epoch_not_to_clock_start() -> None:
    """With a clock starting 0.3 s into a second, the first window ends 0.7 s later."""
    clock = VirtualClock(START + timedelta(seconds=0.3))
    pipe: WindowedStreamPipe[str, Window[str]] = WindowedStreamPipe(1.0)
    src: TestSource[Any] = TestSource(["a", TestSource.wait(3)], clock=clock)
    out = await collect_timed(pipe.stream(src, clock=clock), clock)
    assert [(0.7, ["a"])] == [(round(t, 9), list(w)) for t, w in out]
    assert (START, START + timedelta(seconds=1)) == (out[0][1].start, out[0][1].end)


async def test_processing_time_offset_shifts_window_ends() -> None:
    """offset=0.5 with 2 s windows: boundaries at ...:00.5, :02.5; the first window ends at 0.5."""
    clock = VirtualClock()
    pipe: WindowedStreamPipe[str, Window[str]] = WindowedStreamPipe(2.0, offset=0.5)
    src: TestSource[Any] = TestSource(
        ["a", TestSource.at(1.0, "b"), TestSource.wait(5)], clock=clock
    )
    out = await collect_timed(pipe.stream(src, clock=clock), clock)
    assert [(0.5, ["a"]), (2.5, ["b"])] == [(t, list(w)) for t, w in out]
    assert (wall(-1.5), wall(0.5)) == (out[0][1].start, out[0][1].end)
    assert (wall(0.5), wall(2.5)) == (out[1][1].start, out[1][1].end)


async def test_processing_time_no_window_for_quiet_stretch() -> None:
    """Seconds without items produce no empty windows."""
    clock = VirtualClock()
    pipe: WindowedStreamPipe[str, Window[str]] = WindowedStreamPipe(1.0)
    src: TestSource[Any] = TestSource(
        ["a", TestSource.at(5.5, "b"), TestSource.wait(5)], clock=clock
    )
    out = await collect_timed(pipe.stream(src, clock=clock), clock)
    assert [(1.0, ["a"]), (6.0, ["b"])] == [(t, list(w)) for t, w in out]


async def test_clock_jump_fires_all_due_windows_in_order() -> None:
    """Advancing the clock far at once fires every due window, in order of end, each at its end."""
    clock = VirtualClock(autojump=False)
    # size 3, slide 1: an item at t=0 is in [-2,1), [-1,2) and [0,3).
    pipe: WindowedStreamPipe[str, Window[str]] = WindowedStreamPipe(3, slide=1)
    src: TestSource[Any] = TestSource(["x", TestSource.wait(100)], clock=clock)
    got: list[tuple[float, Window[str]]] = []

    async def consume() -> None:
        async with pipe.stream(src, clock=clock) as stream:
            async for w in stream:
                got.append((clock.monotonic(), w))

    task = asyncio.create_task(consume())
    await clock.advance(0)
    assert [] == got
    await clock.advance(50)
    assert [
        (1.0, wall(-2), wall(1)),
        (2.0, wall(-1), wall(2)),
        (3.0, wall(0), wall(3)),
    ] == [(t, w.start, w.end) for t, w in got]
    assert [["x"], ["x"], ["x"]] == contents(w for _, w in got)
    await clock.advance(100)
    await task


async def test_processing_time_keyed_windows_fire_together_per_key() -> None:
    """Keys have their own windows; windows with the same end fire in creation order."""
    clock = VirtualClock()
    pipe: WindowedStreamPipe[Event, Window[Event]] = WindowedStreamPipe(1.0, key=key_of)
    src: TestSource[Any] = TestSource(
        [(0, "b"), (0, "a"), (0, "b"), TestSource.wait(3)], clock=clock
    )
    out = await collect_timed(pipe.stream(src, clock=clock), clock)
    assert [(1.0, "b", 2), (1.0, "a", 1)] == [(t, w.key, len(w)) for t, w in out]


@pytest.mark.parametrize(("arrival", "size"), [(0.4, 0.1), (0.7, 0.1), (0.3, 0.2), (2.9, 0.3)])
async def test_processing_time_window_fires_at_its_end_whatever_the_float_rounding(
    arrival: float, size: float
) -> None:
    """A window opened at a time that is not a round float still fires once, at its end.

    The timer's delay and the firing are reckoned from one watermark, so the run
    never waits for nothing (a zero delay) while the window is not yet due.
    """
    clock = VirtualClock()
    pipe: WindowedStreamPipe[str, Window[str]] = WindowedStreamPipe(size)
    src: TestSource[Any] = TestSource(
        [TestSource.at(arrival, "a"), TestSource.wait(5)], clock=clock
    )
    [(t, window)] = await collect_timed(pipe.stream(src, clock=clock), clock)
    assert ["a"] == list(window)
    assert window.end == wall(t)


# -- event time -------------------------------------------------------------------


async def test_event_time_out_of_order_items_within_lateness_land_in_their_windows() -> None:
    """Items up to allowed_lateness behind the newest event time still join their windows."""
    pipe = event_pipe(10, allowed_lateness=5)
    items = [1.0, 12.0, 8.0, 14.0, 3.0, 16.0, 15.0]
    out = await collect(pipe.stream(items))
    assert [(epoch(0), epoch(10), None, [1.0, 8.0, 3.0])] == spans(out[:1])
    assert [(epoch(10), epoch(20), None, [12.0, 14.0, 16.0, 15.0])] == spans(out[1:])


async def test_event_time_results_do_not_depend_on_chunking() -> None:
    """One item at a time or all in one chunk: the same windows (they fire item by
    item, as the watermark passes them, never from a quiet spell: no time passes)."""
    items = [1.0, 12.0, 8.0, 25.0, 3.0, 21.0, 14.0, 33.0, 19.0, 40.0]
    clock = VirtualClock()
    chunked = await collect(event_pipe(10, allowed_lateness=6).stream(items, clock=clock))
    one_by_one = await collect(event_pipe(10, allowed_lateness=6).stream(agen(items), clock=clock))
    # 3.0 and 19.0 are late: 25.0 and 33.0 moved the watermark past their windows.
    expected = [
        (epoch(0), epoch(10), None, [1.0, 8.0]),
        (epoch(10), epoch(20), None, [12.0, 14.0]),
        (epoch(20), epoch(30), None, [25.0, 21.0]),
        (epoch(30), epoch(40), None, [33.0]),
        (epoch(40), epoch(50), None, [40.0]),
    ]
    assert (expected, expected) == (spans(chunked), spans(one_by_one))
    assert 0.0 == clock.monotonic()


async def test_event_time_item_on_boundary_joins_window_starting_there() -> None:
    """An event at exactly 10.0 belongs to [10, 20), and firing [0, 10) needs watermark >= 10."""
    out = await collect(event_pipe(10).stream([9.999999, 10.0]))
    assert [
        (epoch(0), epoch(10), None, [9.999999]),
        (epoch(10), epoch(20), None, [10.0]),
    ] == spans(out)


async def test_late_items_dropped_and_counted() -> None:
    """An item whose window already fired is dropped and counted in `late`."""
    pipe = event_pipe(10)
    stream = pipe.stream([1.0, 2.0, 12.0, 3.0, 13.0])
    out = await collect(stream)
    assert [[1.0, 2.0], [12.0, 13.0]] == contents(out)
    [stats] = stream.statistics()
    assert 1 == stats.late
    assert 0 == stats.errors
    assert 5 == stats.items_in
    assert 2 == stats.items_out


async def test_late_items_counted_by_monitor() -> None:
    """A monitor sees the late count in the stage and in the totals."""
    monitor = StreamMonitor()
    pipe = event_pipe(10, name="win")
    pipe.set_monitor(monitor)
    await collect(pipe.stream([1.0, 12.0, 3.0, 4.0, 25.0, 5.0]))
    metrics = monitor.get_metrics()
    assert 3 == metrics.late
    assert 3 == metrics.stage("win").late


async def test_item_exactly_lateness_behind_is_not_late() -> None:
    """watermark = max - lateness: an item whose window ends just after it is still in time."""
    pipe = event_pipe(10, allowed_lateness=2)
    stream = pipe.stream([1.0, 11.999999, 9.0, 12.0, 9.5])
    out = await collect(stream)
    # After 11.999999 the watermark is 9.999999 < 10: 9.0 joins [0,10).
    # After 12.0 the watermark is 10: [0,10) fires and 9.5 is late.
    assert [[1.0, 9.0], [11.999999, 12.0]] == contents(out)
    assert 1 == stream.statistics()[0].late


async def test_late_items_routed_to_list_sink() -> None:
    """on_late=list receives one LateItemError per late item, with item, timestamp, watermark."""
    sink: list[LateItemError] = []
    pipe = event_pipe(10, allowed_lateness=1, on_late=sink, name="win")
    stream = pipe.stream([1.0, 9.0, 15.0, 3.0, 16.0, 12.0])
    out = await collect(stream)
    assert [[1.0, 9.0], [15.0, 16.0, 12.0]] == contents(out)
    assert [3.0] == [e.item for e in sink]
    assert [epoch(3)] == [e.timestamp for e in sink]
    assert [epoch(14)] == [e.watermark for e in sink]
    assert ["win"] == [e.pipe for e in sink]
    assert 1 == stream.statistics()[0].late


async def test_late_items_routed_to_callable_and_pipe_sinks() -> None:
    """on_late may be a callable (sync or async) or a pipe; each receives the late records."""
    seen: list[Any] = []

    async def async_sink(err: LateItemError) -> None:
        seen.append(("async", err.item))

    class Recorder(StreamPipe[LateItemError, None]):
        async def process_item(self, item: LateItemError) -> None:
            seen.append(("pipe", item.item))

    items = [1.0, 12.0, 3.0]
    await collect(event_pipe(10, on_late=lambda e: seen.append(("sync", e.item))).stream(items))
    await collect(event_pipe(10, on_late=async_sink).stream(items))
    await collect(event_pipe(10, on_late=Recorder()).stream(items))
    assert [("sync", 3.0), ("async", 3.0), ("pipe", 3.0)] == seen


async def test_late_item_raises_after_earlier_windows_delivered() -> None:
    """on_late="raise": windows fired before the late item are delivered, then LateItemError."""
    pipe = event_pipe(10, on_late="raise", name="win")
    got: list[Window[float]] = []
    stream = pipe.stream([1.0, 2.0, 12.0, 3.0, 14.0])
    with pytest.raises(LateItemError) as info:
        await collect_until_error(stream, got)
    assert [[1.0, 2.0]] == contents(got)
    assert 3.0 == info.value.item
    assert epoch(3) == info.value.timestamp
    assert epoch(12) == info.value.watermark
    assert "win" == info.value.pipe
    assert 1 == stream.statistics()[0].late


async def test_sliding_partly_late_item_only_in_open_windows() -> None:
    """A sliding-window item goes into its windows still open; late only if none is."""
    pipe = event_pipe(10, slide=5)
    stream = pipe.stream([1.0, 11.0, 7.0, 16.0, 8.0])
    out = await collect(stream)
    # 7.0 arrives at watermark 11: [0,10) fired, [5,15) open -> 7.0 joins [5,15) only.
    # 8.0 arrives at watermark 16: both its windows [0,10), [5,15) fired -> late.
    assert [
        (epoch(-5), epoch(5), [1.0]),
        (epoch(0), epoch(10), [1.0]),
        (epoch(5), epoch(15), [11.0, 7.0]),
        (epoch(10), epoch(20), [11.0, 16.0]),
        (epoch(15), epoch(25), [16.0]),
    ] == [(w.start, w.end, list(w)) for w in out]
    assert 1 == stream.statistics()[0].late


# -- event time: idle advance -------------------------------------------------------


async def test_idle_advance_fires_open_window_while_source_is_quiet() -> None:
    """The window fires after (end - max event time + lateness) seconds of quiet."""
    clock = VirtualClock()
    pipe = event_pipe(10, allowed_lateness=2)
    src: TestSource[Any] = TestSource([3.0, 4.5, TestSource.wait(100)], clock=clock)
    out = await collect_timed(pipe.stream(src, clock=clock), clock)
    assert [(10 - 4.5 + 2, [3.0, 4.5])] == [(t, list(w)) for t, w in out]


async def test_idle_advance_counts_from_arrival_of_newest_event() -> None:
    """The quiet time is measured from when the newest event time arrived."""
    clock = VirtualClock()
    pipe = event_pipe(10, allowed_lateness=2)
    w = TestSource.wait
    src: TestSource[Any] = TestSource([4.5, w(1), 3.0, w(2), 6.0, w(100)], clock=clock)
    out = await collect_timed(pipe.stream(src, clock=clock), clock)
    # 6.0 arrives at t=3: the window [0,10) fires at 3 + (10 - 6 + 2) = 9.
    assert [(9.0, [4.5, 3.0, 6.0])] == [(t, list(w)) for t, w in out]


async def test_without_idle_advance_window_fires_only_at_end_of_stream() -> None:
    """idle_advance=False: a quiet source does not move the watermark; the end flushes."""
    clock = VirtualClock()
    pipe = event_pipe(10, allowed_lateness=2, idle_advance=False)
    src: TestSource[Any] = TestSource([3.0, 4.5, TestSource.wait(100)], clock=clock)
    out = await collect_timed(pipe.stream(src, clock=clock), clock)
    assert [(100.0, [3.0, 4.5])] == [(t, list(w)) for t, w in out]


async def test_idle_advance_items_behind_advanced_watermark_are_late() -> None:
    """After idle advance fired a window, an item for it is late, not a reopened window.

    t=0    item 0.5: watermark 0.5, window [0, 1) opens
    t=0.5  watermark 1.0 (idle): [0, 1) fires
    t=0.75 watermark 1.25: item 0.9 is late; item 1.1 opens [1, 2) and becomes the
           newest event: from now the watermark is 1.1 + (t - 0.75), so [1, 2)
           fires at t = 0.75 + 0.9 = 1.65
    """
    clock = VirtualClock()
    sink: list[LateItemError] = []
    pipe = event_pipe(1, on_late=sink)
    src: TestSource[Any] = TestSource(
        [0.5, TestSource.wait(0.75), 0.9, 1.1, TestSource.wait(5)], clock=clock
    )
    out = await collect_timed(pipe.stream(src, clock=clock), clock)
    assert [(0.5, [0.5]), (1.65, [1.1])] == [(round(t, 9), list(w)) for t, w in out]
    assert [(0.9, epoch(1.25))] == [(e.item, e.watermark) for e in sink]


async def test_idle_advance_item_arriving_as_watermark_reaches_window_end_is_late() -> None:
    """An item arriving at the instant the idle watermark reaches its window's end is late.

    event time   0    0.5   1.0
                 |-----*-----|        window [0, 1) holds 0.5 (arrived at t=0)
    t=0.5: watermark = 0.5 + 0.5 s idle = 1.0 >= end -> the window fires;
           item 0.9 arriving now belongs only to that window -> late.
    """
    clock = VirtualClock()
    sink: list[LateItemError] = []
    pipe = event_pipe(1, on_late=sink)
    src: TestSource[Any] = TestSource(
        [0.5, TestSource.wait(0.5), 0.9, TestSource.wait(5)], clock=clock
    )
    stream = pipe.stream(src, clock=clock)
    out = await collect_timed(stream, clock)
    assert [(0.5, [0.5])] == [(t, list(w)) for t, w in out]
    assert [0.9] == [e.item for e in sink]
    assert 1 == stream.statistics()[0].late


async def test_idle_advance_does_not_count_time_busy_processing() -> None:
    """Time the pipe spends busy (here in process_window) is not idle time.

    Max event 1.5 arrives at t=0, so [0, 1) fires at once and the pipe is busy
    until t=5 processing it. Item 1.7 arrives at t=1 while the pipe is busy: the
    watermark has not moved with the clock (1.5 < 2), so 1.7 lands in [1, 2).
    """
    clock = VirtualClock()
    sink: list[LateItemError] = []

    class Slow(WindowedStreamPipe[float, list[float]]):
        async def process_window(self, window: Window[float]) -> list[float]:
            await clock.sleep(5)
            return list(window)

    pipe = Slow(1, timestamp=float, on_late=sink)
    src: TestSource[Any] = TestSource(
        [0.2, 1.5, TestSource.wait(1), 1.7, TestSource.wait(20)], clock=clock
    )
    out = await collect(pipe.stream(src, clock=clock))
    assert [[0.2], [1.5, 1.7]] == out
    assert [] == sink


def lookup_taking(clock: VirtualClock, seconds: dict[float, float]) -> Any:
    """An async stage function that takes ``seconds[item]`` on the clock (0 if absent)."""

    async def lookup(t: float) -> float:
        await clock.sleep(seconds.get(t, 0.0))
        return t

    return lookup


@pytest.mark.parametrize("delay", [0.5, 3.0])
async def test_idle_advance_does_not_count_time_an_upstream_stage_is_busy(delay: float) -> None:
    """A live source sends event 0.9 at t=0.9 and a lookup upstream holds it ``delay``
    seconds: the window waited, but the source was not quiet meanwhile, so the
    watermark stays below 1 and the item lands in [0, 1), however long the lookup.
    """
    clock = VirtualClock()
    src: TestSource[Any] = TestSource(
        [TestSource.at(0.0, 0.0), TestSource.at(0.9, 0.9), TestSource.wait(10)], clock=clock
    )
    pipe = map(lookup_taking(clock, {0.9: delay})) | event_pipe(1)
    stream = pipe.stream(src, clock=clock)
    out = await collect_timed(stream, clock)
    # Then the source is quiet from the lookup's end: 0.1 s more to reach 1.0.
    assert [(0.9 + delay + 0.1, [0.0, 0.9])] == [(round(t, 9), list(w)) for t, w in out]
    assert 0 == stream.statistics()[-1].late


@pytest.mark.parametrize(
    ("lateness", "windows", "late"), [(0.0, [[0.0]], 1), (0.5, [[0.0, 0.9]], 0)]
)
async def test_idle_advance_behind_a_buffered_stage_needs_lateness_for_its_latency(
    lateness: float, windows: list[list[float]], late: int
) -> None:
    """A concurrent stage takes event 0.9 from the source at t=0.9 and holds it 0.5 s
    while the source is quiet: that quiet time counts, so the window [0, 1) fires at
    t=1 and the item is late, unless allowed_lateness covers the stage's latency."""
    clock = VirtualClock()
    src: TestSource[Any] = TestSource(
        [TestSource.at(0.0, 0.0), TestSource.at(0.9, 0.9), TestSource.wait(10)], clock=clock
    )
    stage = map(lookup_taking(clock, {0.9: 0.5}), concurrency=2)
    stream = (stage | event_pipe(1, allowed_lateness=lateness)).stream(src, clock=clock)
    out = await collect(stream)
    assert windows == contents(out)
    assert late == stream.statistics()[-1].late


async def test_idle_advance_counts_a_quiet_source_behind_a_slow_stage_from_its_last_item() -> None:
    """The item reaches the window 2 s late; the source is quiet from then on, and the
    window [0, 1) holding event 0.5 fires 0.5 s of quiet later."""
    clock = VirtualClock()
    src: TestSource[Any] = TestSource([0.5, TestSource.wait(100)], clock=clock)
    pipe = map(lookup_taking(clock, {0.5: 2.0})) | event_pipe(1)
    out = await collect_timed(pipe.stream(src, clock=clock), clock)
    assert [(2.5, [0.5])] == [(t, list(w)) for t, w in out]


async def test_a_sync_source_never_advances_the_watermark_by_idleness() -> None:
    """A sync source always has its next item at hand: however long a stage upstream
    takes (here 5 s on event 0.9, read in a chunk after the zeros), the watermark
    moves only with event times, and nothing is late."""
    clock = VirtualClock()
    pipe = map(lookup_taking(clock, {0.9: 5.0})) | event_pipe(1)
    stream = pipe.stream([0.0] * MAX_CHUNK + [0.9, 5.0], clock=clock)
    out = await collect(stream)
    assert [[0.0] * MAX_CHUNK + [0.9], [5.0]] == contents(out)
    assert 0 == stream.statistics()[-1].late


# -- keys, flush, order --------------------------------------------------------------


async def test_keyed_event_time_windows_independent_per_key() -> None:
    """Each key collects its own items; same-span windows fire in creation order."""
    pipe: WindowedStreamPipe[Event, Window[Event]] = WindowedStreamPipe(
        10, timestamp=ts_of, key=key_of
    )
    items: list[Event] = [(1, "a"), (2, "b"), (5, "a"), (12, "b"), (15, "a")]
    out = await collect(pipe.stream(items))
    assert [
        (epoch(0), epoch(10), "a", [(1, "a"), (5, "a")]),
        (epoch(0), epoch(10), "b", [(2, "b")]),
        (epoch(10), epoch(20), "b", [(12, "b")]),
        (epoch(10), epoch(20), "a", [(15, "a")]),
    ] == spans(out)


async def test_idle_key_window_fires_while_other_key_continues() -> None:
    """A key that stops sending has its window fired by the watermark of other keys' events."""
    pipe: WindowedStreamPipe[Event, Window[Event]] = WindowedStreamPipe(
        10, timestamp=ts_of, key=key_of, idle_advance=False
    )
    items: list[Event] = [(1, "quiet"), (2, "busy"), (11, "busy"), (21, "busy"), (31, "busy")]
    got: list[tuple[Any, datetime]] = []
    stream = pipe.stream(agen(items), clock=VirtualClock())
    async with stream:
        async for w in stream:
            got.append((w.key, w.start))
    assert [
        ("quiet", epoch(0)),
        ("busy", epoch(0)),
        ("busy", epoch(10)),
        ("busy", epoch(20)),
        ("busy", epoch(30)),
    ] == got


async def test_end_of_stream_flushes_open_windows_in_order_of_end() -> None:
    """At the end every open window is emitted, by end, then start, then creation."""
    pipe: WindowedStreamPipe[Event, Window[Event]] = WindowedStreamPipe(
        10, timestamp=ts_of, key=key_of, allowed_lateness=1000
    )
    items: list[Event] = [(25, "x"), (5, "y"), (15, "x"), (7, "x"), (26, "y")]
    out = await collect(pipe.stream(items))
    assert [
        (epoch(0), "y"),
        (epoch(0), "x"),
        (epoch(10), "x"),
        (epoch(20), "x"),
        (epoch(20), "y"),
    ] == [(w.start, w.key) for w in out]


async def test_window_attributes_are_aware_utc_and_key() -> None:
    """Window.start/.end are timezone-aware UTC datetimes and .key is the item key (or None)."""
    keyed_pipe: WindowedStreamPipe[Event, Window[Event]] = WindowedStreamPipe(
        timedelta(minutes=1), timestamp=ts_of, key=key_of
    )
    keyed = await collect(keyed_pipe.stream([(90.0, "k")]))
    plain = await collect(event_pipe(60).stream([90.0]))
    both: list[Window[Any]] = [*keyed, *plain]
    for w in both:
        assert timedelta(0) == w.start.utcoffset()
        assert timedelta(0) == w.end.utcoffset()
        assert (epoch(60), epoch(120)) == (w.start, w.end)
        assert isinstance(w, list)
    assert ["k", None] == [keyed[0].key, plain[0].key]


async def test_timestamps_as_datetimes_and_epoch_numbers_agree() -> None:
    """Aware datetimes, epoch floats and epoch ints give the same windows."""
    secs = [1, 12, 9, 25]
    dt_pipe: WindowedStreamPipe[datetime, Window[datetime]] = WindowedStreamPipe(
        10, timestamp=lambda d: d, allowed_lateness=5
    )
    as_dt = await collect(dt_pipe.stream([epoch(s) for s in secs]))
    as_float: list[Window[float]] = await collect(
        event_pipe(10, allowed_lateness=5).stream([float(s) for s in secs])
    )
    int_pipe: WindowedStreamPipe[int, Window[int]] = WindowedStreamPipe(
        10, timestamp=lambda i: i, allowed_lateness=5
    )
    as_int = await collect(int_pipe.stream(secs))
    expected = [(epoch(0), epoch(10)), (epoch(10), epoch(20)), (epoch(20), epoch(30))]
    assert expected == [(w.start, w.end) for w in as_dt]
    assert expected == [(w.start, w.end) for w in as_float]
    assert expected == [(w.start, w.end) for w in as_int]
    assert [[1, 9], [12], [25]] == contents(as_int)


async def test_non_utc_aware_datetimes_are_converted() -> None:
    """An aware datetime in another zone is placed by its absolute instant."""
    plus2 = timezone(timedelta(hours=2))
    item = datetime(1970, 1, 1, 2, 0, 15, tzinfo=plus2)  # 15 s after the epoch
    pipe: WindowedStreamPipe[datetime, Window[datetime]] = WindowedStreamPipe(
        10, timestamp=lambda d: d
    )
    out = await collect(pipe.stream([item]))
    assert [(epoch(10), epoch(20))] == [(w.start, w.end) for w in out]


# -- overrides ----------------------------------------------------------------------


async def test_aggregate_window_override_counts_per_window() -> None:
    """aggregate_window turns each window into one result: here its item count."""
    pipe = CountPerWindow(10, timestamp=float)
    assert [3, 1, 2] == await collect(pipe.stream([1.0, 2.0, 3.0, 15.0, 31.0, 39.0]))


async def test_process_window_override() -> None:
    """An async process_window receives the Window and its result is emitted."""
    pipe = Summary(10, timestamp=ts_of, key=key_of)
    items: list[Event] = [(1, "a"), (2, "a"), (3, "b"), (14, "a")]
    assert [("a", epoch(0), 2), ("b", epoch(0), 1), ("a", epoch(10), 1)] == await collect(
        pipe.stream(items)
    )


async def test_timestamp_errors_skipped_and_counted() -> None:
    """A failing timestamp fn under on_error="skip" drops that item and counts it as skipped."""

    def ts(x: Any) -> float:
        return float(x)  # "bad" raises ValueError

    pipe: WindowedStreamPipe[Any, Window[Any]] = WindowedStreamPipe(
        10, timestamp=ts, on_error="skip"
    )
    stream = pipe.stream([1.0, "bad", 2.0, 12.0])
    out = await collect(stream)
    assert [[1.0, 2.0], [12.0]] == contents(out)
    [stats] = stream.statistics()
    assert (1, 1, 0) == (stats.skipped, stats.errors, stats.late)


async def test_key_errors_skipped_and_counted() -> None:
    """A failing key fn under on_error="skip" drops that item and counts it."""

    def key(e: Event) -> str:
        if e[1] == "bad":
            raise KeyError(e)
        return e[1]

    pipe: WindowedStreamPipe[Event, Window[Event]] = WindowedStreamPipe(
        10, timestamp=ts_of, key=key, on_error="skip"
    )
    stream = pipe.stream([(1, "a"), (2, "bad"), (3, "a")])
    out = await collect(stream)
    assert [[(1, "a"), (3, "a")]] == contents(out)
    assert 1 == stream.statistics()[0].skipped


async def test_timestamp_error_raise_gives_stream_error_after_earlier_windows() -> None:
    """Under "raise" a failing timestamp fn ends the stream with StreamError for that item."""

    def ts(x: Any) -> float:
        return float(x)

    pipe: WindowedStreamPipe[Any, Window[Any]] = WindowedStreamPipe(10, timestamp=ts)
    got: list[Window[Any]] = []
    with pytest.raises(StreamError) as info:
        await collect_until_error(pipe.stream([1.0, 12.0, "bad", 13.0]), got)
    assert [[1.0]] == contents(got)
    assert "bad" == info.value.item
    assert isinstance(info.value.__cause__, ValueError)


async def test_process_window_failure_raises_stream_error_with_window_as_item() -> None:
    """A failing process_window under "raise": earlier windows first, then StreamError(Window)."""
    pipe = FailOn(12.0, name="failing")
    got: list[list[float]] = []
    with pytest.raises(StreamError) as info:
        await collect_until_error(pipe.stream([1.0, 12.0, 25.0, 33.0]), got)
    assert [[1.0]] == got
    failed = info.value.item
    assert isinstance(failed, Window)
    assert [12.0] == list(failed)
    assert (epoch(10), epoch(20)) == (failed.start, failed.end)
    assert "failing" == info.value.pipe
    assert isinstance(info.value.__cause__, RuntimeError)


async def test_process_window_failure_skipped() -> None:
    """Under "skip" a failing window leaves no result; later windows still come."""
    pipe = FailOn(12.0, on_error="skip")
    stream = pipe.stream([1.0, 12.0, 25.0])
    assert [[1.0], [25.0]] == await collect(stream)
    [stats] = stream.statistics()
    assert (1, 1) == (stats.skipped, stats.errors)
    assert 3 == stats.windows_fired


async def test_count_windows_filled_before_a_failing_key_are_delivered() -> None:
    """Under "raise", full count windows before a failing key= call come out, then StreamError."""

    def key(x: int) -> str:
        if x == 5:
            raise ValueError("bad key")
        return "k"

    pipe: WindowedStreamPipe[int, Window[int]] = WindowedStreamPipe(count=2, key=key)
    got: list[Window[int]] = []
    with pytest.raises(StreamError) as info:
        await collect_until_error(pipe.stream([1, 2, 3, 4, 5, 6]), got)
    assert [[1, 2], [3, 4]] == contents(got)
    assert 5 == info.value.item


async def test_count_windows_filled_before_a_failing_timestamp_are_delivered() -> None:
    """In event time too, count windows full before the failed item are delivered first."""

    def ts(x: int) -> float:
        if x == 5:
            raise ValueError("bad timestamp")
        return float(x)

    got: list[Window[int]] = []
    with pytest.raises(StreamError) as info:
        await collect_until_error(
            WindowedStreamPipe(count=2, timestamp=ts).stream(range(1, 7)), got
        )
    assert [[1, 2], [3, 4]] == contents(got)
    assert 5 == info.value.item


async def test_unhashable_key_is_an_item_error_under_the_policy() -> None:
    """A key= result that cannot be a dict key fails its item: skipped, or a StreamError
    whose TypeError cause names key= and the value's type."""
    items: list[tuple[float, Any]] = [(0.1, "a"), (0.2, ["oops"]), (0.3, "a")]

    def make(on_error: Any) -> WindowedStreamPipe[tuple[float, Any], Window[tuple[float, Any]]]:
        return WindowedStreamPipe(
            1.0,
            timestamp=lambda e: e[0],
            key=lambda e: e[1],
            idle_advance=False,
            on_error=on_error,
        )

    stream = make("skip").stream(items)
    assert [[(0.1, "a"), (0.3, "a")]] == contents(await collect(stream))
    assert (1, 1) == (stream.statistics()[0].skipped, stream.statistics()[0].errors)

    with pytest.raises(StreamError) as info:
        await collect(make("raise").stream(items))
    assert (0.2, ["oops"]) == info.value.item
    assert isinstance(info.value.__cause__, TypeError)
    assert "key= must return a hashable value, got list" in str(info.value.__cause__)


async def test_unhashable_key_in_processing_time_is_an_item_error() -> None:
    """Without timestamp= too, an unhashable key goes to the policy, not out of the stream."""
    failed: list[StreamError] = []
    pipe: WindowedStreamPipe[Any, Window[Any]] = WindowedStreamPipe(
        count=2, key=lambda x: x, on_error=DeadLetter(failed)
    )
    assert [[1, 1], [2]] == contents(await collect(pipe.stream([1, {"a": 1}, 1, 2])))
    assert [{"a": 1}] == [e.item for e in failed]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"window_size": 1.0},
        {"window_size": 1.0, "allowed_lateness": 5},
        {"window_size": 2.0, "slide": 1.0},
        {"session_gap": 0.5},
        {"count": 2},
    ],
)
@pytest.mark.parametrize(
    "times",
    [
        [0.5, 0.2, 1.5, 1.7, 3.2],  # out of order: the tumbling fast path gives up
        [0.1, 0.2, 1.5, 2.5, 3.5],  # in order: the fast path takes the chunk
        [0.1, "bad", 1.5, float("nan"), 0.7],  # failures in the middle
    ],
)
async def test_timestamp_and_key_are_called_once_per_item(
    kwargs: dict[str, Any], times: list[Any]
) -> None:
    """Each item's timestamp= and key= are called exactly once, whatever path the chunk takes."""
    items = [(t, "ab"[i % 2], i) for i, t in enumerate(times)]
    ts_calls: Counter[int] = Counter()
    key_calls: Counter[int] = Counter()

    def ts(e: tuple[Any, str, int]) -> float:
        ts_calls[e[2]] += 1
        return float(e[0])

    def key(e: tuple[Any, str, int]) -> str:
        key_calls[e[2]] += 1
        return e[1]

    pipe: WindowedStreamPipe[Any, Window[Any]] = WindowedStreamPipe(
        timestamp=ts, key=key, idle_advance=False, on_error="skip", **kwargs
    )
    await collect(pipe.stream(items))
    assert {i: 1 for i in range(len(items))} == ts_calls
    assert {i: 1 for i in range(len(items))} == key_calls


async def test_key_is_called_once_per_item_in_processing_time() -> None:
    """Without timestamp=, key= runs once per item too, failures included."""
    calls: Counter[int] = Counter()

    def key(x: int) -> int:
        calls[x] += 1
        return 1 // x  # 0 fails

    pipe: WindowedStreamPipe[int, Window[int]] = WindowedStreamPipe(
        count=2, key=key, on_error="skip"
    )
    assert [[1, 1], [2]] == contents(await collect(pipe.stream([1, 0, 1, 2])))
    assert {1: 2, 0: 1, 2: 1} == calls


async def test_nan_timestamp_error_says_what_is_wrong() -> None:
    """A NaN event time fails its item with a message saying event times must be finite."""
    pipe = event_pipe(10)
    with pytest.raises(StreamError) as info:
        await collect(pipe.stream([1.0, float("nan")]))
    assert isinstance(info.value.__cause__, ValueError)
    assert "finite" in str(info.value.__cause__)


# -- event times beyond what a datetime can hold --------------------------------------

MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z in epoch milliseconds
LAST = datetime.max.replace(tzinfo=UTC)  # the last instant a datetime holds


def ms_or_seconds(e: tuple[str, float]) -> float:
    """Events stamped ("s", epoch seconds) or ("ms", epoch milliseconds), taken as seconds."""
    return e[1]


WINDOW_KINDS: dict[str, dict[str, Any]] = {
    "tumbling": {"window_size": 60},
    "sliding": {"window_size": 60, "slide": 30},
    "session": {"session_gap": 60},
    "count": {"count": 2},
}


@pytest.mark.parametrize("kind", WINDOW_KINDS)
@pytest.mark.parametrize("ms", [MS, float(MS)])
async def test_epoch_milliseconds_are_an_item_error_that_suggests_dividing_by_1000(
    kind: str, ms: float
) -> None:
    """An event time in milliseconds, taken as seconds, lies past the year 9999: the item
    fails under the policy, with a message naming the value and the likely unit."""
    pipe: WindowedStreamPipe[Any, Window[Any]] = WindowedStreamPipe(
        timestamp=ms_or_seconds, **WINDOW_KINDS[kind]
    )
    got: list[Window[Any]] = []
    with pytest.raises(StreamError) as info:
        await collect_until_error(pipe.stream([("s", MS / 1000), ("ms", ms)]), got)
    assert ("ms", ms) == info.value.item
    cause = info.value.__cause__
    assert isinstance(cause, ValueError)
    assert (
        "an event time in epoch seconds must lie within datetime's range (years 1 to 9999), "
        f"got {ms!r}, about the year 57,971: if it is in milliseconds, divide it by 1,000"
    ) == str(cause)
    assert [] == contents(got)  # the window of the good item was open: not flushed


@pytest.mark.parametrize("kind", WINDOW_KINDS)
async def test_out_of_range_event_times_are_skipped_and_counted(kind: str) -> None:
    """on_error="skip": items stamped in milliseconds are skipped and counted; the others
    form their windows, whose bounds are readable datetimes."""
    pipe: WindowedStreamPipe[Any, Window[Any]] = WindowedStreamPipe(
        timestamp=ms_or_seconds, on_error="skip", **WINDOW_KINDS[kind]
    )
    events = [("s", 1.0), ("ms", MS), ("s", 2.0), ("ms", MS + 1000), ("s", 3.0)]
    stream = pipe.stream(events)
    out = await collect(stream)
    assert [("s", 1.0), ("s", 2.0), ("s", 3.0)] == sorted({e for w in out for e in w})
    assert all(epoch(-60) <= w.start <= w.end <= epoch(120) for w in out)
    [stats] = stream.statistics()
    assert (2, 2) == (stats.skipped, stats.errors)


async def test_out_of_range_event_times_go_to_dead_letters_and_retries() -> None:
    """Under DeadLetter the item goes to the sink with the error; under Retry the
    timestamp function is called again and a good event time is taken."""
    dead: list[StreamError] = []
    pipe: WindowedStreamPipe[Any, Window[Any]] = WindowedStreamPipe(
        60, timestamp=ms_or_seconds, on_error=DeadLetter(dead)
    )
    stream = pipe.stream([("s", 1.0), ("ms", MS)])
    assert [[("s", 1.0)]] == contents(await collect(stream))
    assert [("ms", MS)] == [e.item for e in dead]
    assert "divide it by 1,000" in str(dead[0].__cause__)
    assert 1 == stream.statistics()[0].dead_lettered

    calls: Counter[float] = Counter()

    def seconds_on_second_call(t: float) -> float:
        calls[t] += 1
        return t * 1000 if calls[t] == 1 else t  # milliseconds, then the right unit

    retried: WindowedStreamPipe[float, Window[float]] = WindowedStreamPipe(
        60, timestamp=seconds_on_second_call, on_error=Retry(attempts=2, backoff=0, jitter=0)
    )
    stream = retried.stream([MS / 1000])
    out = await collect(stream)
    assert [(wall(0), [MS / 1000])] == [(w.start, list(w)) for w in out]
    assert 1 == stream.statistics()[0].retries


async def test_microseconds_and_far_values_are_named_in_the_error() -> None:
    """Epoch microseconds suggest dividing by 1,000,000; a value no unit explains says
    how far beyond the range it is; a huge int is described by its size."""
    messages = []
    for raw in (MS * 1000, -1e300, 10**400):
        with pytest.raises(StreamError) as info:
            await collect(event_pipe_of(lambda _, raw=raw: raw).stream([0]))
        messages.append(str(info.value.__cause__))
    assert messages[0].endswith(
        "got 1767225600000000, about the year 56,003,120: "
        "if it is in microseconds, divide it by 1,000,000"
    )
    assert messages[1].endswith("got -1e+300, far before the year 1")
    assert messages[2].endswith("got an int of about 401 digits, far after the year 9999")


def event_pipe_of(timestamp: Any) -> WindowedStreamPipe[Any, Window[Any]]:
    return WindowedStreamPipe(60, timestamp=timestamp)


async def test_datetimes_whose_window_would_end_past_datetime_max_are_item_errors() -> None:
    """A datetime within an hour of datetime.max has no room for its one-hour window: an
    item error naming it; one whose window fits gives a window ending on the hour."""
    near = datetime(9999, 12, 31, 23, 30, tzinfo=UTC)
    fits = datetime(9999, 12, 31, 22, 30, tzinfo=UTC)
    pipe: WindowedStreamPipe[datetime, Window[datetime]] = WindowedStreamPipe(
        3600, timestamp=lambda d: d, on_error="skip"
    )
    stream = pipe.stream([fits, near])
    out = await collect(stream)
    assert [(fits.replace(minute=0), fits.replace(hour=23, minute=0), [fits])] == [
        (w.start, w.end, list(w)) for w in out
    ]
    assert 1 == stream.statistics()[0].skipped
    strict: WindowedStreamPipe[datetime, Window[datetime]] = WindowedStreamPipe(
        3600, timestamp=lambda d: d
    )
    with pytest.raises(StreamError) as info:
        await collect(strict.stream([near]))
    assert (
        "an event time must leave room for its windows within datetime's range "
        "(years 1 to 9999), got 9999-12-31T23:30:00+00:00, closer to the end of that range "
        "than the window size (1:00:00)"
    ) == str(info.value.__cause__)


async def test_an_aware_datetime_before_year_1_in_utc_is_an_item_error() -> None:
    """datetime.min in UTC+5 is before the year 1 in UTC: an item error saying so."""
    first = datetime.min.replace(tzinfo=timezone(timedelta(hours=5)))
    pipe: WindowedStreamPipe[datetime, Window[datetime]] = WindowedStreamPipe(
        count=1, timestamp=lambda d: d
    )
    with pytest.raises(StreamError) as info:
        await collect(pipe.stream([first]))
    assert (
        "an event time must lie within datetime's range (years 1 to 9999 in UTC), "
        "got 0001-01-01T00:00:00+05:00, which is before it in UTC"
    ) == str(info.value.__cause__)


async def test_count_windows_hold_the_last_instant_a_datetime_can() -> None:
    """Count windows span their items only: datetime.max is a valid event time."""
    pipe: WindowedStreamPipe[datetime, Window[datetime]] = WindowedStreamPipe(
        count=1, timestamp=lambda d: d
    )
    out = await collect(pipe.stream([LAST]))
    assert [(LAST, LAST)] == [(w.start, w.end) for w in out]


async def test_a_late_item_reports_a_watermark_past_datetime_max_as_datetime_max() -> None:
    """Idle advance may take the watermark past the last instant a datetime holds; a
    late item then reports that instant as the watermark."""
    clock = VirtualClock()
    base = LAST.replace(second=0, microsecond=0) - timedelta(seconds=2)
    sink: list[LateItemError] = []
    pipe: WindowedStreamPipe[datetime, Window[datetime]] = WindowedStreamPipe(
        1, timestamp=lambda d: d, on_late=sink
    )
    src: TestSource[Any] = TestSource([base, TestSource.wait(120), base], clock=clock)
    out = await collect(pipe.stream(src, clock=clock))
    assert [[base]] == contents(out)
    assert [(base, base, LAST)] == [(e.item, e.timestamp, e.watermark) for e in sink]


# -- runs, metrics ---------------------------------------------------------------------


async def test_window_state_belongs_to_each_run() -> None:
    """Streaming the same pipe twice starts from empty windows each time."""
    pipe = event_pipe(10)
    first = await collect(pipe.stream([1.0, 2.0]))
    second = await collect(pipe.stream([3.0, 4.0]))
    assert [[1.0, 2.0]] == contents(first)
    assert [[3.0, 4.0]] == contents(second)


async def test_concurrent_runs_of_one_pipe_keep_separate_windows() -> None:
    """Two runs of one pipe at once, interleaved on one clock, never mix their items."""
    clock = VirtualClock()
    pipe: WindowedStreamPipe[str, Window[str]] = WindowedStreamPipe(1.0)
    w = TestSource.wait
    one: TestSource[Any] = TestSource(["a1", w(0.3), "a2", w(1), "a3", w(2)], clock=clock)
    two: TestSource[Any] = TestSource(["b1", w(0.5), "b2", w(1), "b3", w(2)], clock=clock)
    first, second = await asyncio.gather(
        collect(pipe.stream(one, clock=clock)), collect(pipe.stream(two, clock=clock))
    )
    assert [["a1", "a2"], ["a3"]] == contents(first)
    assert [["b1", "b2"], ["b3"]] == contents(second)


async def test_metrics_windows_open_and_fired() -> None:
    """windows_open counts windows holding items now; windows_fired counts emitted windows."""
    pipe = event_pipe(10)
    stream = pipe.stream([1.0, 11.0, 21.0])
    seen: list[tuple[int, int]] = []
    async with stream:
        async for _ in stream:
            s = stream.statistics()[0]
            seen.append((s.windows_open, s.windows_fired))
    assert (1, 2) == seen[0]
    [final] = stream.statistics()
    assert (0, 3) == (final.windows_open, final.windows_fired)


async def test_held_items_are_not_acked_until_their_window_is_delivered() -> None:
    """Acks do not pass items still held in an open window."""
    clock = VirtualClock()
    pipe: WindowedStreamPipe[str, Window[str]] = WindowedStreamPipe(1.0)
    src: TestSource[Any] = TestSource(
        ["a", "b", TestSource.at(1.5, "c"), TestSource.wait(3)], clock=clock
    )
    acked_at_delivery: list[int] = []
    async with pipe.stream(src, clock=clock) as stream:
        async for _ in stream:
            acked_at_delivery.append(src.acked)
    assert [0, 2] == acked_at_delivery
    assert 3 == src.acked


async def test_chunk_with_failing_key_is_not_acked() -> None:
    """After a key= failure under "raise", acks stop before the chunk it happened in."""

    def key(x: str) -> str:
        if x == "bad":
            raise ValueError("bad key")
        return "k"

    clock = VirtualClock()
    src: TestSource[Any] = TestSource(["a", TestSource.wait(5), "bad", "c", "d"], clock=clock)
    pipe: WindowedStreamPipe[str, Window[str]] = WindowedStreamPipe(1.0, key=key)
    got: list[Window[str]] = []
    with pytest.raises(StreamError):
        await collect_until_error(pipe.stream(src, clock=clock), got)
    assert [["a"]] == contents(got)
    assert 1 == src.acked  # "bad", "c" and "d" are read again


async def test_late_item_raised_is_not_acked() -> None:
    """on_late="raise": nothing from the late item's chunk on is acked."""
    src = TestSource([0.5, 2.5, 0.7, 2.6, 2.7])
    pipe: WindowedStreamPipe[float, Window[float]] = WindowedStreamPipe(
        1.0, timestamp=float, idle_advance=False, on_late="raise"
    )
    with pytest.raises(LateItemError):
        await collect(pipe.stream(src))
    assert 0 == src.acked  # one chunk, and it failed


async def test_failed_window_holds_acks_back() -> None:
    """A window whose process_window failed was not delivered: acks stop before its items."""
    pipe = FailOn(15.0, idle_advance=False)
    src = TestSource([5.0, 15.0, 25.0, 35.0], one_by_one=True)
    got: list[list[float]] = []
    with pytest.raises(StreamError):
        await collect_until_error(pipe.stream(src), got)
    assert [[5.0]] == got
    assert 1 == src.acked  # 15.0, the second item, is in the failed window


async def test_window_failing_at_the_end_of_the_stream_is_not_acked() -> None:
    """A window flushed at the end that fails holds back the acks of its items."""
    pipe = FailOn(15.0, idle_advance=False)
    src = TestSource([5.0, 15.0, 16.0], one_by_one=True)
    got: list[list[float]] = []
    with pytest.raises(StreamError):
        await collect_until_error(pipe.stream(src), got)
    assert [[5.0]] == got
    assert 1 == src.acked


# -- count windows and sessions ---------------------------------------------------------


async def test_count_windows_per_key_processing_time() -> None:
    """count=2 per key: each key's every two items make a window, start/end their arrival times."""
    clock = VirtualClock()
    pipe: WindowedStreamPipe[Event, Window[Event]] = WindowedStreamPipe(count=2, key=key_of)
    at = TestSource.at
    src: TestSource[Any] = TestSource(
        [at(0, (0, "a")), at(1, (1, "b")), at(2, (2, "a")), at(3, (3, "b")), at(4, (4, "a"))],
        clock=clock,
    )
    out = await collect_timed(pipe.stream(src, clock=clock), clock)
    assert [
        (2.0, "a", wall(0), wall(2), [(0, "a"), (2, "a")]),
        (3.0, "b", wall(1), wall(3), [(1, "b"), (3, "b")]),
        (4.0, "a", wall(4), wall(4), [(4, "a")]),
    ] == [(t, w.key, w.start, w.end, list(w)) for t, w in out]


async def test_count_windows_event_time_span_first_to_last_item() -> None:
    """With timestamps, a count window's start/end are the first and last items' event times."""
    pipe = event_pipe_count(3)
    out = await collect(pipe.stream([5.0, 2.0, 9.0, 1.0]))
    assert [(epoch(5), epoch(9), [5.0, 2.0, 9.0]), (epoch(1), epoch(1), [1.0])] == [
        (w.start, w.end, list(w)) for w in out
    ]
    assert [] == [w for w in out if w.key is not None]


def event_pipe_count(count: int) -> WindowedStreamPipe[float, Window[float]]:
    return WindowedStreamPipe(count=count, timestamp=float)


async def test_session_windows_processing_time_fire_after_gap_of_quiet() -> None:
    """A session closes `gap` after its last item while the source is quiet."""
    clock = VirtualClock()
    pipe: WindowedStreamPipe[str, Window[str]] = WindowedStreamPipe(session_gap=2)
    at = TestSource.at
    src: TestSource[Any] = TestSource(
        ["a", at(1, "b"), at(2.5, "c"), at(10, "d"), TestSource.end()], clock=clock
    )
    out = await collect_timed(pipe.stream(src, clock=clock), clock)
    assert [
        (4.5, wall(0), wall(4.5), ["a", "b", "c"]),
        (10.0, wall(10), wall(12), ["d"]),
    ] == [(t, w.start, w.end, list(w)) for t, w in out]


async def test_session_windows_event_time_keyed() -> None:
    """Per key, events closer than the gap form one session [first, last + gap)."""
    pipe: WindowedStreamPipe[Event, Window[Event]] = WindowedStreamPipe(
        session_gap=timedelta(seconds=5), timestamp=ts_of, key=key_of
    )
    items: list[Event] = [(0, "a"), (3, "b"), (4, "a"), (20, "a"), (21, "b")]
    out = await collect(pipe.stream(items))
    assert [
        ("b", epoch(3), epoch(8), [(3, "b")]),
        ("a", epoch(0), epoch(9), [(0, "a"), (4, "a")]),
        ("a", epoch(20), epoch(25), [(20, "a")]),
        ("b", epoch(21), epoch(26), [(21, "b")]),
    ] == [(w.key, w.start, w.end, list(w)) for w in out]


async def test_session_bridging_item_merges_sessions_end_to_end() -> None:
    """An out-of-order item within gap of two sessions merges them into one window."""
    pipe: WindowedStreamPipe[float, Window[float]] = WindowedStreamPipe(
        session_gap=5, timestamp=float, allowed_lateness=10
    )
    stream = pipe.stream([0.0, 8.0, 4.0, 40.0])
    out = await collect(stream)
    assert [(epoch(0), epoch(13)), (epoch(40), epoch(45))] == [(w.start, w.end) for w in out]
    assert [[0.0, 4.0, 8.0], [40.0]] == [sorted(w) for w in out]
    assert 2 == stream.statistics()[0].windows_fired


async def test_session_new_session_behind_watermark_is_late() -> None:
    """An event whose own session would already have ended before the watermark is late."""
    pipe: WindowedStreamPipe[float, Window[float]] = WindowedStreamPipe(
        session_gap=5, timestamp=float
    )
    stream = pipe.stream([0.0, 20.0, 10.0, 16.0])
    out = await collect(stream)
    # 10.0: new session [10, 15), end 15 <= watermark 20 -> late.
    # 16.0: touches the open session [20, 25) -> joins it.
    assert [(epoch(0), epoch(5), [0.0]), (epoch(16), epoch(25), [20.0, 16.0])] == [
        (w.start, w.end, list(w)) for w in out
    ]
    assert 1 == stream.statistics()[0].late


# -- validation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"window_size": 1, "session_gap": 1},
        {"window_size": 1, "count": 3},
        {"session_gap": 1, "count": 3},
        {"window_size": 0},
        {"window_size": -1},
        {"window_size": timedelta(0)},
        {"window_size": timedelta(seconds=-1)},
        {"session_gap": 0},
        {"session_gap": -2.5},
        {"count": 0},
        {"count": -1},
        {"window_size": 1, "slide": 2},
        {"window_size": 1, "slide": 0},
        {"window_size": 1, "slide": -0.5},
        {"count": 3, "slide": 1},
        {"session_gap": 3, "slide": 1},
        {"window_size": 1, "on_late": "ignore"},
        {"window_size": 1, "on_late": 42},
        {"window_size": 1, "allowed_lateness": -1},
    ],
)
def test_invalid_settings_rejected(kwargs: dict[str, Any]) -> None:
    """Bad combinations or values of window settings raise ValueError at construction."""
    with pytest.raises(ValueError, match=r"\S"):
        WindowedStreamPipe(**kwargs)


def test_invalid_types_rejected() -> None:
    """Durations of the wrong type and non-callable timestamp/key raise TypeError."""
    with pytest.raises(TypeError):
        WindowedStreamPipe("1s")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        WindowedStreamPipe(1, timestamp="ts")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        WindowedStreamPipe(1, key=3)  # type: ignore[arg-type]


def test_count_must_be_an_int() -> None:
    """count=True or 2.5 is not a count."""
    with pytest.raises(ValueError, match="count"):
        WindowedStreamPipe(count=True)
    with pytest.raises(ValueError, match="count"):
        WindowedStreamPipe(count=2.5)  # type: ignore[arg-type]


def test_valid_settings_accepted() -> None:
    """slide equal to size, zero lateness and timedelta durations are fine."""
    WindowedStreamPipe(timedelta(seconds=2), slide=timedelta(seconds=2))
    WindowedStreamPipe(1.5, slide=0.5, allowed_lateness=0, offset=0.25)
    WindowedStreamPipe(session_gap=timedelta(milliseconds=1))
    WindowedStreamPipe(count=1)


async def test_naive_datetime_from_timestamp_is_an_error() -> None:
    """A timestamp fn returning a naive datetime fails the item: StreamError from ValueError."""
    naive = datetime(2026, 1, 1)  # noqa: DTZ001
    pipe: WindowedStreamPipe[int, Window[int]] = WindowedStreamPipe(10, timestamp=lambda _: naive)
    with pytest.raises(StreamError) as info:
        await collect(pipe.stream([1]))
    assert 1 == info.value.item
    assert isinstance(info.value.__cause__, ValueError)


async def test_timestamp_of_wrong_type_is_an_error() -> None:
    """A timestamp fn returning neither datetime nor number fails with a TypeError cause."""
    pipe: WindowedStreamPipe[str, Window[str]] = WindowedStreamPipe(
        10,
        timestamp=lambda s: s,  # type: ignore[arg-type,return-value]
    )
    with pytest.raises(StreamError) as info:
        await collect(pipe.stream(["2026-01-01"]))
    assert isinstance(info.value.__cause__, TypeError)


async def test_negative_offset_is_taken_modulo_the_size() -> None:
    """offset=-8h on daily windows (days from midnight in UTC+8, 16:00 UTC) is offset=16h."""
    day = timedelta(days=1)
    times = [epoch(h * 3600) for h in (1, 7, 8, 20, 31, 33)]
    windows = []
    for offset in (timedelta(hours=-8), timedelta(hours=16)):
        pipe: WindowedStreamPipe[datetime, Window[datetime]] = WindowedStreamPipe(
            day, offset=offset, timestamp=lambda t: t, idle_advance=False
        )
        windows.append(spans(await collect(pipe.stream(times))))
    minus_eight, sixteen = windows
    assert sixteen == minus_eight
    assert [
        (epoch(-8 * 3600), [epoch(h * 3600) for h in (1, 7, 8)]),
        (epoch(16 * 3600), [epoch(h * 3600) for h in (20, 31, 33)]),
    ] == [(start, items) for start, _, _, items in minus_eight]


@pytest.mark.parametrize("kwargs", [{"session_gap": 5}, {"count": 3}])
def test_offset_applies_to_time_windows_only(kwargs: dict[str, Any]) -> None:
    """offset= with session or count windows raises ValueError, as slide= does."""
    with pytest.raises(ValueError, match="offset= applies to time windows"):
        WindowedStreamPipe(offset=timedelta(hours=1), **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"allowed_lateness": 5}, "allowed_lateness"),
        ({"on_late": "raise"}, "on_late"),
        ({"on_late": []}, "on_late"),
        ({"idle_advance": False}, "idle_advance=False"),
        ({"count": 2, "allowed_lateness": 1}, "allowed_lateness"),
    ],
)
def test_event_time_options_need_timestamp(kwargs: dict[str, Any], named: str) -> None:
    """Options that only event time uses raise ValueError without timestamp=."""
    size = None if "count" in kwargs else 1.0
    with pytest.raises(ValueError, match=rf"{named} needs timestamp="):
        WindowedStreamPipe(size, **kwargs)


@pytest.mark.parametrize(
    ("on_late", "got"),
    [
        ("ignore", "got the string 'ignore'"),
        (42, "got int: 42"),
        (list, r"got the class list \(a sink is an instance: list\(\)\)"),
    ],
)
def test_on_late_names_what_it_expected_and_what_came(on_late: Any, got: str) -> None:
    """A bad on_late= raises ValueError naming the accepted policies and what was given."""
    expected = (
        "on_late must be 'drop', 'raise', or a sink for LateItemError records: "
        "a list, a callable or a pipe, "
    )
    with pytest.raises(ValueError, match=re.escape(expected) + got):
        WindowedStreamPipe(1.0, timestamp=float, on_late=on_late)


def test_on_late_is_typed_to_what_it_accepts() -> None:
    """A type checker refuses an on_late= that is no policy (the ignores are checked:
    mypy --strict reports an unused one), and accepts every kind of sink."""
    with pytest.raises(ValueError, match="on_late must be"):
        WindowedStreamPipe(1.0, timestamp=float, on_late="ignore")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="on_late must be"):
        WindowedStreamPipe(1.0, timestamp=float, on_late=42)  # type: ignore[arg-type]
    sinks: list[LatePolicy] = [
        "drop",
        "raise",
        [],
        print,
        StreamPipe[LateItemError, None](),
    ]
    for sink in sinks:
        WindowedStreamPipe(1.0, timestamp=float, on_late=sink)


def test_idle_advance_must_be_a_bool() -> None:
    """idle_advance="no" is not read as true: TypeError."""
    with pytest.raises(TypeError, match="idle_advance must be True or False, got 'no'"):
        WindowedStreamPipe(1.0, timestamp=float, idle_advance="no")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "field", ["window_size", "slide", "session_gap", "offset", "allowed_lateness"]
)
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_durations_must_be_finite(field: str, value: float) -> None:
    """A NaN or infinite duration raises ValueError saying it must be finite."""
    kwargs: dict[str, Any] = {"timestamp": float, field: value}
    if field in ("slide", "offset", "allowed_lateness"):
        kwargs["window_size"] = 1.0
    with pytest.raises(ValueError, match=rf"{field} must be a finite number of seconds"):
        WindowedStreamPipe(**kwargs)


def no_key_for_two(x: int) -> int:
    if x == 2:
        raise StopIteration  # e.g. next() on an empty lookup
    return x % 2


@pytest.mark.parametrize("argument", ["key", "timestamp"])
async def test_a_stop_iteration_from_key_or_timestamp_is_an_item_error(argument: str) -> None:
    """Not the end of the chunk (which the C-speed pass would take it for, and
    try the same item again forever)."""
    clock = VirtualClock()
    if argument == "key":
        pipe: WindowedStreamPipe[int, Any] = WindowedStreamPipe(
            10.0, key=no_key_for_two, on_error="skip"
        )
    else:
        pipe = WindowedStreamPipe(10.0, timestamp=no_key_for_two, on_error="skip")
    windows = await collect(pipe.stream([1, 2, 3], clock=clock))
    assert [1, 3] == sorted(x for w in windows for x in w)


async def test_sessions_ending_together_fire_by_start_after_a_start_moved_earlier() -> None:
    """gap 5: a's session starts at 5, then at 2 (its end stays 10); b's is 3..10.
    Equal ends fire by start: a (2) before b (3)."""

    def key(e: tuple[float, str]) -> str:
        return e[1]

    def ts(e: tuple[float, str]) -> float:
        return e[0]

    pipe: WindowedStreamPipe[tuple[float, str], Any] = WindowedStreamPipe(
        session_gap=5.0, timestamp=ts, key=key, allowed_lateness=10.0
    )
    events = [(5.0, "a"), (2.0, "a"), (3.0, "b"), (5.0, "b")]
    windows = await collect(pipe.stream(events))
    assert [("a", 2.0), ("b", 3.0)] == [(w.key, w.start.timestamp()) for w in windows]
