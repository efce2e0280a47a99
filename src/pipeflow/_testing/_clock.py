"""``VirtualClock``: time that moves only when told, or when everything waits."""

from __future__ import annotations

import asyncio
import heapq
import math
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = ["VirtualClock"]

_DEFAULT_START = datetime(2026, 1, 1, tzinfo=UTC)


class VirtualClock:
    """A clock for tests: ``sleep`` returns when virtual time reaches its deadline.

    With ``autojump=True`` (the default), whenever every task on the loop is
    waiting, time jumps straight to the earliest pending deadline, so code that
    sleeps for an hour finishes at once, and ``monotonic()`` reads exact times.
    With ``autojump=False`` time moves only through ``advance()``.

    "Every task is waiting" means: no callback or task step is ready to run on
    the loop (the clock's own watch aside), however many turns it takes to get
    there, and no task is awaiting work in a thread. A loop that never stops
    being busy never sees time move.

    - Work in a thread (``loop.run_in_executor``, ``asyncio.to_thread``) holds
      time while a task awaits it, directly or through ``asyncio.gather``: the
      clock waits for the thread's result, without spinning. A thread the clock
      cannot see (one started by hand that calls ``loop.call_soon_threadsafe``)
      does not hold time.
    - Real-time timers (``asyncio.sleep``, ``loop.call_later``,
      ``asyncio.timeout``) run on the loop's own clock, not this one: a task
      waiting for one counts as waiting, so virtual time may jump meanwhile;
      a timer already due counts as ready. Code under test should take its
      time from this clock.
    - A task waiting for I/O counts as waiting.

    Telling when every task waits needs an event loop built on
    ``asyncio.BaseEventLoop`` (the standard ones); on any other loop
    ``sleep`` (with autojump) and ``advance`` raise ``RuntimeError``.

    ``monotonic()`` starts at ``0.0``; ``now()`` is ``start`` plus
    ``monotonic()``.

    Args:
        start: the wall time (timezone-aware) that ``now()`` reads at monotonic 0;
            by default 2026-01-01T00:00:00Z, aligned to whole seconds and minutes.
        autojump: jump to the next deadline when every task waits. Can be
            changed later through the ``autojump`` attribute.

    Raises:
        TypeError: for a ``start`` that is not a ``datetime``.
        ValueError: for a naive ``start``.

    Examples:
        >>> from pipeflow.testing import VirtualClock
        >>> clock = VirtualClock()
        >>> clock.monotonic()
        0.0
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
        self._watching: asyncio.AbstractEventLoop | None = None  # loop autojump watches

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
        if self.autojump and self._watching is not loop:
            _when_idle(loop, self._jump)
            self._watching = loop
        self._seq += 1
        heapq.heappush(self._timers, (deadline, self._seq, fut))
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
        """Move time forward by ``seconds``, waking each sleeper at its own deadline.

        Before each step, and before returning, every other task gets to run
        until it waits, so a woken sleeper that sleeps again does so from its
        own deadline.
        """
        if seconds < 0:
            msg = f"time cannot go backwards: advance({seconds!r})"
            raise ValueError(msg)
        if not math.isfinite(seconds):
            msg = f"advance() needs a finite number of seconds, got {seconds!r}"
            raise ValueError(msg)
        await self._wait_idle()
        target = self._t + seconds
        while self._timers and self._timers[0][0] <= target:
            self._fire_next()
            await self._wait_idle()
        self._t = target
        await self._wait_idle()

    @property
    def pending(self) -> int:
        """How many sleeps are waiting for their deadline."""
        return sum(not f.done() for _, _, f in self._timers)

    async def _wait_idle(self) -> None:
        loop = asyncio.get_running_loop()
        idle: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            if not idle.done():  # not if the caller was cancelled meanwhile
                idle.set_result(None)

        _when_idle(loop, wake)
        await idle

    def _jump(self) -> None:
        """Every task waits: go to the earliest live deadline, then watch again."""
        loop, self._watching = self._watching, None
        if not self.autojump or loop is None:
            return
        # Drop sleeps that were cancelled, then jump to the earliest live one.
        while self._timers and self._timers[0][2].done():
            heapq.heappop(self._timers)
        if self._timers:
            self._fire_next()
        if self._timers:
            _when_idle(loop, self._jump)
            self._watching = loop

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

    def __repr__(self) -> str:
        return f"VirtualClock(t={self._t!r}, pending={self.pending})"


class _Watch:
    """A callback of the clock's own: the idle check ignores these on the loop."""

    __slots__ = ("_check",)

    def __init__(self, check: Callable[[], None]) -> None:
        self._check = check

    def __call__(self, *_: object) -> None:
        self._check()


def _when_idle(loop: asyncio.AbstractEventLoop, on_idle: Callable[[], None]) -> None:
    """Call ``on_idle`` at the first loop turn where every task waits.

    The check runs once a turn while anything else is ready, so a loop that
    stays busy never calls it; while tasks wait on threads, the check sleeps
    until the first thread's result arrives instead of running every turn.
    """
    ready, scheduled = _loop_queues(loop)

    def check() -> None:
        if _runnable(loop, ready, scheduled):
            loop.call_soon(watch)
            return
        in_thread = _thread_results_awaited(loop)
        if in_thread:
            in_thread[0].add_done_callback(watch)
            return
        on_idle()

    watch = _Watch(check)
    loop.call_soon(watch)


def _loop_queues(loop: asyncio.AbstractEventLoop) -> tuple[deque[Any], list[Any]]:
    ready = getattr(loop, "_ready", None)
    scheduled = getattr(loop, "_scheduled", None)
    if not isinstance(ready, deque) or not isinstance(scheduled, list):
        msg = (
            "VirtualClock tells when every task waits only on an event loop built on "
            f"asyncio.BaseEventLoop, got {type(loop).__module__}.{type(loop).__qualname__}"
        )
        raise RuntimeError(msg)
    return ready, scheduled


def _runnable(loop: asyncio.AbstractEventLoop, ready: deque[Any], scheduled: list[Any]) -> bool:
    """Whether anything but the clock's own watches will run on the loop's next turn."""
    for handle in ready:
        if not handle.cancelled() and not isinstance(handle._callback, _Watch):
            return True
    if not scheduled:
        return False
    due = loop.time() + getattr(loop, "_clock_resolution", 0.0)
    return any(not timer.cancelled() and timer.when() <= due for timer in scheduled)


def _thread_results_awaited(loop: asyncio.AbstractEventLoop) -> list[asyncio.Future[Any]]:
    """The futures fed by a thread (``wrap_future``) that some task awaits."""
    found: list[asyncio.Future[Any]] = []
    for task in asyncio.all_tasks(loop):
        _collect_thread_results(getattr(task, "_fut_waiter", None), found)
    return found


def _collect_thread_results(fut: object, found: list[asyncio.Future[Any]]) -> None:
    if not isinstance(fut, asyncio.Future) or fut.done():
        return
    for callback, _ in getattr(fut, "_callbacks", None) or ():
        # asyncio chains a thread's concurrent future to the awaited one with
        # this callback (it passes a cancellation back to the thread's side).
        if getattr(callback, "__qualname__", "") == "_chain_future.<locals>._call_check_cancel":
            found.append(fut)
            return
    for child in getattr(fut, "_children", ()):  # asyncio.gather's future
        _collect_thread_results(child, found)
