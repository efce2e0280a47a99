"""``ConsoleReporter`` and ``print_report``: a monitor's metrics on a terminal.

Both need ``rich`` (the ``console`` extra), imported when they are used, not when
this module is: ``import pipeflow.monitoring`` works without it.
"""

from __future__ import annotations

import math
from collections import Counter
from datetime import timedelta
from types import TracebackType
from typing import TYPE_CHECKING

from .._core._clock import SYSTEM_CLOCK, Clock
from ._bottleneck import Bottleneck, find_bottleneck
from ._live import Redrawn
from ._monitor import StreamMetrics, StreamMonitor

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

__all__ = ["ConsoleReporter", "print_report"]

_INSTALL = "pip install 'pipeflow-streams[console]'"


class ConsoleReporter:
    """Shows a monitor's per-stage metrics live while a pipeline runs, then a summary.

    Use it around the loop that consumes the stream::

        monitor = StreamMonitor()
        pipeline.set_monitor(monitor)
        async with ConsoleReporter(monitor):
            async for result in pipeline.stream(source):
                ...

    While the block runs, a live table shows each stage's items in and out,
    throughput, backpressure, processing latency (p50, p99), the counts of errors,
    retries, skips, dead letters, drops, late items and abandoned items that
    some stage has, and the fill of each input buffer, with the stage that is the
    bottleneck now. It is redrawn every ``refresh`` seconds of ``clock``. When
    the block ends (normally, on an error or on cancellation) the live table
    gives way to the final per-stage table and a line naming the stage that was
    the bottleneck at most refreshes during the run.

    The bottleneck is the stage its upstream waits for most while it does not
    wait itself: the stage after the largest drop in backpressure from one
    stage to the next, if that drop is at least 0.25. The code consuming the
    stream counts as a last stage that never waits, so a slow loop body is
    named too. Without such a drop no stage holds another back, and the source
    (or the first stage, which reads it) sets the pace. Stages fused into one
    task share one backpressure figure: the first of them is named.

    On a console that is not a terminal (a file, a CI log) nothing is drawn
    while the block runs: only the final table is printed.

    Args:
        monitor: the ``StreamMonitor`` set on the pipeline (``set_monitor``).
        refresh: seconds (or a ``timedelta``) between redraws.
        clock: the clock to pace the redraws and measure the time taken; pass
            the one the pipeline runs on (a ``VirtualClock`` in tests). The
            system clock by default.
        console: the ``rich.console.Console`` to draw on; a new one on standard
            output by default.
        title: the name shown above the table.
        total: the number of items the source will give, if known: adds a
            progress bar of the items read.

    Raises:
        ImportError: if ``rich`` is not installed.
        TypeError: if ``monitor`` is not a ``StreamMonitor``.
        ValueError: if ``refresh`` is not a positive, finite duration.
    """

    def __init__(
        self,
        monitor: StreamMonitor,
        *,
        refresh: float | timedelta = 1.0,
        clock: Clock | None = None,
        console: Console | None = None,
        title: str | None = None,
        total: int | None = None,
    ) -> None:
        _require_rich("ConsoleReporter")
        from rich.console import Console

        _check_monitor("ConsoleReporter", monitor)
        seconds = refresh.total_seconds() if isinstance(refresh, timedelta) else refresh
        number = isinstance(seconds, int | float) and not isinstance(seconds, bool)
        if not (number and math.isfinite(seconds) and seconds > 0):
            msg = f"refresh must be a positive number of seconds or a timedelta, got {refresh!r}"
            raise ValueError(msg)
        self.monitor = monitor
        self.refresh = float(seconds)
        self.clock = clock if clock is not None else SYSTEM_CLOCK
        self.console = console if console is not None else Console()
        self.title = title or "pipeline"
        self.total = total
        self._started: float | None = None
        self._view = Redrawn()
        # How often each stage (by position; None: no bottleneck) was the
        # bottleneck at a refresh while a run was active, and the latest finding.
        self._tally: Counter[int | None] = Counter()
        self._found: dict[int | None, Bottleneck | None] = {}

    async def __aenter__(self) -> ConsoleReporter:
        if self._started is not None:
            msg = "a ConsoleReporter is entered once; make a new one for another block"
            raise RuntimeError(msg)
        self._started = self.clock.monotonic()
        # Transient: the final table replaces it.
        self._view.start(
            self._render(),
            self._frame,
            console=self.console,
            refresh=self.refresh,
            clock=self.clock,
            name="pipeflow: console reporter",
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            failure = await self._view.stop()
        finally:
            self._print_final(exc_type)
        if exc is None and failure is not None:
            raise failure

    @property
    def elapsed(self) -> float:
        """Seconds on ``clock`` since the block was entered (0.0 before)."""
        return 0.0 if self._started is None else self.clock.monotonic() - self._started

    def bottleneck(self) -> Bottleneck | None:
        """The stage that was the bottleneck at most refreshes while a run was active
        (the first such, on a tie); before any, the bottleneck of the metrics now."""
        if not self._tally:
            return find_bottleneck(self.monitor.get_metrics().stages)
        position, _ = self._tally.most_common(1)[0]
        return self._found[position]

    def _frame(self) -> RenderableType:
        """The view at a refresh, noting the bottleneck while a run is active."""
        metrics = self.monitor.get_metrics()
        if metrics.active_runs:
            found = find_bottleneck(metrics.stages)
            position = found.position if found is not None else None
            self._tally[position] += 1
            self._found[position] = found
        return self._render(metrics)

    def _render(self, metrics: StreamMetrics | None = None) -> RenderableType:
        from ._render import live_view

        if metrics is None:
            metrics = self.monitor.get_metrics()
        return live_view(
            metrics,
            find_bottleneck(metrics.stages),
            title=self.title,
            elapsed=self.elapsed,
            total=self.total,
        )

    def _print_final(self, exc_type: type[BaseException] | None) -> None:
        metrics = self.monitor.get_metrics()
        note = f"{self.elapsed:.1f} s in all"
        if exc_type is not None:
            note += f", stopped by {exc_type.__name__}"
        samples = self._tally.total()
        when = f"at {self._tally.most_common(1)[0][1]} of {samples} refreshes" if samples else None
        _print(self.console, metrics, self.title, note, self.bottleneck(), when)


def print_report(
    metrics: StreamMonitor | StreamMetrics,
    *,
    console: Console | None = None,
    title: str | None = None,
) -> None:
    """Print the per-stage table of a monitor (or of its metrics) and the bottleneck.

    For runs without a live display: a batch job, a test, a log file. The
    bottleneck is read from the metrics as they are now, by the rule
    ``ConsoleReporter`` gives: right after a run, over its last seconds.

    Examples:
        >>> import asyncio
        >>> from rich.console import Console
        >>> from pipeflow import streams as ps
        >>> from pipeflow.monitoring import StreamMonitor, print_report
        >>> from pipeflow.testing import VirtualClock
        >>> monitor = StreamMonitor()
        >>> pipe = ps.map(str.upper, name="upper") | ps.filter(str.isalpha, name="letters")
        >>> pipe.set_monitor(monitor)
        >>> async def main() -> list[str]:
        ...     async with pipe.stream(["a", "1", "b"], clock=VirtualClock()) as results:
        ...         return [x async for x in results]
        >>> asyncio.run(main())
        ['A', 'B']
        >>> print_report(monitor, console=Console(width=80), title="shout")
        ... # doctest: +NORMALIZE_WHITESPACE
        shout: per-stage metrics
                                        back-   latency
        stage     in   out   out/s   pressure   p50/p99
        ───────────────────────────────────────────────
        upper      3     3     0.0         0%     0/0µs
        letters    3     2     0.0         0%     0/0µs
        rates, backpressure and latency over the last 0.0 s
        No bottleneck: no stage waited long for a slower one downstream; the source,
        or the first stage 'upper', sets the pace.

    Args:
        metrics: a ``StreamMonitor``, or a ``StreamMetrics`` it returned.
        console: the ``rich.console.Console`` to print on; a new one on standard
            output by default.
        title: the name shown above the table.

    Raises:
        ImportError: if ``rich`` is not installed.
    """
    _require_rich("print_report")
    from rich.console import Console

    if isinstance(metrics, StreamMonitor):
        metrics = metrics.get_metrics()
    elif not isinstance(metrics, StreamMetrics):
        msg = f"print_report takes a StreamMonitor or StreamMetrics, got {type(metrics).__name__}"
        raise TypeError(msg)
    console = console if console is not None else Console()
    _print(console, metrics, title or "pipeline", None, find_bottleneck(metrics.stages), None)


def _print(
    console: Console,
    metrics: StreamMetrics,
    title: str,
    note: str | None,
    bottleneck: Bottleneck | None,
    when: str | None,
) -> None:
    from ._render import bottleneck_line, stage_table

    window = max((s.window for s in metrics.stages), default=0.0)
    caption = f"rates, backpressure and latency over the last {window:.1f} s"
    if note is not None:
        caption = f"{note}; {caption}"
    console.print(stage_table(metrics, title=f"{title}: per-stage metrics", buffers=False))
    console.print(caption, style="dim", markup=False, highlight=False)
    console.print(bottleneck_line(bottleneck, metrics.stages, when=when))


def _require_rich(what: str) -> None:
    try:
        import rich  # noqa: F401
    except ImportError as exc:
        msg = f"{what} needs rich: {_INSTALL}"
        raise ImportError(msg) from exc


def _check_monitor(what: str, monitor: object) -> None:
    if not isinstance(monitor, StreamMonitor):
        msg = f"{what} takes a StreamMonitor, got {type(monitor).__name__}"
        raise TypeError(msg)
