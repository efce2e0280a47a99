"""``VirtualClock``: time that moves only when told, or when everything waits."""

from __future__ import annotations

import asyncio
import heapq
import math
from datetime import UTC, datetime, timedelta

__all__ = ["VirtualClock"]

_DEFAULT_START = datetime(2026, 1, 1, tzinfo=UTC)


class VirtualClock:
    """A clock for tests: ``sleep`` returns when virtual time reaches its deadline.

    With ``autojump=True`` (the default), whenever every task on the loop is
    waiting, time jumps straight to the earliest pending deadline, so code that
    sleeps for an hour finishes at once, and ``monotonic()`` reads exact times.
    With ``autojump=False`` time moves only through :meth:`advance`.

    >>> from pipeflow.testing import VirtualClock
    >>> clock = VirtualClock()
    >>> clock.monotonic()
    0.0

    Args:
        start: the wall time (timezone-aware) that ``now()`` reads at monotonic 0.
        autojump: jump to the next deadline when the loop is idle.
    """

    def __init__(self, start: datetime = _DEFAULT_START, *, autojump: bool = True) -> None:
        if not isinstance(start, datetime):
            msg = (
                "VirtualClock start must be a timezone-aware datetime, "
                f"got {type(start).__name__}: {start!r:.60}"
            )
            raise TypeError(msg)
        if start.tzinfo is None:
            msg = f"VirtualClock start must be timezone-aware (UTC), got naive {start!r}"
            raise ValueError(msg)
        self._start = start.astimezone(UTC)
        self._t = 0.0
        self._seq = 0
        self._timers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._cancelled = 0  # cancelled timers still in the heap (about)
        self.autojump = autojump
        self._jumper: asyncio.Task[None] | None = None

    def monotonic(self) -> float:
        return self._t

    def now(self) -> datetime:
        return self._start + timedelta(seconds=self._t)

    async def sleep(self, seconds: float) -> None:
        """Return once virtual time has moved by at least ``seconds``.

        ``seconds <= 0`` only lets other tasks run; ``math.inf`` sleeps until
        cancelled (time never jumps to it); ``ValueError`` for NaN.
        """
        if math.isnan(seconds):
            msg = f"sleep() needs a number of seconds, got {seconds!r}"
            raise ValueError(msg)
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        if math.isinf(seconds):
            try:
                await fut  # nothing sets it: only cancellation ends this sleep
            finally:
                fut.cancel()
            return
        # The deadline rounded, time must still move by the full amount: a tiny
        # sleep must not leave time where it was (a caller waiting for a
        # deadline by sleeping the difference would never get there).
        deadline = self._t + seconds
        while deadline - self._t < seconds:
            deadline = math.nextafter(deadline, math.inf)
        self._seq += 1
        heapq.heappush(self._timers, (deadline, self._seq, fut))
        if self.autojump and (self._jumper is None or self._jumper.done()):
            self._jumper = loop.create_task(
                self._autojump(), name="pipeflow: VirtualClock autojump"
            )
        try:
            await fut
        finally:
            # Stopped early (cancelled, or its coroutine closed from outside):
            # the timer must not stay pending, or autojump would go to it.
            if not fut.done():
                fut.cancel()
            if fut.cancelled():
                self._forget_cancelled()

    async def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, waking each sleeper at its own deadline."""
        if seconds < 0:
            msg = f"time cannot go backwards: advance({seconds!r})"
            raise ValueError(msg)
        if not math.isfinite(seconds):
            msg = f"advance() needs a finite number of seconds, got {seconds!r}"
            raise ValueError(msg)
        target = self._t + seconds
        while self._timers and self._timers[0][0] <= target:
            self._fire_next()
            await _settle()
        self._t = target
        await _settle()

    @property
    def pending(self) -> int:
        """How many sleeps are waiting for their deadline."""
        return sum(not f.done() for _, _, f in self._timers)

    def _fire_next(self) -> None:
        deadline = self._timers[0][0]
        self._t = max(self._t, deadline)
        while self._timers and self._timers[0][0] <= deadline:
            _, _, fut = heapq.heappop(self._timers)
            if not fut.done():
                fut.set_result(None)

    def _forget_cancelled(self) -> None:
        """Count a cancelled timer; once they are half the heap, drop them all.

        Timers that a batch or window wait sets and cancels again and again would
        otherwise pile up until their far deadlines (as asyncio's own loop, the
        heap is cleaned once cancelled entries dominate it).
        """
        self._cancelled += 1
        if self._cancelled > 64 and 2 * self._cancelled > len(self._timers):
            self._timers = [t for t in self._timers if not t[2].done()]
            heapq.heapify(self._timers)
            self._cancelled = 0

    async def _autojump(self) -> None:
        while self._timers:
            await _settle()
            # Drop sleeps that were cancelled, then jump to the earliest live one.
            while self._timers and self._timers[0][2].done():
                heapq.heappop(self._timers)
            if self._timers:
                self._fire_next()

    def __repr__(self) -> str:
        return f"VirtualClock(t={self._t!r}, pending={self.pending})"


async def _settle() -> None:
    """Yield until no other callback is ready to run: every task is waiting."""
    loop = asyncio.get_running_loop()
    ready = getattr(loop, "_ready", None)  # CPython's base loop; others get a fixed number of turns
    for _ in range(1000):
        await asyncio.sleep(0)
        if ready is not None and not ready:
            return
    if ready is None:
        return
