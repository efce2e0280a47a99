"""Reading sources in chunks, and the optional protocols a source may implement."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from itertools import islice
from typing import Any, Protocol, runtime_checkable

from ._buffer import MAX_CHUNK, Chunk

__all__ = ["Acknowledging", "Pausable", "check_source", "close_source", "source_chunks"]


@runtime_checkable
class Acknowledging(Protocol):
    """A source that wants to know when its items are done with.

    ``ack(count)`` is called with the number of items, counted from the first
    one read, all of whose results have been delivered to the consumer (or that
    were filtered out, skipped, dropped or dead-lettered). ``count`` only grows.
    A broker source commits its offsets here, for at-least-once delivery.
    """

    def ack(self, count: int) -> None: ...


@runtime_checkable
class Pausable(Protocol):
    """A source that can stop fetching while the pipeline is in backpressure."""

    def pause(self) -> None: ...

    def resume(self) -> None: ...


def check_source(source: object) -> None:
    if not (hasattr(source, "__aiter__") or hasattr(source, "__iter__")):
        msg = (
            f"stream() needs an iterable or an async iterable source, "
            f"got {type(source).__name__}: {source!r:.80}"
        )
        raise TypeError(msg)


async def close_source(source: object) -> None:
    """Close a source that can be closed: ``aclose()`` or ``close()``."""
    aclose = getattr(source, "aclose", None)
    if aclose is not None:
        await aclose()
        return
    close = getattr(source, "close", None)
    if close is not None:
        result = close()
        if inspect.isawaitable(result):
            await result


async def source_chunks(source: Any) -> AsyncIterator[Chunk]:
    """Chunks of what is ready: up to ``MAX_CHUNK`` items of a sync iterable at a
    time, one item of an async iterable at a time (waiting for more is never
    worth delaying what is there). Each chunk's mark counts the items read so far.
    """
    count = 0
    if hasattr(source, "__aiter__"):
        it = source.__aiter__()
        try:
            async for x in it:
                count += 1
                yield [x], count
        finally:
            await close_source(it)
            if it is not source:
                await close_source(source)
    else:
        sync_it = iter(source)
        try:
            while True:
                chunk: list[Any] = []
                try:
                    chunk.extend(islice(sync_it, MAX_CHUNK))
                except Exception:
                    if chunk:  # what was read before the failure still goes on
                        yield chunk, count + len(chunk)
                    raise
                if not chunk:
                    return
                count += len(chunk)
                yield chunk, count
        finally:
            await close_source(sync_it)
            if sync_it is not source:
                await close_source(source)
