"""``flat_map`` at concurrency 1: each call's elements go out as they come.

``fn(item)`` returns an iterable or an async iterable (with ``awaits``, an
awaitable of either). The elements go out in chunks of at most ``MAX_CHUNK``, so
a long or endless expansion is never held whole, and the first elements of a
slow async one are not held back: the stage waits for room downstream like any
other.

Each result is added in the per-item loop of :meth:`FlatRun.run`, by kind:

* a list or a tuple (the common case), or any other sized iterable: whole, it
  is in memory already;
* any other iterable: a chunk's worth at a time, as it may never end;
* an async iterable: what is ready goes on before the stage waits for more.

The cases stay inline in that loop, not in helpers: a helper that yields is a
generator more per result, which costs a ``flat_map`` over small async
generators about a sixth of its speed.

A failure while iterating goes to the error policy: the elements emitted before
it stay emitted, and a retry emits every element of the new attempt. Hence the
retry collects a call's elements whole (:func:`collect`), as a concurrent
flat-map call always does, in its own task.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from functools import partial
from itertools import islice
from operator import length_hint
from typing import TYPE_CHECKING, Any

from ._buffer import MAX_CHUNK
from ._errors import StreamError
from ._policies import SKIP
from ._ready import ReadyReader
from ._sources import close_source

if TYPE_CHECKING:
    from ._buffer import Chunk
    from ._stages import StageContext

__all__ = ["FlatRun", "collect"]


async def collect(result: Any) -> list[Any]:
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
        return await collect(fn(item))

    return call


def _cut(out: list[Any]) -> tuple[list[list[Any]], list[Any]]:
    """``out`` as chunks of ``MAX_CHUNK`` items, and the rest."""
    full = len(out) - len(out) % MAX_CHUNK
    return [out[k : k + MAX_CHUNK] for k in range(0, full, MAX_CHUNK)], out[full:]


class FlatRun:
    """One run of a flat-map stage."""

    __slots__ = ("awaits", "ctx", "fn")

    def __init__(self, fn: Callable[[Any], Any], ctx: StageContext, *, awaits: bool) -> None:
        self.fn = fn
        self.ctx = ctx
        self.awaits = awaits

    async def run(self, up: AsyncIterator[Chunk]) -> AsyncGenerator[Chunk, None]:
        """Expand each item; pass the elements on in chunks (``out`` is the one
        being filled), a chunk's last part with its mark."""
        fn, awaits, stats = self.fn, self.awaits, self.ctx.stats
        timed, now = stats.timed, self.ctx.clock.monotonic
        last_mark = 0
        async for items, mark in up:
            started = now() if timed else 0.0
            out: list[Any] = []
            n_out = 0  # elements passed on before ``out``
            it = iter(items)
            for x in it:
                try:
                    result = fn(x)
                    if awaits and inspect.isawaitable(result):
                        result = await result
                    if type(result) is list or type(result) is tuple:
                        out += result  # the common case
                    elif hasattr(result, "__aiter__"):
                        reader = ReadyReader(result.__aiter__())
                        # Left early, it is closed now.
                        pieces = reader.chunks(close=partial(close_source, result))
                        try:
                            async for piece, _ in pieces:
                                if len(out) + len(piece) > MAX_CHUNK:
                                    n_out += len(out)
                                    yield out, last_mark
                                    out = []
                                out += piece
                                if not reader.ended:  # what is ready goes on before waiting
                                    n_out += len(out)
                                    yield out, last_mark
                                    out = []
                        finally:
                            await pieces.aclose()
                    elif hasattr(result, "__len__"):
                        out += result  # already whole in memory
                    else:  # a chunk's worth at a time: it may never end
                        elements = iter(result)
                        out.extend(islice(elements, MAX_CHUNK - len(out)))
                        while len(out) >= MAX_CHUNK:
                            n_out += MAX_CHUNK
                            yield out, last_mark
                            out = []
                            out.extend(islice(elements, MAX_CHUNK))
                except Exception as exc:
                    try:
                        out += await self.recover(x, exc)
                    except StreamError:
                        self.count(len(items) - length_hint(it), n_out + len(out))  # up to x
                        if out:
                            yield out, last_mark
                        raise
                if len(out) >= MAX_CHUNK:  # a retry's elements come first
                    full, out = _cut(out)
                    for part in full:
                        n_out += MAX_CHUNK
                        yield part, last_mark
            self.count(len(items), n_out + len(out))
            if timed:
                stats.record_chunk(n_out + len(out), started, now(), len(items))
            last_mark = mark
            yield out, mark

    def count(self, n_in: int, n_out: int) -> None:
        """Count items taken in and elements passed on."""
        stats = self.ctx.stats
        stats.items_in += n_in
        stats.items_out += n_out

    async def recover(self, item: Any, exc: Exception) -> Any:
        """The elements the error policy makes of a failed call: none if it is
        skipped, all of a retry's (or raise the ``StreamError`` that ends the stage)."""
        result = await self.ctx.errors.handle(item, exc, _collected(self.fn, item))
        return [] if result is SKIP else result
