"""BatchStreamPipe: batches by size, time and weight; per-item processing, errors, acks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Callable
from datetime import timedelta
from itertools import pairwise
from typing import Any, TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import GatedSource, agen, collect, collect_timed, collect_until_error
from pipeflow.monitoring import StreamMonitor
from pipeflow.streams import (
    BackpressureConfig,
    BatchStreamPipe,
    DeadLetter,
    Pipeline,
    Retry,
    StreamError,
)
from pipeflow.streams import map as pmap
from pipeflow.testing import TestSource, VirtualClock

T = TypeVar("T")


def batcher(size: int, **kwargs: Any) -> BatchStreamPipe[Any, list[Any]]:
    return BatchStreamPipe(size, **kwargs)


class Square(BatchStreamPipe[int, list[int]]):
    async def process_item(self, item: int) -> Any:  # a per-item result, not a batch's
        return item * item


class FailingItems(BatchStreamPipe[int, list[int]]):
    """Multiplies by ten; raises on the items in ``bad``; counts calls per item."""

    def __init__(self, size: int, bad: set[int], **kwargs: Any) -> None:
        super().__init__(size, **kwargs)
        self.bad = bad
        self.calls: dict[int, int] = {}

    async def process_item(self, item: int) -> Any:
        self.calls[item] = self.calls.get(item, 0) + 1
        if item in self.bad:
            raise ValueError(f"bad item {item}")
        return item * 10


class SumBatch(BatchStreamPipe[int, int]):
    """Sums each batch; fails on a batch holding ``bad``."""

    def __init__(self, size: int, bad: int | None = None, **kwargs: Any) -> None:
        super().__init__(size, **kwargs)
        self.bad = bad

    async def process_batch(self, batch: list[int]) -> int:
        if self.bad in batch:
            raise RuntimeError("batch failed")
        return sum(batch)


# -- size -----------------------------------------------------------------------------


async def test_full_batches_then_partial_last_batch() -> None:
    """Items are grouped batch_size at a time; the end flushes the last partial batch."""
    assert [[0, 1, 2], [3, 4, 5], [6, 7]] == await collect(batcher(3).stream(range(8)))


async def test_exact_multiple_leaves_no_empty_batch() -> None:
    """When the input divides evenly there is no empty batch at the end."""
    assert [[0, 1], [2, 3], [4, 5]] == await collect(batcher(2).stream(range(6)))


async def test_empty_source_gives_no_batch() -> None:
    """No items, no batches."""
    assert [] == await collect(batcher(3).stream([]))


async def test_batch_size_one() -> None:
    """batch_size=1 wraps every item in a batch of its own."""
    assert [["a"], ["b"]] == await collect(batcher(1).stream(["a", "b"]))


async def test_batches_do_not_depend_on_chunks() -> None:
    """One item at a time or in big chunks, batches are the same."""
    items = list(range(600))
    chunked = await collect(batcher(7).stream(items))
    one_by_one = await collect(batcher(7).stream(agen(items)))
    assert chunked == one_by_one
    assert [items[i : i + 7] for i in range(0, 600, 7)] == chunked


async def test_batches_after_another_pipe() -> None:
    """A batch pipe composes with other pipes."""
    pipeline: Pipeline[int, list[Any]] = pmap(lambda x: x + 1) | batcher(2)
    assert [[1, 2], [3]] == await collect(pipeline.stream(range(3)))


async def test_statistics_count_items_in_and_batches_out() -> None:
    """items_in counts items, items_out counts emitted batches."""
    stream = batcher(4).stream(range(10))
    await collect(stream)
    [stats] = stream.statistics()
    assert (10, 3) == (stats.items_in, stats.items_out)


# -- max_wait ---------------------------------------------------------------------------


async def test_max_wait_emits_partial_batch_while_source_is_quiet() -> None:
    """A partial batch goes out exactly max_wait after its first item, without new input."""
    clock = VirtualClock()
    src: TestSource[Any] = TestSource(
        [1, 2, TestSource.wait(10), 3, TestSource.wait(1)], clock=clock
    )
    out = await collect_timed(batcher(5, max_wait=2).stream(src, clock=clock), clock)
    assert [(2.0, [1, 2]), (11.0, [3])] == out


async def test_max_wait_counts_from_first_item_of_batch() -> None:
    """Later items do not restart the wait; the next batch's wait starts at its own first item."""
    clock = VirtualClock()
    at = TestSource.at
    src: TestSource[Any] = TestSource(
        [at(0, 1), at(1.5, 2), at(3, 3), TestSource.wait(10)], clock=clock
    )
    pipe = batcher(5, max_wait=timedelta(seconds=2))
    out = await collect_timed(pipe.stream(src, clock=clock), clock)
    assert [(2.0, [1, 2]), (5.0, [3])] == out


async def test_full_batch_goes_out_before_max_wait() -> None:
    """A batch that fills up is emitted at once; the wait restarts with the next batch."""
    clock = VirtualClock()
    at = TestSource.at
    src: TestSource[Any] = TestSource(
        [at(0, 1), at(0.5, 2), at(1, 3), TestSource.wait(10)], clock=clock
    )
    out = await collect_timed(batcher(2, max_wait=2).stream(src, clock=clock), clock)
    assert [(0.5, [1, 2]), (3.0, [3])] == out


async def test_max_wait_with_chunk_completing_batch_and_starting_next() -> None:
    """Items that fill a batch and start another in one go: the new batch waits from then."""
    clock = VirtualClock()
    src: TestSource[Any] = TestSource(
        [1, TestSource.wait(1), 2, 3, TestSource.wait(10)], clock=clock
    )
    out = await collect_timed(batcher(2, max_wait=5).stream(src, clock=clock), clock)
    assert [(1.0, [1, 2]), (6.0, [3])] == out


@pytest.mark.parametrize(
    ("arrival", "max_wait"), [(0.4, 0.1), (0.7, 0.1), (0.3, 0.6), (2.9, 0.3), (1e6 + 0.1, 0.2)]
)
async def test_max_wait_fires_once_due_whatever_the_float_rounding(
    arrival: float, max_wait: float
) -> None:
    """A batch whose first item comes at a time that is not a round float goes out when
    max_wait has passed, never spinning on a wait of zero before it is due."""
    clock = VirtualClock()
    src: TestSource[Any] = TestSource(
        [TestSource.wait(arrival), 1, TestSource.wait(1e7), 2], clock=clock
    )
    out = await collect_timed(batcher(10, max_wait=max_wait).stream(src, clock=clock), clock)
    assert [[1], [2]] == [batch for _, batch in out]
    emitted_at = out[0][0]
    assert emitted_at >= arrival + max_wait
    assert emitted_at - (arrival + max_wait) < 1e-6


# -- weight -----------------------------------------------------------------------------


async def test_batches_limited_by_weight() -> None:
    """A batch closes when the next item would take its weight over max_weight."""
    items = ["ab", "cd", "e", "fgh", "ij", "k"]
    pipe = batcher(10, weight=len, max_weight=5)
    assert [["ab", "cd", "e"], ["fgh", "ij"], ["k"]] == await collect(pipe.stream(items))


async def test_item_heavier_than_max_weight_forms_own_batch() -> None:
    """An item heavier than max_weight alone is a batch of its own."""
    items = ["a", "toolong", "b", "c"]
    pipe = batcher(10, weight=len, max_weight=3)
    assert [["a"], ["toolong"], ["b", "c"]] == await collect(pipe.stream(items))


async def test_weight_and_size_limits_together() -> None:
    """batch_size still caps a batch of light items."""
    pipe = batcher(2, weight=lambda _: 0.5, max_weight=10)
    assert [[1, 2], [3, 4], [5]] == await collect(pipe.stream([1, 2, 3, 4, 5]))


async def test_weighted_batches_same_one_by_one() -> None:
    """Weighted batching does not depend on chunking either."""
    items = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5]
    chunked = await collect(batcher(4, weight=float, max_weight=8).stream(items))
    single = await collect(batcher(4, weight=float, max_weight=8).stream(agen(items)))
    assert chunked == single
    assert [[3, 1, 4], [1, 5], [9], [2, 6], [5, 3], [5]] == chunked


def weight_fails_on(bad: int) -> Callable[[int], int]:
    """A weight of 1 for every item but ``bad``, whose weight= call raises."""

    def weight(x: int) -> int:
        if x == bad:
            raise ValueError(f"no weight for {x}")
        return 1

    return weight


async def test_failing_weight_is_skipped_under_skip() -> None:
    """A weight= call that raises is an item error: under "skip" the item leaves no trace."""
    pipe = batcher(2, weight=weight_fails_on(2), max_weight=3, on_error="skip")
    stream = pipe.stream([1, 2, 3, 4, 5])
    assert [[1, 3], [4, 5]] == await collect(stream)
    assert (1, 1) == (stream.statistics()[0].skipped, stream.statistics()[0].errors)


async def test_failing_weight_under_raise_delivers_earlier_batches_first() -> None:
    """Under "raise" the batches completed before the failed item come out, then StreamError."""
    pipe = batcher(2, weight=weight_fails_on(5), max_weight=3)
    got: list[list[int]] = []
    with pytest.raises(StreamError) as info:
        await collect_until_error(pipe.stream(range(1, 8)), got)
    assert [[1, 2], [3, 4]] == got
    assert 5 == info.value.item
    assert isinstance(info.value.__cause__, ValueError)


async def test_failing_weight_dead_lettered_and_retried() -> None:
    """Dead letters and retries apply to weight= as to any item error."""
    failed: list[StreamError] = []
    pipe = batcher(5, weight=weight_fails_on(2), max_weight=10, on_error=DeadLetter(failed))
    assert [[1, 3]] == await collect(pipe.stream([1, 2, 3]))
    assert [2] == [e.item for e in failed]

    attempts: list[int] = []

    def flaky(x: int) -> int:
        attempts.append(x)
        if x == 2 and attempts.count(2) == 1:
            raise ConnectionError("flaky")
        return x

    retried = batcher(5, weight=flaky, max_weight=3, on_error=Retry(attempts=2, jitter=0))
    assert [[1, 2], [3]] == await collect(retried.stream([1, 2, 3], clock=VirtualClock()))
    assert [1, 2, 3, 2] == attempts  # each item once, and the failed one once more


@pytest.mark.parametrize(
    ("bad", "error"),
    [(float("nan"), ValueError), (float("inf"), ValueError), (-1, ValueError), ("3", TypeError)],
)
async def test_weight_must_be_a_finite_number_at_least_zero(bad: Any, error: type) -> None:
    """A weight that is NaN, infinite, negative or not a number fails its item."""
    weights = {1: 1, 2: bad, 3: 1}
    pipe: BatchStreamPipe[int, list[int]] = BatchStreamPipe(
        5, weight=weights.__getitem__, max_weight=2
    )
    got: list[list[int]] = []
    with pytest.raises(StreamError) as info:
        await collect_until_error(pipe.stream([1, 2, 3]), got)
    assert 2 == info.value.item
    assert isinstance(info.value.__cause__, error)
    assert "weight= must return a finite number >= 0" in str(info.value.__cause__)
    skipping = batcher(5, weight=weights.__getitem__, max_weight=2, on_error="skip")
    assert [[1, 3]] == await collect(skipping.stream([1, 2, 3]))


async def test_weight_is_called_once_per_item() -> None:
    """weight= runs once per item, failures included."""
    calls: list[int] = []

    def weight(x: int) -> int:
        calls.append(x)
        return 1 // (x % 3)  # multiples of 3 fail

    pipe = batcher(2, weight=weight, max_weight=5, on_error="skip")
    assert [[1, 2], [4, 5], [7]] == await collect(pipe.stream(range(1, 8)))
    assert list(range(1, 8)) == sorted(calls)


# -- processing ---------------------------------------------------------------------------


async def test_default_process_batch_applies_process_item() -> None:
    """The default process_batch returns process_item's results for the batch, in order."""
    assert [[0, 1, 4], [9, 16]] == await collect(Square(3).stream(range(5)))


async def test_process_batch_override() -> None:
    """An overridden process_batch turns each batch into one result."""
    assert [3, 12, 6] == await collect(SumBatch(3).stream(range(7)))


async def test_process_items_with_concurrency_keeps_order_and_limits_in_flight() -> None:
    """process_items runs up to `concurrency` process_item calls at once; results stay in order."""
    clock = VirtualClock()
    in_flight = 0
    peak = 0

    class Slow(BatchStreamPipe[int, list[int]]):
        async def process_item(self, item: int) -> Any:
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            await clock.sleep(1.0 / (item + 1))  # later items finish sooner
            in_flight -= 1
            return item

    out = await collect_timed(Slow(6, concurrency=2).stream(range(8), clock=clock), clock)
    assert [[0, 1, 2, 3, 4, 5], [6, 7]] == [batch for _, batch in out]
    assert 2 == peak
    # Two at a time: 1/1 | 1/2 -> 1/3 starts at 0.5, ... far faster than one at a time.
    assert out[0][0] < sum(1.0 / (i + 1) for i in range(6))


async def test_process_items_sequential_by_default() -> None:
    """With concurrency=1 no two process_item calls overlap."""
    clock = VirtualClock()
    in_flight = 0
    peak = 0

    class Slow(BatchStreamPipe[int, list[int]]):
        async def process_item(self, item: int) -> Any:
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            await clock.sleep(0.1)
            in_flight -= 1
            return item

    assert [[0, 1, 2]] == await collect(Slow(3).stream(range(3), clock=clock))
    assert 1 == peak


async def test_skip_failed_item_drops_only_its_result() -> None:
    """on_error="skip": a failing process_item leaves its batch one result short."""
    pipe = FailingItems(3, {2}, on_error="skip")
    stream = pipe.stream(range(6))
    assert [[0, 10], [30, 40, 50]] == await collect(stream)
    [stats] = stream.statistics()
    assert (1, 1) == (stats.skipped, stats.errors)


async def test_skip_failed_items_with_concurrency() -> None:
    """Skipping works the same with concurrent process_item calls."""
    pipe = FailingItems(4, {1, 3}, on_error="skip", concurrency=3)
    assert [[0, 20], [40, 50]] == await collect(pipe.stream(range(6)))


async def test_process_batch_failure_raises_with_batch_as_item() -> None:
    """A failing process_batch under "raise": earlier results first, then StreamError(batch)."""
    got: list[int] = []
    with pytest.raises(StreamError) as info:
        await collect_until_error(SumBatch(2, bad=4, name="sums").stream(range(8)), got)
    assert [1, 5] == got
    assert [4, 5] == info.value.item
    assert "sums" == info.value.pipe
    assert isinstance(info.value.__cause__, RuntimeError)


async def test_process_batch_failure_skipped() -> None:
    """Under "skip" a failing batch leaves no result; later batches still come."""
    stream = SumBatch(2, bad=4, on_error="skip").stream(range(8))
    assert [1, 5, 13] == await collect(stream)
    assert 1 == stream.statistics()[0].skipped


async def test_failed_item_under_raise_reports_the_item() -> None:
    """A process_item failure under "raise" ends the stream with StreamError for that item.

    Earlier batches are delivered; the error names the failing item (not the batch),
    its cause is the original exception, and it counts as one error.
    """
    pipe = FailingItems(3, {4})
    stream = pipe.stream(range(6))
    got: list[list[int]] = []
    with pytest.raises(StreamError) as info:
        await collect_until_error(stream, got)
    assert [[0, 10, 20]] == got
    assert 4 == info.value.item
    assert isinstance(info.value.__cause__, ValueError)
    assert 1 == stream.statistics()[0].errors


async def test_retry_of_failed_item_retries_only_that_item() -> None:
    """Retry covers the failing process_item call; the other items of the batch run once."""
    pipe = FailingItems(3, {4}, on_error=Retry(attempts=3, backoff=1, jitter=0))
    stream = pipe.stream(range(6), clock=VirtualClock())
    got: list[list[int]] = []
    with pytest.raises(StreamError) as info:
        await collect_until_error(stream, got)
    assert [[0, 10, 20]] == got
    assert (4, 3) == (info.value.item, info.value.attempts)
    # Under "raise" the batch stops at the item that failed for good: 5 is never tried.
    assert {0: 1, 1: 1, 2: 1, 3: 1, 4: 3} == pipe.calls
    [stats] = stream.statistics()
    assert (2, 1) == (stats.retries, stats.errors)


async def test_transient_item_failure_retried_within_batch() -> None:
    """An item that fails once and then succeeds keeps its place in the batch."""
    failed: set[int] = set()

    class Flaky(BatchStreamPipe[int, list[int]]):
        async def process_item(self, item: int) -> Any:
            if item == 1 and item not in failed:
                failed.add(item)
                raise ConnectionError("flaky")
            return item

    pipe = Flaky(3, on_error=Retry(attempts=2, backoff=1, jitter=0))
    stream = pipe.stream(range(4), clock=VirtualClock())
    assert [[0, 1, 2], [3]] == await collect(stream)
    assert 1 == stream.statistics()[0].retries


async def test_failed_item_cancels_the_calls_still_in_flight() -> None:
    """With concurrency > 1, once an item fails for good the other calls are cancelled and
    awaited before the error comes out: none runs on after the stream has failed."""
    clock = VirtualClock()
    started: list[int] = []
    cancelled: list[int] = []
    finished: list[int] = []

    class Slow(BatchStreamPipe[int, list[int]]):
        async def process_item(self, item: int) -> Any:
            started.append(item)
            if item == 0:
                raise ValueError("boom")
            try:
                await clock.sleep(1)
            except asyncio.CancelledError:
                cancelled.append(item)
                raise
            finished.append(item)
            return item

    with pytest.raises(StreamError) as info:
        await collect(Slow(4, concurrency=4).stream(range(4), clock=clock))
    assert 0 == info.value.item
    assert ([0, 1, 2, 3], [1, 2, 3]) == (started, sorted(cancelled))
    await clock.sleep(10)
    assert [] == finished
    assert 0 == clock.pending


async def test_closing_the_stream_cancels_calls_in_flight() -> None:
    """Leaving the stream while process_items has calls in flight cancels and awaits them."""
    clock = VirtualClock(autojump=False)
    cancelled: list[int] = []

    class Slow(BatchStreamPipe[int, list[int]]):
        async def process_item(self, item: int) -> Any:
            try:
                await clock.sleep(1 + item)
            except asyncio.CancelledError:
                cancelled.append(item)
                raise
            return item

    stream = Slow(3, concurrency=3).stream(range(3), clock=clock)
    consumer = asyncio.create_task(collect(stream))
    await clock.advance(0)  # the calls start
    await clock.advance(1.5)  # item 0 is done, 1 and 2 are still sleeping
    consumer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await consumer
    assert [1, 2] == sorted(cancelled)
    assert 0 == clock.pending


@pytest.mark.parametrize(("concurrency", "elapsed"), [(1, 4.0), (2, 2.0)])
async def test_min_processing_time_paces_process_item_calls(
    concurrency: int, elapsed: float
) -> None:
    """Each process_item call occupies its worker for at least min_processing_time."""
    clock = VirtualClock()
    paced = BackpressureConfig(min_processing_time=0.5)
    pipe = Square(2, config=paced, concurrency=concurrency)
    assert [[0, 1], [4, 9], [16, 25], [36, 49]] == await collect(pipe.stream(range(8), clock=clock))
    assert elapsed == clock.monotonic()


# -- acks -------------------------------------------------------------------------------


async def test_acks_do_not_pass_items_held_in_pending_batch() -> None:
    """The source is acked only up to items whose batch was delivered."""
    src = TestSource(range(5), one_by_one=True)
    acked_when_delivered: list[int] = []
    async with batcher(2).stream(src) as stream:
        async for _ in stream:
            acked_when_delivered.append(src.acked)
    assert [0, 2, 4] == acked_when_delivered
    assert 5 == src.acked


async def test_acks_with_max_wait_do_not_pass_pending_batch() -> None:
    """With a timer-driven pipe too, items waiting in a batch are not acked."""
    clock = VirtualClock()
    src: TestSource[Any] = TestSource(
        [1, 2, 3, TestSource.wait(5), 4, TestSource.wait(5)], clock=clock
    )
    acked_when_delivered: list[int] = []
    delivered_before: list[int] = []
    delivered = 0
    async with batcher(2, max_wait=1).stream(src, clock=clock) as stream:
        async for batch in stream:
            acked_when_delivered.append(src.acked)
            delivered_before.append(delivered)
            delivered += len(batch)
    # [1, 2] full, [3] after max_wait, [4] at the end: never acked beyond what was delivered.
    assert all(a <= d for a, d in zip(acked_when_delivered, delivered_before, strict=True))
    assert 3 == len(acked_when_delivered)
    assert 4 == src.acked


async def test_failed_batch_holds_acks_back() -> None:
    """After process_batch fails under "raise", the failed batch's items are not acked."""
    src = TestSource(list(range(8)), one_by_one=True)
    got: list[int] = []
    with pytest.raises(StreamError):
        await collect_until_error(SumBatch(2, bad=3).stream(src), got)
    assert [1] == got
    assert 2 == src.acked  # 0 and 1 were delivered; [2, 3] failed


async def test_failed_last_batch_is_not_acked() -> None:
    """The partial batch flushed at the end that fails is not acked either."""
    src = TestSource(list(range(5)), one_by_one=True)
    got: list[int] = []
    with pytest.raises(StreamError):
        await collect_until_error(SumBatch(2, bad=4).stream(src), got)
    assert [1, 5] == got
    assert 4 == src.acked


async def test_failed_weight_is_not_acked() -> None:
    """A weight= failure under "raise": acks stop before the batch the item would join."""
    src = TestSource([1, 2, 3, 4, 5], one_by_one=True)
    pipe = batcher(2, weight=weight_fails_on(4), max_weight=10)
    got: list[list[int]] = []
    with pytest.raises(StreamError):
        await collect_until_error(pipe.stream(src), got)
    assert [[1, 2]] == got
    assert 2 == src.acked


async def test_failed_item_in_timed_batch_is_not_acked() -> None:
    """With max_wait, a batch failing when its timer fires holds its items' acks back."""
    clock = VirtualClock()
    src: TestSource[Any] = TestSource(
        [1, 2, TestSource.wait(0.5), 3, TestSource.wait(5), 4], clock=clock
    )
    got: list[int] = []
    with pytest.raises(StreamError):
        await collect_until_error(SumBatch(2, bad=3, max_wait=1).stream(src, clock=clock), got)
    assert [3] == got
    assert 2 == src.acked


# -- validation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "kwargs"),
    [
        (0, {}),
        (-1, {}),
        (True, {}),
        (2.5, {}),
        (3, {"weight": len}),
        (3, {"max_weight": 10}),
        (3, {"weight": len, "max_weight": 0}),
        (3, {"weight": len, "max_weight": -1}),
        (3, {"max_wait": -1}),
        (3, {"max_wait": 0}),
        (3, {"max_wait": timedelta(seconds=-1)}),
        (3, {"max_wait": float("nan")}),
        (3, {"max_wait": float("inf")}),
        (3, {"weight": len, "max_weight": float("nan")}),
        (3, {"weight": len, "max_weight": float("inf")}),
        (3, {"weight": len, "max_weight": "10"}),
        (3, {"concurrency": 0}),
        (3, {"on_error": "ignore"}),
    ],
)
def test_invalid_settings_rejected(size: Any, kwargs: dict[str, Any]) -> None:
    """Bad batch settings raise ValueError at construction."""
    with pytest.raises(ValueError, match=r"\S"):
        BatchStreamPipe(size, **kwargs)


def test_weight_must_be_callable() -> None:
    """weight= that is not a function raises TypeError."""
    with pytest.raises(TypeError):
        BatchStreamPipe(3, weight=2, max_weight=10)  # type: ignore[arg-type]


# -- properties ---------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(
    items=st.lists(st.integers(), max_size=300),
    size=st.integers(1, 20),
    one_by_one=st.booleans(),
)
def test_batches_partition_input(items: list[int], size: int, one_by_one: bool) -> None:
    """Concatenated batches equal the input; every batch but the last has batch_size items."""

    async def main() -> list[list[int]]:
        source = agen(items) if one_by_one else items
        return await collect(batcher(size).stream(source))

    batches = asyncio.run(main())
    assert items == [x for b in batches for x in b]
    assert all(len(b) == size for b in batches[:-1])
    if batches:
        assert 1 <= len(batches[-1]) <= size


@settings(max_examples=100, deadline=None)
@given(
    weights=st.lists(st.integers(0, 12), max_size=60),
    size=st.integers(1, 8),
    limit=st.integers(1, 10),
    one_by_one=st.booleans(),
)
def test_weighted_batches_respect_limits(
    weights: list[int], size: int, limit: int, one_by_one: bool
) -> None:
    """Weighted batches keep the input order, stay within size and weight (or hold one heavy
    item), and close only when the next item would not fit."""
    items = list(enumerate(weights))

    async def main() -> list[list[tuple[int, int]]]:
        source = agen(items) if one_by_one else items
        pipe: BatchStreamPipe[tuple[int, int], list[tuple[int, int]]] = BatchStreamPipe(
            size, weight=lambda x: x[1], max_weight=limit
        )
        return await collect(pipe.stream(source))

    batches = asyncio.run(main())
    assert items == [x for b in batches for x in b]
    for b, following in pairwise(batches):
        total = sum(w for _, w in b)
        assert len(b) <= size
        assert total <= limit or len(b) == 1
        assert len(b) == size or total + following[0][1] > limit


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_max_weight_must_be_finite(value: float) -> None:
    """A NaN or infinite max_weight raises ValueError naming the field, the value and the rule."""
    with pytest.raises(ValueError, match=rf"max_weight must be a finite number > 0, got {value}"):
        BatchStreamPipe(3, weight=len, max_weight=value)


async def test_a_stop_iteration_from_weight_is_an_item_error() -> None:
    def weight(x: int) -> int:
        if x == 2:
            raise StopIteration
        return 1

    pipe: BatchStreamPipe[int, list[int]] = BatchStreamPipe(
        10, weight=weight, max_weight=5, on_error="skip"
    )
    assert [[1, 3]] == await collect(pipe.stream([1, 2, 3]))


async def test_an_item_given_up_on_inside_a_retried_batch_fails_as_the_item() -> None:
    """process_batch fails once; its retry's process_items gives up on an item. That
    verdict stands as it would on a first attempt: the item, once, not the batch."""

    class Bulk(BatchStreamPipe[str, Any]):
        calls = 0

        async def process_item(self, item: str) -> str:
            if item == "bad":
                raise ValueError(item)
            return item

        async def process_batch(self, batch: list[str]) -> Any:
            Bulk.calls += 1
            if Bulk.calls == 1:
                raise ConnectionError("transient")
            return await self.process_items(batch)

    stream = Bulk(2, on_error=Retry(attempts=2, backoff=0, jitter=0)).stream(["ok", "bad"])
    with pytest.raises(StreamError) as info:
        await collect(stream)
    assert "bad" == info.value.item
    assert isinstance(info.value.__cause__, ValueError)
    assert 1 == stream.statistics()[0].errors


# -- batches by count alone: the same whichever loop cuts them -----------------------------

#: How a batcher by count is run: alone (the loop for batches by count), with a weight
#: that never limits (the general loop), watched by a monitor (a timed run), or over
#: a plain async source, which it reads item by item.
_RUNS = ("count", "weighed", "monitored", "items")


async def _plain(source: AsyncIterable[T]) -> AsyncIterator[T]:
    """``source``'s items from an async generator that takes no acknowledgements."""
    async for x in source:
        yield x


class _Sums(BatchStreamPipe[int, int]):
    """Sums each batch; fails on a batch holding ``bad``."""

    def __init__(self, size: int, bad: int | None, **kwargs: Any) -> None:
        super().__init__(size, **kwargs)
        self.bad = bad

    async def process_batch(self, batch: list[int]) -> int:
        if self.bad in batch:
            raise RuntimeError(f"bad batch {batch}")
        return sum(batch)


async def _run_batches(
    run: str, script: list[Any], size: int, bad: int | None, on_error: Any
) -> tuple[list[tuple[int, int]], str | None, tuple[int, int, int], int]:
    """Each result with the ack at its delivery, the error that ended the stream,
    (items_in, items_out, errors), and the final ack."""
    clock = VirtualClock()
    src: TestSource[int] = TestSource(script, clock=clock)
    kwargs: dict[str, Any] = {"on_error": on_error}
    if run == "weighed":
        kwargs.update(weight=lambda _: 0, max_weight=1)
    pipe = _Sums(size, bad, **kwargs)
    if run == "monitored":
        pipe.set_monitor(StreamMonitor())
    got: list[tuple[int, int]] = []
    error = None
    stream = pipe.stream(_plain(src) if run == "items" else src, clock=clock)
    try:
        async with stream:
            async for total in stream:
                got.append((total, src.acked))
    except StreamError as exc:
        error = f"{type(exc.__cause__).__name__}: {exc.__cause__}"
    [stats] = stream.statistics()
    return got, error, (stats.items_in, stats.items_out, stats.errors), src.acked


@settings(max_examples=100, deadline=None)
@given(
    pieces=st.lists(st.integers(0, 40), max_size=12),
    size=st.integers(1, 12),
    bad=st.none() | st.integers(0, 150),
    on_error=st.sampled_from(["raise", "skip"]),
)
def test_batches_by_count_same_in_every_loop(
    pieces: list[int], size: int, bad: int | None, on_error: str
) -> None:
    """Batches by count alone give the same results, acks, errors and counts as the
    general loop and a timed run, whatever chunks the source hands over; and the
    same results, errors and counts when the batcher reads a plain async source."""
    script: list[Any] = []
    for n in pieces:  # runs of items the source has at hand, a pause between them
        start = sum(1 for x in script if isinstance(x, int))
        script += [*range(start, start + n), TestSource.wait(1)]

    async def main() -> list[Any]:
        return [await _run_batches(run, script, size, bad, on_error) for run in _RUNS]

    fast, general, timed, items = asyncio.run(main())
    assert general == fast
    assert timed == fast
    got, error, (items_in, *counts), _ = items
    assert ([total for total, _ in fast[0]], fast[1], fast[2][1:]) == (
        [total for total, _ in got],
        error,
        tuple(counts),
    )
    # Item by item, nothing past a failed batch is read; in chunks, what was at hand.
    assert items_in == fast[2][0] if error is None else items_in <= fast[2][0]


async def test_batches_by_count_over_chunks_of_every_length() -> None:
    """Chunks shorter than, as long as and longer than a batch, completing a pending
    batch or not: every batch is cut at batch_size and acks follow delivered batches."""
    clock = VirtualClock()
    script: list[Any] = []
    for n in (2, 1, 3, 7, 0, 5, 1):
        start = sum(1 for x in script if isinstance(x, int))
        script += [*range(start, start + n), TestSource.wait(1)]
    src: TestSource[int] = TestSource(script, clock=clock)
    got: list[tuple[list[int], int]] = []
    async with batcher(3).stream(src, clock=clock) as stream:
        async for batch in stream:
            got.append((batch, src.acked))
    # Chunks [0, 1] [2] [3, 4, 5] [6..12] [13..17] [18]; a chunk is acked once all its
    # results are taken, and never into the batch still pending.
    expected = [
        ([0, 1, 2], 0),  # completed by the second chunk
        ([3, 4, 5], 3),
        ([6, 7, 8], 6),
        ([9, 10, 11], 6),  # [12] stays pending: the chunk is acked up to 6 only
        ([12, 13, 14], 6),
        ([15, 16, 17], 6),
        ([18], 18),  # the flush at the end
    ]
    assert expected == got
    assert 19 == src.acked


async def _at_hand(n: int) -> AsyncIterator[int]:
    for i in range(n):
        yield i


@pytest.mark.parametrize("source", ["list", "tuple", "range", "generator", "async"])
async def test_a_first_batcher_takes_a_sequence_in_long_slices_with_the_same_result(
    source: str,
) -> None:
    """A first BatchStreamPipe reads a list, tuple or range (or what an async source
    has at hand) in pieces longer than a chunk; its batches, counts and order are
    those of any other source."""
    n = 10_000
    items: Any = {
        "list": list(range(n)),
        "tuple": tuple(range(n)),
        "range": range(n),
        "generator": iter(range(n)),
        "async": _at_hand(n),
    }[source]
    async with BatchStreamPipe[int, Any](64).stream(items) as results:
        batches = [list(b) async for b in results]
        (stats,) = results.statistics()
    assert [list(range(i, min(i + 64, n))) for i in range(0, n, 64)] == batches
    assert (n, len(batches)) == (stats.items_in, stats.items_out)


async def test_a_batcher_alone_reads_a_plain_async_source_item_by_item() -> None:
    """A batcher by count that is the whole pipeline reads a plain async source
    item by item: each batch goes out when its last item arrives, the counts are
    exact at every result and while the source waits, and breaking out closes the
    source."""
    source = GatedSource(40, 100)
    async with SumBatch(3).stream(source.items()) as results:
        got: list[int] = []

        async def take() -> None:
            async for total in results:
                got.append(total)
                k = len(got)
                stats = results.statistics()[0]
                # The k-th batch went out as its last item came: nothing more was read.
                assert (3 * k, k) == (stats.items_in, stats.items_out)
                if k == 20:
                    break

        consumer = asyncio.ensure_future(take())
        await source.waiting.wait()
        # 13 batches out, item 39 pending (and counted as read).
        stats = results.statistics()[0]
        assert (40, 13) == (stats.items_in, stats.items_out)
        source.gate.set()
        await consumer
    assert [sum(range(i, i + 3)) for i in range(0, 60, 3)] == got
    assert source.closed
    assert [(60, 20)] == [(s.items_in, s.items_out) for s in results.statistics()]


async def test_a_batcher_reading_the_source_reports_its_pending_batch_when_cancelled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Cancelled while the source waits, the batcher's pending items are counted as
    read and not delivered, and the source is closed."""
    closed: list[bool] = []
    waiting = asyncio.Event()

    async def source() -> AsyncIterator[int]:
        try:
            for x in range(5):
                yield x
            waiting.set()
            await asyncio.Event().wait()
        finally:
            closed.append(True)

    stream = batcher(2, name="pairs").stream(source())
    got: list[list[int]] = []

    async def take() -> None:
        async with stream:
            async for batch in stream:
                got.append(batch)

    task = asyncio.ensure_future(take())
    await waiting.wait()  # the batcher has read item 4 and waits on the source
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [[0, 1], [2, 3]] == got
    assert [True] == closed
    [stats] = stream.statistics()
    assert (5, 2) == (stats.items_in, stats.items_out)
    assert "(1 in partial batches)" in caplog.text


async def test_a_failed_batch_from_a_plain_async_source_ends_the_stream_after_earlier_ones() -> (
    None
):
    """Read item by item, a batch that fails under "raise" ends the stream after the
    batches before it, and the source is closed."""
    closed: list[bool] = []

    async def source() -> AsyncIterator[int]:
        try:
            for x in range(10):
                yield x
        finally:
            closed.append(True)

    stream = SumBatch(3, bad=7).stream(source())
    got: list[int] = []
    with pytest.raises(StreamError) as info:
        await collect_until_error(stream, got)
    assert [3, 12] == got
    assert [6, 7, 8] == info.value.item
    assert [True] == closed
    [stats] = stream.statistics()
    assert (9, 2, 1) == (stats.items_in, stats.items_out, stats.errors)


async def test_a_failed_last_batch_read_item_by_item_is_not_counted_as_held(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The last, shorter batch of a plain async source fails under "raise": the
    earlier batches are delivered, the error says which batch, and its items are
    not reported as held in a partial batch (they were processed)."""
    stream = SumBatch(4, bad=9).stream(agen(range(10)))
    got: list[int] = []
    with pytest.raises(StreamError) as info:
        await collect_until_error(stream, got)
    assert [6, 22] == got
    assert [8, 9] == info.value.item
    [stats] = stream.statistics()
    assert (10, 2, 1) == (stats.items_in, stats.items_out, stats.errors)
    assert "partial batches" not in caplog.text
