"""StreamMonitor: counts, throughput, backpressure, buffers and latency per stage."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar, cast

import pytest

import pipeflow.streams as ps
from helpers import collect
from pipeflow.monitoring import StageMetrics, StreamMetrics, StreamMonitor
from pipeflow.streams import BackpressureConfig, DeadLetter, Retry, StreamError, StreamPipe
from pipeflow.testing import Cue, TestSource, VirtualClock

T = TypeVar("T")


class Sleeper(StreamPipe[int, int]):
    """Takes ``delay(item)`` virtual seconds per item and passes it on."""

    def __init__(
        self, clock: VirtualClock, delay: float | Callable[[int], float], **options: Any
    ) -> None:
        super().__init__(**options)
        self.clock = clock
        self.delay = delay if callable(delay) else (lambda _: delay)

    async def process_item(self, item: int) -> int:
        await self.clock.sleep(self.delay(item))
        return item


def double(x: int) -> int:
    return x * 2


# -- counts --------------------------------------------------------------------


def test_metrics_before_any_run_are_zero() -> None:
    """A fresh monitor reports zeros, no stages and no runs."""
    metrics = StreamMonitor().get_metrics()
    assert StreamMetrics() == metrics
    assert (0, 0, 0, 0) == (metrics.items_in, metrics.items_out, metrics.errors, metrics.runs)
    assert (0.0, 0.0) == (metrics.throughput, metrics.backpressure)
    assert () == metrics.stages
    assert metrics.latency_p50 is None


async def test_single_pipe_metrics() -> None:
    """A monitored pipe reports its items, errors and skips as one stage."""
    monitor = StreamMonitor()

    def invert(x: int) -> int:
        return 10 // x

    pipe = ps.map(invert, on_error="skip", name="invert")
    pipe.set_monitor(monitor)
    assert [10, 5, 3] == await collect(pipe.stream([1, 0, 2, 3], clock=VirtualClock()))
    metrics = monitor.get_metrics()
    assert ("invert",) == tuple(s.name for s in metrics.stages)
    assert (4, 3) == (metrics.items_in, metrics.items_out)
    assert (1, 1, 0, 0) == (metrics.errors, metrics.skipped, metrics.dead_lettered, metrics.dropped)
    assert (1, 0) == (metrics.runs, metrics.active_runs)
    assert metrics.stage("invert") == metrics.stages[0]


async def test_pipeline_metrics_per_stage_in_order() -> None:
    """A monitored pipeline reports each stage in order, and totals over the stages."""
    monitor = StreamMonitor()

    def keep(x: int) -> bool:
        if x == 8:
            raise ValueError("eight")
        return x % 3 != 0

    pipeline = (
        ps.map(double, name="double")
        | ps.filter(keep, on_error="skip", name="keep")
        | Sleeper(
            VirtualClock(),
            0,
            config=BackpressureConfig(max_buffer_size=2, overflow="drop_newest"),
            name="sink",
        )
    )
    pipeline.set_monitor(monitor)
    # doubled: 0 2 4 6 8 10 12 14 16 18; kept: 2 4 10 14 16 (8 fails); the buffer keeps 2.
    assert [2, 4] == await collect(pipeline.stream(range(10), clock=VirtualClock()))
    metrics = monitor.get_metrics()
    assert ("double", "keep", "sink") == tuple(s.name for s in metrics.stages)
    assert [(10, 10), (10, 5), (2, 2)] == [(s.items_in, s.items_out) for s in metrics.stages]
    assert [(0, 0, 0), (1, 1, 0), (0, 0, 3)] == [
        (s.errors, s.skipped, s.dropped) for s in metrics.stages
    ]
    assert (10, 2) == (metrics.items_in, metrics.items_out)
    assert (1, 1, 3) == (metrics.errors, metrics.skipped, metrics.dropped)
    assert 0 == metrics.stage("sink").buffer_capacity  # the run has ended: no buffer left


async def test_retries_and_dead_letters_are_totalled() -> None:
    """Retries and dead letters of every stage add up in the totals."""
    monitor = StreamMonitor()
    dead: list[StreamError] = []
    calls: dict[int, int] = {}

    def flaky(x: int) -> int:
        calls[x] = calls.get(x, 0) + 1
        if calls[x] == 1:
            raise ValueError("first try")
        return x

    def odd_fails(x: int) -> int:
        if x % 2:
            raise ValueError("odd")
        return x

    pipeline = ps.map(flaky, on_error=Retry(attempts=2, backoff=1, jitter=0)) | ps.map(
        odd_fails, on_error=DeadLetter(dead)
    )
    pipeline.set_monitor(monitor)
    assert [0, 2] == await collect(pipeline.stream(range(4), clock=VirtualClock()))
    metrics = monitor.get_metrics()
    assert (4, 2, 2) == (metrics.retries, metrics.dead_lettered, metrics.errors)
    assert [4, 0] == [s.retries for s in metrics.stages]


async def test_stage_lookup_unknown_name_is_a_key_error() -> None:
    """StreamMetrics.stage() raises KeyError naming the known stages."""
    monitor = StreamMonitor()
    pipe = ps.map(double, name="double")
    pipe.set_monitor(monitor)
    await collect(pipe.stream([1]))
    with pytest.raises(KeyError, match="no stage named 'nope'") as info:
        monitor.get_metrics().stage("nope")
    assert "'double'" in str(info.value)


async def test_monitor_on_one_stage_of_a_pipeline() -> None:
    """A monitor set on one pipe of a pipeline sees that stage alone."""
    monitor = StreamMonitor()
    inner = ps.map(double, name="inner")
    inner.set_monitor(monitor)

    def inc(x: int) -> int:
        return x + 1

    pipeline = ps.map(inc, name="first") | inner | ps.filter(bool, name="last")
    assert [2, 4, 6] == await collect(pipeline.stream(range(3)))
    metrics = monitor.get_metrics()
    assert ("inner",) == tuple(s.name for s in metrics.stages)
    assert (3, 3) == (metrics.items_in, metrics.items_out)


async def test_monitor_on_one_stage_ends_with_the_run() -> None:
    """A stage's monitor sees its run end with the pipeline's, and folds it away."""
    clock = VirtualClock()
    monitor = StreamMonitor()
    inner = ps.map(double, name="inner")
    inner.set_monitor(monitor)
    pipeline = inner | ps.map(str, name="last")
    for _ in range(20):
        assert ["0", "2"] == await collect(pipeline.stream(range(2), clock=clock))
        assert 0 == monitor.get_metrics().active_runs
        await clock.sleep(11)  # older than the monitor's window
    metrics = monitor.get_metrics()
    assert (20, 0) == (metrics.runs, metrics.active_runs)
    assert (40, 40) == (metrics.items_in, metrics.items_out)
    # Every run ended more than a window ago: reading the metrics folded them all.
    assert 0 == sum(len(shape.runs) for shape in monitor._shapes.values())


async def test_monitor_on_a_nested_pipeline_sees_its_stages() -> None:
    """Pipelines flatten when composed, but a monitor set on an inner pipeline
    still sees the stages that pipeline covers, wherever it is composed."""
    outer_monitor, inner_monitor, pipe_monitor = StreamMonitor(), StreamMonitor(), StreamMonitor()

    def inc(x: int) -> int:
        return x + 1

    b: ps.FunctionPipe[int, int] = ps.filter(bool, name="b")
    b.set_monitor(pipe_monitor)
    inner = ps.map(inc, name="a") | b
    inner.set_monitor(inner_monitor)
    outer = ps.map(double, name="first") | (inner | ps.map(str, name="c"))
    outer.set_monitor(outer_monitor)
    assert ["1", "3", "5"] == await collect(outer.stream(range(3)))
    assert ("first", "a", "b", "c") == tuple(s.name for s in outer_monitor.get_metrics().stages)
    inner_metrics = inner_monitor.get_metrics()
    assert ("a", "b") == tuple(s.name for s in inner_metrics.stages)
    assert (3, 3, 1, 0) == (
        inner_metrics.items_in,
        inner_metrics.items_out,
        inner_metrics.runs,
        inner_metrics.active_runs,
    )
    assert ("b",) == tuple(s.name for s in pipe_monitor.get_metrics().stages)
    b_metrics = pipe_monitor.get_metrics().stage("b")
    assert (3, 3) == (b_metrics.items_in, b_metrics.items_out)
    # Composed twice, the inner pipeline's monitor counts a run of each.
    assert ["2"] == await collect((inner | inner | ps.map(str)).stream([0, -1]))
    inner_metrics = inner_monitor.get_metrics()
    assert (3, 0) == (inner_metrics.runs, inner_metrics.active_runs)


async def test_monitor_counts_two_runs() -> None:
    """Two runs of the same pipe count as two runs and their counts add up."""
    monitor = StreamMonitor()

    def is_even(x: int) -> bool:
        return x % 2 == 0

    pipe = ps.filter(is_even, name="even")
    pipe.set_monitor(monitor)
    await collect(pipe.stream(range(10)))
    async with pipe.stream(range(6)) as s:
        async for _ in s:
            assert 1 == monitor.get_metrics().active_runs
    metrics = monitor.get_metrics()
    assert (2, 0) == (metrics.runs, metrics.active_runs)
    assert (16, 8) == (metrics.items_in, metrics.items_out)
    assert (16, 8) == (metrics.stage("even").items_in, metrics.stage("even").items_out)


async def test_detached_monitor_stops_counting() -> None:
    """set_monitor(None) detaches: later runs are not counted."""
    monitor = StreamMonitor()
    pipe = ps.map(double)
    pipe.set_monitor(monitor)
    await collect(pipe.stream(range(3)))
    pipe.set_monitor(None)
    await collect(pipe.stream(range(3)))
    assert (1, 3) == (monitor.get_metrics().runs, monitor.get_metrics().items_in)


@pytest.mark.parametrize("bogus", [object(), "monitor", 42])
def test_set_monitor_rejects_non_monitors(bogus: object) -> None:
    """set_monitor with something that is not a monitor raises TypeError."""
    with pytest.raises(TypeError, match="StreamMonitor"):
        ps.map(double).set_monitor(cast(Any, bogus))


async def test_unmonitored_statistics_keep_counts_but_no_timing() -> None:
    """Without a monitor, statistics() has counts but no throughput or latency."""
    async with ps.map(double).stream(range(5), clock=VirtualClock()) as s:
        assert [0, 2, 4, 6, 8] == [x async for x in s]
        (stats,) = s.statistics()
    assert StageMetrics(name="map(double)", items_in=5, items_out=5) == stats


# -- throughput ------------------------------------------------------------------


async def test_throughput_of_a_steady_pipe() -> None:
    """A pipe taking 0.01 virtual s per item runs at 100 items/s."""
    clock = VirtualClock()
    monitor = StreamMonitor()
    pipe = Sleeper(clock, 0.01)
    pipe.set_monitor(monitor)
    await collect(pipe.stream(range(100), clock=clock))
    metrics = monitor.get_metrics()
    assert pytest.approx(1.0) == clock.monotonic()
    assert pytest.approx(100.0) == metrics.throughput
    assert pytest.approx(100.0) == metrics.stages[0].throughput
    assert pytest.approx(1.0) == metrics.stages[0].window


async def test_throughput_per_item_source() -> None:
    """Items arriving one by one over 5 s at 0.01 s each give 100 items/s."""
    clock = VirtualClock()
    monitor = StreamMonitor()
    pipe = Sleeper(clock, 0.01)
    pipe.set_monitor(monitor)
    await collect(pipe.stream(TestSource(range(500)), clock=clock))
    assert pytest.approx(100.0) == monitor.get_metrics().throughput


async def test_throughput_window_slides() -> None:
    """Throughput averages over at most 10 s: idle time lowers it, then it drops to 0."""
    clock = VirtualClock()
    monitor = StreamMonitor()
    pipe = Sleeper(clock, 0.01)
    pipe.set_monitor(monitor)
    await collect(pipe.stream(range(100), clock=clock))
    await clock.sleep(5)  # 100 items in the last 6 s
    metrics = monitor.get_metrics()
    assert pytest.approx(100 / 6) == metrics.throughput
    assert pytest.approx(6.0) == metrics.stages[0].window
    await clock.sleep(10)  # nothing in the last 10 s
    metrics = monitor.get_metrics()
    assert 0.0 == metrics.throughput
    assert 0.0 == metrics.stages[0].window  # the run is folded into the totals


class Expand(StreamPipe[int, int]):
    """Emits each item twice, item by item (an overridden ``process_stream``)."""

    async def process_stream(self, stream: AsyncIterator[int]) -> AsyncIterator[int]:
        async for x in stream:
            yield x
            yield x


async def echo(x: int) -> int:
    return x


LAST_STAGES: dict[str, Callable[[], ps.Pipeable[int, int]]] = {
    "item": lambda: StreamPipe[int, int](name="last"),
    "fused": lambda: ps.map(double, name="last"),
    "concurrent": lambda: ps.map(echo, concurrency=4, name="last"),
    "flat_map": lambda: ps.flat_map(lambda x: [x, x], name="last"),
    "process_stream": lambda: Expand(name="last"),
}


@pytest.mark.parametrize("last", LAST_STAGES.values(), ids=LAST_STAGES.keys())
async def test_throughput_counts_results_as_the_consumer_takes_them(
    last: Callable[[], ps.Pipeable[int, int]],
) -> None:
    """The last stage emits results a chunk at a time, but its throughput counts
    them as the consumer takes them, once: here one per second."""
    clock = VirtualClock()
    monitor = StreamMonitor()
    pipe = last()
    pipe.set_monitor(monitor)
    seen: list[StreamMetrics] = []
    async with pipe.stream(range(1000), clock=clock) as s:
        taken = 0
        async for _ in s:
            taken += 1
            await clock.sleep(1)
            if taken in (5, 30):
                seen.append(monitor.get_metrics())
            if taken == 30:
                break
    early, late = seen
    assert [5.0, 9.0] == [early.stages[0].window, late.stages[0].window]
    assert [pytest.approx(1.0), pytest.approx(1.0)] == [early.throughput, late.throughput]
    # The run ended at the break: the results taken still count, the rest never will.
    assert pytest.approx(1.0) == monitor.get_metrics().throughput


async def test_items_out_counts_what_the_last_stage_emitted() -> None:
    """items_out moves a chunk at a time: the last stage's chunk counts once the
    consumer's loop has it, before the consumer has taken every result of it."""
    clock = VirtualClock()
    monitor = StreamMonitor()
    pipe = StreamPipe[int, int](name="last")
    pipe.set_monitor(monitor)
    async with pipe.stream(range(1000), clock=clock) as s:
        async for _ in s:
            await clock.sleep(1)
            metrics = monitor.get_metrics()
            break
    assert 256 == metrics.items_out
    assert pytest.approx(1.0) == metrics.throughput


# -- backpressure ------------------------------------------------------------------


async def test_slow_consumer_gives_high_backpressure() -> None:
    """A consumer taking 1 s per item keeps the last stage blocked all along:
    backpressure 1.0."""
    clock = VirtualClock()
    monitor = StreamMonitor()
    pipe = ps.map(double, name="double")
    pipe.set_monitor(monitor)
    seen: list[StreamMetrics] = []
    async with pipe.stream(range(20), clock=clock) as s:
        async for x in s:
            await clock.sleep(1)
            if x == 18:
                seen.append(monitor.get_metrics())
    (metrics,) = seen
    assert (1.0, 1.0) == (metrics.backpressure, metrics.stage("double").backpressure)


async def test_fast_consumer_gives_no_backpressure() -> None:
    """A consumer that takes every result at once leaves backpressure at 0."""
    clock = VirtualClock()
    monitor = StreamMonitor()
    pipe = Sleeper(clock, 0.5)
    pipe.set_monitor(monitor)
    seen: list[StreamMetrics] = []
    async with pipe.stream(TestSource(range(20)), clock=clock) as s:
        async for x in s:
            if x == 15:
                seen.append(monitor.get_metrics())
                assert 10.0 == clock.monotonic()
    (metrics,) = seen
    assert 0.0 == metrics.backpressure
    # The 20 results come as one chunk at t=10; the consumer has taken 16 of
    # them, counted over the window of the last 9 whole seconds.
    assert 9.0 == metrics.stages[0].window
    assert 16 / 9 == metrics.throughput


async def test_slow_buffered_stage_is_the_bottleneck() -> None:
    """Upstream of a slow buffered stage is in backpressure; the slow stage is not."""
    clock = VirtualClock()
    monitor = StreamMonitor()
    pipeline = ps.map(double, name="fast") | Sleeper(
        clock, 1, config=BackpressureConfig(max_buffer_size=4), name="slow"
    )
    pipeline.set_monitor(monitor)
    seen: list[StreamMetrics] = []
    async with pipeline.stream(range(50), clock=clock) as s:
        async for x in s:
            if x == 40:
                seen.append(monitor.get_metrics())
    (metrics,) = seen
    assert (1.0, 0.0) == (metrics.stage("fast").backpressure, metrics.stage("slow").backpressure)
    assert 0.0 == metrics.backpressure
    assert 4 == metrics.stage("slow").buffer_capacity
    assert 0 == metrics.stage("fast").buffer_capacity
    assert 4 == metrics.stage("slow").buffer_size  # the fast stage keeps it full


async def test_a_long_block_counts_in_the_seconds_it_covered() -> None:
    """A block is spread over the seconds it lasted: 5 s after a 15 s stall ended,
    only the 4 s of it inside the last 9 s count.

    t:      0              11      15          20
    block:  |===============|=======|           |
    window:                 [..................]
    """
    clock = VirtualClock()
    monitor = StreamMonitor()
    pipe = ps.map(double, name="m")
    pipe.set_monitor(monitor)
    source: TestSource[int] = TestSource([0, TestSource.wait(20), 1], clock=clock)
    seen: list[tuple[float, float]] = []
    async with pipe.stream(source, clock=clock) as s:
        async for x in s:
            if x == 0:
                await clock.sleep(15)  # the consumer stalls: the stage is blocked
            seen.append((clock.monotonic(), monitor.get_metrics().backpressure))
    assert [(15.0, 1.0), (20.0, pytest.approx(4 / 9))] == seen
    await clock.sleep(10)
    assert 0.0 == monitor.get_metrics().backpressure


async def test_a_closed_run_is_blocked_no_more() -> None:
    """When the consumer breaks out, every stage's block ends with the run: the
    stage it held and the one feeding the buffer in front of it."""
    clock = VirtualClock()
    monitor = StreamMonitor()
    pipeline = ps.map(double, name="feed") | ps.map(
        str, name="last", config=BackpressureConfig(max_buffer_size=4)
    )
    pipeline.set_monitor(monitor)
    async with pipeline.stream(range(1000), clock=clock) as s:
        async for _ in s:
            await clock.sleep(5)  # both stages are blocked from t=0 to t=5
            break
    await clock.sleep(5)
    metrics = monitor.get_metrics()
    assert 0 == metrics.active_runs
    # Of the last 9 s (t=1..10), both were blocked for 4 s.
    assert [pytest.approx(4 / 9)] * 2 == [stage.backpressure for stage in metrics.stages]
    await clock.sleep(10)
    assert [0.0, 0.0] == [stage.backpressure for stage in monitor.get_metrics().stages]


async def test_buffer_size_and_capacity_of_buffered_stage() -> None:
    """A buffered stage reports the items waiting in its buffer and its capacity."""
    clock = VirtualClock()
    monitor = StreamMonitor()

    async def trickle() -> AsyncIterator[int]:
        for i in range(5):
            yield i
            await clock.sleep(0.1)

    pipeline = ps.map(double, name="fused") | Sleeper(
        clock,
        lambda x: 1 if x == 0 else 0,
        config=BackpressureConfig(max_buffer_size=10),
        name="buffered",
    )
    pipeline.set_monitor(monitor)
    seen: list[StreamMetrics] = []
    async with pipeline.stream(trickle(), clock=clock) as s:
        async for x in s:
            if x == 0:  # at t=1: items 1-4 arrived while item 0 took 1 s
                seen.append(monitor.get_metrics())
    (metrics,) = seen
    # Items 1-4 wait; item 0, being delivered, holds its place until the stage asks again.
    assert (10, 5) == (
        metrics.stage("buffered").buffer_capacity,
        metrics.stage("buffered").buffer_size,
    )
    assert (0, 0) == (metrics.stage("fused").buffer_capacity, metrics.stage("fused").buffer_size)
    assert (10, 5) == (metrics.buffer_capacity, metrics.buffer_size)
    assert 0 == monitor.get_metrics().buffer_size


# -- latency ---------------------------------------------------------------------


async def test_latency_percentiles_after_monitored_run() -> None:
    """Latency percentiles are set after a monitored run and ordered p50 <= p95 <= p99."""
    clock = VirtualClock()
    monitor = StreamMonitor()
    pipe = Sleeper(clock, lambda x: x * 0.01)
    pipe.set_monitor(monitor)
    await collect(pipe.stream(TestSource(range(1, 101), one_by_one=True), clock=clock))
    metrics = monitor.get_metrics()
    assert metrics.latency_p50 is not None
    assert metrics.latency_p95 is not None
    assert metrics.latency_p99 is not None
    assert metrics.latency_p50 <= metrics.latency_p95 <= metrics.latency_p99
    # Nearest-rank percentiles of 0.01, 0.02, ..., 1.00 seconds.
    assert pytest.approx(0.50) == metrics.latency_p50
    assert pytest.approx(0.95) == metrics.latency_p95
    assert pytest.approx(0.99) == metrics.latency_p99


async def test_latency_of_concurrent_stage() -> None:
    """A concurrent stage times each item on its own."""
    clock = VirtualClock()
    monitor = StreamMonitor()
    pipe = Sleeper(clock, 0.25, concurrency=4)
    pipe.set_monitor(monitor)
    await collect(pipe.stream(range(20), clock=clock))
    metrics = monitor.get_metrics()
    assert pytest.approx(0.25) == metrics.latency_p50
    assert pytest.approx(0.25) == metrics.latency_p99
    assert pytest.approx(20 / 1.25) == metrics.throughput


async def test_pipeline_latency_is_the_slowest_stage() -> None:
    """A pipeline's latency percentile is the slowest stage's."""
    clock = VirtualClock()
    monitor = StreamMonitor()
    pipeline = Sleeper(clock, 0.1, name="quick") | Sleeper(clock, 0.3, name="slow")
    pipeline.set_monitor(monitor)
    await collect(pipeline.stream(TestSource(range(10)), clock=clock))
    metrics = monitor.get_metrics()
    assert pytest.approx(0.1) == metrics.stage("quick").latency_p50
    assert pytest.approx(0.3) == metrics.stage("slow").latency_p50
    assert pytest.approx(0.3) == metrics.latency_p50


async def test_window_and_batch_stages_report_rates_and_latency() -> None:
    """Windowed and batch stages count their outputs in throughput and time their work."""
    from pipeflow.streams import BatchStreamPipe, WindowedStreamPipe

    clock = VirtualClock()

    class SlowBatches(BatchStreamPipe[Any, int]):
        async def process_batch(self, batch: list[Any]) -> int:
            await clock.sleep(0.5)
            return len(batch)

    pipeline = WindowedStreamPipe[int, Any](count=10, name="w") | SlowBatches(5, name="b")
    monitor = StreamMonitor()
    pipeline.set_monitor(monitor)
    async with pipeline.stream(range(100), clock=clock) as stream:
        assert 2 == len([x async for x in stream])
    w, b = monitor.get_metrics().stages
    assert (10, 2) == (w.items_out, b.items_out)
    # Over the 1 s the run took: 10 windows and 2 batches.
    assert 1.0 == clock.monotonic()
    assert (10.0, 2.0) == (w.throughput, b.throughput)
    assert 0.5 == b.latency_p50


async def test_monitor_folds_finished_runs_into_totals() -> None:
    """A pipe streamed once per request does not grow its monitor: old runs become totals."""
    clock = VirtualClock()
    pipe: ps.FunctionPipe[int, int] = ps.map(lambda x: x + 1, name="inc")
    monitor = StreamMonitor()
    pipe.set_monitor(monitor)
    for _ in range(50):
        assert [1, 2, 3] == await collect(pipe.stream([0, 1, 2], clock=clock))
        await clock.sleep(11)  # older than the monitor's window
    metrics = monitor.get_metrics()
    assert (50, 0) == (metrics.runs, metrics.active_runs)
    assert (150, 150) == (metrics.items_in, metrics.items_out)
    # Every run ended more than a window ago: reading the metrics folded them all.
    assert 0 == sum(len(shape.runs) for shape in monitor._shapes.values())


async def test_ended_runs_hold_no_buffer() -> None:
    """Only running runs have buffers: a run that has ended adds no buffer size,
    capacity or throttling, whether recent or folded into the totals, while its
    recent throughput still counts."""
    clock = VirtualClock()
    monitor = StreamMonitor()
    pipe = Sleeper(clock, 0.01, config=BackpressureConfig(max_buffer_size=100), name="slow")
    pipe.set_monitor(monitor)
    assert list(range(50)) == await collect(pipe.stream(range(50), clock=clock))
    ended = monitor.get_metrics()
    assert (1, 0) == (ended.runs, ended.active_runs)
    assert (0, 0, False) == (ended.buffer_size, ended.buffer_capacity, ended.stages[0].throttled)
    assert pytest.approx(100.0) == ended.throughput
    async with pipe.stream(range(500), clock=clock) as s:
        async for _ in s:
            live = monitor.get_metrics()
            break
    assert (2, 1) == (live.runs, live.active_runs)
    assert (100, 100) == (live.buffer_capacity, live.stages[0].buffer_capacity)
    for _ in range(3):
        await collect(pipe.stream(range(10), clock=clock))
        await clock.sleep(60)  # long enough for the runs to be folded into totals
    folded = monitor.get_metrics()
    assert (5, 0) == (folded.runs, folded.active_runs)
    assert (0, 0) == (folded.buffer_size, folded.buffer_capacity)


# -- figures over many runs, and what a run counts ------------------------------------


async def test_throughput_over_many_short_runs_is_the_rate_of_results() -> None:
    """A pipe streamed once a second, eight results each time: 8/s, not each run's
    items over its own short life added up."""
    clock = VirtualClock()
    pipe: ps.FunctionPipe[int, str] = ps.map(str, name="s")
    monitor = StreamMonitor()
    pipe.set_monitor(monitor)
    for _ in range(15):
        script: list[int | Cue] = []
        for i in range(8):
            script += [i, TestSource.wait(0.125)]
        await collect(pipe.stream(TestSource(script, clock=clock), clock=clock))
    # At t=15 the window is the last 9 whole seconds, with 8 results in each.
    assert (15.0, 8.0) == (clock.monotonic(), monitor.get_metrics().throughput)


async def test_latency_percentiles_weigh_the_items_a_sample_stands_for() -> None:
    """99 items at 0.01 s in one chunk, then one at 1 s: p95 and p99 are 0.01 s,
    as for 100 separate samples, not the slow chunk's share of two samples."""
    clock = VirtualClock()
    pipe = Sleeper(clock, lambda item: 1.0 if item == 99 else 0.01, name="timed")
    monitor = StreamMonitor()
    pipe.set_monitor(monitor)
    script: list[int | Cue] = [*range(99), TestSource.wait(1.0), 99]
    await collect(pipe.stream(TestSource(script, clock=clock), clock=clock))
    metrics = monitor.get_metrics()
    assert 0.01 == pytest.approx(metrics.latency_p95)
    assert 0.01 == pytest.approx(metrics.latency_p99)


async def test_a_retired_run_no_longer_holds_the_latency_percentiles() -> None:
    clock = VirtualClock()
    pipe = Sleeper(clock, lambda item: float(item), name="timed")
    monitor = StreamMonitor()
    pipe.set_monitor(monitor)
    await collect(pipe.stream([1, 1, 1], clock=clock))  # slow: 1 s per item
    await clock.sleep(20)  # that run retires
    await collect(pipe.stream([0.01] * 50, clock=clock))  # type: ignore[list-item]
    metrics = monitor.get_metrics()
    assert (2, 0) == (metrics.runs, metrics.active_runs)
    assert 0.01 == pytest.approx(metrics.latency_p99)


async def test_a_run_that_ended_holds_no_open_windows() -> None:
    """Runs left with windows open (the consumer broke off) add nothing to the
    monitor's windows_open, before or after they retire."""
    clock = VirtualClock()
    pipe: ps.WindowedStreamPipe[int, Any] = ps.WindowedStreamPipe(
        count=3, key=lambda x: x % 10, name="w"
    )
    monitor = StreamMonitor()
    pipe.set_monitor(monitor)
    for _ in range(3):
        async with pipe.stream(range(100), clock=clock) as results:
            async for _ in results:
                break
        assert 10 == results.statistics()[0].windows_open  # the run's own view
        assert 0 == monitor.get_metrics().stages[0].windows_open
        await clock.sleep(11)
    assert 0 == monitor.get_metrics().stages[0].windows_open


async def test_windows_fired_counts_the_windows_dealt_with() -> None:
    """Under "raise", the window that failed and those after it did not fire."""

    class FailSecond(ps.WindowedStreamPipe[int, list[int]]):
        async def process_window(self, window: ps.Window[int]) -> list[int]:
            if window[0] == 2:
                raise ValueError("broken window")
            return list(window)

    stream = FailSecond(count=2).stream(range(6))
    with pytest.raises(StreamError):
        await collect(stream)
    (stats,) = stream.statistics()
    assert (1, 1, 1) == (stats.windows_fired, stats.items_out, stats.errors)


async def test_one_monitor_on_two_pipes_keeps_them_apart() -> None:
    """Each pipe's stages are listed, in the order the pipes first ran; runs of the
    same pipe add up. Nothing moves when runs retire."""
    clock = VirtualClock()
    monitor = StreamMonitor()
    x: ps.FunctionPipe[int, int] = ps.map(double, name="x")
    y: ps.FunctionPipe[int, int] = ps.map(double, name="y")
    z = ps.map(double, name="z1") | ps.map(double, name="z2")
    for pipe in (x, y, z):
        pipe.set_monitor(monitor)
    await collect(x.stream(range(3), clock=clock))
    await collect(y.stream(range(5), clock=clock))
    await collect(z.stream(range(7), clock=clock))
    await collect(x.stream(range(1), clock=clock))
    expected = [("x", 4), ("y", 5), ("z1", 7), ("z2", 7)]
    metrics = monitor.get_metrics()
    assert expected == [(s.name, s.items_in) for s in metrics.stages]
    assert (16, 16, 4) == (metrics.items_in, metrics.items_out, metrics.runs)
    await clock.sleep(11)  # every run retires
    assert expected == [(s.name, s.items_in) for s in monitor.get_metrics().stages]


async def test_a_feeding_stage_counts_throughput_as_it_fills_the_next_buffer() -> None:
    """A stage whose chunk goes into an 8-item buffer 8 items a second shows
    8/s, not the whole chunk at the moment it was computed."""
    clock = VirtualClock()
    a: ps.FunctionPipe[int, int] = ps.map(double, name="a")
    pipe = a | ps.map(str, name="b", config=BackpressureConfig(max_buffer_size=8))
    monitor = StreamMonitor()
    pipe.set_monitor(monitor)
    async with pipe.stream(range(300), clock=clock) as results:
        async for x in results:
            await clock.sleep(0.125)  # the consumer takes 8 a second
            if x == "286":  # the 144th result: t=18
                break
    first = monitor.get_metrics().stages[0]
    assert (18.0, 9.0) == (clock.monotonic(), first.window)
    assert 8.0 == first.throughput


async def test_a_stream_never_iterated_is_no_run() -> None:
    monitor = StreamMonitor()
    pipe: ps.FunctionPipe[int, int] = ps.map(double)
    pipe.set_monitor(monitor)
    pipe.stream(range(3))  # made, never iterated
    assert (0, 0) == (monitor.get_metrics().runs, monitor.get_metrics().active_runs)
    await collect(pipe.stream(range(3)))
    assert (1, 0) == (monitor.get_metrics().runs, monitor.get_metrics().active_runs)


async def test_runs_are_folded_without_anyone_reading_the_metrics() -> None:
    """A pipe streamed once per request while nobody polls the monitor: old runs
    are still folded into totals as new ones come, so the monitor does not grow."""
    clock = VirtualClock()
    monitor = StreamMonitor()
    pipe: ps.FunctionPipe[int, int] = ps.map(double, name="d")
    pipe.set_monitor(monitor)
    for _ in range(300):
        await collect(pipe.stream([1], clock=clock))
        await clock.sleep(11)
    # Old runs are folded whenever more than 16 are held, keeping the one just
    # started: after the runs 17, 33, ..., 289 one run is left, then 11 more came.
    assert 12 == sum(len(shape.runs) for shape in monitor._shapes.values())
    assert (300, 300) == (monitor.get_metrics().runs, monitor.get_metrics().items_in)


def test_get_monitor_returns_what_set_monitor_attached() -> None:
    pipe = ps.map(lambda x: x)
    assert pipe.get_monitor() is None
    monitor = StreamMonitor()
    pipe.set_monitor(monitor)
    assert monitor is pipe.get_monitor()
    pipe.set_monitor(None)
    assert pipe.get_monitor() is None
