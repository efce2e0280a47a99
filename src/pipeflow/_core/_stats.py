"""Per-stage statistics: the counters a running stage keeps, and their frozen snapshots.

A running stage owns a :class:`StageStats` and updates it once per chunk of items,
never per item, so counting costs next to nothing. ``statistics()`` returns a
frozen :class:`StageMetrics` record; monitors read those records and nothing else.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ._clock import Clock

__all__ = ["RunStats", "StageMetrics", "StageStats", "StatsSink"]

#: Throughput and backpressure are averaged over this many seconds of recent time.
WINDOW_SECONDS = 10.0
_BUCKET = 1.0
_NBUCKETS = int(WINDOW_SECONDS / _BUCKET)
#: Processing latencies are percentiles of this many most recent samples.
LATENCY_SAMPLES = 1024


@dataclass(frozen=True, slots=True)
class StageMetrics:
    """A snapshot of one stage (one pipe) of a running stream.

    Attributes:
        name: the pipe's name.
        items_in: items the stage received.
        items_out: items it emitted.
        errors: items whose processing failed for good (after any retries),
            whatever the error policy then did with them.
        retries: extra attempts made by a ``Retry`` policy.
        skipped: failed items the policy skipped.
        dead_lettered: failed items sent to a dead-letter sink.
        dropped: items dropped by a full input buffer (overflow strategy).
        late: items that arrived after every window they belong to had fired
            (windowed pipes), whatever the late-data policy did with them.
        windows_open: windows holding items now (windowed pipes).
        windows_fired: windows emitted so far (windowed pipes).
        throughput: items emitted per second over the last ``window`` seconds.
        backpressure: share (0.0-1.0) of that time the stage spent blocked
            because its downstream did not take its output.
        buffer_size: items waiting in the stage's input buffer now.
        buffer_capacity: that buffer's capacity; 0 when the stage has no buffer
            of its own (it runs fused with its upstream).
        throttled: whether the input buffer is above its throttle threshold now.
        latency_p50, latency_p95, latency_p99: processing time per item, in
            seconds, over recent items (``None`` before any was timed). Items
            processed together in one chunk share the chunk's average; fused
            operators share their loop's time evenly; for windowed and batch
            stages a sample is the time to process one window or one batch.
        window: seconds of history behind ``throughput`` and ``backpressure``.
    """

    name: str
    items_in: int = 0
    items_out: int = 0
    errors: int = 0
    retries: int = 0
    skipped: int = 0
    dead_lettered: int = 0
    dropped: int = 0
    late: int = 0
    windows_open: int = 0
    windows_fired: int = 0
    throughput: float = 0.0
    backpressure: float = 0.0
    buffer_size: int = 0
    buffer_capacity: int = 0
    throttled: bool = False
    latency_p50: float | None = None
    latency_p95: float | None = None
    latency_p99: float | None = None
    window: float = 0.0


class _Buffered(Protocol):
    @property
    def size(self) -> int: ...
    @property
    def capacity(self) -> int: ...
    @property
    def throttled(self) -> bool: ...


class StageStats:
    """The live counters of one stage in one run. Mutated by the engine only."""

    __slots__ = (
        "_blocked",
        "_bucket_start",
        "_latencies",
        "_out",
        "_started",
        "blocked_since",
        "buffer",
        "clock",
        "dead_lettered",
        "dropped",
        "errors",
        "items_in",
        "items_out",
        "late",
        "name",
        "retries",
        "skipped",
        "timed",
        "windows_fired",
        "windows_open",
    )

    def __init__(self, name: str, clock: Clock, *, timed: bool) -> None:
        self.name = name
        self.clock = clock
        #: Whether to read the clock per chunk (latency, throughput, backpressure).
        self.timed = timed
        self.items_in = 0
        self.items_out = 0
        self.errors = 0
        self.retries = 0
        self.skipped = 0
        self.dead_lettered = 0
        self.dropped = 0
        self.late = 0
        self.windows_open = 0
        self.windows_fired = 0
        self.buffer: _Buffered | None = None
        self.blocked_since: float | None = None
        self._latencies: deque[float] = deque(maxlen=LATENCY_SAMPLES)
        now = clock.monotonic() if timed else 0.0
        self._started = now
        self._bucket_start = math.floor(now / _BUCKET) * _BUCKET
        # Ring of per-bucket totals: items emitted and seconds blocked.
        self._out = [0] * _NBUCKETS
        self._blocked = [0.0] * _NBUCKETS

    def _rotate(self, now: float) -> int:
        """Advance the ring to ``now``; return the index of the current bucket."""
        start = self._bucket_start
        if now >= start + _BUCKET:
            steps = int((now - start) // _BUCKET)
            for k in range(1, min(steps, _NBUCKETS) + 1):
                i = int((start / _BUCKET + k) % _NBUCKETS)
                self._out[i] = 0
                self._blocked[i] = 0.0
            self._bucket_start = start + steps * _BUCKET
        return int((self._bucket_start / _BUCKET) % _NBUCKETS)

    def record_chunk(self, n_out: int, started: float, ended: float, n_timed: int) -> None:
        """Count ``n_out`` emitted items; ``n_timed`` items took ``ended - started`` together."""
        self._out[self._rotate(ended)] += n_out
        if n_timed:
            self._latencies.append((ended - started) / n_timed)

    def record_latency(self, seconds: float) -> None:
        """One item took ``seconds`` on its own (concurrent stages time each item)."""
        self._latencies.append(seconds)

    def record_out(self, n_out: int, now: float) -> None:
        self._out[self._rotate(now)] += n_out

    def block(self, now: float) -> None:
        """The stage starts waiting for its downstream to take output."""
        self.blocked_since = now

    def unblock(self, now: float) -> None:
        """The wait that :meth:`block` started is over."""
        since = self.blocked_since
        if since is not None:
            self.blocked_since = None
            self._blocked[self._rotate(now)] += now - since

    def statistics(self) -> StageMetrics:
        """A frozen snapshot of the counters now."""
        buf = self.buffer
        window = 0.0
        throughput = backpressure = 0.0
        if self.timed:
            now = self.clock.monotonic()
            self._rotate(now)
            # The ring holds the current, partial bucket and the full ones before it.
            covered = (_NBUCKETS - 1) * _BUCKET + (now - self._bucket_start)
            window = min(covered, now - self._started)
            if window > 0:
                blocked = sum(self._blocked)
                if self.blocked_since is not None:
                    blocked += now - self.blocked_since
                throughput = sum(self._out) / window
                backpressure = max(0.0, min(1.0, blocked / window))
        p50 = p95 = p99 = None
        if self._latencies:
            ordered = sorted(self._latencies)
            p50, p95, p99 = (_quantile(ordered, q) for q in (0.50, 0.95, 0.99))
        return StageMetrics(
            name=self.name,
            items_in=self.items_in,
            items_out=self.items_out,
            errors=self.errors,
            retries=self.retries,
            skipped=self.skipped,
            dead_lettered=self.dead_lettered,
            dropped=self.dropped,
            late=self.late,
            windows_open=self.windows_open,
            windows_fired=self.windows_fired,
            throughput=throughput,
            backpressure=backpressure,
            buffer_size=buf.size if buf is not None else 0,
            buffer_capacity=buf.capacity if buf is not None else 0,
            throttled=buf.throttled if buf is not None else False,
            latency_p50=p50,
            latency_p95=p95,
            latency_p99=p99,
            window=window,
        )


def _quantile(ordered: list[float], q: float) -> float:
    """Nearest-rank quantile of an ascending list."""
    rank = max(0, math.ceil(q * len(ordered)) - 1)
    return ordered[rank]


class RunStats:
    """The stages of one ``stream()`` run, in pipeline order."""

    __slots__ = ("_views", "done", "done_at", "name", "stages")

    def __init__(self, name: str, stages: list[StageStats]) -> None:
        self.name = name
        self.stages = stages
        self.done = False
        #: The clock's monotonic time when the run ended (``None`` while it runs).
        self.done_at: float | None = None
        self._views: list[RunStats] = []

    def view(self, name: str, start: int, stop: int) -> RunStats:
        """Stages ``start:stop`` as a run of their own, for the monitor of a pipe or
        pipeline composed into this one. It ends when this run ends."""
        view = RunStats(name, self.stages[start:stop])
        self._views.append(view)
        return view

    def finish(self) -> None:
        """Mark the run ended, at the time its stages' clock reads."""
        if not self.done:
            self.done = True
            self.done_at = self.stages[0].clock.monotonic() if self.stages else 0.0
            for view in self._views:
                view.finish()


class StatsSink(Protocol):
    """What ``set_monitor`` accepts: something that is told of every run."""

    def attach(self, run: RunStats) -> None:
        """Called once when a run of a monitored pipe starts."""
        ...
