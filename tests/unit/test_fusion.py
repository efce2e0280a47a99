"""Fused operators: adjacent sync map/filter run as one loop, with per-operator errors
and metrics."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import agen, collect_until_error
from pipeflow.monitoring import StreamMonitor
from pipeflow.streams import DeadLetter, Pipeline, Retry, StreamError, StreamPipe, filter, map
from pipeflow.testing import TestSource, VirtualClock

COUNTERS = ("items_in", "items_out", "errors", "retries", "skipped", "dead_lettered")


def failing(bad: set[int], fn: Any) -> Any:
    def apply(x: int) -> Any:
        if x in bad:
            raise ValueError(f"bad {x}")
        return fn(x)

    return apply


async def collect(pipe: Any, source: Any, *, monitored: bool = False) -> tuple[list[Any], Any]:
    """The results and the statistics of a run.

    Fused operators that end a pipeline run in the consumer's own generator,
    unless a monitor times them (``monitored``): then they take the general path,
    a fused stage handing chunks to the consumer's loop. Both must agree.
    """
    if monitored:
        pipe.set_monitor(StreamMonitor())
    async with pipe.stream(source, clock=VirtualClock()) as stream:
        return [x async for x in stream], stream.statistics()


def counters(stats: Any) -> list[tuple[int, ...]]:
    return [tuple(getattr(s, c) for c in COUNTERS) for s in stats]


async def test_fused_chain_counts_per_operator() -> None:
    """Each fused operator reports its own items in and out."""
    pipe: Pipeline[int, int] = (
        map(lambda x: x + 1) | filter(lambda x: x % 2 == 0) | map(lambda x: x * 2)
    )
    out, stats = await collect(pipe, range(1000))
    assert [2 * (x + 1) for x in range(1000) if (x + 1) % 2 == 0] == out
    assert [(1000, 1000), (1000, 500), (500, 500)] == [(s.items_in, s.items_out) for s in stats]


async def test_failure_goes_to_the_failing_operators_policy() -> None:
    """A failure in a fused operator is that operator's: its name, policy and input."""
    letters: list[StreamError] = []
    pipe: Pipeline[int, int] = (
        map(lambda x: x + 1, name="inc")
        | map(failing({5, 7}, lambda x: x * 10), name="tenfold", on_error=DeadLetter(letters))
        | filter(lambda x: x != 30, name="not30")
    )
    out, stats = await collect(pipe, range(10))
    assert [10, 20, 40, 60, 80, 90, 100] == out
    assert [(5, "tenfold"), (7, "tenfold")] == [(e.item, e.pipe) for e in letters]
    assert [(10, 10), (10, 8), (8, 7)] == [(s.items_in, s.items_out) for s in stats]
    assert 2 == stats[1].dead_lettered


async def test_recovered_value_continues_through_the_rest_of_the_chain() -> None:
    """A retried item that succeeds goes on through the later operators, which may fail too."""
    attempts: dict[int, int] = {}

    def flaky(x: int) -> int:
        attempts[x] = attempts.get(x, 0) + 1
        if x == 3 and attempts[x] < 3:
            raise OSError("flaky")
        return x

    pipe = (
        map(flaky, on_error=Retry(attempts=3, backoff=0, jitter=0))
        | map(failing({3}, lambda x: x), on_error="skip")
        | map(lambda x: -x)
    )
    out, stats = await collect(pipe, range(6))
    assert [0, -1, -2, -4, -5] == out
    assert 2 == stats[0].retries
    assert 1 == stats[1].skipped


async def test_raise_delivers_results_before_the_failure() -> None:
    """Under "raise", fused operators deliver what came before the failing item, then raise."""
    pipe = map(lambda x: x) | map(failing({300}, lambda x: x))
    got: list[int] = []

    async def drain() -> None:
        async with pipe.stream(range(1000)) as stream:
            async for x in stream:
                got.append(x)

    with pytest.raises(StreamError) as info:
        await drain()
    assert list(range(300)) == got
    assert 300 == info.value.item


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(-50, 50), max_size=600),
    st.sets(st.integers(-50, 50), max_size=5),
    st.sets(st.integers(-50, 50), max_size=5),
    st.booleans(),
)
def test_fused_matches_a_plain_loop(
    xs: list[int], bad1: set[int], bad2: set[int], monitored: bool
) -> None:
    """Fused map/filter/map with skips equals the same logic written as a plain loop."""

    def model() -> list[int]:
        out = []
        for x in xs:
            if x in bad1:
                continue
            y = x * 3
            if y % 2:
                continue
            if y in bad2:
                continue
            out.append(y - 1)
        return out

    pipe = (
        map(failing(bad1, lambda x: x * 3), on_error="skip")
        | filter(lambda y: y % 2 == 0)
        | map(failing(bad2, lambda y: y - 1), on_error="skip")
    )
    out, stats = asyncio.run(collect(pipe, xs, monitored=monitored))
    assert model() == out
    assert len(xs) == stats[0].items_in
    assert len(out) == stats[-1].items_out


def pipeline_with_every_policy(letters: list[StreamError]) -> Pipeline[int, int]:
    return (
        map(failing({3, 30}, lambda x: x * 2), on_error="skip", name="double")
        | filter(failing({8}, lambda x: x % 4 == 0), on_error=DeadLetter(letters), name="by4")
        | map(lambda x: x + 1, name="inc")
        | map(failing({13}, lambda x: x), on_error=Retry(attempts=2, backoff=0, then="skip"))
    )


@pytest.mark.parametrize(
    "source", [list, tuple, iter, agen], ids=["list", "tuple", "iterator", "async"]
)
async def test_direct_and_general_paths_agree(source: Any) -> None:
    """The consumer's own generator and the general path give the same results and counts."""
    runs = []
    for monitored in (False, True):
        letters: list[StreamError] = []
        out, stats = await collect(
            pipeline_with_every_policy(letters), source(range(5000)), monitored=monitored
        )
        runs.append((out, counters(stats), [e.item for e in letters]))
    assert runs[0] == runs[1]
    out, counts, letters_seen = runs[0]
    assert [x * 2 + 1 for x in range(5000) if x not in {3, 30, 4, 6} and x % 2 == 0] == out
    assert [8] == letters_seen
    # items in, out, errors, retries, skipped, dead-lettered
    assert [
        (5000, 4998, 2, 0, 2, 0),
        (4998, 2498, 1, 0, 0, 1),
        (2498, 2498, 0, 0, 0, 0),
        (2498, 2497, 1, 1, 1, 0),
    ] == counts


@pytest.mark.parametrize("monitored", [False, True])
async def test_raise_counts_the_failed_item_as_not_out(monitored: bool) -> None:
    """Under "raise", the failing operator counts the item in but not out."""
    pipe = map(lambda x: x) | map(failing({300}, lambda x: x)) | map(lambda x: x)
    if monitored:
        pipe.set_monitor(StreamMonitor())
    got: list[int] = []
    stream = pipe.stream(range(1000))
    with pytest.raises(StreamError):
        await collect_until_error(stream, got)
    assert list(range(300)) == got
    assert [(301, 301), (301, 300), (300, 300)] == [
        (s.items_in, s.items_out) for s in stream.statistics()
    ]


async def test_break_counts_only_what_was_read() -> None:
    """Leaving the loop early counts the items read so far, not the whole slice."""
    pipe: Pipeline[int, int] = map(lambda x: x + 1) | filter(lambda x: x % 2 == 0)
    async with pipe.stream(range(100_000)) as stream:
        got = []
        async for x in stream:
            got.append(x)
            if len(got) == 10:
                break
    assert [2, 4, 6, 8, 10, 12, 14, 16, 18, 20] == got
    assert [(20, 20), (20, 10)] == [(s.items_in, s.items_out) for s in stream.statistics()]


def sync_numbers(closed: list[bool]) -> Any:
    try:
        yield from range(10)
    finally:
        closed.append(True)


async def async_numbers(closed: list[bool]) -> Any:
    try:
        for x in range(10):
            yield x
    finally:
        closed.append(True)


@pytest.mark.parametrize("numbers", [sync_numbers, async_numbers], ids=["sync", "async"])
async def test_exception_thrown_in_is_not_an_operators_failure(numbers: Any) -> None:
    """An exception thrown into the stream at a result propagates as it is."""
    letters: list[StreamError] = []
    closed: list[bool] = []
    pipe = map(lambda x: x, on_error=DeadLetter(letters)) | map(lambda x: x)
    results: Any = pipe.stream(numbers(closed)).__aiter__()
    assert 0 == await results.__anext__()
    with pytest.raises(KeyError, match="thrown in"):
        await results.athrow(KeyError("thrown in"))
    assert [] == letters
    assert [True] == closed


@pytest.mark.parametrize("monitored", [False, True])
async def test_items_appended_to_a_list_source_are_read(monitored: bool) -> None:
    """A list is sliced, not iterated, yet what is appended meanwhile is read as well."""
    source = list(range(3))
    pipe = map(lambda x: x) | map(lambda x: x)
    if monitored:
        pipe.set_monitor(StreamMonitor())
    got = []
    async with pipe.stream(source) as stream:
        async for x in stream:
            got.append(x)
            if x < 5000:
                source.append(x + 3)
    assert list(range(5003)) == got


@pytest.mark.parametrize("size", [0, 1, 255, 256, 257, 4096, 4097, 10_000])
@pytest.mark.parametrize("kind", [list, tuple, range])
@pytest.mark.parametrize("monitored", [False, True])
async def test_sequence_sources_of_any_size(size: int, kind: Any, monitored: bool) -> None:
    """Lists, tuples and ranges are read whole, whatever their size."""
    source = range(size) if kind is range else kind(range(size))
    out, stats = await collect(
        map(lambda x: x * 2) | filter(lambda x: x % 3 == 0), source, monitored=monitored
    )
    assert [x * 2 for x in range(size) if x * 2 % 3 == 0] == out
    assert [(size, size), (size, len(out))] == [(s.items_in, s.items_out) for s in stats]


async def test_process_stream_output_is_not_held_while_input_is_quiet() -> None:
    """After a process_stream stage, an output goes on before the stage waits for input."""
    clock = VirtualClock()

    class Evens(StreamPipe[int, int]):
        async def process_stream(self, stream: AsyncIterator[int]) -> AsyncIterator[int]:
            async for x in stream:
                if x % 2 == 0:
                    yield x

    pipe = Evens() | map(lambda x: x * 10)
    source: TestSource[int] = TestSource([2, 3, TestSource.wait(10), 4], clock=clock)
    arrivals: list[tuple[float, int]] = []
    async with pipe.stream(source, clock=clock) as stream:
        async for x in stream:
            arrivals.append((clock.monotonic(), x))
    assert [(0.0, 20), (10.0, 40)] == arrivals


async def test_process_stream_stage_feeds_the_next_stage_in_chunks() -> None:
    """A process_stream stage's outputs reach the next stage whole and in order."""

    class Double(StreamPipe[int, int]):
        async def process_stream(self, stream: AsyncIterator[int]) -> AsyncIterator[int]:
            async for x in stream:
                yield x
                yield x

    out, stats = await collect(Double() | map(lambda x: x + 1), range(1000))
    assert [x + 1 for x in range(1000) for _ in range(2)] == out
    assert [(1000, 2000), (2000, 2000)] == [(s.items_in, s.items_out) for s in stats]


def _source_of(kind: str, n: int) -> Any:
    """The ints ``0..n-1`` from a source of the given kind."""
    items = range(n)
    if kind == "async":
        return agen(items)
    return list(items) if kind == "list" else tuple(items)


_ITEM_SOURCES = ["async", "list", "tuple"]


@pytest.mark.parametrize("kind", _ITEM_SOURCES)
async def test_counts_are_current_while_a_source_is_read(kind: str) -> None:
    """Over an async source, a list or a tuple, read item by item, the counters are
    up to date at every result."""
    clock = VirtualClock()
    source = _source_of(kind, 1000)
    pipe: Pipeline[int, int] = map(lambda x: x + 1) | filter(lambda x: x % 10 == 0)
    seen = []
    async with pipe.stream(source, clock=clock) as stream:
        async for x in stream:
            stats = stream.statistics()
            seen.append((x, stats[0].items_in, stats[1].items_out))
    assert [(10 * k, 10 * k, k) for k in range(1, 101)] == seen
    assert [(1000, 1000), (1000, 100)] == [(s.items_in, s.items_out) for s in stream.statistics()]


@pytest.mark.parametrize("kind", _ITEM_SOURCES)
async def test_counts_are_current_with_failures_over_a_source_read_item_by_item(
    kind: str,
) -> None:
    """Items that fail, skipped or retried, are counted where they end, at every result
    and at the end, as a plain loop counts them."""
    tries: dict[int, int] = {}

    def inc(x: int) -> int:
        if x % 7 == 3:
            raise KeyError(x)
        return x + 1

    def even(x: int) -> bool:  # fails the first time it sees a multiple of 5
        tries[x] = tries.get(x, 0) + 1
        if x % 5 == 0 and tries[x] == 1:
            raise ValueError(x)
        return x % 2 == 0

    pipe: Pipeline[int, int] = (
        map(inc, on_error="skip")
        | filter(even, on_error=Retry(attempts=2, backoff=0, jitter=0))
        | map(lambda x: 10 * x)
    )

    def model(read: int) -> list[tuple[int, int]]:
        kept = [x + 1 for x in range(read) if x % 7 != 3]
        passed = [x for x in kept if x % 2 == 0]
        return [(read, len(kept)), (len(kept), len(passed)), (len(passed), len(passed))]

    async with pipe.stream(_source_of(kind, 300)) as stream:
        async for y in stream:
            read = y // 10  # the item read last is y // 10 - 1
            assert model(read) == [(s.items_in, s.items_out) for s in stream.statistics()]
    assert model(300) == [(s.items_in, s.items_out) for s in stream.statistics()]
    assert [s.errors for s in stream.statistics()] == [300 // 7 + (300 % 7 > 3), 0, 0]


async def test_counts_are_current_while_an_async_source_waits() -> None:
    """Items read before the source waits are counted, though none came out."""
    gate = asyncio.Event()
    waiting = asyncio.Event()

    async def source() -> AsyncIterator[int]:
        for x in range(5):
            yield x
        waiting.set()
        await gate.wait()
        yield 100

    pipe: Pipeline[int, int] = map(lambda x: x) | filter(lambda x: x >= 100)
    got: list[int] = []
    async with pipe.stream(source()) as stream:
        consumer = asyncio.ensure_future(collect_until_error(stream, got))
        await waiting.wait()
        assert [(5, 5), (5, 0)] == [(s.items_in, s.items_out) for s in stream.statistics()]
        gate.set()
        await consumer
    assert [100] == got


async def test_a_list_read_item_by_item_counts_what_is_appended_and_nothing_after() -> None:
    """Items appended to a list while fused operators read it are read and counted;
    items appended once the run is over change no count; breaking out counts what
    was read up to the item the consumer took last."""
    items = list(range(10))
    pipe: Pipeline[int, int] = map(lambda x: x) | filter(lambda x: x % 2 == 0)
    got: list[int] = []
    async with pipe.stream(items) as stream:
        async for x in stream:
            got.append(x)
            if x == 8:
                items.extend(range(10, 20))
    assert list(range(0, 20, 2)) == got
    items.extend(range(20, 30))
    assert [(20, 20), (20, 10)] == [(s.items_in, s.items_out) for s in stream.statistics()]

    items = list(range(100))
    async with pipe.stream(items) as stream:
        async for x in stream:
            if x == 40:
                break
    items.append(100)
    assert [(41, 41), (41, 21)] == [(s.items_in, s.items_out) for s in stream.statistics()]


async def test_a_range_too_long_for_len_is_read_and_counted() -> None:
    """A range whose length does not fit in a C integer is read in slices, and its
    counts are read and flushed without error."""
    pipe: Pipeline[int, int] = map(lambda x: x + 1) | filter(lambda x: x % 2 == 0)
    got: list[int] = []
    async with pipe.stream(range(10**20)) as stream:
        async for x in stream:
            got.append(x)
            stream.statistics()
            if len(got) == 5:
                break
    assert [2, 4, 6, 8, 10] == got
    assert [(10, 10), (10, 5)] == [(s.items_in, s.items_out) for s in stream.statistics()]


class Numbers:
    """An async iterable whose iterator is a separate object, without ``__aiter__``."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.closed = False

    def __aiter__(self) -> Any:
        return self.Iterator(self)

    async def aclose(self) -> None:
        self.closed = True

    class Iterator:
        def __init__(self, owner: Numbers) -> None:
            self.owner = owner
            self.i = 0

        async def __anext__(self) -> int:
            if self.i == self.owner.n:
                raise StopAsyncIteration
            self.i += 1
            return self.i - 1


async def test_async_iterator_without_aiter_is_read_and_its_source_closed() -> None:
    """An iterator that has only ``__anext__`` is read; the source is closed afterwards."""
    source = Numbers(600)
    out, stats = await collect(map(lambda x: -x) | filter(lambda x: x % 2 == 0), source)
    assert [-x for x in range(600) if x % 2 == 0] == out
    assert [(600, 600), (600, 300)] == [(s.items_in, s.items_out) for s in stats]
    assert source.closed


async def test_an_iterator_from_aiter_is_closed_on_break() -> None:
    """A source whose ``__aiter__`` starts a new generator: both are closed on break."""
    closed: list[str] = []

    class Source:
        async def __aiter__(self) -> Any:
            try:
                for x in range(100):
                    yield x
            finally:
                closed.append("iterator")

        async def aclose(self) -> None:
            closed.append("source")

    async with (map(lambda x: x) | map(lambda x: x)).stream(Source()) as stream:
        async for x in stream:
            if x == 3:
                break
    assert ["iterator", "source"] == closed
