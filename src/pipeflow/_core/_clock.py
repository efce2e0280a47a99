"""The clock: the only way pipeflow reads time or waits for it.

Every timing decision (pacing, retry backoff, throughput windows, latency) goes
through a ``Clock``, so tests can swap in ``pipeflow.testing.VirtualClock``
and run timing logic without sleeping.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

__all__ = ["SYSTEM_CLOCK", "Clock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    """What pipeflow needs from a clock.

    ``monotonic()`` measures durations; ``now()`` is wall time for event-time
    logic; ``sleep()`` waits. A clock must keep the three consistent: after
    ``await sleep(d)`` both ``monotonic()`` and ``now()`` have moved by at least ``d``.

    A run takes its clock from ``stream(source, clock=...)``; the default is
    ``SystemClock()``, and ``pipeflow.testing.VirtualClock`` makes timing tests
    exact and instant. A runtime-checkable protocol.
    """

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards; only differences matter."""
        ...

    def now(self) -> datetime:
        """The current wall time, timezone-aware in UTC."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait until ``seconds`` have passed on this clock."""
        ...


class SystemClock:
    """The real clock: ``time.perf_counter``, ``datetime.now(UTC)`` and ``asyncio.sleep``.

    The default clock of every run.
    """

    __slots__ = ()

    def monotonic(self) -> float:
        return time.perf_counter()

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def __repr__(self) -> str:
        return "SystemClock()"


SYSTEM_CLOCK = SystemClock()
