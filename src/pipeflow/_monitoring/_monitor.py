"""``StreamMonitor``: per-stage metrics of the runs of a pipe, and their totals."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from .._core._stats import WINDOW_SECONDS, RunStats, StageMetrics, weighted_quantiles

__all__ = ["StreamMetrics", "StreamMonitor"]


@dataclass(frozen=True, slots=True)
class StreamMetrics:
    """A snapshot of a monitored pipe or pipeline, summed over its runs.

    Returned by ``StreamMonitor.get_metrics()``. Frozen.

    Attributes:
        throughput: the last stage's: results the consumer took per second over
            the recent window, counted as it takes them (for a monitor of a pipe
            followed by others in a larger pipeline, results it emitted per second).
        backpressure: share (0.0-1.0) of recent time the pipe was blocked
            because its consumer did not take output (the last stage's figure).
        items_in: items read from the source (the first stage's input).
        items_out: the last stage's output, counted a chunk at a time as the
            stage hands it on: it may run one chunk ahead of what the consumer
            has taken.
        errors, retries, skipped, dead_lettered, dropped, late, abandoned: totals
            over stages.
        buffer_size, buffer_capacity: totals over the input buffers of the runs
            still running; a run that has ended holds no buffer.
        latency_p50, latency_p95, latency_p99: the slowest stage's percentile of
            processing time per item, in seconds, over the samples of the runs of
            the last 10 seconds (``None`` without any).
        stages: one ``StageMetrics`` per stage, in pipeline order, to find the
            bottleneck: the stage its upstream waits for most while it does not
            wait itself (``ConsoleReporter`` names it by that rule).
        runs: how many runs are counted (a stream counts once it is iterated).
        active_runs: how many of them are still running.
    """

    throughput: float = 0.0
    backpressure: float = 0.0
    items_in: int = 0
    items_out: int = 0
    errors: int = 0
    retries: int = 0
    skipped: int = 0
    dead_lettered: int = 0
    dropped: int = 0
    late: int = 0
    abandoned: int = 0
    buffer_size: int = 0
    buffer_capacity: int = 0
    latency_p50: float | None = None
    latency_p95: float | None = None
    latency_p99: float | None = None
    stages: tuple[StageMetrics, ...] = ()
    runs: int = 0
    active_runs: int = 0

    def stage(self, name: str) -> StageMetrics:
        """The metrics of the stage called ``name`` (the first, if names repeat).

        Raises:
            KeyError: if no stage has that name; the message lists the stages.
        """
        for s in self.stages:
            if s.name == name:
                return s
        known = ", ".join(repr(s.name) for s in self.stages) or "none"
        msg = f"no stage named {name!r}; stages: {known}"
        raise KeyError(msg)


class StreamMonitor:
    """Collects the metrics of every run of the pipes it is set on.

    Set it with ``pipe.set_monitor(monitor)`` on a pipe or a pipeline; every later
    run of it reports here. Metrics are read from each stage's counters when
    ``get_metrics()`` is called; the running stages only count, once per chunk of
    items. Runs of the same pipe (the same stages) add up stage by stage; a
    monitor set on several pipes lists each one's stages, in the order they first
    ran. A monitor set on one pipe inside a larger pipeline reports that stage
    alone.

    Examples:
        >>> from pipeflow.monitoring import StreamMonitor
        >>> monitor = StreamMonitor()
        >>> monitor.get_metrics().items_out
        0
    """

    def __init__(self) -> None:
        # One entry per shape of run (its stage names), in the order first seen.
        self._shapes: dict[tuple[str, ...], _Shape] = {}

    def attach(self, run: RunStats) -> None:
        """Called by a pipe when a run starts; not needed in user code."""
        key = tuple(s.name for s in run.stages)
        self._shapes.setdefault(key, _Shape()).add(run)

    def get_metrics(self) -> StreamMetrics:
        """A snapshot now: totals over all runs, and per stage."""
        shapes = [shape.metrics() for shape in self._shapes.values()]
        shapes = [stages for stages in shapes if stages]
        if not shapes:
            return StreamMetrics()
        stages = tuple(s for shape in shapes for s in shape)
        firsts, lasts = [shape[0] for shape in shapes], [shape[-1] for shape in shapes]
        runs = [r for shape in self._shapes.values() for r in shape.runs]
        return StreamMetrics(
            throughput=sum(s.throughput for s in lasts),
            backpressure=max(s.backpressure for s in lasts),
            items_in=sum(s.items_in for s in firsts),
            items_out=sum(s.items_out for s in lasts),
            errors=sum(s.errors for s in stages),
            retries=sum(s.retries for s in stages),
            skipped=sum(s.skipped for s in stages),
            dead_lettered=sum(s.dead_lettered for s in stages),
            dropped=sum(s.dropped for s in stages),
            late=sum(s.late for s in stages),
            abandoned=sum(s.abandoned for s in stages),
            buffer_size=sum(s.buffer_size for s in stages),
            buffer_capacity=sum(s.buffer_capacity for s in stages),
            latency_p50=_max(s.latency_p50 for s in stages),
            latency_p95=_max(s.latency_p95 for s in stages),
            latency_p99=_max(s.latency_p99 for s in stages),
            stages=stages,
            runs=len(runs) + sum(shape.retired_runs for shape in self._shapes.values()),
            active_runs=sum(not r.done for r in runs),
        )


class _Shape:
    """The runs of one pipe (one list of stages) that a monitor has seen."""

    __slots__ = ("_kept", "retired", "retired_runs", "runs")

    def __init__(self) -> None:
        self.runs: list[RunStats] = []
        self._kept = 16  # how many runs to hold before folding old ones again
        # Runs that ended more than a window ago, folded into per-stage totals so
        # that a pipe streamed once per request does not grow the monitor.
        self.retired: list[StageMetrics] = []
        self.retired_runs = 0

    def add(self, run: RunStats) -> None:
        """A new run. Old ones are folded now and then, so that a pipe streamed once
        per request, with nobody reading the metrics, does not grow the monitor;
        the cost stays constant per run."""
        self.runs.append(run)
        if len(self.runs) > self._kept:
            self._retire()
            self._kept = max(16, 2 * len(self.runs))

    def _retire(self) -> None:
        keep: list[RunStats] = []
        for run in self.runs:
            if run.done_at is None or not run.stages:
                keep.append(run)
                continue
            if run.stages[0].clock.monotonic() - run.done_at < WINDOW_SECONDS:
                keep.append(run)
                continue
            done = [_at_rest(s.statistics()) for s in run.stages]
            self.retired = (
                [_sum_stages((a, b), ()) for a, b in zip(self.retired, done, strict=True)]
                if self.retired
                else done
            )
            self.retired_runs += 1
        self.runs = keep

    def metrics(self) -> list[StageMetrics]:
        """Each stage summed over the runs; empty before any run."""
        self._retire()
        columns: list[list[StageMetrics]] = [
            [_snapshot(run)[i] for run in self.runs] for i in range(self._width())
        ]
        if self.retired:
            for column, total in zip(columns, self.retired, strict=True):
                column.append(total)
        # Latency percentiles over the samples of the runs not yet retired,
        # weighed by the items each sample stands for.
        samples = [
            [x for run in self.runs for x in run.stages[i].latency_samples()]
            for i in range(self._width())
        ]
        return [_sum_stages(tuple(c), sample) for c, sample in zip(columns, samples, strict=True)]

    def _width(self) -> int:
        if self.runs:
            return len(self.runs[0].stages)
        return len(self.retired)


def _snapshot(run: RunStats) -> list[StageMetrics]:
    """The stages of ``run`` now; once it has ended, without what it held."""
    stages = [s.statistics() for s in run.stages]
    return [_ended(m) for m in stages] if run.done else stages


def _ended(m: StageMetrics) -> StageMetrics:
    """A stage of a run that has ended: it holds no buffer and no open window,
    but its recent rates still count while they decay out of the window."""
    return replace(m, buffer_size=0, buffer_capacity=0, throttled=False, windows_open=0)


def _at_rest(m: StageMetrics) -> StageMetrics:
    """A run's counts once it ended more than a window ago: nothing held, no rates,
    no recent latency."""
    return replace(
        _ended(m),
        throughput=0.0,
        backpressure=0.0,
        window=0.0,
        latency_p50=None,
        latency_p95=None,
        latency_p99=None,
    )


def _max(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def _sum_stages(
    column: tuple[StageMetrics, ...], samples: Sequence[tuple[float, int]]
) -> StageMetrics:
    """One stage's metrics over several runs: counts add up; throughput is the
    items of all runs over the longest window; latencies come from ``samples``."""
    if len(column) == 1:
        return column[0]
    active = [s for s in column if s.window > 0]
    window = max(s.window for s in column)
    p50, p95, p99 = weighted_quantiles(samples)
    return StageMetrics(
        name=column[0].name,
        items_in=sum(s.items_in for s in column),
        items_out=sum(s.items_out for s in column),
        errors=sum(s.errors for s in column),
        retries=sum(s.retries for s in column),
        skipped=sum(s.skipped for s in column),
        dead_lettered=sum(s.dead_lettered for s in column),
        dropped=sum(s.dropped for s in column),
        late=sum(s.late for s in column),
        abandoned=sum(s.abandoned for s in column),
        windows_open=sum(s.windows_open for s in column),
        windows_fired=sum(s.windows_fired for s in column),
        # Each run's rate is over its own window (a young run's is short): add
        # up items, not rates.
        throughput=sum(s.throughput * s.window for s in column) / window if window > 0 else 0.0,
        backpressure=max((s.backpressure for s in active), default=0.0),
        buffer_size=sum(s.buffer_size for s in column),
        buffer_capacity=sum(s.buffer_capacity for s in column),
        throttled=any(s.throttled for s in column),
        latency_p50=p50,
        latency_p95=p95,
        latency_p99=p99,
        window=window,
    )
