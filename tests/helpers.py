"""Small helpers the tests share: draining streams and making async sources."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine, Iterable
from typing import Any, TypeVar

from pipeflow.streams import Stream
from pipeflow.testing import VirtualClock

T = TypeVar("T")


async def collect(stream: Stream[T]) -> list[T]:
    """Every result of ``stream``, which is closed afterwards."""
    async with stream:
        return [x async for x in stream]


async def collect_until_error(stream: Stream[T], got: list[T]) -> None:
    """Append results to ``got`` until the stream ends or raises."""
    async with stream:
        async for x in stream:
            got.append(x)


async def collect_timed(stream: Stream[T], clock: VirtualClock) -> list[tuple[float, T]]:
    """Each result with the virtual time it arrived at."""
    async with stream:
        return [(clock.monotonic(), x) async for x in stream]


async def agen(items: Iterable[T]) -> AsyncIterator[T]:
    """An async source handing over one item at a time, yielding to the loop between."""
    for x in items:
        await asyncio.sleep(0)
        yield x


class GatedSource:
    """An async source of the ints ``0..n-1`` that hands over the first ``first``
    at once, then sets ``waiting`` and waits for ``gate`` before the rest;
    ``closed`` once it has ended or been closed."""

    def __init__(self, first: int, n: int) -> None:
        self.first, self.n = first, n
        self.gate = asyncio.Event()
        self.waiting = asyncio.Event()
        self.closed = False

    async def items(self) -> AsyncIterator[int]:
        try:
            for x in range(self.first):
                yield x
            self.waiting.set()
            await self.gate.wait()
            for x in range(self.first, self.n):
                yield x
        finally:
            self.closed = True


async def without_deadlock(
    coro: Coroutine[Any, Any, T], clock: VirtualClock, *, watchdog: float = 1e6
) -> T:
    """Await ``coro``, failing at once if it deadlocks.

    The run must wait only on ``clock`` and on its own tasks. The virtual clock's
    autojump then reaches the far ``watchdog`` deadline only once no task can move
    any more: the run is stuck, and waiting in real time would not help.
    """
    task = asyncio.ensure_future(coro)
    alarm = asyncio.ensure_future(clock.sleep(watchdog))
    await asyncio.wait({task, alarm}, return_when=asyncio.FIRST_COMPLETED)
    stuck = not task.done()
    for t in (task, alarm):
        t.cancel()
    await asyncio.gather(task, alarm, return_exceptions=True)
    if stuck:
        raise AssertionError("deadlock: the stream stopped making progress")
    return task.result()
