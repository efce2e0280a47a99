"""A failing run closes an async source that was waiting inside a client call.

Broker clients catch the ``CancelledError`` of a call in progress and await their
own clean-up before passing it on. Closing such a source waits for it to settle,
and the run's own error is what the consumer gets.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

import pipeflow.streams as ps
from pipeflow.streams import Pipeable, StreamError


class Client:
    """A client whose calls clean up after themselves when cancelled."""

    def __init__(self) -> None:
        self.cleanups = 0

    async def fetch(self, i: int) -> int:
        try:
            if i >= 3:
                await asyncio.sleep(0.01)  # the broker has nothing yet
            return i
        except asyncio.CancelledError:
            await asyncio.sleep(0)  # disconnect
            await asyncio.sleep(0)
            self.cleanups += 1
            raise


class Source:
    """An async generator over a client; ``ack`` only when asked to take them."""

    def __init__(self) -> None:
        self.client = Client()
        self.finished = False

    async def items(self) -> AsyncIterator[int]:
        try:
            for i in range(100):
                yield await self.client.fetch(i)
        finally:
            self.finished = True


class AckingSource(Source):
    def __init__(self) -> None:
        super().__init__()
        self.acked = 0

    def __aiter__(self) -> AsyncIterator[int]:
        return self.items()

    def ack(self, count: int) -> None:
        self.acked = count


def boom(x: int) -> int:
    if x == 2:
        raise ValueError("bad item")
    return x


async def aboom(x: int) -> int:
    return boom(x)


async def expand(x: int) -> AsyncIterator[int]:
    source = Source()
    async for y in source.items():
        yield boom(x + y)


PIPES: dict[str, tuple[Any, bool]] = {
    "async map": (lambda: ps.map(aboom), False),
    "sync map, acknowledging source": (lambda: ps.map(boom), True),
    "async map, acknowledging source": (lambda: ps.map(aboom), True),
}


@pytest.mark.parametrize("name", list(PIPES))
async def test_the_run_error_survives_closing_a_source_mid_call(name: str) -> None:
    """The StreamError reaches the consumer; the source finished its clean-up and
    was closed; no task is left."""
    make, acking = PIPES[name]
    pipe: Pipeable[int, int] = make()
    source = AckingSource() if acking else Source()
    items: Any = source if acking else source.items()
    got: list[int] = []

    async def consume() -> None:
        async for x in pipe.stream(items):
            got.append(x)

    with pytest.raises(StreamError, match="bad item"):
        await consume()
    assert [0, 1] == got
    assert 1 == source.client.cleanups
    assert source.finished
    assert {asyncio.current_task()} == asyncio.all_tasks()


async def test_an_expansion_waiting_in_a_client_call_is_settled() -> None:
    """A flat_map over an async generator that waits in a client call is closed
    after its clean-up; the item's failure is what the consumer gets."""
    with pytest.raises(StreamError, match="bad item"):
        async for _ in ps.flat_map(expand).stream([2]):
            pass
    assert {asyncio.current_task()} == asyncio.all_tasks()


class SlowCleanup(Client):
    """A client whose clean-up takes a while, and says when it starts."""

    def __init__(self) -> None:
        super().__init__()
        self.settling = asyncio.Event()

    async def fetch(self, i: int) -> int:
        try:
            if i >= 3:
                await asyncio.sleep(0.01)
            return i
        except asyncio.CancelledError:
            self.settling.set()
            await asyncio.sleep(0.01)
            self.cleanups += 1
            raise


async def test_cancelling_the_consumer_while_the_source_settles_is_passed_on() -> None:
    """A cancellation that arrives while the source cleans up still cancels the consumer."""
    source = AckingSource()
    client = source.client = SlowCleanup()

    async def consume() -> None:
        async for _ in ps.map(boom).stream(source):
            pass

    task = asyncio.ensure_future(consume())
    await client.settling.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert source.finished
    assert 0 == client.cleanups  # its clean-up was cancelled in turn
