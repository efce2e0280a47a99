"""Every consumer generator runs in one frame (``_lifecycle.consuming``): the run is
ended and closed at its end, and closed, told why, on an error, a break or a
cancellation.

First the frame alone, around a toy generator and a recording run; then each of
the generators a ``Stream`` may hand its consumer (the general one, read item by
item and with ``chunks()``; the ``process_stream`` chain; the compiled direct
consumers over chunks and over an async source's items), each ended the four
ways, with what the run was told recorded.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any

import pytest

from pipeflow._core import _run
from pipeflow._core._consumers import iterate, iterate_batches, iterate_chain
from pipeflow._core._fusion import direct_consumer
from pipeflow._core._lifecycle import consuming
from pipeflow._core._stages import Kind
from pipeflow.streams import BackpressureConfig, BatchStreamPipe, Pipeable, Stream, StreamPipe, map

# -- the frame alone -------------------------------------------------------------


class Boom(Exception):
    pass


class Recording:
    """A run that records what the frame tells it."""

    def __init__(self, *, end_fails: BaseException | None = None) -> None:
        self.started = False
        self.end_fails = end_fails
        self.told: list[str] = []

    async def end(self) -> None:
        self.told.append("end")
        if self.end_fails is not None:
            raise self.end_fails

    async def close(self, *, stopped_by: BaseException | None) -> None:
        self.told.append(f"close({type(stopped_by).__name__})")


async def toy(run: Recording, fail: BaseException | None = None) -> AsyncGenerator[int, None]:
    """A consumer generator in the frame: three results, then ``fail`` if given."""
    if run.started:
        return
    async with consuming(run):
        run.started = True
        for x in range(3):
            await asyncio.sleep(0)
            yield x
        if fail is not None:
            raise fail


async def test_at_the_end_the_frame_ends_then_closes_the_run() -> None:
    """Read to its end: ``end()``, then ``close`` with nothing that stopped it."""
    run = Recording()
    assert [0, 1, 2] == [x async for x in toy(run)]
    assert ["end", "close(NoneType)"] == run.told


async def test_on_an_error_the_frame_closes_the_run_and_lets_the_error_on() -> None:
    """An error in the body: no ``end()``; ``close`` is told the error, which propagates."""
    run = Recording()
    with pytest.raises(Boom):
        async for _ in toy(run, Boom()):
            pass
    assert ["close(Boom)"] == run.told


async def test_when_ending_fails_the_frame_still_closes_the_run() -> None:
    """``end()`` raising: ``close`` is told its failure, which propagates."""
    run = Recording(end_fails=Boom())
    with pytest.raises(Boom):
        async for _ in toy(run):
            pass
    assert ["end", "close(Boom)"] == run.told


async def test_on_a_break_the_frame_closes_the_run() -> None:
    """Closing the generator at a ``yield``: ``close`` is told ``GeneratorExit``."""
    run = Recording()
    gen = toy(run)
    async for _ in gen:
        break
    await gen.aclose()
    assert ["close(GeneratorExit)"] == run.told


async def test_on_a_cancellation_the_frame_closes_the_run() -> None:
    """Cancelled while the body waits: ``close`` is told ``CancelledError``."""
    run = Recording()

    async def consume() -> None:
        async for _ in toy(run):
            await asyncio.sleep(0)

    task = asyncio.get_running_loop().create_task(consume())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert ["close(CancelledError)"] == run.told


async def test_a_run_started_before_is_not_opened_or_closed_again() -> None:
    """A generator over a run that started already yields nothing and tells it nothing."""
    run = Recording()
    run.started = True
    assert [] == [x async for x in toy(run)]
    assert [] == run.told


# -- every consumer generator of a Stream, through the frame ---------------------


class Source:
    """An async source of 0..n-1 that may fail or block at item ``at``, and may
    take acknowledgements (so that the run reads it in chunks)."""

    def __init__(self, *, fail: bool = False, block: bool = False, acks: bool = False) -> None:
        self.at = 5 if fail or block else None
        self.fail = fail
        self.blocked = asyncio.Event()
        self.closed = False
        if acks:
            self.ack = lambda count: None

    async def __aiter__(self) -> AsyncIterator[int]:
        try:
            for i in range(100):
                if i == self.at:
                    if self.fail:
                        raise Boom
                    self.blocked.set()
                    await asyncio.Event().wait()
                await asyncio.sleep(0)
                yield i
        finally:
            self.closed = True


def inc(x: int) -> int:
    return x + 1


class Chained(StreamPipe[int, int]):
    async def process_stream(self, stream: AsyncIterator[int]) -> AsyncIterator[int]:
        async for x in stream:
            yield x + 1


def code_of(consumer: Any) -> Any:
    """The code of a consumer generator function."""
    return consumer.__code__


#: name -> (the pipe, whether the source takes acks, read with chunks(), the
#: code of the consumer generator the stream must hand out)
CONSUMERS: dict[str, tuple[Callable[[], Pipeable[int, int]], bool, bool, Any]] = {
    "general": (
        lambda: map(inc) | StreamPipe[int, int](config=BackpressureConfig()),
        False,
        False,
        code_of(iterate),
    ),
    "general, chunks()": (lambda: map(inc), False, True, code_of(iterate)),
    "process_stream chain": (lambda: map(inc) | Chained(), False, False, code_of(iterate_chain)),
    "direct, over chunks": (
        lambda: map(inc),
        True,
        False,
        code_of(direct_consumer((Kind.MAP,))),
    ),
    "direct, over items": (
        lambda: map(inc),
        False,
        False,
        code_of(direct_consumer((Kind.MAP,), reads="async")),
    ),
    "batches, over items": (
        lambda: BatchStreamPipe[int, int](3),
        False,
        False,
        code_of(iterate_batches),
    ),
}


@pytest.fixture
def told(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What every run is told of its end and its closing, in order."""
    told: list[str] = []
    end, close = _run.Run.end, _run.Run.close

    async def recorded_end(self: _run.Run) -> None:
        told.append("end")
        await end(self)

    async def recorded_close(self: _run.Run, *, stopped_by: BaseException | None) -> None:
        told.append(f"close({type(stopped_by).__name__})")
        await close(self, stopped_by=stopped_by)

    monkeypatch.setattr(_run.Run, "end", recorded_end)
    monkeypatch.setattr(_run.Run, "close", recorded_close)
    return told


def open_stream(name: str, source: Source) -> tuple[Stream[int], AsyncIterator[Any]]:
    """The stream of consumer ``name`` over ``source``, and what the consumer iterates,
    having checked that it is that consumer's generator."""
    pipe, _, chunked, code = CONSUMERS[name]
    stream = pipe().stream(source)
    results: AsyncIterator[Any] = stream.chunks() if chunked else stream
    consumer: Any = stream._agen
    assert code is consumer.ag_code
    return stream, results


async def read(stream: Stream[int], results: AsyncIterator[Any]) -> None:
    """Read ``results`` to the end inside ``async with stream``."""
    async with stream:
        async for _ in results:
            pass


@pytest.mark.parametrize("name", CONSUMERS)
async def test_at_the_end_every_consumer_ends_then_closes_the_run(
    name: str, told: list[str]
) -> None:
    """Read to the end: ``end()``, then ``close``; the source is closed."""
    source = Source(acks=CONSUMERS[name][1])
    stream, results = open_stream(name, source)
    await read(stream, results)
    assert ["end", "close(NoneType)"] == told
    assert source.closed


@pytest.mark.parametrize("name", CONSUMERS)
async def test_on_an_error_every_consumer_closes_the_run(name: str, told: list[str]) -> None:
    """The source fails: ``close`` is told the failure, which reaches the consumer."""
    source = Source(fail=True, acks=CONSUMERS[name][1])
    stream, results = open_stream(name, source)
    with pytest.raises(Boom):
        await read(stream, results)
    assert ["close(Boom)"] == told
    assert source.closed


@pytest.mark.parametrize("name", CONSUMERS)
async def test_on_a_break_every_consumer_closes_the_run(name: str, told: list[str]) -> None:
    """The consumer breaks out inside ``async with``: ``close`` is told ``GeneratorExit``."""
    source = Source(acks=CONSUMERS[name][1])
    stream, results = open_stream(name, source)
    async with stream:
        async for _ in results:
            break
    assert ["close(GeneratorExit)"] == told
    assert source.closed


@pytest.mark.parametrize("name", CONSUMERS)
async def test_on_a_cancellation_every_consumer_closes_the_run(name: str, told: list[str]) -> None:
    """Cancelled while the run waits for the source: ``close`` is told ``CancelledError``."""
    source = Source(block=True, acks=CONSUMERS[name][1])
    stream, results = open_stream(name, source)

    task = asyncio.get_running_loop().create_task(read(stream, results))
    await source.blocked.wait()
    for _ in range(5):  # let a run with a buffer use up what is there and wait too
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert ["close(CancelledError)"] == told
    assert source.closed


@pytest.mark.parametrize("leave", [False, True])
async def test_the_consumer_reading_a_list_ends_or_breaks_in_the_frame(
    leave: bool, told: list[str]
) -> None:
    """Fused operators over a list read it themselves, in the frame: read to the
    end, ``end()`` then ``close``; broken out of, ``close`` is told ``GeneratorExit``."""
    stream = map(inc).stream([1, 2, 3])
    consumer: Any = stream._agen
    assert code_of(direct_consumer((Kind.MAP,), reads="sequence")) is consumer.ag_code
    async with stream:
        async for _ in stream:
            if leave:
                break
    assert (["close(GeneratorExit)"] if leave else ["end", "close(NoneType)"]) == told
