"""Reading async sources in chunks of what is ready, and stopping them cleanly."""

from __future__ import annotations

import asyncio
import types
from collections.abc import AsyncIterator, Generator
from typing import Any

import pytest

from helpers import collect, collect_until_error
from pipeflow.streams import BackpressureConfig, FunctionPipe, Pipeable, StreamPipe, map
from pipeflow.testing import TestSource


class Gate:
    """An async source that hands over ``ready`` items at once, then waits on an event."""

    def __init__(self, ready: int) -> None:
        self.ready = ready
        self.event = asyncio.Event()
        self.waiting = asyncio.Event()
        self.finally_ran = False
        self.saw: BaseException | None = None

    async def items(self) -> AsyncIterator[int]:
        try:
            for i in range(self.ready):
                yield i
            self.waiting.set()
            await self.event.wait()
            yield self.ready
        except BaseException as exc:
            self.saw = exc
            raise
        finally:
            self.finally_ran = True


async def test_items_at_hand_travel_as_one_chunk() -> None:
    """An async source's items that need no waiting are acknowledged a chunk at a time."""
    source = TestSource(range(600))
    history: list[int] = []
    original_ack = source.ack

    def record(count: int) -> None:
        original_ack(count)
        history.append(count)

    source.ack = record  # type: ignore[method-assign]
    async with map(lambda x: x).stream(source) as stream:
        assert list(range(600)) == [x async for x in stream]
    assert [256, 512, 600] == history


async def test_break_while_the_source_waits_closes_it() -> None:
    """Leaving while the source is in the middle of fetching the next item closes it."""
    gate = Gate(3)
    got: list[int] = []
    before = asyncio.all_tasks()
    async with map(lambda x: x).stream(gate.items()) as stream:
        async for x in stream:
            got.append(x)
            if x == 2:
                break
    assert [0, 1, 2] == got
    assert gate.finally_ran
    assert set() == asyncio.all_tasks() - before - {asyncio.current_task()}


async def test_results_come_before_the_source_waits() -> None:
    """What the source handed over is delivered while it waits for more."""
    gate = Gate(3)
    got: list[int] = []

    async def consume() -> None:
        async with StreamPipe[int, int]().stream(gate.items()) as stream:
            async for x in stream:
                got.append(x)

    task = asyncio.create_task(consume())
    await gate.waiting.wait()
    for _ in range(5):
        await asyncio.sleep(0)
    assert [0, 1, 2] == got
    gate.event.set()
    await task
    assert [0, 1, 2, 3] == got


async def test_cancellation_reaches_a_waiting_source() -> None:
    """Cancelling the consumer while the source waits delivers the cancellation to it."""
    gate = Gate(0)

    async def consume() -> None:
        async with map(lambda x: x).stream(gate.items()) as stream:
            async for _ in stream:
                pass

    task = asyncio.create_task(consume())
    await gate.waiting.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert isinstance(gate.saw, asyncio.CancelledError)
    assert gate.finally_ran


async def test_a_source_failing_after_a_wait_propagates_unchanged() -> None:
    """An error raised by the source after it waited comes out as it is."""

    async def flaky() -> AsyncIterator[int]:
        yield 1
        await asyncio.sleep(0)
        raise ConnectionResetError("peer went away")

    got: list[int] = []
    tenfold: FunctionPipe[int, int] = map(lambda x: x * 10)
    with pytest.raises(ConnectionResetError, match="peer went away"):
        await collect_until_error(tenfold.stream(flaky()), got)
    assert [10] == got


async def test_a_source_failing_mid_chunk_delivers_what_came_before() -> None:
    """Items handed over before the source failed are delivered, then the error."""
    source = TestSource(range(10), fail_after=4, fail_with=ValueError("broken record"))
    got: list[int] = []
    with pytest.raises(ValueError, match="broken record"):
        await collect_until_error(map(lambda x: x).stream(source), got)
    assert [0, 1, 2, 3] == got
    assert source.closed


class CountingCloses:
    """An iterator (its own iterable) that counts calls to close()."""

    def __init__(self, n: int) -> None:
        self.items = iter(range(n))
        self.closes = 0

    def __iter__(self) -> CountingCloses:
        return self

    def __next__(self) -> int:
        return next(self.items)

    def close(self) -> None:
        self.closes += 1


async def aident(x: int) -> int:
    return x


@pytest.mark.parametrize(
    "pipe",
    [map(abs), map(abs, config=BackpressureConfig(max_buffer_size=4)), map(aident, concurrency=2)],
    ids=["fused", "buffered", "concurrent"],
)
async def test_an_iterator_source_is_closed_once(pipe: Any) -> None:
    source = CountingCloses(10)
    assert list(range(10)) == await collect(pipe.stream(source))
    assert 1 == source.closes


class LegacyAnext:
    """An async iterator whose __anext__ is a generator-based coroutine."""

    def __init__(self, n: int) -> None:
        self.i, self.n = 0, n

    def __aiter__(self) -> LegacyAnext:
        return self

    @types.coroutine
    def __anext__(self) -> Generator[Any, None, int]:
        yield None  # as an awaited future would: the reader has to wait
        if self.i >= self.n:
            raise StopAsyncIteration
        self.i += 1
        return self.i - 1


def ident(x: int) -> int:
    return x


async def test_an_anext_made_with_types_coroutine_is_read() -> None:
    pipes: list[Pipeable[int, int]] = [
        map(ident),
        StreamPipe[int, int](),
        map(aident, concurrency=2),
    ]
    for pipe in pipes:
        source: Any = LegacyAnext(3)  # an AsyncIterator by protocol, not by its types
        assert [0, 1, 2] == await collect(pipe.stream(source))


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: TestSource.wait(-1), ValueError, "TestSource.wait takes a finite number"),
        (lambda: TestSource.wait(float("nan")), ValueError, "TestSource.wait takes a finite"),
        (lambda: TestSource.at(float("inf"), 1), ValueError, "TestSource.at takes a finite"),
        (lambda: TestSource.fail(ValueError), TypeError, "an exception instance"),  # type: ignore[arg-type]
        (lambda: TestSource([1], fail_after=-1), ValueError, "fail_after must be an int >= 0"),
        (lambda: TestSource([1], fail_with=ValueError), TypeError, "fail_with must be an exc"),  # type: ignore[arg-type]
    ],
    ids=["wait-negative", "wait-nan", "at-inf", "fail-class", "fail-after", "fail-with-class"],
)
def test_bad_test_source_scripts_are_rejected(
    make: Any, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        make()
