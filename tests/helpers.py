"""Small helpers the tests share: draining streams and making async sources."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from typing import TypeVar

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
