"""BackpressureConfig: validation, bounded read-ahead, throttling and overflow strategies."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import re
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any, TypeVar

import pytest

from pipeflow.streams import (
    BackpressureConfig,
    BufferOverflowError,
    Pipeable,
    PipeflowError,
    Stream,
    StreamPipe,
    map,
)
from pipeflow.testing import TestSource, VirtualClock

T = TypeVar("T")

# -- validation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_buffer_size", 0),
        ("max_buffer_size", -1),
        ("max_buffer_size", True),
        ("max_buffer_size", 1.5),
        ("max_buffer_size", "10"),
        ("throttle_threshold", 0),
        ("throttle_threshold", 0.0),
        ("throttle_threshold", 1.5),
        ("throttle_threshold", -0.5),
        ("throttle_threshold", True),
        ("throttle_threshold", math.nan),
        ("throttle_threshold", "0.5"),
        ("min_processing_time", -1),
        ("min_processing_time", -0.001),
        ("min_processing_time", math.nan),
        ("min_processing_time", math.inf),
        ("min_processing_time", True),
        ("min_processing_time", "0.1"),
        ("overflow", "drop"),
        ("overflow", ""),
        ("overflow", "BLOCK"),
        ("overflow", None),
    ],
    ids=repr,
)
async def test_invalid_config_value_raises_value_error_naming_field_and_value(
    field: str, value: Any
) -> None:
    """Each invalid setting raises ValueError naming the field and showing the value."""
    with pytest.raises(ValueError, match=re.escape(field)) as caught:
        BackpressureConfig(**{field: value})
    assert repr(value) in str(caught.value)


async def test_invalid_overflow_lists_the_allowed_values() -> None:
    """The overflow error lists every allowed strategy."""
    with pytest.raises(ValueError, match="overflow") as caught:
        BackpressureConfig(overflow="spill")  # type: ignore[arg-type]
    for allowed in ("'block'", "'drop_oldest'", "'drop_newest'", "'fail'"):
        assert allowed in str(caught.value)


async def test_config_defaults() -> None:
    """The defaults: 1000 items, throttle at 0.8, no pacing, block when full."""
    config = BackpressureConfig()
    assert 1000 == config.max_buffer_size
    assert 0.8 == config.throttle_threshold
    assert 0.0 == config.min_processing_time
    assert "block" == config.overflow


@pytest.mark.parametrize(
    "options",
    [
        {"max_buffer_size": 1},
        {"throttle_threshold": 1},
        {"throttle_threshold": 1.0},
        {"throttle_threshold": 0.01},
        {"min_processing_time": 0},
        {"min_processing_time": 2},
        {"overflow": "drop_oldest"},
        {"overflow": "drop_newest"},
        {"overflow": "fail"},
    ],
    ids=repr,
)
async def test_valid_edge_values_are_accepted(options: dict[str, Any]) -> None:
    """Boundary values inside the allowed ranges are accepted as given."""
    config = BackpressureConfig(**options)
    for key, value in options.items():
        assert value == getattr(config, key)


async def test_config_is_frozen_and_compares_by_value() -> None:
    """A config cannot be changed after creation and equal settings compare equal."""
    config = BackpressureConfig(max_buffer_size=10)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.max_buffer_size = 20  # type: ignore[misc]
    assert BackpressureConfig(max_buffer_size=10) == config


async def test_config_is_keyword_only() -> None:
    """Settings are passed by keyword only."""
    with pytest.raises(TypeError):
        BackpressureConfig(10)  # type: ignore[call-arg]


async def drain(stream: Stream[T], into: list[T]) -> None:
    """Append every result of ``stream`` to ``into`` (keeping those before an error)."""
    async for x in stream:
        into.append(x)


# -- bounded read-ahead --------------------------------------------------------------


class Counting:
    """A source that records the most items ever read but not yet delivered.

    ``items()`` is a fast sync source: a reader takes up to ``MAX_CHUNK`` items
    at a time without waiting. ``aitems()`` is an async source whose every item
    waits (as a network source's does), so it is read one item at a time.
    """

    def __init__(self, n: int) -> None:
        self.n = n
        self.read = 0
        self.delivered = 0
        self.max_ahead = 0
        self.checks = 0

    def check(self) -> None:
        self.checks += 1
        self.max_ahead = max(self.max_ahead, self.read - self.delivered)

    async def aitems(self) -> AsyncIterator[int]:
        for i in range(self.n):
            await asyncio.sleep(0)  # each item waits for the loop, as if from a network
            self.read += 1
            self.check()
            yield i

    def items(self) -> Iterator[int]:
        for i in range(self.n):
            self.read += 1
            self.check()
            yield i


async def consume_slowly(pipe: Pipeable[int, int], counting: Counting, sync: bool) -> list[int]:
    """Deliver every result one virtual second apart, checking read-ahead at each step."""
    clock = VirtualClock()
    source: Any = counting.items() if sync else counting.aitems()
    out: list[int] = []
    async with pipe.stream(source, clock=clock) as results:
        async for x in results:
            counting.delivered += 1
            counting.check()
            out.append(x)
            await clock.sleep(1.0)
            counting.check()
    return out


def read_ahead_bound(capacities: Iterable[int]) -> int:
    """What a chain of buffered pipes can hold between reading and delivering.

    A buffer's room covers what it queues and what the stage after it took out
    and is still working on (or waits to pass on): the source is read no further
    ahead than the buffers' capacities added up, whatever the kind of source.
    """
    return sum(capacities)


@pytest.mark.parametrize("sync", [False, True], ids=["async_source", "sync_source"])
@pytest.mark.parametrize("threshold", [1.0, 0.5])
@pytest.mark.parametrize("capacity", [1, 10, 300])
async def test_single_pipe_bounds_read_ahead(capacity: int, threshold: float, sync: bool) -> None:
    """A buffered pipe never lets the source run further ahead than its buffer allows."""
    counting = Counting(700)
    config = BackpressureConfig(max_buffer_size=capacity, throttle_threshold=threshold)
    out = await consume_slowly(StreamPipe[int, int](config=config), counting, sync)
    assert list(range(700)) == out
    assert counting.checks >= 3 * 700
    assert counting.max_ahead <= read_ahead_bound([capacity])
    if threshold == 1.0:
        assert counting.max_ahead >= capacity - 1  # it filled up (but for the item delivered)


@pytest.mark.parametrize("sync", [False, True], ids=["async_source", "sync_source"])
@pytest.mark.parametrize("capacities", [(10, 7, 3), (3, 20, 1), (300, 5, 100)], ids=str)
async def test_three_stage_pipeline_bounds_read_ahead(
    capacities: tuple[int, int, int], sync: bool
) -> None:
    """In a chain of buffered pipes the read-ahead is bounded by the buffers and chunks."""
    counting = Counting(700)
    a, b, c = (BackpressureConfig(max_buffer_size=n, throttle_threshold=1.0) for n in capacities)
    pipeline: Pipeable[int, int] = (
        map(lambda x: x + 1, config=a)
        | StreamPipe[int, int](config=b)
        | map(lambda x: x - 1, config=c)
    )
    out = await consume_slowly(pipeline, counting, sync)
    assert list(range(700)) == out
    assert counting.max_ahead <= read_ahead_bound(capacities)
    # Every buffer but the last filled up; the last one's chunk is delivered item by item.
    assert counting.max_ahead >= sum(capacities[:-1])


async def test_concurrent_pipe_with_config_bounds_read_ahead() -> None:
    """A concurrent pipe behind a small buffer still bounds how far the source runs ahead."""
    counting = Counting(500)
    config = BackpressureConfig(max_buffer_size=8, throttle_threshold=1.0)
    pipe = StreamPipe[int, int](config=config, concurrency=4)
    out = await consume_slowly(pipe, counting, sync=False)
    assert list(range(500)) == out
    # The buffer, and the calls in flight beyond it: its capacity plus the concurrency.
    assert counting.max_ahead <= 8 + 4


# -- throttling ---------------------------------------------------------------------------


class RecordingSource(TestSource[int]):
    """A TestSource that records the first pipe's buffer fill at each pause and resume."""

    def __init__(self, items: Iterable[int]) -> None:
        super().__init__(items)
        self.stream: Stream[Any] | None = None
        self.at_pause: list[int] = []
        self.at_resume: list[int] = []

    def _buffer_size(self) -> int:
        assert self.stream is not None
        return self.stream.statistics()[0].buffer_size

    def pause(self) -> None:
        super().pause()
        self.at_pause.append(self._buffer_size())

    def resume(self) -> None:
        super().resume()
        self.at_resume.append(self._buffer_size())


async def test_pausable_source_is_paused_above_threshold_and_resumed_after_drain() -> None:
    """A Pausable source is paused when the buffer passes the threshold, resumed as it drains."""
    clock = VirtualClock()
    source = RecordingSource(range(200))
    config = BackpressureConfig(max_buffer_size=10, throttle_threshold=0.5)
    high = 5  # floor(0.5 * 10)
    throttled_seen: list[bool] = []
    out: list[int] = []
    async with StreamPipe[int, int](config=config).stream(source, clock=clock) as results:
        source.stream = results
        async for x in results:
            out.append(x)
            await clock.sleep(1.0)
            throttled_seen.append(results.statistics()[0].throttled)
    assert list(range(200)) == out
    assert source.pauses > 0
    assert source.pauses == len(source.at_pause) == len(source.at_resume)
    assert all(size > high for size in source.at_pause), source.at_pause
    assert all(size < high for size in source.at_resume), source.at_resume
    assert not source.paused
    assert any(throttled_seen)


@pytest.mark.parametrize(
    "config",
    [
        BackpressureConfig(max_buffer_size=10, throttle_threshold=1.0),
        BackpressureConfig(max_buffer_size=1),
    ],
    ids=["threshold-1.0", "one-item-buffer"],
)
async def test_a_full_buffer_is_throttled_whatever_the_threshold(
    config: BackpressureConfig,
) -> None:
    """No fill level is above a threshold of 1.0, nor above one item in a one-item
    buffer: a full buffer still pauses a Pausable source."""
    clock = VirtualClock()
    source = RecordingSource(range(50))
    out: list[int] = []
    async with StreamPipe[int, int](config=config).stream(source, clock=clock) as results:
        source.stream = results
        async for x in results:
            out.append(x)
            await clock.sleep(1.0)
    assert list(range(50)) == out
    assert source.pauses > 0
    assert all(size == config.max_buffer_size for size in source.at_pause), source.at_pause
    assert source.pauses == len(source.at_resume)
    assert not source.paused


async def test_throttled_buffer_stops_intake_until_it_drains() -> None:
    """While throttled, the producer adds nothing: the buffer stays at the threshold plus one."""
    clock = VirtualClock()
    config = BackpressureConfig(max_buffer_size=20, throttle_threshold=0.5)
    sizes: list[int] = []
    source = TestSource(range(300), one_by_one=True)
    async with StreamPipe[int, int](config=config).stream(source, clock=clock) as s:
        async for _ in s:
            await clock.sleep(1.0)
            sizes.append(s.statistics()[0].buffer_size)
    assert 11 == max(sizes)  # floor(0.5 * 20) + 1: one past the threshold, then paused


async def test_statistics_report_buffer_capacity() -> None:
    """statistics() shows a buffered pipe's capacity, and 0 for a fused pipe."""
    pipeline = map(lambda x: x) | StreamPipe[int, int](config=BackpressureConfig(max_buffer_size=7))
    stream = pipeline.stream([1, 2, 3])
    async with stream:
        assert [1, 2, 3] == [x async for x in stream]
    assert [0, 7] == [s.buffer_capacity for s in stream.statistics()]


async def test_source_is_not_paused_without_backpressure() -> None:
    """A fast consumer never throttles the buffer, so the source is never paused."""
    source = TestSource(range(100))
    config = BackpressureConfig(max_buffer_size=1000)
    out = [x async for x in StreamPipe[int, int](config=config).stream(source)]
    assert list(range(100)) == out
    assert 0 == source.pauses


# -- overflow strategies ---------------------------------------------------------------------


class Gate:
    """Sources that hand over item 0, then wait until the consumer has it."""

    def __init__(self) -> None:
        self.first_taken = asyncio.Event()
        self.exhausted = asyncio.Event()
        self.reached = asyncio.Event()
        self.produced = 0

    async def items(self, n: int, *, signal_at: int | None = None) -> AsyncIterator[int]:
        """Yield 0, wait for ``first_taken``, yield 1..n-1, then set ``exhausted``.

        ``reached`` is set just before item ``signal_at`` is yielded.
        """
        self.produced += 1
        yield 0
        await self.first_taken.wait()
        for i in range(1, n):
            if i == signal_at:
                self.reached.set()
            self.produced += 1
            yield i
        self.exhausted.set()


async def fill_then_drain(pipe: StreamPipe[int, int], n: int) -> tuple[list[int], Stream[int]]:
    """Take item 0, let the source run to its end without pulling, then drain."""
    gate = Gate()
    stream = pipe.stream(gate.items(n))
    async with stream:
        it = aiter(stream)
        got = [await anext(it)]
        gate.first_taken.set()
        await gate.exhausted.wait()
        got += [x async for x in it]
    assert n == gate.produced
    return got, stream


@pytest.mark.parametrize(
    ("overflow", "n", "capacity", "survivors"),
    [
        ("drop_newest", 20, 5, [1, 2, 3, 4, 5]),
        ("drop_oldest", 20, 5, [15, 16, 17, 18, 19]),
        ("drop_newest", 1000, 100, list(range(1, 101))),
        ("drop_oldest", 1000, 100, list(range(900, 1000))),
        ("drop_newest", 6, 5, [1, 2, 3, 4, 5]),
        ("drop_oldest", 6, 5, [1, 2, 3, 4, 5]),
        ("drop_oldest", 7, 1, [6]),
        ("drop_newest", 7, 1, [1]),
    ],
)
async def test_drop_strategies_keep_expected_items(
    overflow: Any, n: int, capacity: int, survivors: list[int]
) -> None:
    """With a stalled consumer, drop_newest keeps the first items, drop_oldest the last."""
    config = BackpressureConfig(max_buffer_size=capacity, overflow=overflow)
    got, stream = await fill_then_drain(StreamPipe[int, int](config=config), n)
    assert [0, *survivors] == got
    dropped = stream.statistics()[0].dropped
    assert n - 1 - capacity == dropped
    assert n == len(got) + dropped


@pytest.mark.parametrize("overflow", ["drop_newest", "drop_oldest"])
async def test_drops_add_up_with_a_slow_consumer(overflow: Any) -> None:
    """Under a slow consumer, delivered plus dropped equals produced, order kept."""
    clock = VirtualClock()
    config = BackpressureConfig(max_buffer_size=10, overflow=overflow)
    source = TestSource(range(1000))
    pipe = StreamPipe[int, int](config=config)
    got: list[int] = []
    async with pipe.stream(source, clock=clock) as results:
        async for x in results:
            got.append(x)
            await clock.sleep(1.0)
        dropped = results.statistics()[0].dropped
    assert dropped > 0
    assert 1000 == len(got) + dropped
    assert sorted(got) == got
    assert len(set(got)) == len(got)


async def test_drop_counts_with_sync_source_chunks() -> None:
    """Drops are counted per item also when a sync source arrives in big chunks."""
    config = BackpressureConfig(max_buffer_size=50, overflow="drop_newest")
    stream = StreamPipe[int, int](config=config).stream(range(1000))
    async with stream:
        got = [x async for x in stream]
    dropped = stream.statistics()[0].dropped
    assert 1000 == len(got) + dropped
    assert sorted(got) == got


async def test_block_strategy_never_drops() -> None:
    """The default block strategy delivers everything, however slow the consumer."""
    clock = VirtualClock()
    config = BackpressureConfig(max_buffer_size=3)
    stream = StreamPipe[int, int](config=config).stream(range(500), clock=clock)
    got: list[int] = []
    async with stream:
        async for x in stream:
            got.append(x)
            await clock.sleep(1.0)
    assert list(range(500)) == got
    assert 0 == stream.statistics()[0].dropped


async def test_fail_strategy_raises_after_buffered_items() -> None:
    """overflow="fail" delivers what the buffer held, then raises BufferOverflowError."""
    gate = Gate()
    config = BackpressureConfig(max_buffer_size=5, overflow="fail")
    pipe = StreamPipe[int, int](config=config, name="ingest")
    got: list[int] = []

    async def consume() -> None:
        async with pipe.stream(gate.items(20, signal_at=6)) as results:
            it = aiter(results)
            got.append(await anext(it))
            gate.first_taken.set()
            await gate.reached.wait()  # item 6 is on its way into a full buffer
            for _ in range(10):
                await asyncio.sleep(0)
            async for x in it:
                got.append(x)

    with pytest.raises(BufferOverflowError) as caught:
        await consume()
    assert [0, 1, 2, 3, 4, 5] == got
    error = caught.value
    assert isinstance(error, PipeflowError)
    assert "ingest" == error.pipe
    assert 5 == error.capacity
    assert "ingest" in str(error)


async def test_fail_strategy_with_sync_source_delivers_what_fit() -> None:
    """A sync source chunk larger than the free room: the items that fit come out first."""
    config = BackpressureConfig(max_buffer_size=5, overflow="fail")
    got: list[int] = []
    with pytest.raises(BufferOverflowError):
        await drain(StreamPipe[int, int](config=config).stream(list(range(20))), got)
    assert [0, 1, 2, 3, 4] == got


async def test_fail_strategy_does_not_fail_when_consumer_keeps_up() -> None:
    """overflow="fail" only fails when the buffer is really full."""
    config = BackpressureConfig(max_buffer_size=5, overflow="fail")

    async def trickle() -> AsyncIterator[int]:
        for i in range(100):
            await asyncio.sleep(0)  # the consumer gets a turn after every item
            yield i

    out = [x async for x in StreamPipe[int, int](config=config).stream(trickle())]
    assert list(range(100)) == out


async def test_a_filter_dropping_everything_queues_no_entries_in_the_next_buffer() -> None:
    """Chunks that an upstream filter emptied carry only a source position: the
    buffer hands it on with what it holds, instead of queueing one entry per chunk
    (with no bound) while its stage is busy."""
    clock = VirtualClock()
    seen: list[int] = []

    async def slow(x: int) -> int:
        await clock.sleep(1000.0 if x == 0 else 0.0)
        return x

    from pipeflow.streams import filter as keep

    stage = map(slow, config=BackpressureConfig(max_buffer_size=10))
    pipeline = keep(lambda x: x % 10_000 == 0) | stage
    source = TestSource(range(30_000), one_by_one=True)
    async with pipeline.stream(source, clock=clock) as results:
        async for x in results:
            seen.append(x)
            if x == 0:
                buffer = stage_buffer(results)
                assert len(buffer._chunks) <= 3  # (the items passed, and a mark)
    assert [0, 10_000, 20_000] == seen
    assert 30_000 == source.acked


def stage_buffer(results: Any) -> Any:
    """The input buffer of a run's last stage (white box)."""
    return results._run.stats.stages[-1].buffer
