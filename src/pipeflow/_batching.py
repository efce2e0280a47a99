"""``BatchStreamPipe``: group items into batches by count, time and weight."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from ._core._buffer import wait_input
from ._core._errors import StreamError
from ._core._pipe import StreamPipe
from ._core._policies import SKIP, ErrorPolicy
from ._core._stages import _call_once
from ._windows._time import seconds_to_us

if TYPE_CHECKING:
    from ._core._buffer import Chunk
    from ._core._config import BackpressureConfig
    from ._core._stages import StageContext

__all__ = ["BatchStreamPipe"]

In = TypeVar("In")
Out = TypeVar("Out")

#: The stage context of the batch being processed, so ``process_items`` can
#: apply the run's error policy to single items.
_running: contextvars.ContextVar[StageContext] = contextvars.ContextVar("pipeflow_batch")


class BatchStreamPipe(StreamPipe[In, Out]):
    """Collect items into batches and emit one result per batch.

    A batch is emitted when it holds ``batch_size`` items, when ``max_wait`` has
    passed since its first item, or when adding the next item would take its
    total ``weight`` over ``max_weight`` (as Akka's groupedWeightedWithin),
    whichever comes first. The end of the stream flushes the last partial batch.

    Override ``process_batch`` (async). The default calls ``process_items``,
    which applies ``process_item`` to each item, up to ``concurrency`` at once,
    and returns the list of results.

    Args:
        batch_size: the most items in a batch.
        max_wait: the longest a batch waits for more items (``timedelta`` or
            seconds); ``None`` waits until it is full or the stream ends.
        weight: ``fn(item)`` giving an item's weight (bytes, say).
        max_weight: the most total weight in a batch (needs ``weight``).
        config, concurrency, on_error, name: as for ``StreamPipe``;
            ``on_error`` covers ``process_batch`` (the failed "item" is the
            batch) and the ``process_item`` calls of ``process_items``.
    """

    def __init__(
        self,
        batch_size: int,
        *,
        max_wait: timedelta | float | None = None,
        weight: Callable[[In], float] | None = None,
        max_weight: float | None = None,
        config: BackpressureConfig | None = None,
        concurrency: int = 1,
        on_error: ErrorPolicy = "raise",
        name: str | None = None,
    ) -> None:
        super().__init__(config=config, concurrency=concurrency, on_error=on_error, name=name)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            msg = f"batch_size must be an int >= 1, got {batch_size!r}"
            raise ValueError(msg)
        self.batch_size = batch_size
        self.max_wait = (
            None if max_wait is None else seconds_to_us(max_wait, "max_wait") / 1_000_000
        )
        if (weight is None) != (max_weight is None):
            msg = "weight= and max_weight= go together: give both or neither"
            raise ValueError(msg)
        if max_weight is not None and (
            isinstance(max_weight, bool)
            or not isinstance(max_weight, int | float)
            or max_weight <= 0
        ):
            msg = f"max_weight must be a number > 0, got {max_weight!r}"
            raise ValueError(msg)
        if weight is not None and not callable(weight):
            msg = f"weight= must be a function of the item, got {weight!r:.60}"
            raise TypeError(msg)
        self.weight = weight
        self.max_weight = max_weight

    async def process_item(self, item: In) -> Any:
        """Process one item of a batch (for ``process_items``). Default: the item itself."""
        return item

    async def process_batch(self, batch: list[In]) -> Out:
        """Turn one batch into the result emitted for it. Default: ``process_items``."""
        return await self.process_items(batch)  # type: ignore[return-value]

    async def process_items(self, batch: list[In]) -> list[Any]:
        """``process_item`` applied to every item (up to ``concurrency`` at once), in order.

        Failed items follow the pipe's ``on_error`` policy; skipped and
        dead-lettered ones leave no result.
        """
        ctx = _running.get(None)
        if self.concurrency == 1:
            results = [await self._one(x, ctx) for x in batch]
        else:
            slots = asyncio.Semaphore(self.concurrency)

            async def limited(x: In) -> Any:
                async with slots:
                    return await self._one(x, ctx)

            results = await asyncio.gather(*(limited(x) for x in batch))
        return [r for r in results if r is not SKIP]

    async def _one(self, item: In, ctx: StageContext | None) -> Any:
        try:
            return await self.process_item(item)
        except Exception as exc:
            if ctx is None:
                raise
            return await ctx.errors.handle(item, exc, _call_once(self.process_item, item))

    @property
    def _needs_buffer(self) -> bool:
        # A timer must be able to emit a batch while no input arrives.
        return self.config is not None or self.max_wait is not None

    def _open(self, up: AsyncIterator[Chunk], ctx: StageContext) -> AsyncIterator[Chunk]:
        if self._overrides_process_stream():
            return super()._open(up, ctx)
        run = _BatchRun(self, ctx)
        return run.run_timed() if ctx.buffer is not None else run.run_fused(up)


class _BatchRun:
    """The pending batch of one pipe in one run."""

    def __init__(self, pipe: BatchStreamPipe[Any, Any], ctx: StageContext) -> None:
        self.pipe = pipe
        self.ctx = ctx
        self.pending: list[Any] = []
        self.weight = 0.0
        self.first_at = 0.0
        self.since = 0  # the source mark before the pending batch's first item
        self.mark = 0

    def add(self, items: list[Any]) -> list[list[Any]]:
        """Add items; return the batches they complete."""
        if not self.pending:
            self.since = self.mark
            if self.pipe.max_wait is not None and items:
                self.first_at = self.ctx.clock.monotonic()
        if self.pipe.weight is not None:
            return self._add_weighed(items)
        size = self.pipe.batch_size
        full: list[list[Any]] = []
        pending = self.pending
        i, n = 0, len(items)
        if pending:
            i = size - len(pending)
            pending += items[:i]
            if len(pending) < size:
                return full
            full.append(pending)
            pending = []
        while n - i >= size:
            full.append(items[i : i + size])
            i += size
        if i < n:
            pending = items[i:]
            if full:
                self._restart()
        self.pending = pending
        return full

    def _add_weighed(self, items: list[Any]) -> list[list[Any]]:
        weigh, limit, size = self.pipe.weight, self.pipe.max_weight, self.pipe.batch_size
        assert weigh is not None
        assert limit is not None
        full: list[list[Any]] = []
        for x in items:
            w = weigh(x)
            if self.pending and self.weight + w > limit:
                full.append(self.pending)
                self.pending, self.weight = [], 0.0
                self._restart()
            self.pending.append(x)
            self.weight += w
            if len(self.pending) >= size:
                full.append(self.pending)
                self.pending, self.weight = [], 0.0
                self._restart()
        return full

    def _restart(self) -> None:
        """A new pending batch starts inside the current chunk."""
        self.since = self.mark
        if self.pipe.max_wait is not None:
            self.first_at = self.ctx.clock.monotonic()

    def take(self) -> list[Any]:
        batch, self.pending, self.weight = self.pending, [], 0.0
        return batch

    def ack_mark(self, mark: int) -> int:
        return self.since if self.pending else mark

    async def process(self, batches: list[list[Any]]) -> tuple[list[Any], StreamError | None]:
        """Process batches in order; stop at a failure the policy raises."""
        stats = self.ctx.stats
        call = self.pipe.process_batch
        out: list[Any] = []
        if not batches:
            return out, None
        started = self.ctx.clock.monotonic() if stats.timed else 0.0
        token = _running.set(self.ctx)
        try:
            for batch in batches:
                try:
                    result = await call(batch)
                except Exception as exc:
                    if isinstance(exc, StreamError) and exc.pipe == self.pipe.name:
                        # An item of the batch failed for good: its policy has had its say.
                        return out, exc
                    try:
                        result = await self.ctx.errors.handle(batch, exc, _call_once(call, batch))
                    except StreamError as failed:
                        return out, failed
                    if result is SKIP:
                        continue
                out.append(result)
        finally:
            _running.reset(token)
            stats.items_out += len(out)
            if stats.timed:
                # Latency here is the time to process one batch.
                stats.record_chunk(len(out), started, self.ctx.clock.monotonic(), len(batches))
        return out, None

    async def run_fused(self, up: AsyncIterator[Chunk]) -> AsyncIterator[Chunk]:
        stats = self.ctx.stats
        async for items, mark in up:
            stats.items_in += len(items)
            full = self.add(items)
            self.mark = mark
            out, error = await self.process(full) if full else ([], None)
            yield out, self.ack_mark(mark)
            if error is not None:
                raise error
        async for chunk in self._flush():
            yield chunk

    async def run_timed(self) -> AsyncIterator[Chunk]:
        buf = self.ctx.buffer
        assert buf is not None
        clock, stats, max_wait = self.ctx.clock, self.ctx.stats, self.pipe.max_wait
        while True:
            try:
                chunk = buf.get_nowait()
            except StopAsyncIteration:
                break
            full: list[list[Any]] = []
            if chunk is not None:
                items, mark = chunk
                stats.items_in += len(items)
                full = self.add(items)
                self.mark = mark
            if (
                self.pending
                and max_wait is not None
                and clock.monotonic() - self.first_at >= max_wait
            ):
                full.append(self.take())
            if full or chunk is not None:
                out, error = await self.process(full)
                yield out, self.ack_mark(self.mark)
                if error is not None:
                    raise error
                continue
            delay = None
            if self.pending and max_wait is not None:
                delay = self.first_at + max_wait - clock.monotonic()
            await wait_input(buf, clock, delay)
        async for chunk in self._flush():
            yield chunk

    async def _flush(self) -> AsyncIterator[Chunk]:
        out, error = await self.process([self.take()]) if self.pending else ([], None)
        yield out, self.mark
        if error is not None:
            raise error
