"""``TimedStage``: the loop of a stage that holds items and acts on timers.

Windows and batches keep items back (in open windows, in a pending batch) and
emit them either when input completes something or when time does: a window's
end passes, a batch has waited long enough. Such a stage reads its own input
buffer, so it can stop waiting for input when a timer is due. The loop is the
same for both; what differs lives in four hooks:

- ``on_chunk(items, mark)``: take in a chunk of input (and whatever is due by now);
- ``on_timer()``: emit what is due with no new input, or say nothing is;
- ``next_delay()``: seconds until something falls due, if time alone makes it;
- ``on_end()``: the input has ended: emit everything still held.

``on_chunk`` and ``on_timer`` return a ``Step``: the results, how far the source
may be acknowledged (``None``: nothing to hand on), and the error that ends the
stream once those results are delivered. ``on_end`` returns one too, always
with a mark.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, AsyncIterable
from typing import TYPE_CHECKING, Any, ClassVar, TypeAlias

from ._buffer import wait_input

if TYPE_CHECKING:
    from ._buffer import Chunk, ChunkBuffer
    from ._stages import StageContext

__all__ = ["Step", "TimedStage"]

#: What a hook hands back: results, the mark the source may be acknowledged up to
#: (``None``: nothing to hand on this time), and the error that then ends the stream.
Step: TypeAlias = tuple[list[Any], int | None, BaseException | None]


class TimedStage(ABC):
    """A stage that holds items, fed from its input buffer and woken by its timer.

    ``run()`` drives the hooks from the stage's own buffer, waiting for input
    or for ``next_delay()`` on the run's clock, whichever comes first; a stage
    with no timer can also be driven straight from its upstream with
    ``run_fused()``.
    """

    #: Whether what the stage holds is state rather than work in flight: at a
    #: stop (``stop=``) with a source that takes acknowledgements, it is left
    #: unacknowledged for the source to deliver again instead of put out
    #: (windows; see ``_stop``).
    keeps_on_stop: ClassVar[bool] = False

    def __init__(self, ctx: StageContext) -> None:
        self.ctx = ctx

    async def _end(self) -> tuple[list[Any], int, BaseException | None] | None:
        """``on_end()``, unless the input ended at a stop and what the stage holds
        stays unemitted (``keeps_on_stop``): then ``None``."""
        ctx = self.ctx
        stopping = ctx.stopping
        if self.keeps_on_stop and ctx.acking and stopping is not None and stopping.requested:
            return None
        return await self.on_end()

    @abstractmethod
    async def on_chunk(self, items: list[Any], mark: int) -> Step:
        """Take in ``items``, read up to source position ``mark``; emit what that,
        or the time that passed, completes."""

    @abstractmethod
    async def on_timer(self) -> Step | None:
        """No input is waiting: emit what is due by now; ``None`` if nothing is."""

    @abstractmethod
    def next_delay(self) -> float | None:
        """Seconds on the clock until something falls due (``None``: no timer is
        set). Must not be at most 0 after ``on_timer`` found nothing due, or the
        loop would spin."""

    @abstractmethod
    async def on_end(self) -> tuple[list[Any], int, BaseException | None]:
        """The input has ended: emit everything still held (a ``Step`` that always
        has a mark: the last one)."""

    async def wait_input(self, buffer: ChunkBuffer) -> None:
        """Wait until ``buffer`` has input, or until the next timer is due."""
        await wait_input(buffer, self.ctx.clock, self.next_delay())

    async def run(self) -> AsyncGenerator[Chunk, None]:
        """Read the stage's buffer to its end; emit as input and timers complete things."""
        buf = self.ctx.buffer
        assert buf is not None
        while True:
            try:
                chunk = buf.get_nowait()
            except StopAsyncIteration:
                break
            if chunk is not None:
                step = await self.on_chunk(*chunk)
            elif (due := await self.on_timer()) is not None:
                step = due
            else:
                await self.wait_input(buf)
                continue
            out, acked, error = step
            if acked is not None:
                yield out, acked
            if error is not None:
                raise error
        if (end := await self._end()) is not None:
            out, last, error = end
            yield out, last
            if error is not None:
                raise error

    async def run_fused(self, up: AsyncIterable[Chunk]) -> AsyncGenerator[Chunk, None]:
        """Take the chunks of ``up`` as they come, with no timer to wake the stage."""
        async for items, mark in up:
            out, acked, error = await self.on_chunk(items, mark)
            if acked is not None:
                yield out, acked
            if error is not None:
                raise error
        if (end := await self._end()) is not None:
            out, last, error = end
            yield out, last
            if error is not None:
                raise error
