"""The live status line ``pipeflow run`` keeps on a terminal while the pipeline runs.

One line, redrawn about twice a second from the ``StreamMonitor`` set on the
pipeline: items per second in and out, the stage with the most backpressure,
and the counts of errors, skipped and dead-lettered items. ``status_text`` is
the line itself (plain code, tested without a terminal); ``StatusLine`` draws it
with ``rich`` and removes it when the run ends.
"""

from __future__ import annotations

from collections import deque
from types import TracebackType
from typing import TYPE_CHECKING

from .._core._clock import SYSTEM_CLOCK, Clock
from .._monitoring._live import Redrawn
from .._monitoring._monitor import StreamMetrics, StreamMonitor

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

__all__ = ["REFRESH", "Rates", "StatusLine", "status_text"]

#: Seconds between redraws.
REFRESH = 0.5
#: Seconds of recent counts the rates are taken over.
RATE_WINDOW = 3.0


class Rates:
    """Items per second in and out over the last ``window`` seconds, from counts
    sampled now and then."""

    __slots__ = ("_samples", "window")

    def __init__(self, window: float = RATE_WINDOW) -> None:
        self.window = window
        self._samples: deque[tuple[float, int, int]] = deque()

    def add(self, now: float, items_in: int, items_out: int) -> tuple[float, float]:
        """Record the counts at ``now``; return the rates in and out."""
        samples = self._samples
        samples.append((now, items_in, items_out))
        # Keep one sample at least ``window`` old, to measure from.
        while len(samples) > 2 and now - samples[1][0] >= self.window:
            samples.popleft()
        then, first_in, first_out = samples[0]
        elapsed = now - then
        if elapsed <= 0:
            return 0.0, 0.0
        return (items_in - first_in) / elapsed, (items_out - first_out) / elapsed


def status_text(metrics: StreamMetrics, rates: tuple[float, float], elapsed: float) -> str:
    """The status line for ``metrics``, with the rates in and out and the time so far.

    The counts of errors, skipped and dead-lettered items are there once one of
    them is not zero ("no errors" before), to keep the line short on a terminal
    of 80 columns.
    """
    rate_in, rate_out = rates
    parts = [
        f"{elapsed:.0f} s",
        f"in {metrics.items_in:,} ({_rate(rate_in)}/s)",
        f"out {metrics.items_out:,} ({_rate(rate_out)}/s)",
    ]
    busiest = max(metrics.stages, key=lambda s: s.backpressure, default=None)
    if busiest is not None:
        parts.append(f"backpressure {busiest.backpressure:.0%} ({busiest.name})")
    if metrics.errors or metrics.skipped or metrics.dead_lettered:
        parts.append(
            f"errors {metrics.errors:,}, skipped {metrics.skipped:,}, "
            f"dead-lettered {metrics.dead_lettered:,}"
        )
    else:
        parts.append("no errors")
    return " | ".join(parts)


def _rate(per_second: float) -> str:
    return f"{per_second:,.0f}" if per_second >= 10 else f"{per_second:.1f}"


class StatusLine:
    """Keeps the status line of ``monitor`` on ``console`` while the block runs.

    Draws nothing on a console that is not a terminal. The line is removed when
    the block ends, so what is printed after it starts on a clean line.
    """

    def __init__(
        self,
        monitor: StreamMonitor,
        console: Console,
        *,
        refresh: float = REFRESH,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.monitor = monitor
        self.console = console
        self.refresh = refresh
        self.clock = clock
        self._rates = Rates()
        self._started = 0.0
        self._view = Redrawn()

    async def __aenter__(self) -> StatusLine:
        self._started = self.clock.monotonic()
        if self.console.is_terminal:
            # Standard output may be the sink (``--sink -``): only standard error,
            # where the line is, goes through the live display.
            self._view.start(
                self._line(),
                self._line,
                console=self.console,
                refresh=self.refresh,
                clock=self.clock,
                name="pipeflow: status line",
                redirect_stdout=False,
            )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._view.stop()

    def _line(self) -> Text:
        from rich.text import Text

        metrics = self.monitor.get_metrics()
        now = self.clock.monotonic()
        rates = self._rates.add(now, metrics.items_in, metrics.items_out)
        text = Text(status_text(metrics, rates, now - self._started))
        text.no_wrap = True
        text.overflow = "ellipsis"
        return text
