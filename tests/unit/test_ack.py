"""Acknowledging sources: ack(count) tells how many leading items are done with.

``ack(mark)`` is called once the consumer asks for the next result after the
last result of the items up to ``mark``. So while the consumer holds its k-th
result of a 1:1 pipeline, at most k - 1 items can be acknowledged, and by the
end of the stream every item is.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any, TypeVar

import pytest

import pipeflow.streams as ps
from pipeflow.streams import (
    Acknowledging,
    BackpressureConfig,
    DeadLetter,
    Pipeable,
    Stream,
    StreamError,
    StreamPipe,
)
from pipeflow.testing import TestSource, VirtualClock

T = TypeVar("T")


def same(x: int) -> int:
    return x


async def asame(x: int) -> int:
    return x


def double(x: int) -> int:
    return x * 2


def inc(x: int) -> int:
    return x + 1


def dec(x: int) -> int:
    return x - 1


def even(x: int) -> bool:
    return x % 2 == 0


def third(x: int) -> bool:
    return x % 3 == 0


class RecordingSource(TestSource[int]):
    """A TestSource that remembers every ack."""

    def __init__(self, items: Iterable[int]) -> None:
        super().__init__(items, one_by_one=True)  # each item arrives on its own
        self.history: list[int] = []

    def ack(self, count: int) -> None:
        super().ack(count)
        self.history.append(count)


class AckingList:
    """A sync iterable source (read in chunks) that records acks."""

    def __init__(self, items: Iterable[int]) -> None:
        self.items = list(items)
        self.history: list[int] = []

    def __iter__(self) -> Iterator[int]:
        return iter(self.items)

    def ack(self, count: int) -> None:
        self.history.append(count)

    @property
    def acked(self) -> int:
        return self.history[-1] if self.history else 0


class Sleeper(StreamPipe[int, int]):
    """Takes ``(item % 3) * 0.1`` virtual seconds per item, so completions reorder."""

    def __init__(self, clock: VirtualClock, **options: Any) -> None:
        super().__init__(**options)
        self.clock = clock

    async def process_item(self, item: int) -> int:
        await self.clock.sleep((item % 3) * 0.1)
        return item


class Passthrough(StreamPipe[int, int]):
    """Overrides process_stream and passes every item on."""

    async def process_stream(self, stream: AsyncIterator[int]) -> AsyncIterator[int]:
        async for x in stream:
            yield x


async def consume_checking_acks(
    stream: Stream[T], source: RecordingSource | AckingList
) -> list[tuple[T, int]]:
    """Consume, pairing each result with the ack count seen while holding it."""
    held: list[tuple[T, int]] = []
    async with stream as s:
        async for x in s:
            acked = source.acked
            held.append((x, acked))
    return held


def assert_acks_bounded(held: list[tuple[Any, int]]) -> None:
    """While holding the k-th result (1-based) no more than k - 1 items are acked."""
    too_early = [(k, acked) for k, (_, acked) in enumerate(held, start=1) if acked > k - 1]
    assert [] == too_early


def test_test_source_is_acknowledging() -> None:
    """TestSource and the sync list above implement the Acknowledging protocol."""
    assert isinstance(TestSource([]), Acknowledging)
    assert isinstance(AckingList([]), Acknowledging)
    assert not isinstance([1, 2], Acknowledging)


async def test_fused_map_acks_each_item_once_the_next_is_asked_for() -> None:
    """In a fused 1:1 map, holding result k means exactly k - 1 items are acked."""
    source = RecordingSource(range(10))
    held = await consume_checking_acks(ps.map(double).stream(source), source)
    assert [(2 * i, i) for i in range(10)] == held
    assert 10 == source.acked
    assert list(range(1, 11)) == source.history


async def test_acks_reach_n_and_never_exceed_delivered() -> None:
    """Acks stay below the results delivered and reach n at the end."""
    source = RecordingSource(range(25))
    pipeline = ps.map(inc) | Sleeper(VirtualClock()) | ps.map(dec)
    held = await consume_checking_acks(pipeline.stream(source, clock=VirtualClock()), source)
    assert list(range(25)) == [x for x, _ in held]
    assert_acks_bounded(held)
    assert 25 == source.acked


async def test_sync_source_acks_per_chunk() -> None:
    """A sync source is acked per chunk of 256 items, after the chunk's last result."""
    source = AckingList(range(600))
    held = await consume_checking_acks(ps.map(same).stream(source), source)
    assert_acks_bounded(held)
    assert [256, 512, 600] == source.history
    assert 0 == held[255][1]
    assert 256 == held[256][1]


async def test_early_break_does_not_ack_undelivered_items() -> None:
    """Leaving after the 3rd result acks exactly the 2 results finished with,
    one at a time, and never the 3rd, held when the consumer left."""
    source = RecordingSource(range(10))
    async with ps.map(same).stream(source) as s:
        async for x in s:
            if x == 2:
                break
    assert [1, 2] == source.history
    assert source.closed


async def test_failed_item_is_not_acked_under_raise() -> None:
    """Under "raise" the failing item and those after it are never acked."""

    def fail_on_five(x: int) -> int:
        if x == 5:
            raise ValueError("five")
        return x

    source = RecordingSource(range(10))
    with pytest.raises(StreamError):
        await consume_checking_acks(ps.map(fail_on_five).stream(source), source)
    # Items 0..4 were delivered and acked one by one; 5 failed and nothing after it.
    assert [1, 2, 3, 4, 5] == source.history


async def test_failed_item_in_sync_chunk_is_not_acked_under_raise() -> None:
    """Under "raise" a failure inside a sync chunk acks nothing of that chunk."""

    def fail_on(x: int) -> int:
        if x == 300:
            raise ValueError("300")
        return x

    source = AckingList(range(600))
    with pytest.raises(StreamError):
        await consume_checking_acks(ps.map(fail_on).stream(source), source)
    assert [256] == source.history


async def test_filtered_out_items_are_acked() -> None:
    """Items a filter drops are acked too, even when nothing is delivered."""
    source = RecordingSource([1, 3, 5, 7])
    held = await consume_checking_acks(ps.filter(even).stream(source), source)
    assert [] == held
    assert 4 == source.acked


async def test_filtered_out_items_are_acked_while_streaming() -> None:
    """Holding a result, the items filtered out before it are not held back."""
    source = RecordingSource(range(10))
    held = await consume_checking_acks(ps.filter(third).stream(source), source)
    assert [0, 3, 6, 9] == [x for x, _ in held]
    assert all(acked <= x for x, acked in held)
    assert 10 == source.acked


async def test_skipped_items_are_acked() -> None:
    """Items skipped after failing are acked, the last item included."""

    def fail_odd(x: int) -> int:
        if x % 2:
            raise ValueError("odd")
        return x

    source = RecordingSource(range(6))
    held = await consume_checking_acks(ps.map(fail_odd, on_error="skip").stream(source), source)
    assert [0, 2, 4] == [x for x, _ in held]
    assert all(acked <= x for x, acked in held)
    assert 6 == source.acked


async def test_dead_lettered_items_are_acked() -> None:
    """Items sent to a dead-letter sink are acked."""
    dead: list[StreamError] = []

    def fail_last(x: int) -> int:
        if x == 4:
            raise ValueError("last")
        return x

    source = RecordingSource(range(5))
    pipe = ps.map(fail_last, on_error=DeadLetter(dead))
    await consume_checking_acks(pipe.stream(source), source)
    assert 5 == source.acked
    assert [4] == [e.item for e in dead]


PIPELINES = {
    "concurrent ordered + buffered": lambda clock: (
        Sleeper(clock, concurrency=4) | ps.map(same, config=BackpressureConfig(max_buffer_size=3))
    ),
    "buffered + concurrent ordered": lambda clock: (
        ps.map(same, config=BackpressureConfig(max_buffer_size=2)) | Sleeper(clock, concurrency=3)
    ),
    "concurrent unordered": lambda clock: Sleeper(clock, concurrency=4, ordered=False),
    "async map concurrent": lambda clock: ps.map(Sleeper(clock).process_item, concurrency=5),
}


@pytest.mark.parametrize("make", PIPELINES.values(), ids=PIPELINES.keys())
async def test_acks_with_concurrency_and_buffers(make: Any) -> None:
    """With concurrency and buffered stages acks stay bounded, grow, and reach n."""
    clock = VirtualClock()
    pipeline: Pipeable[int, int] = make(clock)
    source = RecordingSource(range(30))
    held = await consume_checking_acks(pipeline.stream(source, clock=clock), source)
    assert sorted(range(30)) == sorted(x for x, _ in held)
    assert_acks_bounded(held)
    assert 30 == source.acked
    assert sorted(source.history) == source.history
    assert len(set(source.history)) == len(source.history)


async def test_unordered_acks_cover_only_delivered_prefix() -> None:
    """Unordered: an acked count never covers an item whose result is not yet delivered."""
    clock = VirtualClock()
    source = RecordingSource(range(30))
    delivered: set[int] = set()
    async with Sleeper(clock, concurrency=4, ordered=False).stream(source, clock=clock) as s:
        async for x in s:
            assert set(range(source.acked)) <= delivered
            delivered.add(x)
    assert 30 == source.acked


async def test_process_stream_override_acks_only_at_end() -> None:
    """A pipe overriding process_stream acks nothing until the stream ends."""
    source = RecordingSource(range(10))
    held = await consume_checking_acks(Passthrough().stream(source), source)
    assert [(i, 0) for i in range(10)] == held
    assert [10] == source.history


async def test_process_stream_override_in_pipeline_acks_only_at_end() -> None:
    """Behind a process_stream override, later item stages do not ack early either."""
    source = RecordingSource(range(10))
    pipeline = ps.map(same) | Passthrough() | ps.map(inc)
    held = await consume_checking_acks(pipeline.stream(source), source)
    assert [(i + 1, 0) for i in range(10)] == held
    assert 10 == source.acked


async def test_acks_wait_for_the_dead_letter_pipe() -> None:
    """The source is never acknowledged past an item whose dead letter the pipe has not
    finished processing, and every item is acknowledged at the end."""
    from pipeflow.streams import DeadLetter, StreamError, StreamPipe, map
    from pipeflow.testing import TestSource, VirtualClock

    clock = VirtualClock()
    handled: list[int] = []

    class SlowRecorder(StreamPipe[StreamError, None]):
        async def process_item(self, item: StreamError) -> None:
            await clock.sleep(5)
            handled.append(item.item)

    def fail_odd(x: int) -> int:
        if x % 2:
            raise ValueError(x)
        return x

    source: TestSource[int] = TestSource(range(20))
    checked = 0
    pipe = map(fail_odd, on_error=DeadLetter(SlowRecorder()))
    async with pipe.stream(source, clock=clock) as stream:
        async for _ in stream:
            unhandled = [x for x in range(source.acked) if x % 2 and x not in handled]
            assert [] == unhandled
            checked += 1
    assert 10 == checked
    assert 20 == source.acked
    assert list(range(1, 20, 2)) == handled


class ClosingPartition:
    """An acknowledging async source that records acks and its closing, in order."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.events: list[tuple[str, int]] = []

    async def _read(self) -> AsyncIterator[int]:
        for i in range(self.n):
            yield i

    def __aiter__(self) -> AsyncIterator[int]:
        return self._read()

    def ack(self, count: int) -> None:
        self.events.append(("ack", count))

    async def aclose(self) -> None:
        self.events.append(("close", 0))


@pytest.mark.parametrize(
    "pipe",
    [
        ps.map(same),
        ps.map(same, config=BackpressureConfig(max_buffer_size=100)),
        ps.map(asame, concurrency=2),
    ],
    ids=["fused", "buffered", "concurrent"],
)
async def test_an_acknowledging_source_is_closed_after_its_last_ack(
    pipe: Pipeable[int, int],
) -> None:
    """A broker client commits in ack(): it must still be open for the last one,
    even when a task read the source to its end long before the consumer."""
    clock = VirtualClock()
    source = ClosingPartition(5)
    async with pipe.stream(source, clock=clock) as results:
        async for _ in results:
            await clock.sleep(1)  # a slow consumer
    assert ("ack", 5) in source.events
    assert ("close", 0) == source.events[-1]
    assert 1 == source.events.count(("close", 0))
