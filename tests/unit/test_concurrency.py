"""concurrency=N, ordered / unordered output, and min_processing_time pacing."""

from __future__ import annotations

import asyncio
import functools
import itertools
import math
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import pytest

from helpers import agen, collect
from pipeflow.streams import (
    BackpressureConfig,
    Pipeable,
    StreamPipe,
    filter,
    flat_map,
    map,
)
from pipeflow.testing import TestSource, VirtualClock

T = TypeVar("T")


class Tracker:
    """Counts calls in flight and remembers the most at once, and the completion order."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.max_in_flight = 0
        self.completed: list[Any] = []

    def enter(self) -> None:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def leave(self, item: Any) -> None:
        self.in_flight -= 1
        self.completed.append(item)


class Sleepy(StreamPipe[Any, Any]):
    """Sleeps ``delay(item)`` virtual seconds per item, tracking concurrency."""

    def __init__(
        self,
        clock: VirtualClock,
        delay: Callable[[Any], float],
        tracker: Tracker,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self.clock = clock
        self.delay = delay
        self.tracker = tracker

    async def process_item(self, item: Any) -> Any:
        self.tracker.enter()
        try:
            await self.clock.sleep(self.delay(item))
        finally:
            self.tracker.leave(item)
        return item


class Gated(StreamPipe[int, int]):
    """Every call waits for one shared gate; ``full`` is set once ``limit`` calls wait."""

    def __init__(self, limit: int, **options: Any) -> None:
        super().__init__(**options)
        self.gate = asyncio.Event()
        self.full = asyncio.Event()
        self.limit = limit
        self.tracker = Tracker()

    async def process_item(self, item: int) -> int:
        self.tracker.enter()
        if self.tracker.in_flight >= self.limit:
            self.full.set()
        try:
            await self.gate.wait()
        finally:
            self.tracker.leave(item)
        return item * 10


# -- bound on calls in flight -----------------------------------------------------


@pytest.mark.parametrize("ordered", [True, False])
@pytest.mark.parametrize("concurrency", [2, 3, 7])
async def test_concurrency_bounds_calls_in_flight(concurrency: int, ordered: bool) -> None:
    """At most `concurrency` process_item calls run at once, and that many do run."""
    clock = VirtualClock()
    tracker = Tracker()
    n = 20
    pipe = Sleepy(clock, lambda _: 1.0, tracker, concurrency=concurrency, ordered=ordered)
    out = await collect(pipe.stream(range(n), clock=clock))
    assert concurrency == tracker.max_in_flight
    assert list(range(n)) == sorted(out)
    assert math.ceil(n / concurrency) == clock.monotonic()


async def test_concurrency_bound_holds_while_calls_are_blocked() -> None:
    """With every call blocked, no call beyond the limit starts until one finishes."""
    clock = VirtualClock()
    pipe = Gated(4, concurrency=4)
    run = asyncio.create_task(collect(pipe.stream(range(30), clock=clock)))
    await pipe.full.wait()
    # The clock moves only once every task waits: by then the run has started
    # every call it would start while the gate is shut.
    await clock.sleep(1)
    assert 4 == pipe.tracker.in_flight
    assert 4 == pipe.tracker.max_in_flight
    pipe.gate.set()
    assert [x * 10 for x in range(30)] == await run
    assert 4 == pipe.tracker.max_in_flight
    assert 0 == pipe.tracker.in_flight


async def test_concurrency_one_runs_calls_one_at_a_time() -> None:
    """The default concurrency of 1 never overlaps calls."""
    clock = VirtualClock()
    tracker = Tracker()
    pipe = Sleepy(clock, lambda _: 1.0, tracker)
    assert [0, 1, 2, 3] == await collect(pipe.stream(range(4), clock=clock))
    assert 1 == tracker.max_in_flight
    assert 4.0 == clock.monotonic()


async def test_concurrency_with_async_source() -> None:
    """Concurrency applies to items of an async source too."""
    clock = VirtualClock()
    tracker = Tracker()
    pipe = Sleepy(clock, lambda _: 1.0, tracker, concurrency=5)
    source = TestSource(range(10))
    assert list(range(10)) == await collect(pipe.stream(source, clock=clock))
    assert 5 == tracker.max_in_flight
    assert 2.0 == clock.monotonic()


# -- ordering -------------------------------------------------------------------------


async def test_ordered_output_keeps_input_order_when_later_items_finish_first() -> None:
    """ordered=True (default) emits in input order although later items complete first."""
    clock = VirtualClock()
    tracker = Tracker()
    n = 6
    pipe = Sleepy(clock, lambda i: float(n - i), tracker, concurrency=n)
    out = await collect(pipe.stream(range(n), clock=clock))
    assert list(range(n)) == out
    assert list(reversed(range(n))) == tracker.completed
    assert float(n) == clock.monotonic()


async def test_ordered_slow_head_does_not_stop_other_slots() -> None:
    """A slow first item holds output back but not the other workers."""
    clock = VirtualClock()
    tracker = Tracker()
    delays = [10.0, 1.0, 1.0, 1.0, 1.0]
    pipe = Sleepy(clock, lambda i: delays[i], tracker, concurrency=2)
    assert [0, 1, 2, 3, 4] == await collect(pipe.stream(range(5), clock=clock))
    assert [1, 2, 3, 4, 0] == tracker.completed
    assert 10.0 == clock.monotonic()


async def test_unordered_output_follows_completion_order() -> None:
    """ordered=False emits each result as soon as its call completes."""
    clock = VirtualClock()
    tracker = Tracker()
    delays = [5, 1, 4, 2, 3]
    pipe = Sleepy(clock, float, tracker, concurrency=5, ordered=False)
    assert [1, 2, 3, 4, 5] == await collect(pipe.stream(delays, clock=clock))
    assert 5.0 == clock.monotonic()


async def test_unordered_output_with_fewer_slots_than_items() -> None:
    """With ordered=False a long item is emitted after the short ones that passed it."""
    clock = VirtualClock()
    tracker = Tracker()
    items = [("a", 5.0), ("b", 1.0), ("c", 1.5), ("d", 1.0)]
    # Two slots: a runs 0-5; b 0-1, c 1-2.5, d 2.5-3.5 run in the other slot.
    pipe = Sleepy(clock, lambda it: it[1], tracker, concurrency=2, ordered=False)
    out = await collect(pipe.stream(items, clock=clock))
    assert ["b", "c", "d", "a"] == [name for name, _ in out]
    assert 5.0 == clock.monotonic()


async def test_unordered_results_reach_consumer_before_slow_item_finishes() -> None:
    """ordered=False delivers fast results while a slow call is still running."""
    clock = VirtualClock()
    tracker = Tracker()
    pipe = Sleepy(clock, float, tracker, concurrency=3, ordered=False)
    seen: list[tuple[int, float]] = []
    async with pipe.stream([100, 1, 2], clock=clock) as results:
        async for x in results:
            seen.append((x, clock.monotonic()))
    assert [(1, 1.0), (2, 2.0), (100, 100.0)] == seen


# -- operators with concurrency --------------------------------------------------------


async def test_async_map_with_concurrency() -> None:
    """map with an async fn runs up to `concurrency` calls at once, output in order."""
    clock = VirtualClock()
    tracker = Tracker()

    async def slow_double(x: int) -> int:
        tracker.enter()
        await clock.sleep(1.0)
        tracker.leave(x)
        return 2 * x

    out = await collect(map(slow_double, concurrency=4).stream(range(10), clock=clock))
    assert [2 * x for x in range(10)] == out
    assert 4 == tracker.max_in_flight
    assert 3.0 == clock.monotonic()


async def test_async_filter_with_concurrency_unordered() -> None:
    """filter with an async predicate and ordered=False keeps the right items."""
    clock = VirtualClock()
    tracker = Tracker()

    async def keep_even(x: int) -> bool:
        tracker.enter()
        await clock.sleep(float(10 - x))
        tracker.leave(x)
        return x % 2 == 0

    pipe = filter(keep_even, concurrency=10, ordered=False)
    assert [8, 6, 4, 2, 0] == await collect(pipe.stream(range(10), clock=clock))
    assert 10 == tracker.max_in_flight


async def test_async_flat_map_with_concurrency() -> None:
    """flat_map with an async fn returning lists works concurrently, in order."""
    clock = VirtualClock()

    async def explode(x: int) -> list[int]:
        await clock.sleep(float(5 - x))
        return [x] * x

    pipe = flat_map(explode, concurrency=5)
    assert [1, 2, 2, 3, 3, 3, 4, 4, 4, 4] == await collect(pipe.stream(range(5), clock=clock))
    assert 5.0 == clock.monotonic()


async def test_async_generator_flat_map_with_concurrency() -> None:
    """flat_map with an async generator function and concurrency>1 flattens each result."""
    clock = VirtualClock()

    async def explode(x: int) -> AsyncIterator[int]:
        for _ in range(x):
            await clock.sleep(1.0)
            yield x

    pipe = flat_map(explode, concurrency=3)
    assert [1, 2, 2, 3, 3, 3] == await collect(pipe.stream(range(4), clock=clock))


def blocking_lookup(x: int) -> int:
    return x


@pytest.mark.parametrize("operator", [map, filter, flat_map], ids=lambda op: op.__name__)
def test_a_sync_function_with_concurrency_is_refused(operator: Any) -> None:
    """A sync function's calls run one at a time on the event loop: concurrency > 1
    would do nothing, so it is refused, naming the pipe and the function and
    asking for an async function."""
    with pytest.raises(ValueError, match="async def") as info:
        operator(blocking_lookup, concurrency=4)
    expected = (
        f"pipe '{operator.__name__}(blocking_lookup)': concurrency=4 needs an async function "
        "(async def), but 'blocking_lookup' is a sync function, whose calls run one at a time "
        "on the event loop's thread; pass an async function, e.g. one that awaits "
        "asyncio.to_thread(blocking_lookup, item) for a blocking call, or use concurrency=1"
    )
    assert expected == str(info.value)


def test_the_refusal_names_a_named_pipe_and_a_lambda() -> None:
    """The error names the pipe by the name it was given."""
    with pytest.raises(ValueError, match=r"^pipe 'parse': concurrency=2 .* '<lambda>' is a sync"):
        map(lambda x: x, concurrency=2, name="parse")


class AsyncCall:
    """A callable object whose ``__call__`` is ``async def``."""

    async def __call__(self, x: int, offset: int = 0) -> int:
        await asyncio.sleep(0)
        return x + offset


async def add(x: int, offset: int) -> int:
    await asyncio.sleep(0)
    return x + offset


class Client:
    async def fetch(self, x: int) -> int:
        await asyncio.sleep(0)
        return x + 1


@pytest.mark.parametrize(
    "fn",
    [
        AsyncCall(),
        functools.partial(add, offset=1),
        functools.partial(AsyncCall(), offset=1),
        functools.partial(functools.partial(add), offset=1),
        Client().fetch,
    ],
    ids=["async_call", "partial", "partial_of_async_call", "nested_partial", "bound_method"],
)
async def test_async_callables_not_written_as_async_def_take_concurrency(fn: Any) -> None:
    """An async callable object, a bound async method and a functools.partial of
    either are async: they take concurrency > 1, and their results are awaited."""
    pipe = map(fn, concurrency=3)
    assert pipe.is_async
    got = await collect(pipe.stream(range(5)))
    assert [x + (0 if isinstance(fn, AsyncCall) else 1) for x in range(5)] == got


async def test_an_async_generator_function_takes_concurrency() -> None:
    """flat_map with an async generator function is async: concurrency > 1 is fine."""

    async def twice(x: int) -> AsyncIterator[int]:
        yield x
        yield x

    assert [0, 0, 1, 1] == await collect(flat_map(twice, concurrency=2).stream(range(2)))


async def test_concurrent_stages_in_series() -> None:
    """Two concurrent stages in a row each keep their own bound and the order."""
    clock = VirtualClock()
    first, second = Tracker(), Tracker()
    pipeline = Sleepy(clock, lambda _: 1.0, first, concurrency=2) | Sleepy(
        clock, lambda _: 3.0, second, concurrency=3
    )
    assert list(range(12)) == await collect(pipeline.stream(agen(range(12)), clock=clock))
    assert 2 == first.max_in_flight
    assert 3 == second.max_in_flight


# -- pacing ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "concurrency", "min_time"),
    [(10, 1, 0.5), (10, 3, 0.5), (7, 7, 2.0), (100, 8, 0.25)],
)
async def test_min_processing_time_paces_the_pipe(
    n: int, concurrency: int, min_time: float
) -> None:
    """N items at concurrency c with min_processing_time t take at least ceil(N/c)*t."""
    clock = VirtualClock()
    config = BackpressureConfig(min_processing_time=min_time)
    pipe = StreamPipe[int, int](config=config, concurrency=concurrency)
    assert list(range(n)) == await collect(pipe.stream(range(n), clock=clock))
    lower = math.ceil(n / concurrency) * min_time
    assert clock.monotonic() >= lower
    assert clock.monotonic() < lower + min_time  # and the slots are used in parallel


async def test_min_processing_time_on_sync_map() -> None:
    """A sync map with min_processing_time is paced per item as well."""
    clock = VirtualClock()
    pipe: Pipeable[int, int] = map(
        lambda x: x * 2, config=BackpressureConfig(min_processing_time=0.1)
    )
    assert [0, 2, 4, 6, 8] == await collect(pipe.stream(range(5), clock=clock))
    assert clock.monotonic() >= 0.5


async def test_min_processing_time_spacing_between_results() -> None:
    """With concurrency 1, consecutive items start at least t apart."""
    clock = VirtualClock()
    starts: list[float] = []

    def record(x: int) -> int:
        starts.append(clock.monotonic())
        return x

    pipe = map(record, config=BackpressureConfig(min_processing_time=0.5))
    await collect(pipe.stream(range(4), clock=clock))
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert all(gap >= 0.5 for gap in gaps), gaps


async def test_min_processing_time_does_not_add_to_slow_items() -> None:
    """An item slower than min_processing_time is not held any longer."""
    clock = VirtualClock()
    tracker = Tracker()
    pipe = Sleepy(clock, lambda _: 2.0, tracker, config=BackpressureConfig(min_processing_time=0.5))
    assert [0, 1, 2] == await collect(pipe.stream(range(3), clock=clock))
    assert 6.0 == clock.monotonic()
