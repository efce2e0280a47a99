"""Reading sources in chunks, and the optional protocols a source may implement.

A source is any iterable or async iterable. It may also be:

- ``AsyncClosable`` (or have a plain ``close()``): closed when its run ends;
- ``Acknowledging``: told how far its items are done with;
- ``Pausable``: paused while the pipeline is in backpressure.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from itertools import islice
from typing import TYPE_CHECKING, Any, Protocol, Self, runtime_checkable

from ._buffer import MAX_CHUNK, Chunk
from ._idle import SourceIdle
from ._ready import ReadyReader, Room

if TYPE_CHECKING:
    from ._buffer import ChunkBuffer

__all__ = [
    "ITERATED",
    "Acknowledging",
    "AsyncClosable",
    "Pausable",
    "Reading",
    "Room",
    "SourceCloser",
    "as_aiter",
    "check_source",
    "close_source",
    "source_chunks",
]


@runtime_checkable
class AsyncClosable(Protocol):
    """Something to close by awaiting ``aclose()``: an async generator, a source,
    a run's loops. Closing twice does no harm."""

    def aclose(self) -> Awaitable[object]: ...


@runtime_checkable
class Acknowledging(Protocol):
    """A source that wants to know when its items are done with.

    ``ack(count)`` is called with the number of items, counted from the first
    one read, all of whose results have been delivered to the consumer (or that
    were filtered out, skipped, dropped or dead-lettered). ``count`` only grows.
    A broker source commits its offsets here, for at-least-once delivery.

    ``ack`` may return an awaitable (an ``async def``): the run awaits it in a
    task of its own, in order, without holding results back; a failure fails the
    run.
    """

    def ack(self, count: int) -> object: ...


@runtime_checkable
class Pausable(Protocol):
    """A source that can stop fetching while the pipeline is in backpressure.

    ``pause`` and ``resume`` may return awaitables, awaited in order like ``ack``.
    """

    def pause(self) -> object: ...

    def resume(self) -> object: ...


def check_source(source: object) -> None:
    """Refuse a ``source`` that is neither iterable nor async iterable."""
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


class Reading:
    """How far a run's source may be read ahead: as far as the first buffer has
    room for; and how many items have been read.

    Before the first buffer (or with none) the source is read a chunk at a time
    as the stages ask for it, so a chunk is all it runs ahead.
    """

    __slots__ = ("buffer", "read")

    def __init__(self) -> None:
        #: The first buffer of the run's pipeline, if it has one.
        self.buffer: ChunkBuffer | None = None
        self.read = 0

    async def room(self, wanted: int) -> int:
        """How many of ``wanted`` items may be read now, waiting for at least one."""
        buffer = self.buffer
        if buffer is None:
            return wanted
        while (n := buffer.read_room()) <= 0:
            await buffer.wait_for_room()
        return min(n, wanted)


class SourceCloser:
    """Closes the iterator its reader got from a source, then the source (each once).

    With ``close=False`` the source stays open (a run closes an acknowledging
    source itself, after its last acknowledgement), and so does the iterator if
    it is the source itself.
    """

    __slots__ = ("_close", "_it", "_source")

    def __init__(self, it: object, source: object, *, close: bool = True) -> None:
        self._it = it
        self._source = source
        self._close = close

    async def aclose(self) -> None:
        try:
            if self._it is not self._source:
                await close_source(self._it)
        finally:
            if self._close:
                await close_source(self._source)


def as_aiter(it: Any) -> AsyncIterator[Any]:
    """``it``, an async iterator, or one made of it if it has ``__anext__`` but
    no ``__aiter__`` (which ``async for`` needs)."""
    return it if hasattr(it, "__aiter__") else _Aiter(it)


class _Aiter:
    __slots__ = ("_anext",)

    def __init__(self, it: Any) -> None:
        self._anext: Callable[[], Awaitable[Any]] = it.__anext__

    def __aiter__(self) -> Self:
        return self

    def __anext__(self) -> Awaitable[Any]:
        return self._anext()


def source_chunks(
    source: Any,
    *,
    lists: bool = True,
    long_slices: bool = False,
    long_reads: bool = False,
    close: bool = True,
    reading: Reading | None = None,
    idle: SourceIdle | None = None,
) -> AsyncGenerator[Chunk, None]:
    """Chunks of what is ready, up to ``MAX_CHUNK`` items; each chunk's mark
    counts the items read so far. Waiting for more is never worth delaying what
    is there: an async source's chunk ends where reading on would wait.

    A ``list``, ``tuple`` or ``range`` is sliced rather than iterated. With
    ``lists=False`` its slices go on as they are (a tuple or a range) and
    ``SLICE_CHUNK`` items long, for a reader that only iterates them: the
    consumer's own generator, which yields each result as it comes, so that
    larger slices cost nothing and save bookkeeping per chunk. With
    ``long_slices`` they are that long and lists, for a first stage that cuts
    its input into pieces of its own (batches, windows). With ``long_reads``
    an async source's chunks may be as long, when that many items are at hand.

    ``reading``, if given, caps each chunk (the source is read no further ahead
    than the first buffer of the pipeline has room for) and counts what is read.

    At the end the iterator is closed, and then the source (each once), unless
    ``close`` is false: an acknowledging source is closed by its run, after
    its last acknowledgement.

    ``idle``, if given, records when an async source keeps the reader waiting.
    """
    room = reading.room if reading is not None else None
    if hasattr(source, "__aiter__"):
        # Read by the reader's own generator, with nothing around it: every
        # generator running while the source hands an item over costs a little.
        it = source.__aiter__()
        return ReadyReader(it, idle).chunks(
            room,
            size=SLICE_CHUNK if long_reads else MAX_CHUNK,
            reading=reading,
            close=SourceCloser(it, source, close=close).aclose,
        )
    items: Any = source
    if type(source) in _SLICEABLE:
        size = SLICE_CHUNK if long_slices or not lists else MAX_CHUNK
        chunks = _sequence_chunks(source, lists, size, room)
    else:
        items = iter(source)
        chunks = _sync_chunks(items, room)
    return _closing(chunks, SourceCloser(items, source, close=close), reading)


async def _closing(
    chunks: AsyncGenerator[Chunk, None], closer: SourceCloser, reading: Reading | None
) -> AsyncGenerator[Chunk, None]:
    """``chunks`` of a sync source, counted in ``reading``; closed at the end."""
    try:
        if reading is None:
            async for chunk in chunks:
                yield chunk
        else:
            async for chunk in chunks:
                reading.read = chunk[1]
                yield chunk
    finally:
        try:
            await chunks.aclose()
        finally:
            await closer.aclose()


#: The sources that are sliced rather than iterated.
_SLICEABLE = (list, tuple, range)
#: Those a consumer generator may iterate with ``for`` instead, counting what it
#: read by the iterator's position: not a ``range``, whose length may not fit
#: in a C integer.
ITERATED = (list, tuple)
#: Items per slice of a ``list``, ``tuple`` or ``range`` read by a direct consumer.
SLICE_CHUNK = 16 * MAX_CHUNK


async def _sequence_chunks(
    seq: Any, lists: bool, size: int, room: Room | None
) -> AsyncGenerator[Chunk, None]:
    # Slicing until a slice comes back empty sees what is appended to a list
    # meanwhile, as its iterator would.
    count = 0
    while chunk := seq[count : count + (size if room is None else await room(size))]:
        count += len(chunk)
        yield (list(chunk) if lists and type(chunk) is not list else chunk), count


async def _sync_chunks(it: Iterator[Any], room: Room | None) -> AsyncGenerator[Chunk, None]:
    count = 0
    while True:
        chunk: list[Any] = []
        size = MAX_CHUNK if room is None else await room(MAX_CHUNK)
        try:
            chunk.extend(islice(it, size))
        except Exception:
            if chunk:  # what was read before the failure still goes on
                yield chunk, count + len(chunk)
            raise
        if not chunk:
            return
        count += len(chunk)
        yield chunk, count
