"""``BatchStreamPipe``: group items into batches by count, time and weight."""

from __future__ import annotations

import asyncio
import contextvars
import math
import sys
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeGuard, cast

if sys.version_info >= (3, 13):
    from typing import TypeVar
else:  # TypeVar defaults (PEP 696)
    from typing_extensions import TypeVar

from ._core._errors import StreamError
from ._core._pipe import StreamPipe
from ._core._policies import SKIP, ErrorPolicy
from ._core._stages import call_each, call_once, paced
from ._core._time import duration_seconds
from ._core._timed import Step, TimedStage

if TYPE_CHECKING:
    from ._core._buffer import Chunk
    from ._core._config import BackpressureConfig
    from ._core._stage import BatchStep
    from ._core._stages import StageContext

__all__ = ["BatchStreamPipe"]

In = TypeVar("In", default=Any)
Out = TypeVar("Out", default=Any)

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
        weight: ``fn(item)`` giving an item's weight (bytes, say): a finite
            number >= 0. Called once per item.
        max_weight: the most total weight in a batch (needs ``weight``).
        config: as for ``StreamPipe``; its ``min_processing_time`` paces each
            ``process_item`` call.
        concurrency: the most ``process_item`` calls of ``process_items`` in
            flight at once.
        on_error: as for ``StreamPipe``; it covers ``process_batch`` (the
            failed "item" is the batch), the ``process_item`` calls of
            ``process_items`` and ``weight``.
        name: as for ``StreamPipe``.
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
        self.max_wait = None if max_wait is None else duration_seconds(max_wait, "max_wait")
        if (weight is None) != (max_weight is None):
            msg = "weight= and max_weight= go together: give both or neither"
            raise ValueError(msg)
        if max_weight is not None and not (_is_number(max_weight) and max_weight > 0):
            msg = f"max_weight must be a finite number > 0, got {max_weight!r:.60}"
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
        # ``Out`` is a list unless a subclass that overrides this says otherwise.
        return cast("Out", await self.process_items(batch))

    async def process_items(self, batch: list[In]) -> list[Any]:
        """``process_item`` applied to every item (up to ``concurrency`` at once), in order.

        Failed items follow the pipe's ``on_error`` policy; skipped and
        dead-lettered ones leave no result. Each call occupies its worker for at
        least the config's ``min_processing_time``. When one fails for good, or
        the run closes, the calls still in flight are cancelled and awaited.
        """
        ctx = _running.get(None)
        call: Callable[[In], Awaitable[Any]] = self.process_item
        if ctx is not None and ctx.config.min_processing_time > 0:
            call = paced(call, ctx.config.min_processing_time, ctx.clock)
        if self.concurrency == 1 or len(batch) < 2:
            results = [await self._one(call, x, ctx) for x in batch]
        else:
            results = await self._concurrently(call, batch, ctx)
        return [r for r in results if r is not SKIP]

    async def _concurrently(
        self, call: Callable[[In], Awaitable[Any]], batch: list[In], ctx: StageContext | None
    ) -> list[Any]:
        """The results of ``call`` over ``batch``, from ``concurrency`` worker tasks."""
        results: list[Any] = [SKIP] * len(batch)
        todo = iter(enumerate(batch))

        async def worker() -> None:
            for i, x in todo:
                results[i] = await self._one(call, x, ctx)

        loop = asyncio.get_running_loop()
        workers = [loop.create_task(worker()) for _ in range(min(self.concurrency, len(batch)))]
        try:
            await asyncio.gather(*workers)
        except BaseException:
            # A failure (or the run closing): no call may outlive this one.
            for w in workers:
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            raise
        return results

    async def _one(
        self, call: Callable[[In], Awaitable[Any]], item: In, ctx: StageContext | None
    ) -> Any:
        try:
            return await call(item)
        except Exception as exc:
            if ctx is None:
                raise
            return await ctx.errors.handle(item, exc, call_once(call, item))

    @property
    def _wants_buffer(self) -> bool:
        # A timer must be able to emit a batch while no input arrives.
        return self.config is not None or self.max_wait is not None

    @property
    def _takes_slices(self) -> bool:
        # Batches by count alone are cut from the chunk as it comes (``run_counted``).
        return self.weight is None and not self._overrides_process_stream()

    @property
    def _batches_by_count(self) -> int | None:
        # Batches by count alone, with no buffer of their own.
        if self._takes_slices and self.max_wait is None and self.config is None:
            return self.batch_size
        return None

    def _batch_step(self, ctx: StageContext) -> BatchStep:
        return _BatchRun(self, ctx).process_one

    def _open(self, up: AsyncIterator[Chunk], ctx: StageContext) -> AsyncGenerator[Chunk, None]:
        run = _BatchRun(self, ctx)
        if ctx.buffer is not None:
            return run.run()
        if self.weight is None and self.max_wait is None and not ctx.stats.timed:
            return run.run_counted(up)  # batches by count alone in an untimed run
        return run.run_fused(up)


class _BatchRun(TimedStage):
    """The pending batch of one pipe in one run."""

    def __init__(self, pipe: BatchStreamPipe[Any, Any], ctx: StageContext) -> None:
        super().__init__(ctx)
        self.pipe = pipe
        self.pending: list[Any] = []
        self.weight = 0.0
        #: When the pending batch is due (``max_wait`` after its first item): the
        #: one figure both "is it due?" and "how long to wait?" are read from.
        self.due_at = 0.0
        self.since = 0  # the source mark before the pending batch's first item
        self.mark = 0
        ctx.stats.held = self.held
        ctx.stats.held_in = "in partial batches"

    def held(self) -> int:
        """Items in the pending batch."""
        return len(self.pending)

    async def take_in(self, items: list[Any]) -> tuple[list[list[Any]], StreamError | None]:
        """Weigh a chunk's items and add them; return the batches they complete, and
        the error that must end the stream (a ``weight`` call the policy gave up on)."""
        assert self.pipe.weight is not None
        failed: dict[int, Exception] = {}
        weights = _weigh_each(self.pipe.weight, items, failed)
        if not failed:
            return self.add(items, weights), None
        full: list[list[Any]] = []
        pos = 0
        try:
            for i in sorted(failed):
                full += self.add(items[pos:i], weights[pos:i])
                pos = i + 1
                x = items[i]
                w = await self.ctx.errors.handle(x, failed[i], call_once(self._weigh, x))
                if w is not SKIP:
                    full += self.add([x], [w])
        except StreamError as exc:
            return full, exc
        full += self.add(items[pos:], weights[pos:])
        return full, None

    def _weigh(self, item: Any) -> float:
        """One item's weight, checked: a retry's call."""
        assert self.pipe.weight is not None
        w = self.pipe.weight(item)
        if not _is_weight(w):
            raise _bad_weight(w)
        return w

    def add(self, items: list[Any], weights: list[float] | None = None) -> list[list[Any]]:
        """Add items (with their weights, when batches are weighed); return the batches
        they complete."""
        if not items:
            return []
        if not self.pending:
            self._restart()
        if weights is not None:
            return self._add_weighed(items, weights)
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

    def _add_weighed(self, items: list[Any], weights: list[float]) -> list[list[Any]]:
        limit, size = self.pipe.max_weight, self.pipe.batch_size
        assert limit is not None
        full: list[list[Any]] = []
        for x, w in zip(items, weights, strict=True):
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
        """A new pending batch starts: with the current chunk's items."""
        self.since = self.mark
        if self.pipe.max_wait is not None:
            self.due_at = self.ctx.clock.monotonic() + self.pipe.max_wait

    def take(self) -> list[Any]:
        batch, self.pending, self.weight = self.pending, [], 0.0
        return batch

    def ack_mark(self) -> int:
        """How far the source may be acknowledged: not into the pending batch."""
        return self.since if self.pending else self.mark

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
                    out.append(await call(batch))
                except Exception as exc:
                    if (failed := await self._recover(call, batch, exc, out)) is not None:
                        return out, failed
        finally:
            _running.reset(token)
            stats.items_out += len(out)
            if stats.timed:
                # Latency here is the time to process one batch.
                stats.record_chunk(len(out), started, self.ctx.clock.monotonic(), len(batches))
        return out, None

    async def process_one(self, batch: list[Any]) -> tuple[list[Any], StreamError | None]:
        """``process([batch])`` in an untimed run, with less work per batch."""
        call = self.pipe.process_batch
        token = _running.set(self.ctx)
        try:
            result = await call(batch)
        except Exception as exc:
            out: list[Any] = []
            error = await self._recover(call, batch, exc, out)
            self.ctx.stats.items_out += len(out)
            return out, error
        finally:
            _running.reset(token)
        self.ctx.stats.items_out += 1
        return [result], None

    async def _recover(
        self,
        call: Callable[[list[Any]], Awaitable[Any]],
        batch: list[Any],
        exc: Exception,
        out: list[Any],
    ) -> StreamError | None:
        """Apply the error policy to a failed ``process_batch`` call: add its result
        to ``out`` (unless skipped), or return the error that must end the stream."""
        if isinstance(exc, StreamError) and exc.pipe == self.pipe.name:
            # An item of the batch failed for good: its policy has had its say.
            return exc
        try:
            result = await self.ctx.errors.handle(batch, exc, call_once(call, batch))
        except StreamError as failed:
            return failed
        if result is not SKIP:
            out.append(result)
        return None

    def next_delay(self) -> float | None:
        """Seconds until the pending batch is due (at most 0: it is due now); ``None``
        when no batch is pending or there is no ``max_wait``.

        Deciding "due" and "how long to wait" both from this one subtraction,
        they cannot disagree (a batch not due with nothing left to wait for
        would make the run spin).
        """
        if not self.pending or self.pipe.max_wait is None:
            return None
        return self.due_at - self.ctx.clock.monotonic()

    async def on_chunk(self, items: list[Any], mark: int) -> Step:
        self.ctx.stats.items_in += len(items)
        return await self._step(items, mark)

    async def on_timer(self) -> Step | None:
        delay = self.next_delay()
        if delay is None or delay > 0:
            return None
        return await self._step(None, self.mark)

    async def _step(self, items: list[Any] | None, mark: int) -> Step:
        """Take in a chunk's ``items`` (or none), read up to ``mark``; process the
        batches they complete, and the pending batch if it is due. Returns the
        results, how far the source may be acknowledged, and the error that must
        end the stream after them.

        After a failure the source is acknowledged no further than before this
        step: the batches it formed were not all delivered, and the chunk it
        failed in is read again.
        """
        before = self.ack_mark()
        full: list[list[Any]] = []
        error: StreamError | None = None
        if items is not None:
            if self.pipe.weight is None:
                full = self.add(items)
            else:
                full, error = await self.take_in(items)
            self.mark = mark
        delay = self.next_delay()
        if error is None and delay is not None and delay <= 0:
            full.append(self.take())
        out, failed = await self.process(full) if full else ([], None)
        error = failed or error
        return out, before if error is not None else self.ack_mark(), error

    async def run_counted(self, up: AsyncIterator[Chunk]) -> AsyncGenerator[Chunk, None]:
        """``run_fused`` for batches by count alone (no ``weight``, no ``max_wait``)
        in an untimed run: ``on_chunk``, ``add`` and ``process`` in one loop, each
        batch processed as it is cut from the chunk.

        The pending batch and the marks live in locals while the loop runs; the
        final flush gets them back in ``pending``, ``since`` and ``mark``.
        """
        ctx = self.ctx
        stats = ctx.stats
        size = self.pipe.batch_size
        call = self.pipe.process_batch
        recover = self._recover
        pending: list[Any] = []
        stats.held = lambda: len(pending)
        since = last = 0  # the marks before the pending batch and before this chunk
        async for items, mark in up:
            n = len(items)
            stats.items_in += n
            before = since if pending else last
            i = 0
            if pending:
                i = size - len(pending)
                pending += items[:i]
                if len(pending) < size:  # still not full: nothing to process
                    last = mark
                    yield [], since
                    continue
            elif n < size:
                if n:
                    pending = items[:]
                    since = last
                last = mark
                yield [], since if pending else mark
                continue
            out: list[Any] = []
            error: StreamError | None = None
            token = _running.set(ctx)
            try:
                if pending:  # completed by this chunk
                    batch, pending = pending, []
                    try:
                        out.append(await call(batch))
                    except Exception as exc:
                        error = await recover(call, batch, exc, out)
                if error is None:
                    for j in range(i, n - size + 1, size):
                        batch = items[j : j + size]
                        try:
                            out.append(await call(batch))
                        except Exception as exc:
                            if (error := await recover(call, batch, exc, out)) is not None:
                                break
            finally:
                _running.reset(token)
                stats.items_out += len(out)
            if error is not None:
                yield out, before
                raise error
            rest = (n - i) % size
            if rest:  # a new pending batch starts in this chunk
                pending = items[n - rest :]
                since = last
            last = mark
            yield out, since if pending else mark
        self.pending, self.since, self.mark = pending, since, last
        out, acked, error = await self.on_end()
        yield out, acked
        if error is not None:
            raise error

    async def on_end(self) -> tuple[list[Any], int, StreamError | None]:
        since = self.since
        out, error = await self.process([self.take()]) if self.pending else ([], None)
        return out, self.mark if error is None else since, error


_NUMBERS = frozenset((float, int))


def _is_number(value: object) -> TypeGuard[float]:
    """A finite real number (not a bool)."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def _is_weight(value: object) -> bool:
    return _is_number(value) and value >= 0


def _bad_weight(value: object) -> Exception:
    msg = f"weight= must return a finite number >= 0, got {value!r:.60}"
    return ValueError(msg) if isinstance(value, int | float) else TypeError(msg)


def _weigh_each(
    fn: Callable[[Any], Any], items: list[Any], failed: dict[int, Exception]
) -> list[Any]:
    """``fn(item)`` for every item, called once each, at C speed.

    A call that raises, or returns anything but a finite number >= 0, leaves its
    exception in ``failed`` under its index.
    """
    weights = call_each(fn, items, failed)
    if failed:
        for i in failed:
            weights[i] = 0
    try:
        # One pass over plain numbers when all is well; item by item otherwise.
        ok = (
            _NUMBERS.issuperset(map(type, weights))
            and math.isfinite(sum(weights))
            and min(weights, default=0) >= 0
        )
    except OverflowError:
        ok = False
    if not ok:
        for i, w in enumerate(weights):
            if i not in failed and not _is_weight(w):
                failed[i] = _bad_weight(w)
    return weights
