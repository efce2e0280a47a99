"""Per-stage statistics: the counters a running stage keeps, and their frozen snapshots.

A running stage owns a ``StageStats`` and updates it once per chunk of items,
never per item, so counting costs next to nothing. The consumer's loop does the
same for the last stage's throughput, which follows what the consumer takes.
``statistics()`` returns a frozen ``StageMetrics`` record; monitors read
those records and nothing else.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from operator import length_hint
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ._clock import Clock

__all__ = ["RunStats", "StageMetrics", "StageStats", "StatsSink", "weighted_quantiles"]

#: Throughput and backpressure are averaged over this many seconds of recent time.
WINDOW_SECONDS = 10.0
_BUCKET = 1.0
_NBUCKETS = int(WINDOW_SECONDS / _BUCKET)
#: Processing latencies are percentiles of this many most recent samples.
LATENCY_SAMPLES = 1024


@dataclass(frozen=True, slots=True)
class StageMetrics:
    """A snapshot of one stage (one pipe) of a running stream.

    ``Stream.statistics()`` returns one per stage for one run; a monitor's
    ``StreamMetrics.stages`` holds them summed over the runs it watched. Counters
    are kept on every run; ``throughput``, ``backpressure`` and the latencies are
    measured only on runs a ``StreamMonitor`` watches. In a monitor's metrics, a
    run that has ended holds nothing: it adds nothing to ``buffer_size``,
    ``buffer_capacity``, ``throttled`` or ``windows_open``. Frozen.

    Attributes:
        name: the pipe's name.
        items_in: items the stage received.
        items_out: items it emitted, counted a chunk at a time as it hands them
            on: the last stage's may run one chunk ahead of what the consumer
            has taken.
        errors: items whose processing failed for good (after any retries),
            whatever the error policy then did with them.
        retries: extra attempts made by a ``Retry`` policy.
        skipped: failed items the policy skipped.
        dead_lettered: failed items sent to a dead-letter sink.
        dropped: items dropped by a full input buffer (overflow strategy).
        late: items that arrived after every window they belong to had fired
            (windowed pipes), whatever the late-data policy did with them.
        abandoned: items the stage held when its run stopped before the end
            (cancelled, closed early, or failed): in its input buffer, in
            progress, in open windows or in a partial batch. They were not
            delivered; a source that redelivers what was not acknowledged
            brings them back.
        windows_open: windows holding items now (windowed pipes).
        windows_fired: windows closed and dealt with so far: emitted, or handed to
            the error policy (windowed pipes).
        throughput: items handed on per second over the last ``window`` seconds:
            for the last stage of a run, results as the consumer takes them; for a
            stage that fills the next one's buffer, items as they go in.
        backpressure: share (0.0-1.0) of that time the stage spent blocked
            because its downstream did not take its output.
        buffer_size: items in the stage's input buffer now: waiting, or taken out by
            the stage and not yet passed on (they hold their room until then).
        buffer_capacity: that buffer's capacity; 0 when the stage has no buffer
            of its own (it runs fused with its upstream).
        throttled: whether the input buffer is above its throttle threshold now.
        latency_p50, latency_p95, latency_p99: processing time per item, in
            seconds, over recent samples, each weighed by the items it stands
            for (``None`` before any was timed). Items
            processed together in one chunk share the chunk's average; fused
            operators share their loop's time evenly; for windowed and batch
            stages a sample is the time to process one window or one batch.
        window: seconds of history behind ``throughput`` and ``backpressure``,
            at most 10.
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
    abandoned: int = 0
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
        "_chunk",
        "_chunk_len",
        "_chunk_seen",
        "_chunk_taken",
        "_latencies",
        "_out",
        "_started",
        "abandoned",
        "blocked_since",
        "buffer",
        "clock",
        "counted_on_handover",
        "dead_lettered",
        "dropped",
        "errors",
        "held",
        "held_in",
        "items_in",
        "items_out",
        "late",
        "live",
        "name",
        "on_finish",
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
        #: Whether the stage's throughput counts its output as it is handed on
        #: (taken by the consumer, or put into the next stage's buffer), by
        #: ``record_delivered`` and ``start_delivery``, rather than as computed.
        self.counted_on_handover = False
        self.items_in = 0
        self.items_out = 0
        self.errors = 0
        self.retries = 0
        self.skipped = 0
        self.dead_lettered = 0
        self.dropped = 0
        self.late = 0
        self.abandoned = 0
        #: Items the stage holds by design, if it does (windows, a partial batch,
        #: calls in progress), and where ("in open windows"): told by the stage's
        #: loop, read when a run stops early.
        self.held: Callable[[], int] | None = None
        self.held_in = "in progress"
        self.windows_open = 0
        self.windows_fired = 0
        self.buffer: _Buffered | None = None
        #: Called once when the run ends (by its error handler, to sum up its log).
        self.on_finish: Callable[[], None] | None = None
        #: What brings the counts up to date from counters that loops keep in
        #: locals of their own (fused operators reading an async source, chains
        #: of ``process_stream`` overrides in an untimed run): called before the
        #: counts are read (``Run.flush``) and when such a loop ends.
        self.live: list[Callable[[], None]] = []
        self.blocked_since: float | None = None
        #: Recent processing times: (seconds per item, items it stands for).
        self._latencies: deque[tuple[float, int]] = deque(maxlen=LATENCY_SAMPLES)
        now = clock.monotonic() if timed else 0.0
        self._started = now
        self._bucket_start = math.floor(now / _BUCKET) * _BUCKET
        # Ring of per-bucket totals: items emitted (taken, if it feeds the
        # consumer) and seconds blocked.
        self._out = [0.0] * _NBUCKETS
        self._blocked = [0.0] * _NBUCKETS
        # The chunk the consumer is taking items from (see start_delivery), its
        # length, the items of it already counted, and when they were counted.
        self._chunk: Iterator[Any] | None = None
        self._chunk_len = self._chunk_taken = 0
        self._chunk_seen = 0.0

    def _rotate(self, now: float) -> int:
        """Advance the ring to ``now``; return the index of the current bucket."""
        start = self._bucket_start
        if now >= start + _BUCKET:
            steps = int((now - start) // _BUCKET)
            for k in range(1, min(steps, _NBUCKETS) + 1):
                i = _index(start + k * _BUCKET)
                self._out[i] = 0.0
                self._blocked[i] = 0.0
            self._bucket_start = start + steps * _BUCKET
        return _index(self._bucket_start)

    def _spread(self, ring: list[float], start: float, end: float, amount: float) -> None:
        """Add ``amount``, spread evenly over the time from ``start`` to ``end``, to the
        buckets that time covers; the part older than the ring keeps is dropped.

        ``end`` lies in the current bucket: call :meth:`_rotate` first.
        """
        top = self._bucket_start
        if start >= top:
            ring[_index(top)] += amount
            return
        rate = amount / (end - start)
        for k in range(_NBUCKETS):
            bucket = top - k * _BUCKET
            if bucket + _BUCKET <= start:
                break
            ring[_index(bucket)] += (min(end, bucket + _BUCKET) - max(start, bucket)) * rate

    def record_chunk(self, n_out: int, started: float, ended: float, n_timed: int) -> None:
        """Count ``n_out`` emitted items; ``n_timed`` items took ``ended - started`` together."""
        if not self.counted_on_handover:
            self._out[self._rotate(ended)] += n_out
        if n_timed:
            self._latencies.append(((ended - started) / n_timed, n_timed))

    def record_latency(self, seconds: float) -> None:
        """One item took ``seconds`` on its own (concurrent stages time each item)."""
        self._latencies.append((seconds, 1))

    def latency_samples(self) -> list[tuple[float, int]]:
        """The recent latency samples, ``(seconds per item, items)``, for a monitor
        to combine runs."""
        return list(self._latencies)

    def record_out(self, n_out: int, now: float) -> None:
        if not self.counted_on_handover:
            self._out[self._rotate(now)] += n_out

    def record_delivered(self, n: int, now: float) -> None:
        """``n`` results were handed on at once: a list the consumer took from
        ``chunks()``, or items put into the next stage's buffer."""
        self._out[self._rotate(now)] += n

    def start_delivery(self, it: Iterator[Any], n: int, now: float) -> None:
        """The consumer starts taking the ``n`` results of ``it``, one by one.

        They count in throughput as it takes them: :meth:`statistics` reads how far
        ``it`` has got, so the consumer does no work per item for the count.
        """
        self._chunk = it
        self._chunk_len = n
        self._chunk_taken = 0
        self._chunk_seen = now

    def end_delivery(self, now: float) -> None:
        """The consumer is done with the chunk, or has stopped: count what it took."""
        if self._chunk is not None:
            self._rotate(now)
            self._count_taken(self._chunk, now)
            self._chunk = None

    def _count_taken(self, chunk: Iterator[Any], now: float) -> None:
        """Count the results taken since the last look, spread over the time since then."""
        taken = self._chunk_len - length_hint(chunk)
        if taken > self._chunk_taken:
            self._spread(self._out, self._chunk_seen, now, taken - self._chunk_taken)
            self._chunk_taken = taken
        self._chunk_seen = now

    def block(self, now: float) -> None:
        """The stage starts waiting for its downstream to take output."""
        self.blocked_since = now

    def unblock(self, now: float) -> None:
        """The wait that :meth:`block` started is over: count it in the seconds it covered."""
        since = self.blocked_since
        if since is not None:
            self.blocked_since = None
            self._rotate(now)
            self._spread(self._blocked, since, now, now - since)

    def statistics(self) -> StageMetrics:
        """A frozen snapshot of the counters now."""
        buf = self.buffer
        window = 0.0
        throughput = backpressure = 0.0
        if self.timed:
            now = self.clock.monotonic()
            self._rotate(now)
            if self._chunk is not None:
                self._count_taken(self._chunk, now)
            # The ring holds the current, partial bucket and the full ones before it.
            covered = (_NBUCKETS - 1) * _BUCKET + (now - self._bucket_start)
            window = min(covered, now - self._started)
            if window > 0:
                blocked = sum(self._blocked)
                if self.blocked_since is not None:
                    # Only the part of a block still going on that lies in the window.
                    blocked += now - max(self.blocked_since, now - window)
                throughput = sum(self._out) / window
                backpressure = max(0.0, min(1.0, blocked / window))
        p50, p95, p99 = weighted_quantiles(self._latencies)
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
            abandoned=self.abandoned,
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


def _index(bucket_start: float) -> int:
    """The ring slot of the bucket starting at ``bucket_start``."""
    return int((bucket_start / _BUCKET) % _NBUCKETS)


def weighted_quantiles(
    samples: Iterable[tuple[float, int]],
) -> tuple[float | None, float | None, float | None]:
    """p50, p95 and p99 (nearest rank) of latency samples, each ``(seconds, items)``
    standing for that many items; ``None`` without samples."""
    ordered = sorted(samples)
    total = sum(n for _, n in ordered)
    if not total:
        return None, None, None
    out: list[float] = []
    seen, i = 0, -1
    for q in (0.50, 0.95, 0.99):
        rank = max(1, math.ceil(q * total))
        while seen < rank:
            i += 1
            seen += ordered[i][1]
        out.append(ordered[i][0])
    return out[0], out[1], out[2]


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
        """Mark the run ended, at the time its stages' clock reads.

        Nothing waits in a run that has ended: a stage blocked at that moment (the
        last one, by a consumer that stopped taking results) is blocked no more,
        and the results the consumer took from its last chunk are counted. Each
        stage's ``on_finish`` is called, once.
        """
        if not self.done:
            self.done = True
            now = self.done_at = self.stages[0].clock.monotonic() if self.stages else 0.0
            for stage in self.stages:
                stage.unblock(now)
                stage.end_delivery(now)
                end, stage.on_finish = stage.on_finish, None
                if end is not None:
                    end()
            for view in self._views:
                view.finish()


class StatsSink(Protocol):
    """What ``set_monitor`` accepts: something that is told of every run."""

    def attach(self, run: RunStats) -> None:
        """Called once when a run of a monitored pipe starts."""
        ...
