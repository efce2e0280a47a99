"""Stage loops: how one pipe turns a stream of input chunks into output chunks.

Each loop is an async generator over :data:`Chunk` values. Loops that run fused
in one task simply chain; a concurrent stage reads its own :class:`ChunkBuffer`
so it can wait on new input and on finished work at the same time.

Per-item work stays inside tight loops over a chunk; counting and timing happen
once per chunk. Errors leave the fast loop, are resolved by the pipe's
:class:`ErrorHandler`, and the loop resumes after the failed item.
"""

from __future__ import annotations

import asyncio
import enum
import inspect
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from itertools import compress, islice
from operator import length_hint
from typing import TYPE_CHECKING, Any

from ._buffer import MAX_CHUNK
from ._errors import StreamError
from ._policies import SKIP
from ._sources import close_source, ready_items

if TYPE_CHECKING:
    from ._buffer import Chunk, ChunkBuffer
    from ._clock import Clock
    from ._config import BackpressureConfig
    from ._idle import SourceIdle
    from ._policies import ErrorHandler
    from ._stats import StageStats

__all__ = [
    "Kind",
    "StageContext",
    "call_each",
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


def _call_once(fn: Callable[[Any], Any], item: Any) -> Callable[[], Awaitable[Any]]:
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
                    _emit(kind, out, x, await handle(x, exc, _call_once(call, x)))
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


async def _flat(result: Any) -> list[Any]:
    """The outputs of one flat-map call, collected: inside the call's own attempt,
    so that a failure while iterating them meets the error policy."""
    if inspect.isawaitable(result):
        result = await result
    if hasattr(result, "__aiter__"):
        return [y async for y in result]
    return list(result)


def _collected(fn: Callable[[Any], Any], item: Any) -> Callable[[], Awaitable[Any]]:
    """``fn(item)``'s outputs as an awaitable factory, for retrying a flat-map call."""

    async def call() -> list[Any]:
        return await _flat(fn(item))

    return call


async def flat_stage(
    fn: Callable[[Any], Any], up: AsyncIterator[Chunk], ctx: StageContext, *, awaits: bool
) -> AsyncIterator[Chunk]:
    """``flat_map`` at concurrency 1: emit each call's elements as they come.

    ``fn(item)`` returns an iterable or an async iterable (with ``awaits``, an
    awaitable of either). Its elements go out in chunks of at most ``MAX_CHUNK``,
    so a long or endless expansion is never held whole and the first elements of
    a slow async one are not held back: the stage waits for room downstream like
    any other.

    A failure while iterating goes to the error policy; the elements emitted
    before it stay emitted, and a retry emits every element of the new attempt.
    """
    stats = ctx.stats
    handle = ctx.errors.handle
    timed = stats.timed
    now = ctx.clock.monotonic
    last_mark = 0
    async for items, mark in up:
        started = now() if timed else 0.0
        out: list[Any] = []
        n_out = 0
        it = iter(items)
        x: Any = None
        while True:
            if len(out) >= MAX_CHUNK:  # a retry's elements, added below, come first
                full, out = _cut(out)
                for part in full:
                    n_out += MAX_CHUNK
                    yield part, last_mark
            try:
                for x in it:
                    result = fn(x)
                    if type(result) is list or type(result) is tuple:
                        out += result  # the common case
                    else:
                        if awaits and inspect.isawaitable(result):
                            result = await result
                        if hasattr(result, "__aiter__"):
                            # What is ready goes on before waiting for more.
                            pieces = ready_items(result.__aiter__())
                            try:
                                async for piece, more in pieces:
                                    if len(out) + len(piece) > MAX_CHUNK:
                                        n_out += len(out)
                                        yield out, last_mark
                                        out = []
                                    out += piece
                                    if more:
                                        n_out += len(out)
                                        yield out, last_mark
                                        out = []
                            finally:
                                await pieces.aclose()
                                await close_source(result)  # left early: close it now
                        elif hasattr(result, "__len__"):
                            out += result  # already whole in memory
                        else:
                            elements = iter(result)
                            while True:  # a chunk's worth at a time: it may never end
                                out.extend(islice(elements, MAX_CHUNK - len(out)))
                                if len(out) < MAX_CHUNK:
                                    break
                                n_out += MAX_CHUNK
                                yield out, last_mark
                                out = []
                    if len(out) >= MAX_CHUNK:
                        full, out = _cut(out)
                        for part in full:
                            n_out += MAX_CHUNK
                            yield part, last_mark
                break
            except Exception as exc:
                try:
                    _emit(Kind.FLAT, out, x, await handle(x, exc, _collected(fn, x)))
                except StreamError:
                    stats.items_in += len(items) - length_hint(it)  # up to the failed one
                    stats.items_out += n_out + len(out)
                    if out:
                        yield out, last_mark
                    raise
        stats.items_in += len(items)
        stats.items_out += n_out + len(out)
        if timed:
            stats.record_chunk(n_out + len(out), started, now(), len(items))
        last_mark = mark
        yield out, mark


def _cut(out: list[Any]) -> tuple[list[list[Any]], list[Any]]:
    """``out`` as chunks of ``MAX_CHUNK`` items, and the rest."""
    full = len(out) - len(out) % MAX_CHUNK
    return [out[k : k + MAX_CHUNK] for k in range(0, full, MAX_CHUNK)], out[full:]


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
                    _emit(kind, out, x, await handle(x, exc, _call_once(fn, x)))
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


class _Entry:
    """One item handed to a worker task, in input order."""

    __slots__ = ("emitted", "item", "mark", "task")

    def __init__(self, task: asyncio.Task[Any] | None, item: Any, mark: int | None) -> None:
        self.task = task
        self.item = item
        self.mark = mark
        self.emitted = False


async def concurrent_stage(
    call: AsyncFn,
    kind: Kind,
    ctx: StageContext,
    *,
    concurrency: int,
    ordered: bool,
) -> AsyncIterator[Chunk]:
    """Keep up to ``concurrency`` calls in flight; emit in input or completion order.

    Waits on one future that both new input and a finished call resolve, so a
    result never waits for the upstream to produce more.
    """
    buf = ctx.buffer
    assert buf is not None, "a concurrent stage reads its own buffer"
    loop = asyncio.get_running_loop()
    stats = ctx.stats
    handle = ctx.errors.handle
    timed = stats.timed
    now = ctx.clock.monotonic
    entries: deque[_Entry] = deque()
    # Entries include finished ones waiting for an earlier item: bound them too.
    window = max(concurrency, ctx.config.max_buffer_size)
    running = 0
    wake: asyncio.Future[None] | None = None
    cur: list[Any] = []
    ci = 0
    cur_mark = 0
    exhausted = False
    upstream_error: BaseException | None = None
    last_mark = 0

    finished: deque[_Entry] = deque()  # unordered: done and not yet emitted
    # The items taken from the buffer keep their room until their results are
    # passed on; up to ``concurrency`` of them may be in flight beyond its capacity.
    buf.auto_release = False
    buf.allowance = concurrency

    def held() -> int:
        started = sum(1 for e in entries if e.task is not None and not e.emitted)
        return started + len(cur) - ci

    stats.held = held

    def on_done(entry: _Entry, _: asyncio.Task[Any]) -> None:
        nonlocal running
        running -= 1
        if not ordered:
            finished.append(entry)
        if wake is not None and not wake.done():
            wake.set_result(None)

    flat, keep = kind is Kind.FLAT, kind is Kind.FILTER

    async def attempt(item: Any) -> Any:
        # Everything that can fail on the item happens in its task, under the policy.
        result = await call(item)
        if flat:
            return await _flat(result)
        return bool(result) if keep else result

    async def run_one(item: Any) -> Any:
        started = now() if timed else 0.0
        try:
            result = await attempt(item)
        except Exception as exc:
            result = await handle(item, exc, partial(attempt, item))
        if timed:
            stats.record_latency(now() - started)
        return result

    try:
        while True:
            # Start work while there is room and input is ready.
            while running < concurrency and len(entries) < window:
                if ci >= len(cur):
                    if exhausted:
                        break
                    try:
                        chunk = buf.get_nowait()
                    except StopAsyncIteration:
                        exhausted = True
                        break
                    except BaseException as exc:
                        # Upstream failed: deliver the work already started, then raise.
                        upstream_error = exc
                        exhausted = True
                        break
                    if chunk is None:
                        break
                    cur, cur_mark = chunk
                    ci = 0
                    stats.items_in += len(cur)
                    if not cur:
                        entries.append(_Entry(None, None, cur_mark))
                        continue
                x = cur[ci]
                ci += 1
                entry = _Entry(
                    loop.create_task(run_one(x)), x, cur_mark if ci == len(cur) else None
                )
                running += 1
                assert entry.task is not None
                entry.task.add_done_callback(partial(on_done, entry))
                entries.append(entry)
            # Collect what is finished.
            out: list[Any] = []
            mark = last_mark
            done = 0  # items whose results are in ``out``
            try:
                if ordered:
                    while entries and (entries[0].task is None or entries[0].task.done()):
                        e = entries.popleft()
                        if e.task is not None:
                            done += 1
                            _emit(kind, out, e.item, e.task.result())
                        if e.mark is not None:
                            mark = e.mark
                else:
                    while finished:
                        e = finished.popleft()
                        e.emitted = True
                        done += 1
                        assert e.task is not None
                        _emit(kind, out, e.item, e.task.result())
                    while entries and (entries[0].task is None or entries[0].emitted):
                        e = entries.popleft()
                        if e.mark is not None:
                            mark = e.mark
            except StreamError:
                if out:
                    stats.items_out += len(out)
                    yield out, last_mark
                raise
            if out or mark != last_mark:
                stats.items_out += len(out)
                if timed and out:
                    stats.record_out(len(out), now())
                last_mark = mark
                yield out, mark
                buf.release(done)  # passed on: the next stage holds them now
                continue
            buf.release(done)
            if exhausted and not entries:
                if upstream_error is not None:
                    raise upstream_error
                return
            room = running < concurrency and len(entries) < window
            if room and (ci < len(cur) or (not exhausted and buf.ready())):
                continue  # collecting made room for input already at hand
            wake = loop.create_future()
            if room and not exhausted:
                buf.set_waiter(wake)
            try:
                await wake
            finally:
                wake = None
    finally:
        pending = [e.task for e in entries if e.task is not None and not e.task.done()]
        for t in pending:
            t.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        for e in entries:
            # Retrieve exceptions of finished-but-unemitted tasks so none goes unobserved.
            if e.task is not None and e.task.done() and not e.task.cancelled():
                e.task.exception()
