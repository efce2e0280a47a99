"""Nothing is left running: every way a stream ends closes its source and its tasks.

Each scenario runs over several pipeline shapes (fused, buffered, concurrent, with a
process_stream override) and several kinds of source (TestSource, async generator,
sync generator), and then checks that the source was closed and that no task the
run started is still alive.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import types
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Iterator,
)
from typing import Any

import pytest

from pipeflow.streams import (
    BackpressureConfig,
    DeadLetter,
    Pipeable,
    Stream,
    StreamError,
    StreamPipe,
    filter,
    map,
)
from pipeflow.testing import TestSource, VirtualClock

N = 10_000


def other_tasks() -> set[asyncio.Task[Any]]:
    """The tasks alive now, apart from the one running the test."""
    current = asyncio.current_task()
    return {t for t in asyncio.all_tasks() if t is not current}


async def settle(turns: int = 10) -> None:
    """Give the loop a few turns (for the async generator finalizer to run)."""
    for _ in range(turns):
        await asyncio.sleep(0)


async def drain(stream: Stream[int], into: list[int]) -> None:
    """Append every result of ``stream`` to ``into`` (keeping those before an error)."""
    async for x in stream:
        into.append(x)


class Boom(Exception):
    pass


# -- pipeline shapes: each adds 2 to every item ----------------------------------------


def inc(x: int) -> int:
    return x + 1


async def ainc(x: int) -> int:
    await asyncio.sleep(0)
    return x + 1


class Inc(StreamPipe[int, int]):
    async def process_item(self, item: int) -> int:
        return item + 1


class Passthrough(StreamPipe[int, int]):
    async def process_stream(self, stream: AsyncIterator[int]) -> AsyncIterator[int]:
        async for item in stream:
            yield item


def fused() -> Pipeable[int, int]:
    return map(inc) | Inc() | filter(lambda _: True)


def buffered() -> Pipeable[int, int]:
    return (
        map(inc, config=BackpressureConfig(max_buffer_size=4))
        | Inc()
        | map(lambda x: x, config=BackpressureConfig(max_buffer_size=2))
    )


def concurrent() -> Pipeable[int, int]:
    return map(ainc, concurrency=3) | Inc(
        concurrency=2, config=BackpressureConfig(max_buffer_size=5)
    )


def streaming() -> Pipeable[int, int]:
    return (
        Passthrough()
        | map(ainc, concurrency=2)
        | Passthrough(config=BackpressureConfig(max_buffer_size=3))
        | Inc()
    )


def direct() -> Pipeable[int, int]:
    """Fused operators only: the consumer's generator runs them on the source."""
    return map(inc) | filter(lambda _: True) | map(inc)


def stream_then_fused() -> Pipeable[int, int]:
    """Fused operators the consumer's generator runs, after a buffer."""
    return Passthrough() | map(inc) | filter(lambda _: True) | map(inc)


Shape = Callable[[], Pipeable[int, int]]
SHAPES: list[Shape] = [fused, buffered, concurrent, streaming, direct, stream_then_fused]
shapes = pytest.mark.parametrize("shape", SHAPES, ids=lambda s: s.__name__)


# -- sources that tell whether they were closed ------------------------------------------


class Probe:
    """A source of ints 0.. of one kind, recording whether it was closed (or finalized).

    Args:
        kind: "test_source" (TestSource), "async_gen" or "sync_gen".
        fail_at: raise ``error`` instead of item number ``fail_at``.
        block_at: (async_gen only) wait forever instead of item number ``block_at``,
            after setting ``blocked``.
    """

    def __init__(
        self,
        kind: str,
        n: int = N,
        *,
        fail_at: int | None = None,
        error: BaseException | None = None,
        block_at: int | None = None,
    ) -> None:
        self.kind = kind
        self.n = n
        self.fail_at = fail_at
        self.error = error or Boom("source failed")
        self.block_at = block_at
        self.blocked = asyncio.Event()
        self.finalized = False
        self.source: Any
        if kind == "test_source":
            assert block_at is None
            self.test_source = TestSource(range(n), fail_after=fail_at, fail_with=self.error)
            self.source = self.test_source
        elif kind == "async_gen":
            self.source = self._agen()
        elif kind == "sync_gen":
            assert block_at is None
            self.source = self._gen()
        else:
            raise AssertionError(kind)

    @property
    def closed(self) -> bool:
        if self.kind == "test_source":
            return self.test_source.closed
        return self.finalized

    async def _agen(self) -> AsyncIterator[int]:
        try:
            for i in range(self.n):
                if i == self.fail_at:
                    raise self.error
                if i == self.block_at:
                    self.blocked.set()
                    await asyncio.Event().wait()
                await asyncio.sleep(0)
                yield i
        finally:
            self.finalized = True

    def _gen(self) -> Iterator[int]:
        try:
            for i in range(self.n):
                if i == self.fail_at:
                    raise self.error
                yield i
        finally:
            self.finalized = True


KINDS = ["test_source", "async_gen", "sync_gen"]
kinds = pytest.mark.parametrize("kind", KINDS)


class Stall(StreamPipe[int, int]):
    """Passes items through until item ``at``, where every call waits forever."""

    def __init__(self, at: int, **options: Any) -> None:
        super().__init__(**options)
        self.at = at
        self.stalled = asyncio.Event()

    async def process_item(self, item: int) -> int:
        if item >= self.at:
            self.stalled.set()
            await asyncio.Event().wait()
        return item


def fail_on(bad: int) -> Callable[[int], int]:
    def check(x: int) -> int:
        if x == bad:
            raise Boom(f"bad item {x}")
        return x

    return check


def afail_on(bad: int) -> Callable[[int], Awaitable[int]]:
    check = fail_on(bad)

    async def acheck(x: int) -> int:
        return check(x)

    return acheck


# -- leaving early -----------------------------------------------------------------------


@shapes
@kinds
async def test_break_inside_async_with_closes_everything(shape: Shape, kind: str) -> None:
    """Breaking out of async for inside async with closes the source and all run tasks."""
    before = other_tasks()
    probe = Probe(kind)
    got: list[int] = []
    async with shape().stream(probe.source) as results:
        async for x in results:
            got.append(x)
            if len(got) == 3:
                break
    assert [2, 3, 4] == got
    assert probe.closed
    assert set() == other_tasks() - before


@shapes
@kinds
async def test_break_without_async_with_closes_everything(shape: Shape, kind: str) -> None:
    """Breaking out of a bare async for closes everything once the stream is dropped."""
    before = other_tasks()
    probe = Probe(kind)
    got: list[int] = []
    try:
        async for x in shape().stream(probe.source):
            got.append(x)
            if len(got) == 3:
                break
        await settle()  # the async generator finalizer runs aclose() in a task
        assert [2, 3, 4] == got
        assert probe.closed
        assert set() == other_tasks() - before
    finally:
        # Whatever the outcome, do not leave a half-closed run to a later test.
        gc.collect()
        await settle()


@shapes
@kinds
async def test_exception_in_consumer_body_closes_everything(shape: Shape, kind: str) -> None:
    """An exception raised in the async with body closes the source and all run tasks."""
    before = other_tasks()
    probe = Probe(kind)

    async def consume() -> None:
        async with shape().stream(probe.source) as results:
            async for x in results:
                if x == 10:
                    raise Boom("consumer")

    with pytest.raises(Boom, match="consumer"):
        await consume()
    assert probe.closed
    assert set() == other_tasks() - before


@shapes
@kinds
async def test_full_consumption_closes_everything(shape: Shape, kind: str) -> None:
    """A stream that runs to its end closes its source and leaves no task."""
    before = other_tasks()
    probe = Probe(kind, n=600)
    out = [x async for x in shape().stream(probe.source)]
    assert [x + 2 for x in range(600)] == out
    assert probe.closed
    assert set() == other_tasks() - before


# -- failures ------------------------------------------------------------------------------


@shapes
@kinds
@pytest.mark.parametrize("where", ["first", "last"])
async def test_stream_error_closes_everything(shape: Shape, kind: str, where: str) -> None:
    """A StreamError out of the stream closes the source and all run tasks."""
    before = other_tasks()
    probe = Probe(kind)
    failing = map(fail_on(7))
    pipeline = failing | shape() if where == "first" else shape() | failing
    with pytest.raises(StreamError) as caught:
        async for _ in pipeline.stream(probe.source):
            pass
    assert 7 == caught.value.item
    assert probe.closed
    assert set() == other_tasks() - before


@shapes
@kinds
async def test_stream_error_inside_async_with_closes_everything(shape: Shape, kind: str) -> None:
    """A StreamError from a concurrent stage inside async with closes everything."""
    before = other_tasks()
    probe = Probe(kind)
    pipeline = shape() | map(afail_on(9), concurrency=3)

    async def consume() -> None:
        async with pipeline.stream(probe.source) as results:
            async for _ in results:
                pass

    with pytest.raises(StreamError):
        await consume()
    assert probe.closed
    assert set() == other_tasks() - before


@shapes
@kinds
async def test_source_failure_propagates_unchanged(shape: Shape, kind: str) -> None:
    """A failing source raises its own exception (not StreamError) and is closed."""
    before = other_tasks()
    error = ConnectionError("broker went away")
    probe = Probe(kind, fail_at=5, error=error)
    with pytest.raises(ConnectionError) as caught:
        async for _ in shape().stream(probe.source):
            pass
    assert caught.value is error
    assert not isinstance(caught.value, StreamError)
    assert probe.closed
    assert set() == other_tasks() - before


@shapes
@kinds
async def test_results_before_source_failure_are_delivered(shape: Shape, kind: str) -> None:
    """The results of the items read before the source failed reach the consumer first."""
    probe = Probe(kind, fail_at=5)
    got: list[int] = []
    with pytest.raises(Boom):
        await drain(shape().stream(probe.source), got)
    assert [2, 3, 4, 5, 6] == got


@shapes
async def test_results_before_stream_error_are_delivered(shape: Shape) -> None:
    """Under on_error="raise", results before the failed item are delivered, then StreamError."""
    got: list[int] = []
    with pytest.raises(StreamError):
        await drain((map(fail_on(5)) | shape()).stream(range(20)), got)
    assert [2, 3, 4, 5, 6] == got


class Explode(StreamPipe[int, int]):
    """A process_stream override that fails with a fixed error after two items."""

    def __init__(self, error: BaseException, **options: Any) -> None:
        super().__init__(**options)
        self.error = error

    async def process_stream(self, stream: AsyncIterator[int]) -> AsyncIterator[int]:
        count = 0
        async for item in stream:
            if count == 2:
                raise self.error
            count += 1
            yield item


@pytest.mark.parametrize(
    "build",
    [
        lambda e: Explode(e),
        lambda e: Explode(e, config=BackpressureConfig(max_buffer_size=2)),
        lambda e: map(ainc, concurrency=2) | Explode(e) | map(ainc, concurrency=2),
        lambda e: buffered() | Explode(e, config=BackpressureConfig(max_buffer_size=1)),
    ],
    ids=["alone", "buffered", "between_concurrent", "after_buffers"],
)
@kinds
async def test_process_stream_exception_propagates_unchanged(
    build: Callable[[BaseException], Pipeable[int, int]], kind: str
) -> None:
    """An exception in an overridden process_stream is raised as it is, and nothing leaks."""
    before = other_tasks()
    error = KeyError("user bug")
    probe = Probe(kind)
    with pytest.raises(KeyError) as caught:
        async for _ in build(error).stream(probe.source):
            pass
    assert caught.value is error
    assert probe.closed
    assert set() == other_tasks() - before


# -- cancellation ------------------------------------------------------------------------


@shapes
@kinds
async def test_cancel_while_consumer_body_waits(shape: Shape, kind: str) -> None:
    """Cancelling the consuming task while its body waits closes everything (async with)."""
    before = other_tasks()
    probe = Probe(kind)
    reached = asyncio.Event()

    async def consume() -> None:
        async with shape().stream(probe.source) as results:
            async for x in results:
                if x == 20:
                    reached.set()
                    await asyncio.Event().wait()

    task = asyncio.create_task(consume())
    await reached.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert probe.closed
    assert set() == other_tasks() - before


@shapes
async def test_cancel_while_source_waits(shape: Shape) -> None:
    """Cancelling the consumer while the source blocks closes the source and all tasks."""
    before = other_tasks()
    probe = Probe("async_gen", block_at=12)
    got: list[int] = []

    async def consume() -> None:
        async for x in shape().stream(probe.source):
            got.append(x)

    task = asyncio.create_task(consume())
    await probe.blocked.wait()
    await settle()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert probe.closed
    assert set() == other_tasks() - before


@shapes
@kinds
@pytest.mark.parametrize("concurrency", [1, 3])
async def test_cancel_while_a_stage_waits(shape: Shape, kind: str, concurrency: int) -> None:
    """Cancelling while process_item calls hang cancels the workers and closes the source."""
    before = other_tasks()
    probe = Probe(kind)
    stall = Stall(30, concurrency=concurrency)

    async def consume() -> None:
        async for _ in (shape() | stall).stream(probe.source):
            pass

    task = asyncio.create_task(consume())
    await stall.stalled.wait()
    await settle()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert probe.closed
    assert set() == other_tasks() - before


# -- closing a stream that never ran -------------------------------------------------------


@shapes
async def test_aclose_before_iteration_closes_test_source(shape: Shape) -> None:
    """aclose() on a stream never iterated closes the source without reading it."""
    before = other_tasks()
    source = TestSource(range(10))
    stream = shape().stream(source)
    await stream.aclose()
    assert source.closed
    assert 0 == source.read
    with pytest.raises(RuntimeError, match="this stream was closed"):
        [x async for x in stream]
    assert set() == other_tasks() - before


async def test_aclose_before_iteration_closes_generators() -> None:
    """aclose() on a never-iterated stream closes sync and async generator sources."""

    def numbers() -> Generator[int, None, None]:
        yield 1

    async def anumbers() -> AsyncGenerator[int, None]:
        yield 1

    gen = numbers()
    agen = anumbers()
    await StreamPipe[int, int]().stream(gen).aclose()
    await buffered().stream(agen).aclose()
    assert inspect.GEN_CLOSED == inspect.getgeneratorstate(gen)
    assert isinstance(agen, types.AsyncGeneratorType)
    assert agen.ag_frame is None  # closed


async def test_async_with_without_iteration_closes_source() -> None:
    """Entering and leaving async with without iterating closes the source."""
    source = TestSource(range(10))
    async with concurrent().stream(source):
        pass
    assert source.closed
    assert 0 == source.read


# -- sync generators ---------------------------------------------------------------------


async def test_sync_generator_source_is_closed_on_break() -> None:
    """A sync generator source gets close() (its finally runs) when the consumer leaves."""
    finished: list[str] = []

    def numbers() -> Iterator[int]:
        try:
            i = 0
            while True:
                yield i
                i += 1
        except GeneratorExit:
            finished.append("closed")
            raise

    async with fused().stream(numbers()) as results:
        async for x in results:
            if x == 2:
                break
    assert ["closed"] == finished


async def test_sync_generator_source_is_closed_on_error() -> None:
    """A sync generator source is closed when a pipe fails mid-stream."""
    probe = Probe("sync_gen")
    with pytest.raises(StreamError):
        async for _ in (buffered() | map(fail_on(300))).stream(probe.source):
            pass
    assert probe.closed


async def test_sync_iterable_without_close_is_fine() -> None:
    """A source without close() (a list, a range) ends a stream cleanly."""
    before = other_tasks()
    async with concurrent().stream([1, 2, 3]) as results:
        async for x in results:
            assert 3 == x
            break
    assert set() == other_tasks() - before


async def test_break_closes_the_dead_letter_pipe_task() -> None:
    """Leaving a stream early also stops the task streaming its dead-letter pipe."""
    from pipeflow.streams import DeadLetter, map

    seen: list[object] = []

    class Recorder(StreamPipe[object, object]):
        async def process_item(self, item: object) -> object:
            seen.append(item)
            return item

    def fail_odd(x: int) -> int:
        if x % 2:
            raise ValueError(x)
        return x

    before = asyncio.all_tasks()
    source = TestSource(range(1000))
    async with map(fail_odd, on_error=DeadLetter(Recorder())).stream(source) as stream:
        async for x in stream:
            if x >= 10:
                break
    assert source.closed
    assert set() == asyncio.all_tasks() - before - {asyncio.current_task()}
    assert [] != seen


@shapes
async def test_nested_async_generator_source_is_closed_while_waiting(shape: Shape) -> None:
    """A source that is an async generator reading another one, left while the inner
    one waits: both are closed (every ``finally`` runs) and nothing is reported
    to the loop's exception handler."""
    closed: list[str] = []
    reported: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _, ctx: reported.append(ctx))

    async def inner() -> AsyncIterator[int]:
        try:
            for i in range(N):
                yield i
                await asyncio.sleep(0)  # a fetch: the chunk reader has to wait here
        finally:
            closed.append("inner")

    async def outer() -> AsyncIterator[int]:
        try:
            async for x in inner():
                yield x
        finally:
            closed.append("outer")

    before = other_tasks()
    async with shape().stream(outer()) as results:
        async for x in results:
            if x == 5:
                break
    gc.collect()
    await settle()
    # (outer's own ``async for`` leaves inner to the loop's async-generator hook
    # when outer is closed at its ``yield``, as in plain Python)
    assert ["inner", "outer"] == sorted(closed)
    assert [] == reported
    assert set() == other_tasks() - before


async def test_a_stream_read_to_its_end_cannot_be_read_again() -> None:
    """A stream is one run: a second loop over a finished run is an error, not an
    empty stream; a loop that broke off can be followed by one that goes on."""
    stream = map(inc).stream(range(6))
    async for x in stream:
        if x == 3:
            break
    assert [4, 5, 6] == [x async for x in stream]  # the same run goes on
    with pytest.raises(RuntimeError, match=r"read to its end.*call stream\(\) again"):
        [x async for x in stream]
    with pytest.raises(StopAsyncIteration):  # the iterator protocol still holds
        await stream.__anext__()
    await stream.aclose()
    with pytest.raises(RuntimeError, match="was closed"):
        stream.chunks()


async def test_chunks_is_called_once() -> None:
    stream = map(inc).stream(range(3))
    chunks = stream.chunks()
    with pytest.raises(RuntimeError, match="chunks\\(\\) was called already"):
        stream.chunks()
    async with stream:
        assert [[1, 2, 3]] == [c async for c in chunks]


async def test_a_cancellation_while_the_run_closes_still_closes_the_source() -> None:
    """Cancelled again while its close awaits (here a process_stream's own clean-up),
    the run goes on closing everything, then lets the cancellation through."""
    clock = VirtualClock()
    closed: list[bool] = []

    async def source() -> AsyncIterator[int]:
        try:
            for i in range(100):
                await asyncio.sleep(0)
                yield i
        finally:
            closed.append(True)

    class Flushing(StreamPipe[int, int]):
        async def process_stream(self, stream: AsyncIterator[int]) -> AsyncIterator[int]:
            try:
                async for x in stream:
                    yield x
            finally:
                await clock.sleep(1.0)  # flushing state on the way out

    stream = Flushing().stream(source(), clock=clock)

    async def consume() -> None:
        async with stream as results:
            async for x in results:
                if x >= 20:
                    break

    task = asyncio.create_task(consume())
    await clock.sleep(0.5)  # the run is closing now: the flush takes a second
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [True] == closed


async def test_a_cancelled_run_blocked_on_its_dead_letter_pipe_leaves_nothing_running(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Dead letters waiting for room in a slow dead-letter pipe: cancelling the run
    stops that wait too, and says how many dead letters were not processed."""
    clock = VirtualClock()

    async def slow_sink(error: StreamError) -> None:
        await clock.sleep(1.0)

    def fail(x: int) -> int:
        raise ValueError(x)

    pipe = map(fail, on_error=DeadLetter(map(slow_sink, name="dlq")))
    before = other_tasks()

    async def consume() -> None:
        async with pipe.stream(range(3000), clock=clock) as results:
            async for _ in results:
                pass

    task = asyncio.create_task(consume())
    await clock.sleep(5.0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await settle()
    left = {t for t in other_tasks() - before if "VirtualClock" not in t.get_name()}
    assert set() == left
    assert any("dead-letter pipe 'dlq' stopped with" in r.message for r in caplog.records)
