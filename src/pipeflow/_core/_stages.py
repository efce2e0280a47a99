"""Stage loops: how one pipe turns a stream of input chunks into output chunks.

Each loop is an async generator over :data:`Chunk` values. Loops that run fused
in one task simply chain; a concurrent stage reads its own :class:`ChunkBuffer`
so it can wait on new input and on finished work at the same time.

The run opens every stage through the functions here. The one-at-a-time
``map``/``filter`` loops (``item_stage``, ``sync_stage``) are here too; a
flat-map's loop is :class:`~._flat.FlatRun`, and a concurrent stage's
:class:`~._concurrent.InOrder` or :class:`~._concurrent.AsCompleted`, which
only schedule: what a call's result becomes is decided here (``_emit``).
Chains of ``process_stream`` overrides run in ``_stream_stage``.

Per-item work stays inside tight loops over a chunk; counting and timing happen
once per chunk. Errors leave the fast loop, are resolved by the pipe's
:class:`ErrorHandler`, and the loop resumes after the failed item.
"""

from __future__ import annotations

import enum
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from itertools import compress
from operator import length_hint
from typing import TYPE_CHECKING, Any

from ._concurrent import AsCompleted, InOrder
from ._errors import StreamError
from ._flat import FlatRun, collect
from ._policies import SKIP

if TYPE_CHECKING:
    from ._buffer import Chunk, ChunkBuffer
    from ._clock import Clock
    from ._config import BackpressureConfig
    from ._idle import SourceIdle
    from ._policies import ErrorHandler
    from ._stats import StageStats
    from ._stop import StoppingSource

__all__ = [
    "Kind",
    "StageContext",
    "call_each",
    "call_once",
    "concurrent_stage",
    "flat_stage",
    "item_stage",
    "paced",
    "sync_stage",
]

AsyncFn = Callable[[Any], Awaitable[Any]]


class Kind(enum.Enum):
    """How a per-item result becomes output."""

    MAP = "map"  # the result is the output
    FILTER = "filter"  # the item is output if the result is true
    FLAT = "flat_map"  # the result is an iterable of outputs


@dataclass(slots=True)
class StageContext:
    """What one stage of one run works with."""

    name: str
    stats: StageStats
    clock: Clock
    errors: ErrorHandler
    config: BackpressureConfig
    #: The stage's own input buffer, when it runs decoupled from its upstream.
    buffer: ChunkBuffer | None
    #: The next stage's buffer, when this stage ends a feeder's segment; a stage
    #: that emits item by item may put its output there directly.
    output: ChunkBuffer | None = None
    #: Whether the source takes acknowledgements: stages that hold items only
    #: work out how far the source may be acknowledged when someone listens.
    acking: bool = False
    #: When the run's source has been waiting for its next item (see ``SourceIdle``).
    source_idle: SourceIdle | None = None
    #: The run's source when it reads until a stop (``stop=``; see ``_stop``).
    stopping: StoppingSource | None = None


def _emit(kind: Kind, out: list[Any], item: Any, result: Any) -> None:
    """Add a resolved result (possibly SKIP) to ``out``."""
    if result is SKIP:
        return
    if kind is Kind.MAP:
        out.append(result)
    elif kind is Kind.FILTER:
        if result:
            out.append(item)
    else:
        out.extend(result)


def call_each(
    fn: Callable[[Any], Any], items: list[Any], failed: dict[int, Exception]
) -> list[Any]:
    """``fn(item)`` for every item, called once each, at C speed.

    A call that raises leaves ``None`` in its place and its exception in
    ``failed`` under its index (unless an earlier function already failed there).
    A ``StopIteration`` counts too, though ``map()`` takes it for its end.
    """
    out: list[Any] = []
    n = len(items)
    while len(out) < n:
        try:
            out.extend(map(fn, items[len(out) :]) if out else map(fn, items))
            if len(out) == n:
                break
            exc: Exception = StopIteration()  # fn raised it: map() just stopped
        except Exception as raised:
            exc = raised
        failed.setdefault(len(out), exc)
        out.append(None)
    return out


def call_once(fn: Callable[[Any], Any], item: Any) -> Callable[[], Awaitable[Any]]:
    """``fn(item)`` as an awaitable factory, for retries (``fn`` may be sync or async)."""

    async def call() -> Any:
        result = fn(item)
        if inspect.isawaitable(result):  # not a generator a sync function returned
            result = await result
        return result

    return call


async def item_stage(
    call: AsyncFn, kind: Kind, up: AsyncIterator[Chunk], ctx: StageContext
) -> AsyncIterator[Chunk]:
    """Await ``call(item)`` for each item in turn (concurrency 1; ``map``/``filter``)."""
    assert kind is not Kind.FLAT, "flat_map runs in flat_stage"
    stats = ctx.stats
    handle = ctx.errors.handle
    timed = stats.timed
    now = ctx.clock.monotonic
    last_mark = 0
    async for items, mark in up:
        started = now() if timed else 0.0
        out: list[Any] = []
        append = out.append
        it = iter(items)
        x: Any = None
        while True:
            try:
                if kind is Kind.MAP:
                    for x in it:
                        append(await call(x))
                else:
                    for x in it:
                        if await call(x):
                            append(x)
                break
            except Exception as exc:
                try:
                    _emit(kind, out, x, await handle(x, exc, call_once(call, x)))
                except StreamError:
                    stats.items_in += len(items) - length_hint(it)  # up to the failed one
                    stats.items_out += len(out)
                    if out:
                        yield out, last_mark
                    raise
        stats.items_in += len(items)
        stats.items_out += len(out)
        if timed:
            stats.record_chunk(len(out), started, now(), len(items))
        last_mark = mark
        yield out, mark


def flat_stage(
    fn: Callable[[Any], Any], up: AsyncIterator[Chunk], ctx: StageContext, *, awaits: bool
) -> AsyncIterator[Chunk]:
    """``flat_map`` at concurrency 1: emit each call's elements as they come.

    ``fn(item)`` returns an iterable or an async iterable (with ``awaits``, an
    awaitable of either); see :class:`FlatRun`.
    """
    return FlatRun(fn, ctx, awaits=awaits).run(up)


async def sync_stage(
    fn: Callable[[Any], Any], kind: Kind, up: AsyncIterator[Chunk], ctx: StageContext
) -> AsyncIterator[Chunk]:
    """Apply a synchronous function to each chunk at C speed (``map``/``filter``)."""
    assert kind is not Kind.FLAT, "flat_map runs in flat_stage"
    stats = ctx.stats
    handle = ctx.errors.handle
    timed = stats.timed
    now = ctx.clock.monotonic
    last_mark = 0
    async for items, mark in up:
        started = now() if timed else 0.0
        out: list[Any] = []
        pos = 0
        n = len(items)
        while pos < n:
            seg = items[pos:] if pos else items
            done = 0
            try:
                if kind is Kind.MAP:
                    before = len(out)
                    try:
                        out.extend(map(fn, seg))
                    finally:
                        done = len(out) - before
                else:
                    flags: list[bool] = []
                    try:
                        # bool() within the pass: a result that is no truth value
                        # (a numpy array, say) fails on its own item.
                        flags.extend(map(bool, map(fn, seg)))
                    finally:
                        done = len(flags)
                        out.extend(compress(seg, flags))
                if done < len(seg):
                    # fn raised StopIteration, which map() takes for the end of its input.
                    raise StopIteration
                break
            except Exception as exc:
                x = seg[done]
                try:
                    _emit(kind, out, x, await handle(x, exc, call_once(fn, x)))
                except StreamError:
                    stats.items_in += pos + done + 1  # up to the failed one
                    stats.items_out += len(out)
                    if out:
                        yield out, last_mark
                    raise
                pos += done + 1
        stats.items_in += n
        stats.items_out += len(out)
        if timed:
            stats.record_chunk(len(out), started, now(), n)
        last_mark = mark
        yield out, mark


def paced(call: AsyncFn, min_time: float, clock: Clock) -> AsyncFn:
    """``call`` that occupies its worker for at least ``min_time`` seconds."""

    async def paced_call(item: Any) -> Any:
        started = clock.monotonic()
        try:
            return await call(item)
        finally:
            rest = min_time - (clock.monotonic() - started)
            if rest > 0:
                await clock.sleep(rest)

    return paced_call


def concurrent_stage(
    call: AsyncFn,
    kind: Kind,
    ctx: StageContext,
    *,
    concurrency: int,
    ordered: bool,
) -> AsyncIterator[Chunk]:
    """Keep up to ``concurrency`` calls in flight; emit in input or completion order.

    Reads ``ctx.buffer``; see :class:`ConcurrentRun`. Everything that can fail on
    an item (a filter's truth value, a flat-map call's elements) happens in the
    item's task, under the error policy.
    """
    attempt: AsyncFn = call  # a map's result is the call's
    if kind is Kind.FLAT:
        attempt = partial(_elements_of, call)
    elif kind is Kind.FILTER:
        attempt = partial(_truth_of, call)
    run = InOrder if ordered else AsCompleted
    return run(attempt, partial(_emit, kind), ctx, concurrency).run()


async def _elements_of(call: AsyncFn, item: Any) -> list[Any]:
    """A flat-map call's elements, collected."""
    return await collect(await call(item))


async def _truth_of(call: AsyncFn, item: Any) -> bool:
    """A filter call's result as a truth value (``bool()`` may fail on it)."""
    return bool(await call(item))
