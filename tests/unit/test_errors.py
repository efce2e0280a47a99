"""Error policies: StreamError, "raise", "skip", Retry, DeadLetter and per-error callables."""

from __future__ import annotations

import logging
import pickle
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

import pytest

import pipeflow.streams as ps
from helpers import collect, collect_until_error, without_deadlock
from pipeflow.streams import (
    BackpressureConfig,
    BufferOverflowError,
    DeadLetter,
    Pipeable,
    PipeflowError,
    Retry,
    StreamError,
    StreamPipe,
)
from pipeflow.testing import TestSource, VirtualClock

T = TypeVar("T")


# -- helpers -------------------------------------------------------------------


def times_ten_failing_on(*bad: int) -> Callable[[int], int]:
    """A sync function multiplying by ten, raising ValueError on the ``bad`` items."""

    def times_ten(x: int) -> int:
        if x in bad:
            raise ValueError(f"bad item {x}")
        return x * 10

    return times_ten


class Tenfold(StreamPipe[int, int]):
    """Multiplies by ten in an async process_item; raises ValueError on ``bad`` items."""

    def __init__(self, bad: set[int] | None = None, **options: Any) -> None:
        super().__init__(**options)
        self.bad = bad or set()

    async def process_item(self, item: int) -> int:
        if item in self.bad:
            raise ValueError(f"bad item {item}")
        return item * 10


class Recorder(StreamPipe[StreamError, StreamError]):
    """A dead-letter pipe remembering every record it processes."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[StreamError] = []

    async def process_item(self, item: StreamError) -> StreamError:
        self.seen.append(item)
        return item


class BrokenSink(StreamPipe[StreamError, StreamError]):
    """A dead-letter pipe that fails on every record."""

    async def process_item(self, item: StreamError) -> StreamError:
        raise RuntimeError("dead-letter sink is broken")


class Flaky:
    """Fails ``failures`` times per item (with ``exc``), then returns ``item * 10``."""

    def __init__(self, failures: int, exc: Callable[[str], Exception] = ValueError) -> None:
        self.failures = failures
        self.exc = exc
        self.calls: dict[int, int] = {}

    def __call__(self, item: int) -> int:
        n = self.calls[item] = self.calls.get(item, 0) + 1
        if n <= self.failures:
            raise self.exc(f"attempt {n} on {item} failed")
        return item * 10


# -- StreamError itself ----------------------------------------------------------


def test_stream_error_attributes() -> None:
    """StreamError keeps the item, the pipe name, the attempts and the cause."""
    cause = ValueError("boom")
    err = StreamError(7, "double", 2, cause)
    assert 7 == err.item
    assert "double" == err.pipe
    assert 2 == err.attempts
    assert cause is err.__cause__
    assert isinstance(err, PipeflowError)


def test_stream_error_repr_is_readable() -> None:
    """repr shows item, pipe, attempts and cause like a constructor call."""
    err = StreamError(7, "double", 2, ValueError("boom"))
    assert "StreamError(item=7, pipe='double', attempts=2, cause=ValueError('boom'))" == repr(err)


def test_stream_error_message_names_pipe_item_attempts_and_cause() -> None:
    """str() says which pipe failed on which item, how often, and why."""
    err = StreamError(7, "double", 1, ValueError("boom"))
    assert "pipe 'double' failed on item 7 after 1 attempt: ValueError: boom" == str(err)


def test_stream_error_repr_shortens_huge_items() -> None:
    """A huge item does not make repr or str huge."""
    err = StreamError("x" * 10_000, "p", 1, ValueError("boom"))
    assert len(repr(err)) < 300
    assert len(str(err)) < 300


def test_stream_error_pickle_round_trip() -> None:
    """A StreamError survives pickling with its attributes and cause."""
    err = StreamError({"id": 1}, "parse", 3, KeyError("id"))
    copy = pickle.loads(pickle.dumps(err))
    assert StreamError is type(copy)
    assert {"id": 1} == copy.item
    assert "parse" == copy.pipe
    assert 3 == copy.attempts
    assert isinstance(copy.__cause__, KeyError)
    assert ("id",) == copy.__cause__.args
    assert str(err) == str(copy)


def test_buffer_overflow_error_pickle_round_trip() -> None:
    """A BufferOverflowError survives pickling with its attributes."""
    err = BufferOverflowError("sink", 5)
    copy = pickle.loads(pickle.dumps(err))
    assert (BufferOverflowError, "sink", 5) == (type(copy), copy.pipe, copy.capacity)
    assert str(err) == str(copy)


async def test_stream_error_from_a_run_carries_the_original_exception() -> None:
    """The StreamError raised out of a run has the raising exception as __cause__."""
    original = ValueError("the original")

    def fail(x: int) -> int:
        raise original

    with pytest.raises(StreamError) as info:
        await collect(ps.map(fail).stream([1]))
    assert original is info.value.__cause__
    assert 1 == info.value.item
    assert "map(fail)" == info.value.pipe
    assert 1 == info.value.attempts


# -- on_error="raise" --------------------------------------------------------------


RAISE_PIPES: dict[str, Callable[[], Pipeable[int, int]]] = {
    "fused sync map": lambda: ps.map(times_ten_failing_on(3)),
    "async process_item": lambda: Tenfold({3}),
    "buffered": lambda: Tenfold({3}, config=BackpressureConfig(max_buffer_size=2)),
    "concurrent ordered": lambda: Tenfold({3}, concurrency=4),
    "async map concurrent ordered": lambda: ps.map(Tenfold({3}).process_item, concurrency=3),
    "behind a fused stage": lambda: ps.map(lambda x: x) | Tenfold({3}),
}


@pytest.mark.parametrize("make", RAISE_PIPES.values(), ids=RAISE_PIPES.keys())
async def test_raise_delivers_results_before_failure_then_raises(
    make: Callable[[], Pipeable[int, int]],
) -> None:
    """Under "raise" every result before the failing item arrives, then StreamError."""
    got: list[int] = []
    with pytest.raises(StreamError) as info:
        await collect_until_error(make().stream(range(10)), got)
    assert [0, 10, 20] == got
    assert 3 == info.value.item
    assert isinstance(info.value.__cause__, ValueError)


async def test_raise_with_async_source_delivers_results_before_failure() -> None:
    """An async source under "raise" also delivers the results before the failure."""
    source = TestSource(range(10))
    got: list[int] = []
    with pytest.raises(StreamError):
        await collect_until_error(Tenfold({3}).stream(source), got)
    assert [0, 10, 20] == got
    assert source.closed


async def test_raise_is_the_default_policy() -> None:
    """A pipe without on_error raises on the first failure."""
    assert "raise" == Tenfold().on_error
    with pytest.raises(StreamError):
        await collect(Tenfold({0}).stream([0, 1]))


# -- on_error="skip" ---------------------------------------------------------------


async def test_skip_counts_logs_and_continues(caplog: pytest.LogCaptureFixture) -> None:
    """Skipped items are counted as skipped and as errors, logged, and the stream goes on."""
    caplog.set_level(logging.WARNING, logger="pipeflow")
    async with ps.map(times_ten_failing_on(2, 3), on_error="skip").stream(range(6)) as s:
        got = [x async for x in s]
        (stats,) = s.statistics()
    assert [0, 10, 40, 50] == got
    assert (2, 2, 6, 4) == (stats.skipped, stats.errors, stats.items_in, stats.items_out)
    records = [r for r in caplog.records if r.name == "pipeflow"]
    assert [logging.WARNING, logging.WARNING] == [r.levelno for r in records]
    assert all("map(times_ten)" in r.getMessage() for r in records)
    assert "bad item 2" in records[0].getMessage()


@pytest.mark.parametrize("concurrency", [1, 3])
async def test_skip_in_async_process_item(concurrency: int) -> None:
    """An async process_item under "skip" skips failures, with or without concurrency."""
    pipe = Tenfold({0, 5, 9}, on_error="skip", concurrency=concurrency)
    async with pipe.stream(range(10)) as s:
        got = [x async for x in s]
        (stats,) = s.statistics()
    assert [10, 20, 30, 40, 60, 70, 80] == got
    assert 3 == stats.skipped
    assert 3 == stats.errors


@pytest.mark.parametrize("ordered", [True, False])
@pytest.mark.parametrize("policy", ["skip", "dead letter"])
async def test_concurrent_stage_where_every_item_fails_finishes(ordered: bool, policy: str) -> None:
    """Concurrency 3 behind a buffer of 2, every item failing: the stream still ends."""
    clock = VirtualClock()
    dead: list[StreamError] = []

    class SlowFailure(StreamPipe[int, int]):
        async def process_item(self, item: int) -> int:
            await clock.sleep(0.1 * (item % 3))
            raise ValueError(f"bad item {item}")

    pipe = SlowFailure(
        concurrency=3,
        ordered=ordered,
        config=BackpressureConfig(max_buffer_size=2),
        on_error="skip" if policy == "skip" else DeadLetter(dead),
    )
    stream = pipe.stream(range(20), clock=clock)
    assert [] == await without_deadlock(collect(stream), clock)
    (stats,) = stream.statistics()
    assert (20, 20) == (stats.items_in, stats.errors)


async def test_skip_in_one_stage_does_not_affect_the_next() -> None:
    """Only the failing stage counts the skip; later stages see the other items."""
    pipeline = ps.map(times_ten_failing_on(1), on_error="skip") | ps.map(lambda x: x + 1)
    async with pipeline.stream(range(4)) as s:
        got = [x async for x in s]
        first, second = s.statistics()
    assert [1, 21, 31] == got
    assert (1, 0) == (first.skipped, second.skipped)
    assert 3 == second.items_in


# -- Retry ---------------------------------------------------------------------------


async def test_retry_succeeds_on_third_attempt() -> None:
    """A function failing twice per item succeeds on the third attempt: value delivered."""
    flaky = Flaky(2)
    clock = VirtualClock()
    pipe = ps.map(flaky, on_error=Retry(attempts=3, backoff=1, jitter=0))
    async with pipe.stream([1, 2], clock=clock) as s:
        got = [x async for x in s]
        (stats,) = s.statistics()
    assert [10, 20] == got
    assert {1: 3, 2: 3} == flaky.calls
    assert (4, 0, 0) == (stats.retries, stats.errors, stats.skipped)


async def test_retry_async_process_item_succeeds_after_failures() -> None:
    """Retry works for an async process_item too."""
    flaky = Flaky(1)

    class FlakyPipe(StreamPipe[int, int]):
        async def process_item(self, item: int) -> int:
            return flaky(item)

    pipe = FlakyPipe(on_error=Retry(attempts=2, backoff=1, jitter=0))
    async with pipe.stream(TestSource([1, 2, 3]), clock=VirtualClock()) as s:
        got = [x async for x in s]
        (stats,) = s.statistics()
    assert [10, 20, 30] == got
    assert 3 == stats.retries


async def test_retry_exhausted_raises_with_attempts() -> None:
    """When every attempt fails, StreamError.attempts is the number of attempts made."""
    flaky = Flaky(100)
    pipe = ps.map(flaky, on_error=Retry(attempts=4, backoff=1, jitter=0))
    stream = pipe.stream([5], clock=VirtualClock())
    with pytest.raises(StreamError) as info:
        await collect(stream)
    assert 4 == info.value.attempts
    assert 5 == info.value.item
    assert isinstance(info.value.__cause__, ValueError)
    assert "attempt 4 on 5 failed" == str(info.value.__cause__)
    assert 4 == flaky.calls[5]
    (stats,) = stream.statistics()
    assert (3, 1) == (stats.retries, stats.errors)


async def test_retry_backoff_doubles_on_virtual_clock() -> None:
    """backoff=1, jitter=0, max_backoff=10, attempts=4: waits 1 + 2 + 4 = 7 seconds."""
    clock = VirtualClock()
    retry = Retry(attempts=4, backoff=1, max_backoff=10, jitter=0, then="skip")
    got = await collect(ps.map(Flaky(100), on_error=retry).stream([1], clock=clock))
    assert [] == got
    assert 7.0 == clock.monotonic()


async def test_retry_backoff_capped_by_max_backoff() -> None:
    """With max_backoff=3 the waits are 1, 2, 3, 3."""
    clock = VirtualClock()
    retry = Retry(attempts=5, backoff=1, max_backoff=3, jitter=0, then="skip")
    await collect(ps.map(Flaky(100), on_error=retry).stream([1], clock=clock))
    assert 9.0 == clock.monotonic()


async def test_retry_successful_retry_waits_only_until_success() -> None:
    """Succeeding on the 3rd of 4 attempts waits 1 + 2 seconds."""
    clock = VirtualClock()
    retry = Retry(attempts=4, backoff=1, max_backoff=10, jitter=0)
    assert [10] == await collect(ps.map(Flaky(2), on_error=retry).stream([1], clock=clock))
    assert 3.0 == clock.monotonic()


async def test_retry_fractional_backoff_timing() -> None:
    """backoff=0.5, jitter=0, attempts=4: waits 0.5 + 1 + 2 = 3.5 seconds."""
    clock = VirtualClock()
    retry = Retry(attempts=4, backoff=0.5, jitter=0, then="skip")
    await collect(ps.map(Flaky(100), on_error=retry).stream([1], clock=clock))
    assert 3.5 == clock.monotonic()


async def test_retry_defaults_back_off_with_jitter() -> None:
    """Retry() waits 0.1 then 0.2 seconds, plus up to 0.1 s of jitter each."""
    clock = VirtualClock()
    got = await collect(ps.map(Flaky(2), on_error=Retry()).stream([1], clock=clock))
    assert [10] == got
    assert 0.3 <= clock.monotonic() <= 0.5


async def test_retry_jitter_adds_at_most_jitter_per_wait() -> None:
    """jitter=0.5 adds between 0 and 0.5 s to each of the waits 1 and 2."""
    clock = VirtualClock()
    retry = Retry(attempts=3, backoff=1, jitter=0.5, then="skip")
    await collect(ps.map(Flaky(100), on_error=retry).stream([1], clock=clock))
    assert 3.0 <= clock.monotonic() <= 4.0


async def test_retry_jitter_is_added_after_the_cap() -> None:
    """Once the backoff reaches max_backoff, the jitter still spreads the retries:
    waits are 1 s plus up to 0.5 s, not all exactly 1 s."""
    waits = set()
    for _ in range(10):
        clock = VirtualClock()
        retry = Retry(attempts=2, backoff=4, max_backoff=1, jitter=0.5, then="skip")
        await collect(ps.map(Flaky(100), on_error=retry).stream([1], clock=clock))
        assert 1.0 <= clock.monotonic() <= 1.5
        waits.add(clock.monotonic())
    assert len(waits) > 1


async def test_retry_on_filters_exception_types() -> None:
    """An exception not listed in ``on`` is not retried and goes straight to ``then``."""
    flaky = Flaky(1, exc=ValueError)
    retry = Retry(attempts=5, backoff=1, jitter=0, on=(KeyError,))
    stream = ps.map(flaky, on_error=retry).stream([1], clock=VirtualClock())
    with pytest.raises(StreamError) as info:
        await collect(stream)
    assert 1 == info.value.attempts
    assert {1: 1} == flaky.calls
    assert 0 == stream.statistics()[0].retries


async def test_retry_on_matching_exception_is_retried() -> None:
    """An exception listed in ``on`` is retried."""
    flaky = Flaky(2, exc=KeyError)
    retry = Retry(attempts=3, backoff=1, jitter=0, on=(LookupError,))
    assert [10] == await collect(ps.map(flaky, on_error=retry).stream([1], clock=VirtualClock()))


async def test_retry_stops_at_a_non_matching_exception_after_retrying() -> None:
    """A retry raising an exception outside ``on`` ends the retries with that exception."""
    calls = 0

    def fn(x: int) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise KeyError("retried")
        raise ValueError("not retried")

    retry = Retry(attempts=5, backoff=1, jitter=0, on=(KeyError,))
    with pytest.raises(StreamError) as info:
        await collect(ps.map(fn, on_error=retry).stream([1], clock=VirtualClock()))
    assert 2 == calls
    assert 2 == info.value.attempts
    assert isinstance(info.value.__cause__, ValueError)


async def test_retry_then_skip() -> None:
    """then="skip": an item failing every attempt is skipped and the stream goes on."""
    retry = Retry(attempts=3, backoff=1, jitter=0, then="skip")
    fn = times_ten_failing_on(2)
    async with ps.map(fn, on_error=retry).stream(range(4), clock=VirtualClock()) as s:
        got = [x async for x in s]
        (stats,) = s.statistics()
    assert [0, 10, 30] == got
    assert (1, 1, 2) == (stats.skipped, stats.errors, stats.retries)


async def test_retry_then_dead_letter() -> None:
    """then=DeadLetter(list): the exhausted item lands in the list with its attempts."""
    dead: list[StreamError] = []
    retry = Retry(attempts=3, backoff=1, jitter=0, then=DeadLetter(dead))
    fn = times_ten_failing_on(2)
    async with ps.map(fn, on_error=retry).stream(range(4), clock=VirtualClock()) as s:
        got = [x async for x in s]
        (stats,) = s.statistics()
    assert [0, 10, 30] == got
    assert [(2, 3)] == [(e.item, e.attempts) for e in dead]
    assert (1, 1, 0) == (stats.dead_lettered, stats.errors, stats.skipped)


async def test_retry_with_one_attempt_does_not_retry() -> None:
    """Retry(attempts=1) applies ``then`` at once."""
    flaky = Flaky(1)
    retry = Retry(attempts=1, backoff=1, jitter=0, then="skip")
    clock = VirtualClock()
    assert [] == await collect(ps.map(flaky, on_error=retry).stream([1], clock=clock))
    assert {1: 1} == flaky.calls
    assert 0.0 == clock.monotonic()


# -- DeadLetter ----------------------------------------------------------------------


async def test_dead_letter_to_list() -> None:
    """Failed items are appended to the list as StreamErrors; the stream goes on."""
    dead: list[StreamError] = []
    pipe = ps.map(times_ten_failing_on(1, 3), on_error=DeadLetter(dead))
    async with pipe.stream(range(5)) as s:
        got = [x async for x in s]
        (stats,) = s.statistics()
    assert [0, 20, 40] == got
    assert [1, 3] == [e.item for e in dead]
    assert all(isinstance(e, StreamError) for e in dead)
    assert all(isinstance(e.__cause__, ValueError) for e in dead)
    assert {"map(times_ten)"} == {e.pipe for e in dead}
    assert (2, 2, 0) == (stats.dead_lettered, stats.errors, stats.skipped)


async def test_dead_letter_to_sync_callable() -> None:
    """A sync callable sink is called with each StreamError."""
    dead: list[StreamError] = []

    def sink(error: StreamError) -> None:
        dead.append(error)

    got = await collect(Tenfold({0, 2}, on_error=DeadLetter(sink)).stream(range(4)))
    assert [10, 30] == got
    assert [0, 2] == [e.item for e in dead]


async def test_dead_letter_to_async_callable() -> None:
    """An async callable sink is awaited with each StreamError."""
    dead: list[StreamError] = []
    clock = VirtualClock()

    async def sink(error: StreamError) -> None:
        await clock.sleep(1)
        dead.append(error)

    got = await collect(Tenfold({0, 2}, on_error=DeadLetter(sink)).stream(range(4), clock=clock))
    assert [10, 30] == got
    assert [0, 2] == [e.item for e in dead]
    assert 2.0 == clock.monotonic()


async def test_dead_letter_to_pipe() -> None:
    """A pipe sink processes every record before the stream ends."""
    recorder = Recorder()
    pipe = ps.map(times_ten_failing_on(1, 2, 4), on_error=DeadLetter(recorder))
    async with pipe.stream(range(6)) as s:
        got = [x async for x in s]
        (stats,) = s.statistics()
    assert [0, 30, 50] == got
    assert [1, 2, 4] == [e.item for e in recorder.seen]
    assert all(isinstance(e, StreamError) for e in recorder.seen)
    assert 3 == stats.dead_lettered


async def test_dead_letter_pipe_shared_by_two_stages() -> None:
    """Two stages sending to the same dead-letter pipe both reach it."""
    recorder = Recorder()
    pipeline = ps.map(times_ten_failing_on(1), on_error=DeadLetter(recorder)) | Tenfold(
        {20}, on_error=DeadLetter(recorder)
    )
    got = await collect(pipeline.stream(range(4)))
    assert [0, 300] == got
    assert [(1, "map(times_ten)"), (20, "Tenfold")] == sorted(
        (e.item, e.pipe) for e in recorder.seen
    )


async def test_failing_dead_letter_pipe_fails_the_stream() -> None:
    """An error in the dead-letter pipe fails the stream that sends to it."""
    pipe = ps.map(times_ten_failing_on(1), on_error=DeadLetter(BrokenSink()))
    with pytest.raises(StreamError) as info:
        await collect(pipe.stream(range(3)))
    assert "BrokenSink" == info.value.pipe
    assert isinstance(info.value.__cause__, RuntimeError)
    assert isinstance(info.value.item, StreamError)
    assert 1 == info.value.item.item


@pytest.mark.parametrize("source_kind", ["TestSource", "async generator"])
async def test_failing_dead_letter_pipe_fails_the_run_before_it_reads_on(
    source_kind: str,
) -> None:
    """A long-running stream does not go on after its dead-letter pipe failed: the
    failure comes out of the ``async for`` at the next chunk, not at the source's end."""
    clock = VirtualClock()
    cues = [0] + [TestSource.wait(1.0) if i % 2 else i for i in range(1, 2001)]

    async def trickle() -> AsyncIterator[int]:
        yield 0
        for i in range(2, 2001, 2):
            await clock.sleep(1.0)
            yield i

    source = TestSource(cues, clock=clock) if source_kind == "TestSource" else trickle()
    pipe: ps.FunctionPipe[int, float] = ps.map(lambda x: 1 / x, on_error=DeadLetter(BrokenSink()))
    got: list[float] = []
    with pytest.raises(StreamError) as info:
        await without_deadlock(collect_until_error(pipe.stream(source, clock=clock), got), clock)
    assert "BrokenSink" == info.value.pipe
    assert len(got) <= 2
    assert clock.monotonic() <= 2.0


def test_dead_letter_rejects_bad_sink() -> None:
    """DeadLetter takes a list, a callable or a pipe; anything else is a TypeError."""
    with pytest.raises(TypeError, match="list, a callable or a pipe"):
        DeadLetter(sink=3)
    with pytest.raises(TypeError):
        DeadLetter(sink="errors.log")


# -- per-error callables -----------------------------------------------------------


def fails_by_type(x: int) -> int:
    """ValueError on 2, KeyError on 5, else x."""
    if x == 2:
        raise ValueError("two")
    if x == 5:
        raise KeyError("five")
    return x


async def test_callable_policy_decides_per_error() -> None:
    """A callable skips ValueErrors and raises the others."""
    seen: list[StreamError] = []

    def decide(error: StreamError) -> str:
        seen.append(error)
        return "skip" if isinstance(error.__cause__, ValueError) else "raise"

    got: list[int] = []
    with pytest.raises(StreamError) as info:
        await collect_until_error(ps.map(fails_by_type, on_error=decide).stream(range(8)), got)
    assert [0, 1, 3, 4] == got
    assert 5 == info.value.item
    assert isinstance(info.value.__cause__, KeyError)
    assert [(2, 1), (5, 1)] == [(e.item, e.attempts) for e in seen]


async def test_async_callable_policy_decides_per_error() -> None:
    """An async callable policy is awaited for its decision."""

    async def decide(error: StreamError) -> str:
        return "skip" if isinstance(error.__cause__, ValueError) else "raise"

    got: list[int] = []
    with pytest.raises(StreamError) as info:
        await collect_until_error(ps.map(fails_by_type, on_error=decide).stream(range(8)), got)
    assert [0, 1, 3, 4] == got
    assert 5 == info.value.item


async def test_callable_policy_may_return_retry_or_dead_letter() -> None:
    """A callable may answer with a Retry or a DeadLetter."""
    dead: list[StreamError] = []
    flaky = Flaky(1)

    def fn(x: int) -> int:
        if x == 2:
            raise KeyError("always")
        return flaky(x)

    def decide(error: StreamError) -> Retry | DeadLetter:
        if isinstance(error.__cause__, ValueError):
            return Retry(attempts=2, backoff=1, jitter=0)
        return DeadLetter(dead)

    stream = ps.map(fn, on_error=decide).stream([1, 2, 3], clock=VirtualClock())
    async with stream as s:
        got = [x async for x in s]
        (stats,) = s.statistics()
    assert [10, 30] == got
    assert [2] == [e.item for e in dead]
    assert (2, 1) == (stats.retries, stats.dead_lettered)


@pytest.mark.parametrize("decision", ["ignore", 42, None])
async def test_callable_policy_returning_garbage_is_a_value_error(decision: object) -> None:
    """A callable returning something that is not a policy raises ValueError."""

    def decide(error: StreamError) -> object:
        return decision

    with pytest.raises(ValueError, match=r"on_error callable 'decide' must return .*; it returned"):
        await collect(ps.map(fails_by_type, on_error=decide).stream(range(4)))


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (
            lambda: ps.map(abs, on_error=DeadLetter),
            "not the class DeadLetter: DeadLetter\\(sink\\)",
        ),
        (lambda: ps.map(abs, on_error=Retry), "not the class Retry: Retry\\(\\)"),  # type: ignore[arg-type]
        (lambda: DeadLetter(list), "not a class: got list \\(an instance: list\\(\\)\\)"),
        (lambda: Retry(on=(3,)), "Retry.on must be a non-empty tuple of exception classes"),  # type: ignore[arg-type]
        (lambda: Retry(on=()), "Retry.on must be a non-empty tuple of exception classes"),
    ],
    ids=["DeadLetter-class", "Retry-class", "sink-class", "on-not-exceptions", "on-empty"],
)
def test_classes_where_instances_belong_are_rejected_at_once(make: Any, match: str) -> None:
    with pytest.raises(TypeError, match=match):
        make()


@pytest.mark.parametrize("field", ["backoff", "max_backoff", "jitter"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1.0, True])
def test_retry_times_must_be_finite_seconds(field: str, value: float) -> None:
    options: dict[str, Any] = {field: value}
    with pytest.raises(ValueError, match=f"Retry.{field} must be a finite number of seconds"):
        Retry(**options)


# -- validation ----------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["ignore", "RAISE", 3, None, ("skip",)])
def test_invalid_on_error_is_a_value_error_naming_allowed_values(policy: object) -> None:
    """on_error accepts only the documented policies; the message lists them."""
    options: dict[str, Any] = {"on_error": policy}
    with pytest.raises(ValueError, match="'raise', 'skip'") as info:
        StreamPipe(**options)
    assert "Retry" in str(info.value)
    assert "DeadLetter" in str(info.value)
    with pytest.raises(ValueError, match="'raise', 'skip'"):
        ps.map(abs, **options)


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"attempts": 0}, ValueError, "attempts"),
        ({"attempts": -2}, ValueError, "attempts"),
        ({"attempts": 2.5}, TypeError, "attempts"),
        ({"attempts": True}, TypeError, "attempts"),
        ({"backoff": -1}, ValueError, "backoff"),
        ({"max_backoff": -0.5}, ValueError, "max_backoff"),
        ({"jitter": -0.1}, ValueError, "jitter"),
        ({"then": "ignore"}, ValueError, "then"),
        ({"then": Retry()}, ValueError, "then"),
    ],
)
def test_retry_validation(options: dict[str, Any], error: type[Exception], match: str) -> None:
    """Retry rejects invalid settings, naming the field."""
    with pytest.raises(error, match=match):
        Retry(**options)


# -- failures that are not item errors --------------------------------------------------


SOURCE_PIPES: dict[str, Callable[[], Pipeable[int, int]]] = {
    "fused": lambda: ps.map(lambda x: x),
    "async process_item": lambda: Tenfold(on_error="skip"),
    "buffered": lambda: Tenfold(config=BackpressureConfig(max_buffer_size=2)),
    "concurrent": lambda: Tenfold(concurrency=3, on_error="skip"),
}


@pytest.mark.parametrize("make", SOURCE_PIPES.values(), ids=SOURCE_PIPES.keys())
async def test_source_exception_is_not_wrapped(make: Callable[[], Pipeable[int, int]]) -> None:
    """A failing async source's exception propagates unchanged, whatever the policy."""
    failure = KeyError("source broke")
    source = TestSource(range(10), fail_after=3, fail_with=failure)
    got: list[int] = []
    with pytest.raises(KeyError) as info:
        await collect_until_error(make().stream(source), got)
    assert failure is info.value
    assert 3 == len(got)
    assert source.closed


async def test_sync_source_exception_is_not_wrapped() -> None:
    """A failing sync generator source's exception propagates unchanged."""
    failure = OSError("disk gone")

    def numbers() -> Iterator[int]:
        yield 1
        raise failure

    with pytest.raises(OSError, match="disk gone") as info:
        await collect(ps.map(lambda x: x, on_error="skip").stream(numbers()))
    assert failure is info.value


async def test_process_stream_exception_is_not_wrapped() -> None:
    """An exception in an overridden process_stream propagates unchanged."""
    failure = RuntimeError("process_stream bug")

    class Broken(StreamPipe[int, int]):
        async def process_stream(self, stream: AsyncIterator[int]) -> AsyncIterator[int]:
            async for x in stream:
                if x == 2:
                    raise failure
                yield x

    got: list[int] = []
    with pytest.raises(RuntimeError) as info:
        await collect_until_error(Broken().stream(range(5)), got)
    assert failure is info.value
    assert [0, 1] == got


# -- errors at chunk positions in sync operators ------------------------------------------

N = 600  # three chunks: 0-255, 256-511, 512-599
BAD_POSITIONS: dict[str, set[int]] = {
    "first item": {0},
    "last of first chunk": {255},
    "first of second chunk": {256},
    "last item": {N - 1},
    "several in one chunk": {3, 4, 100, 254},
    "a run across a chunk border": set(range(250, 262)),
    "a whole chunk": set(range(256, 512)),
    "every item": set(range(N)),
}


def flaky_unless(bad: set[int], fn: Callable[[int], T]) -> Callable[[int], T]:
    def op(x: int) -> T:
        if x in bad:
            raise ValueError(f"bad item {x}")
        return fn(x)

    return op


@pytest.mark.parametrize("bad", BAD_POSITIONS.values(), ids=BAD_POSITIONS.keys())
async def test_sync_map_skip_at_chunk_positions(bad: set[int]) -> None:
    """A sync map under "skip" delivers exactly the other items' results, in order."""
    pipe = ps.map(flaky_unless(bad, lambda x: x * 2), on_error="skip")
    async with pipe.stream(range(N)) as s:
        got = [x async for x in s]
        (stats,) = s.statistics()
    assert [x * 2 for x in range(N) if x not in bad] == got
    assert (len(bad), N, N - len(bad)) == (stats.skipped, stats.items_in, stats.items_out)


@pytest.mark.parametrize("bad", BAD_POSITIONS.values(), ids=BAD_POSITIONS.keys())
async def test_sync_filter_skip_at_chunk_positions(bad: set[int]) -> None:
    """A sync filter under "skip" keeps exactly the passing items that did not fail."""
    pipe = ps.filter(flaky_unless(bad, lambda x: x % 3 != 0), on_error="skip")
    got = await collect(pipe.stream(range(N)))
    assert [x for x in range(N) if x not in bad and x % 3 != 0] == got


@pytest.mark.parametrize("bad", BAD_POSITIONS.values(), ids=BAD_POSITIONS.keys())
async def test_sync_flat_map_skip_at_chunk_positions(bad: set[int]) -> None:
    """A sync flat_map under "skip" expands exactly the items that did not fail."""
    pipe = ps.flat_map(flaky_unless(bad, lambda x: [x] * (x % 3)), on_error="skip")
    got = await collect(pipe.stream(range(N)))
    assert [y for x in range(N) if x not in bad for y in [x] * (x % 3)] == got


@pytest.mark.parametrize("bad", BAD_POSITIONS.values(), ids=BAD_POSITIONS.keys())
async def test_sync_map_raise_at_chunk_positions(bad: set[int]) -> None:
    """A sync map under "raise" delivers the results before the first failure, then raises."""
    got: list[int] = []
    with pytest.raises(StreamError) as info:
        await collect_until_error(ps.map(flaky_unless(bad, lambda x: x * 2)).stream(range(N)), got)
    first = min(bad)
    assert [x * 2 for x in range(first)] == got
    assert first == info.value.item


@pytest.mark.parametrize("bad", BAD_POSITIONS.values(), ids=BAD_POSITIONS.keys())
async def test_sync_map_dead_letter_at_chunk_positions(bad: set[int]) -> None:
    """A sync map dead-letters exactly the failing items, in input order."""
    dead: list[StreamError] = []
    pipe = ps.map(flaky_unless(bad, lambda x: x * 2), on_error=DeadLetter(dead))
    got = await collect(pipe.stream(range(N)))
    assert [x * 2 for x in range(N) if x not in bad] == got
    assert sorted(bad) == [e.item for e in dead]


async def test_sync_map_retry_at_chunk_border_keeps_order() -> None:
    """A retried item at a chunk border keeps its place in the output."""
    flaky = Flaky(1)
    calls: set[int] = {0, 255, 256, N - 1}

    def fn(x: int) -> int:
        return flaky(x) if x in calls else x * 10

    retry = Retry(attempts=2, backoff=1, jitter=0)
    got = await collect(ps.map(fn, on_error=retry).stream(range(N), clock=VirtualClock()))
    assert [x * 10 for x in range(N)] == got


# -- item errors that could slip past the policy ------------------------------------


def first_positive(row: list[int]) -> int:
    return next(v for v in row if v > 0)  # StopIteration when there is none


async def afirst_positive(row: list[int]) -> int:
    return first_positive(row)  # in a coroutine, a RuntimeError from the StopIteration


@pytest.mark.parametrize(
    "pipe",
    [
        ps.map(first_positive, on_error="skip"),
        ps.map(first_positive, on_error="skip", config=BackpressureConfig(max_buffer_size=8)),
        ps.map(afirst_positive, on_error="skip", concurrency=2),
    ],
    ids=["fused", "buffered", "concurrent"],
)
async def test_stop_iteration_from_a_function_is_an_item_error(pipe: Pipeable[Any, Any]) -> None:
    """A StopIteration raised by a function is the item's failure, not the end
    of the chunk: the items after it are still processed."""
    rows = [[1], [-1, 5], [-3, -4], [7], [8]]
    stream = pipe.stream(rows)
    assert [1, 5, 7, 8] == await collect(stream)
    assert (1, 1) == (stream.statistics()[0].errors, stream.statistics()[0].skipped)


async def test_stop_iteration_in_a_buffered_filter_raises_stream_error() -> None:
    pipe = ps.filter(first_positive, config=BackpressureConfig(max_buffer_size=8))
    got: list[list[int]] = []
    with pytest.raises(StreamError) as info:
        await collect_until_error(pipe.stream([[1], [-1, 5], [-3, -4], [7]]), got)
    assert [[1], [-1, 5]] == got
    assert [-3, -4] == info.value.item
    assert isinstance(info.value.__cause__, StopIteration)


class Ambiguous:
    """A value with no truth value, as a numpy array or a pandas Series."""

    def __bool__(self) -> bool:
        raise ValueError("the truth value is ambiguous")


def ambiguous_on_two(x: int) -> object:
    return Ambiguous() if x == 2 else x % 2


async def async_ambiguous_on_two(x: int) -> object:
    return ambiguous_on_two(x)


@pytest.mark.parametrize(
    ("fn", "options"),
    [
        (ambiguous_on_two, {}),
        (ambiguous_on_two, {"config": BackpressureConfig(max_buffer_size=8)}),
        (async_ambiguous_on_two, {"concurrency": 2}),
    ],
    ids=["fused", "buffered", "concurrent"],
)
async def test_a_filter_result_without_truth_value_is_an_item_error(
    fn: Callable[[int], Any], options: dict[str, Any]
) -> None:
    skipping = ps.filter(fn, on_error="skip", **options)
    assert [1, 3, 5] == await collect(skipping.stream(range(6)))
    raising = ps.filter(fn, **options)
    with pytest.raises(StreamError) as info:
        await collect(raising.stream(range(6)))
    assert 2 == info.value.item
    assert isinstance(info.value.__cause__, ValueError)


async def test_retry_of_a_sync_function_returning_a_generator() -> None:
    """A generator returned by a sync function is a result, not something to await."""
    clock = VirtualClock()
    calls: list[str] = []

    def letters(word: str) -> Iterator[str]:
        calls.append(word)
        if word == "bc" and calls.count(word) == 1:
            raise ConnectionError("transient")
        return (c for c in word)

    pipe: ps.FunctionPipe[str, Iterator[str]] = ps.map(
        letters, on_error=Retry(attempts=3, backoff=0.1)
    )
    results = await collect(pipe.stream(["a", "bc"], clock=clock))
    assert [["a"], ["b", "c"]] == [list(g) for g in results]
    flat = ps.flat_map(letters, on_error=Retry(attempts=3, backoff=0.1))
    calls.clear()
    assert ["a", "b", "c"] == await collect(flat.stream(["a", "bc"], clock=clock))


async def tens_failing_on_two(x: int) -> AsyncIterator[int]:
    yield x * 10
    if x == 2:
        raise ValueError("broken")


@pytest.mark.parametrize("ordered", [True, False])
async def test_concurrent_flat_map_of_an_async_generator_meets_the_policy(ordered: bool) -> None:
    """With concurrency, a call's elements are collected in its task, where a failure
    while iterating them is an item error (and skip then leaves no element of it)."""
    skipping = ps.flat_map(tens_failing_on_two, on_error="skip", concurrency=2, ordered=ordered)
    assert [10, 30] == sorted(await collect(skipping.stream([1, 2, 3])))
    raising = ps.flat_map(tens_failing_on_two, concurrency=2, ordered=ordered)
    with pytest.raises(StreamError) as info:
        await collect(raising.stream([1, 2, 3]))
    assert 2 == info.value.item


class TimesTenAsync(StreamPipe[int, int]):
    async def process_item(self, item: int) -> int:
        return times_ten_failing_on(3)(item)


@pytest.mark.parametrize(
    "pipe",
    [
        ps.map(times_ten_failing_on(3)),
        ps.map(times_ten_failing_on(3), config=BackpressureConfig(max_buffer_size=100)),
        TimesTenAsync(),
    ],
    ids=["fused", "buffered", "async"],
)
async def test_items_in_stops_at_the_failed_item(pipe: Pipeable[int, int]) -> None:
    """Under "raise", a stage has received the items up to the failed one, not the
    rest of their chunk."""
    stream = pipe.stream(range(10))
    got: list[int] = []
    with pytest.raises(StreamError):
        await collect_until_error(stream, got)
    assert [0, 10, 20] == got
    (stats,) = stream.statistics()
    assert (4, 3, 1) == (stats.items_in, stats.items_out, stats.errors)
