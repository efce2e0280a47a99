"""Dead-letter pipes: the side streams a run sends failed items to.

An error policy ``DeadLetter(pipe)`` hands each failed item's record to a pipe.
Each such pipe runs as a stream of its own (a *side stream*), in a task of its
own, over the records sent to it, for as long as the main run lasts. Its source
acknowledges like any other, so the main run holds its own acknowledgements back
until every dead letter sent so far has been processed (``settled``).

A side stream that fails fails the main run: the consumer sees the failure at
its next delivery (``check``) or at the end (``finish``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from ._buffer import ChunkBuffer
from ._clock import Clock
from ._config import BackpressureConfig
from ._policies import log
from ._stats import StageStats

__all__ = ["DeadLetterStreams"]


class _Streamable(Protocol):
    """A dead-letter pipe: anything with a name that streams (``Pipeable``)."""

    @property
    def name(self) -> str: ...

    def stream(
        self, source: AsyncIterable[Any], *, clock: Clock | None = None
    ) -> AbstractAsyncContextManager[AsyncIterator[Any]]: ...


class DeadLetterStreams:
    """Dead-letter pipes of one run, each streamed in a task of its own.

    Implements the policies' ``SideStreams``: ``send`` starts a pipe's side
    stream on its first record.
    """

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._sides: dict[int, _Side] = {}

    async def send(self, pipe: Any, record: Any) -> None:
        side = self._sides.get(id(pipe))
        if side is None:
            side = self._sides[id(pipe)] = _Side(pipe, self._clock)
        await side.send(record)

    @property
    def settled(self) -> bool:
        """Whether every dead letter sent so far has been processed by its pipe."""
        return all(side.settled for side in self._sides.values())

    def check(self) -> None:
        """Raise the failure of a dead-letter pipe that stopped before the run ended."""
        for side in self._sides.values():
            if side.task.done():
                side.raise_stopped()

    async def finish(self) -> None:
        """End every side stream normally, letting it deliver what it holds.

        Raises the first failure of a side stream (again, if called again).
        """
        for side in self._sides.values():
            await side.finish()

    async def cancel(self) -> None:
        """Stop every side stream now. Dead letters it had not processed yet are
        logged: their source items were never acknowledged, so a source that
        redelivers brings them back."""
        for side in self._sides.values():
            side.task.cancel()
        tasks = [s.task for s in self._sides.values()]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        for side in self._sides.values():
            if side.sent > side.done:
                log.warning(
                    "dead-letter pipe %r stopped with %d of %d records not confirmed as processed "
                    "(the run was cancelled or failed); their items were not acknowledged",
                    side.name,
                    side.sent - side.done,
                    side.sent,
                )


class _Side:
    """One dead-letter pipe, streamed over the records sent to it.

    Its source acknowledges like any other: ``done`` counts the records whose
    processing by the dead-letter pipe is complete, so the main stream can hold
    its own acknowledgements back until every dead letter has been taken care of.
    """

    def __init__(self, pipe: _Streamable, clock: Clock) -> None:
        self.name = pipe.name
        self.buffer = ChunkBuffer(BackpressureConfig(), StageStats(pipe.name, clock, timed=False))
        self.sent = 0
        self.done = 0
        self.task = asyncio.get_running_loop().create_task(
            self._drain(pipe, clock), name=f"pipeflow: dead letters to {pipe.name!r}"
        )

    async def _drain(self, pipe: _Streamable, clock: Clock) -> None:
        async with pipe.stream(_SideSource(self), clock=clock) as results:
            async for _ in results:
                pass

    @property
    def settled(self) -> bool:
        """Whether the dead-letter pipe has finished with every record sent so far."""
        return self.done >= self.sent

    async def send(self, record: Any) -> None:
        """Hand ``record`` to the pipe, waiting while its buffer is full."""
        if self.task.done():
            self.raise_stopped()
        self.sent += 1
        rest = self.buffer.put_nowait([record], 0)
        if not rest:
            return
        put = asyncio.ensure_future(self.buffer.put(rest, 0))
        try:
            await asyncio.wait({put, self.task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not put.done():  # the pipe stopped, or this send was cancelled
                put.cancel()
                await asyncio.gather(put, return_exceptions=True)
        if put.cancelled():
            self.raise_stopped()

    def raise_stopped(self) -> None:
        """Raise why the dead-letter pipe's run stopped: its failure, or that it
        stopped taking records."""
        exc = self.task.exception() if not self.task.cancelled() else None
        if exc is not None:
            raise exc
        msg = "the dead-letter pipe stopped taking records before the stream ended"
        raise RuntimeError(msg)

    async def finish(self) -> None:
        """No more records: let the pipe's run end, and raise its failure if any."""
        self.buffer.close()
        await self.task


class _SideSource:
    """The source of a dead-letter pipe's run: the records, and their acknowledgement."""

    def __init__(self, side: _Side) -> None:
        self._side = side

    async def __aiter__(self) -> AsyncGenerator[Any, None]:
        async for items, _ in self._side.buffer.chunks():
            for record in items:
                yield record

    def ack(self, count: int) -> None:
        self._side.done = count
