"""The bounded buffer between a pipe and its upstream.

Items move in chunks (lists of whatever was ready), but the bound counts items:
a buffer never holds more than ``capacity`` of them. One producer task puts,
one consumer takes; both wait on plain futures, so a hand-over costs one wake-up
per chunk rather than per item.

Under the ``"block"`` strategy the bound also covers what the consumer took and
is still working on: a chunk taken out of the buffer keeps its room until the
consumer comes back for more (or, for a consumer that releases explicitly, until
it says so). So the items between a producer and the end of the consumer's work
never exceed ``capacity`` (plus ``allowance``, the items a concurrent stage may
have in flight), however large the chunks are.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from ._errors import BufferOverflowError

if TYPE_CHECKING:
    from ._clock import Clock
    from ._config import BackpressureConfig
    from ._stats import StageStats

__all__ = ["MAX_CHUNK", "Chunk", "ChunkBuffer", "wait_input"]

#: The most items moved together in one chunk.
MAX_CHUNK = 256
"""The most items moved together in one chunk, and the most read ahead from a sync
iterable at a time."""

#: A chunk: the items, and the mark of the source position they complete.
#: After every item of a chunk is delivered, the first ``mark`` source items have
#: had all their results delivered (see ``Acknowledging``).
Chunk = tuple[list[Any], int]


class ChunkBuffer:
    """A bounded, single-producer single-consumer queue of chunks.

    The producer calls ``put_nowait``, which takes what fits and returns the
    rest, and waits with ``wait_for_room`` (``put`` does both). Under
    ``"block"`` it waits while the buffer is throttled (fuller than its
    threshold, until it drains below it) or full; the other overflow strategies
    drop or fail instead, and never wait. ``close`` ends it, with an error or not.

    The consumer iterates ``chunks()``, or calls ``get_nowait`` and waits with
    ``wait_ready`` (or ``set_waiter``, to wait on other events too). Each chunk
    taken is merged with the chunks after it while they fit in ``MAX_CHUNK``:
    whatever is ready, never waiting for more.
    """

    __slots__ = (
        "_chunks",
        "_closed",
        "_error",
        "_getter",
        "_high",
        "_last_mark",
        "_overflow",
        "_putter",
        "_size",
        "_taken",
        "allowance",
        "auto_release",
        "capacity",
        "on_throttle",
        "owner",
        "producers",
        "refill",
        "throttled",
    )

    def __init__(self, config: BackpressureConfig, owner: StageStats) -> None:
        self.capacity = config.max_buffer_size
        self._high = config.high_watermark
        self._overflow = config.overflow
        self._chunks: deque[Chunk] = deque()
        self._size = 0
        #: Items handed to the consumer that still hold their room (``"block"`` only).
        self._taken = 0
        #: Items the consumer may hold beyond ``capacity``: a concurrent stage's
        #: calls in flight.
        self.allowance = 0
        #: Whether taken items are released when the consumer asks for more;
        #: otherwise the consumer calls :meth:`release`.
        self.auto_release = True
        self._closed = False
        self._error: BaseException | None = None
        self._getter: asyncio.Future[None] | None = None
        self._putter: asyncio.Future[None] | None = None
        self._last_mark = 0
        self.throttled = False
        #: Stats of the stage that drains this buffer (drops are counted there).
        self.owner = owner
        #: Stats of the stages that fill it (their blocked time is backpressure).
        self.producers: list[StageStats] = []
        #: Told ``True`` when the buffer enters backpressure, ``False`` when it leaves.
        self.on_throttle: Callable[[bool], object] | None = None
        #: Called when the consumer finds the buffer empty: a producer that gathers
        #: its output to put it in one piece hands over what it holds (see
        #: ``stream_stage``), so nothing waits there while the consumer starves.
        self.refill: Callable[[], object] | None = None

    @property
    def size(self) -> int:
        """Items held now: queued, and taken by a consumer still working on them
        (past its ``allowance``)."""
        return self._size + max(0, self._taken - self.allowance)

    @property
    def queued(self) -> int:
        """Items waiting in the buffer (not taken out yet)."""
        return self._size

    @property
    def taken(self) -> int:
        """Items the consumer took out and still holds the room of."""
        return self._taken

    def room(self) -> int:
        """How many items a put may add now without waiting (``"block"``), or
        without dropping or failing (the other strategies)."""
        if self._overflow != "block":
            return self.capacity - self._size
        if self.throttled:
            return 0
        return self.capacity - self.size

    def read_room(self) -> int:
        """How many items the producer may read ahead for this buffer now: its
        :meth:`room` under ``"block"``; any number (``MAX_CHUNK``) under the
        other strategies, which never make a producer wait."""
        return self.room() if self._overflow == "block" else MAX_CHUNK

    def release(self, n: int) -> None:
        """The consumer is done with ``n`` of the items it took: their room is free."""
        self._taken = max(0, self._taken - n)
        self._drained()

    def _drained(self) -> None:
        """Items left: end backpressure below the threshold, and let the producer on."""
        if self.throttled and self.size < self._high:
            self._set_throttled(False)
        p = self._putter
        if p is not None and not p.done() and self.room() > 0:
            p.set_result(None)

    # -- producer side -------------------------------------------------------

    def put_nowait(self, items: list[Any], mark: int) -> list[Any]:
        """Put what the buffer takes now; return the items that must wait.

        Under a dropping or failing overflow strategy nothing ever waits.
        """
        if self._closed:
            msg = "put() on a closed ChunkBuffer"
            raise RuntimeError(msg)
        free = self.capacity - self._size
        if self._overflow == "block":
            free = self.room()
            if len(items) <= free:
                self._append(items, mark)
                return []
            if free > 0:
                self._append(items[:free], self._last_mark)
            return items[free:]
        if len(items) <= free:
            self._append(items, mark)
            return []
        if self._overflow == "fail":
            if free > 0:
                self._append(items[:free], self._last_mark)  # what fits is delivered first
            raise BufferOverflowError(self.owner.name, self.capacity)
        if self._overflow == "drop_newest":
            self.owner.dropped += len(items) - free
            self._append(items[:free], mark)
            return []
        # drop_oldest: keep the newest `capacity` items of what is held plus `items`.
        if len(items) >= self.capacity:
            self.owner.dropped += self._size + len(items) - self.capacity
            self._chunks.clear()
            self._size = 0
            self._append(items[-self.capacity :], mark)
            return []
        self._evict(self._size + len(items) - self.capacity)
        self._append(items, mark)
        return []

    async def put(self, items: list[Any], mark: int) -> None:
        """Put ``items``, waiting for room as the overflow strategy says."""
        rest = self.put_nowait(items, mark)
        while rest:
            await self.wait_for_room()
            rest = self.put_nowait(rest, mark)

    async def wait_for_room(self) -> None:
        """Wait until a put may add items again (recording the wait as backpressure)."""
        loop = asyncio.get_running_loop()
        fut = self._putter = loop.create_future()
        timed = [s for s in self.producers if s.timed]
        if timed:
            now = timed[0].clock.monotonic()
            for s in timed:
                s.block(now)
        try:
            await fut
        finally:
            self._putter = None
            if timed:
                now = timed[0].clock.monotonic()
                for s in timed:
                    s.unblock(now)

    def close(self, error: BaseException | None = None) -> None:
        """No more puts. The consumer gets what is held, then ``error`` or the end."""
        self._closed = True
        self._error = error
        self._wake_getter()

    def _append(self, items: list[Any], mark: int) -> None:
        if items:
            self._chunks.append((items, mark))
            self._size += len(items)
            # A full buffer is in backpressure whatever the threshold (at 1.0, or
            # with room for one item, no fill level is above it).
            size = self.size
            if (size > self._high or size >= self.capacity) and not self.throttled:
                self._set_throttled(True)
            self._wake_getter()
        elif mark != self._last_mark:
            # Nothing to deliver, but the source position moved on: pass the mark.
            # The items between produced nothing, so the chunk queued last can carry
            # it: once its items are delivered, so is everything up to ``mark``.
            # (An upstream filter that drops nearly all would otherwise queue one
            # entry per chunk, with no bound.)
            chunks = self._chunks
            if chunks:
                chunks[-1] = (chunks[-1][0], mark)
            else:
                chunks.append((items, mark))
                self._wake_getter()
        self._last_mark = mark

    def _evict(self, n: int) -> None:
        chunks = self._chunks
        self.owner.dropped += n
        self._size -= n
        while n:
            items, mark = chunks[0]
            if len(items) <= n:
                chunks.popleft()
                n -= len(items)
            else:
                chunks[0] = (items[n:], mark)
                n = 0

    def _set_throttled(self, on: bool) -> None:
        self.throttled = on
        if self.on_throttle is not None:
            self.on_throttle(on)

    def _wake_getter(self) -> None:
        g = self._getter
        if g is not None and not g.done():
            g.set_result(None)

    # -- consumer side -------------------------------------------------------

    def get_nowait(self) -> Chunk | None:
        """Take the next chunk (merged with small ones after it), or ``None`` if empty.

        Its items keep their room until the consumer comes back for more (see
        ``auto_release``). Raises the producer's error, or ``StopAsyncIteration``
        at the end.
        """
        chunks = self._chunks
        if self._starved():
            if self._closed:
                if self._error is not None:
                    raise self._error
                raise StopAsyncIteration
            return None
        items, mark = chunks.popleft()
        if chunks and len(items) + len(chunks[0][0]) <= MAX_CHUNK:
            items = list(items)
            while chunks and len(items) + len(chunks[0][0]) <= MAX_CHUNK:
                more, mark = chunks.popleft()
                items += more
        self._size -= len(items)
        if self._overflow == "block":
            self._taken += len(items)
        else:
            self._drained()
        return items, mark

    @property
    def awaited(self) -> bool:
        """Whether the consumer is waiting for the next chunk right now."""
        g = self._getter
        return g is not None and not g.done()

    def _starved(self) -> bool:
        """Whether the buffer is empty, once a producer holding output was asked for it.

        Every consumer-side call comes here first: a consumer that asks again is
        done with what it took before.
        """
        if self._taken and self.auto_release:
            self._taken = 0
            self._drained()
        if not self._chunks and not self._closed and self.refill is not None:
            self.refill()
        return not self._chunks

    async def wait_ready(self) -> None:
        """Wait until :meth:`get_nowait` has something to return (or the end)."""
        if not self._starved() or self._closed:
            return
        fut = asyncio.get_running_loop().create_future()
        self.set_waiter(fut)
        try:
            await fut
        finally:
            self._getter = None

    def ready(self) -> bool:
        """Whether :meth:`get_nowait` would return a chunk or signal the end now."""
        return not self._starved() or self._closed

    def clear_waiter(self, fut: asyncio.Future[None]) -> None:
        """Forget ``fut`` if it is still the registered waiter."""
        if self._getter is fut:
            self._getter = None

    def set_waiter(self, fut: asyncio.Future[None]) -> None:
        """Resolve ``fut`` when a chunk or the end arrives (at once if already there).

        Lets a consumer wait on the buffer and on other events with one future.
        """
        self._getter = fut
        if not self._starved() or self._closed:
            self._wake_getter()

    async def chunks(self) -> AsyncIterator[Chunk]:
        """Iterate the chunks until the producer closes the buffer."""
        while True:
            if not self._closed and self._starved():
                await self.wait_ready()
            try:
                chunk = self.get_nowait()
            except StopAsyncIteration:
                return
            if chunk is not None:
                yield chunk


async def wait_input(buffer: ChunkBuffer, clock: Clock, delay: float | None) -> None:
    """Wait until ``buffer`` has input (or has ended), or ``delay`` seconds pass on ``clock``.

    ``delay=None`` waits for input only. Timers of windows and batches use this,
    so they fire on time even when no item arrives.
    """
    if delay is None:
        await buffer.wait_ready()
        return
    if delay <= 0 or buffer.ready():
        return
    loop = asyncio.get_running_loop()
    wake: asyncio.Future[None] = loop.create_future()

    def on_timer(_: object) -> None:
        if not wake.done():
            wake.set_result(None)

    buffer.set_waiter(wake)
    timer = loop.create_task(clock.sleep(delay))
    timer.add_done_callback(on_timer)
    try:
        await wake
    finally:
        buffer.clear_waiter(wake)
        if not timer.done():
            timer.cancel()
            await asyncio.gather(timer, return_exceptions=True)
