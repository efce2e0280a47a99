"""A plain-Python reference model of pipeflow pipelines, for differential tests.

A pipeline is described by a ``Plan``: a source and 2 to 5 ``StageSpec`` s. The
model runs the plan stage by stage over the list of source items, with no
event loop: each item travels as ``(t, Tok)``, the virtual time it reaches the
stage and the token itself. Times matter only to processing-time windows, to
event-time windows with idle advance and to batches with ``max_wait``; on a
list, a generator or an acknowledging source everything happens at time 0, and
a live source emits item ``i`` at ``times[i]``. Where none of those stages is in
the plan, the consumer may be slow and ``Retry`` may wait on the clock: the
results do not depend on when items arrive.

Every token records the source items it came from (``src``), so that a test can
tell which source items a result covers (for acknowledgements) and which
failures the model predicts. Tokens are unique within a stage's input: each
transform is injective on ``val`` and a window's or a batch's token records its
contents in ``trail``.

What the model cannot predict exactly it says so: ``Reference.exact_until`` is
the index of the first stage whose output depends on how an unordered stage
before it interleaved equal-time items, or on a timer and an item falling due
at the same virtual instant; from that stage on the test checks invariants
instead of equality (see the test module).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

#: What ``VirtualClock().now()`` reads at monotonic 0, in microseconds since the epoch.
T0_US = (datetime(2026, 1, 1, tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)).days * 86_400_000_000

#: Fails "for good" under any number of retries.
ALWAYS = 10**6


@dataclass(frozen=True, slots=True)
class Tok:
    """One item in flight: a value, an event time (epoch seconds), the source
    indices it derives from, and the contents of the window or batch that made it."""

    val: int
    ts: float
    src: frozenset[int]
    trail: tuple[Any, ...] = ()


def us(seconds: float) -> int:
    """Seconds as whole microseconds, rounded as pipeflow rounds event times."""
    return round(seconds * 1e6)


# -- specifications ---------------------------------------------------------------


@dataclass(frozen=True)
class FailSpec:
    """A stage function fails on the items whose value is ``rem`` modulo ``mod``,
    its first ``times`` calls for each (``ALWAYS``: every call)."""

    mod: int
    rem: int
    times: int

    def hits(self, val: int) -> bool:
        return val % self.mod == self.rem


@dataclass(frozen=True)
class WindowSpec:
    """``kind``: tumbling, sliding, session or count; sizes in seconds."""

    kind: str
    size: float = 1.0
    slide: float = 0.5
    gap: float = 1.0
    count: int = 2
    event_time: bool = False
    keys: int | None = None
    lateness: float = 0.0
    idle: bool = False
    #: Whether the stage's ``FailSpec`` applies to the key function (keyed windows)
    #: rather than to the aggregation.
    key_fails: bool = False

    def key_of(self, tok: Tok) -> Hashable:
        return None if self.keys is None else tok.val % self.keys


@dataclass(frozen=True)
class StageSpec:
    """One stage of a plan.

    ``kind`` is one of ``map``, ``filter``, ``flat_map``, ``item_pipe`` (a
    ``StreamPipe`` subclass overriding ``process_item``), ``stream_pipe`` (one
    overriding ``process_stream``), ``window`` and ``batch``. ``variant`` says how
    the function is written: ``sync``, ``async`` or (``flat_map`` only) ``agen``.
    ``param`` chooses the transform: for ``filter`` 0 keeps all, 1 drops all,
    ``n >= 2`` drops values divisible by ``n``; for ``flat_map`` 0 to 3 elements
    per item (4: ``val % 4`` of them); for ``map`` the constant added.
    ``fail`` picks the items (for a window: the windows, or with
    ``WindowSpec.key_fails`` the items whose key function fails) that fail under
    ``policy``: ``raise``, ``skip``, ``dead_letter`` (to a list), ``dead_letter_pipe``,
    ``dead_letter_async`` (an async callable), ``retry_<one of those>`` (``attempts``
    in all) or ``callable``/``callable_async`` (deciding by ``decide``).
    """

    kind: str
    variant: str = "sync"
    param: int = 0
    buffer: int | None = None
    throttle: float = 0.8
    concurrency: int = 1
    ordered: bool = True
    policy: str = "raise"
    attempts: int = 2
    fail: FailSpec | None = None
    window: WindowSpec | None = None
    batch_size: int = 2
    max_wait: float | None = None
    max_weight: int | None = None

    @property
    def timed(self) -> bool:
        """Whether when items arrive changes what this stage gives: processing-time
        windows, idle advance, a batch's ``max_wait``."""
        w = self.window
        if w is not None:
            return not w.event_time or w.idle
        return self.kind == "batch" and self.max_wait is not None

    @property
    def may_raise(self) -> bool:
        """Whether a failure can end the run under this stage's policy."""
        return self.policy in ("raise", "retry_raise")


@dataclass(frozen=True)
class Plan:
    """A source and the stages to run over it.

    Sources: ``list``; ``gen``, a sync generator; ``live``, a ``TestSource``
    emitting item ``i`` at ``times[i]`` (it takes acknowledgements); ``clocked``,
    a plain async generator sleeping on the clock until each item's time; ``ack``,
    an async source that takes acknowledgements.
    """

    source: str
    toks: tuple[Tok, ...]
    times: tuple[float, ...]
    tail: float
    stages: tuple[StageSpec, ...]
    #: Seconds the consumer spends on each result (only with stages that no timing affects).
    slow: float = 0.0
    #: Whether the consumer takes the results a list at a time (``Stream.chunks()``).
    chunks: bool = False
    #: The consumer leaves the stream once it has this many results.
    stop: int | None = None
    #: Seconds a ``Retry`` waits before its second attempt (only with stages that
    #: no timing affects: the wait moves the clock).
    backoff: float = 0.0

    @property
    def timed(self) -> bool:
        """Whether the source emits its items apart in virtual time."""
        return self.source in ("live", "clocked")

    @property
    def end_time(self) -> float:
        """When the source ends, in virtual seconds."""
        if not self.timed:
            return 0.0
        return (self.times[-1] if self.times else 0.0) + self.tail

    def name(self, i: int) -> str:
        return f"s{i}_{self.stages[i].kind}"


# -- the transforms, shared by the real stages and the model ------------------------


def map_val(spec: StageSpec, val: int) -> int:
    return val * 2 + spec.param


def item_pipe_val(val: int) -> int:
    return val * 3 + 1


def keeps(spec: StageSpec, val: int) -> bool:
    if spec.param == 0:
        return True
    if spec.param == 1:
        return False
    return val % spec.param != 0


def expand(spec: StageSpec, tok: Tok) -> list[Tok]:
    n = tok.val % 4 if spec.param == 4 else spec.param
    return [replace(tok, val=tok.val * 4 + j) for j in range(n)]


def window_token(spec: WindowSpec, key: Hashable, start: int, end: int, items: list[Tok]) -> Tok:
    """The result of one window: its contents and bounds, in a token."""
    vals = tuple(t.val for t in items)
    src = frozenset().union(*(t.src for t in items))
    trail = (spec.kind, key, start, end, vals, frozenset(items))
    return Tok(sum(vals) + len(vals), start / 1e6, src, trail)


def weight(tok: Tok) -> int:
    """An item's weight in a batch with ``max_weight``."""
    return tok.val % 3 + 1


def batch_token(batch: list[Tok], results: list[Tok]) -> Tok:
    """The result of one batch; its trail names the whole batch (results may be
    fewer: skipped items leave none)."""
    vals = tuple(t.val for t in results)
    src = frozenset().union(*(t.src for t in results))
    return Tok(sum(vals), results[0].ts if results else 0.0, src, ("batch", vals, frozenset(batch)))


def window_ident(
    kind: str, key: Hashable, start: int, end: int, vals: tuple[int, ...], items: frozenset[Tok]
) -> Any:
    """What identifies a window in failures and dead letters (``items`` tells apart
    two count windows of equal values and times)."""
    return ("window", kind, key, start, end, vals, items)


def fail_value(ident: Any) -> int:
    """The value a failure predicate looks at: a token's value, a window's sum."""
    if isinstance(ident, Tok):
        return ident.val
    return sum(ident[5])


def decide(ident: Any) -> str:
    """The callable policy's decision, by the failed item's value."""
    return "skip" if fail_value(ident) % 2 == 0 else "dead_letter"


# -- the model ----------------------------------------------------------------------


@dataclass
class Counts:
    """The counters of one stage, as ``StageMetrics`` has them."""

    errors: int = 0
    retries: int = 0
    skipped: int = 0
    dead_lettered: int = 0
    late: int = 0


@dataclass
class StageOutcome:
    counts: Counts = field(default_factory=Counts)
    dead: list[Any] = field(default_factory=list)
    late: list[Tok] = field(default_factory=list)
    items_in: int = 0
    items_out: int = 0
    windows_fired: int = 0


class Ambiguous(Exception):
    """The model cannot tell what the run does: a timer and an item fall due at once."""


Timed = list[tuple[float, Tok]]


@dataclass
class Reference:
    """What the model predicts for a plan.

    ``outputs`` are the results of the first ``exact_until`` stages, run as if
    every ``"raise"`` were ``"skip"``; ``raises`` the failures a ``"raise"``
    policy would end the run with, as ``(stage name, item, attempts)``; each
    stage's ``dead`` letters are ``(item, attempts)``; ``ordered``
    whether the results come in a defined order.
    """

    outputs: list[Tok]
    stages: list[StageOutcome]
    raises: list[tuple[str, Any, int]]
    ordered: bool
    exact_until: int
    sorted_windows: list[bool]

    @property
    def exact(self) -> bool:
        return self.exact_until == len(self.stages)


def order_flags(plan: Plan) -> tuple[list[bool], int]:
    """For each stage whether its input comes in a defined order, and the index of
    the first stage whose results depend on the order equal-time items took.

    An unordered concurrent stage interleaves the items that reach it at one
    virtual instant as its calls complete. Stateless stages and processing-time
    time windows do not care (the model compares multisets); event-time and
    count windows, batches and a ``process_stream`` that pairs items do.
    """
    ordered = True
    flags: list[bool] = []
    for i, s in enumerate(plan.stages):
        flags.append(ordered)
        sensitive = s.kind in ("batch", "stream_pipe") or (
            s.kind == "window"
            and s.window is not None
            and (s.window.event_time or s.window.kind == "count")
        )
        if not ordered and sensitive:
            return flags + [False] * (len(plan.stages) - i - 1), i
        if s.concurrency > 1 and not s.ordered and s.kind != "batch":
            ordered = False
    return flags, len(plan.stages)


class _Model:
    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.raises: list[tuple[str, Any, int]] = []

    def resolve(self, spec: StageSpec, name: str, ident: Any, out: StageOutcome) -> bool:
        """Whether an item's call succeeds in the end; counts what the policy does."""
        fail = spec.fail
        if fail is None or not fail.hits(fail_value(ident)):
            return True
        policy = spec.policy
        attempts = 1
        if policy.startswith("retry"):
            if spec.attempts >= 2:
                if fail.times < spec.attempts:
                    out.counts.retries += fail.times
                    return True
                out.counts.retries += spec.attempts - 1
                attempts = spec.attempts
            policy = policy.removeprefix("retry_")
        elif policy.startswith("callable"):
            policy = decide(ident)
        out.counts.errors += 1
        if policy == "raise":
            self.raises.append((name, ident, attempts))
        elif policy == "skip":
            out.counts.skipped += 1
        else:
            out.counts.dead_lettered += 1
            out.dead.append((ident, attempts))
        return False

    def item_stage(self, i: int, xs: Timed, out: StageOutcome) -> Timed:
        spec, name = self.plan.stages[i], self.plan.name(i)
        result: Timed = []
        for t, tok in xs:
            if not self.resolve(spec, name, tok, out):
                continue
            if spec.kind == "map":
                result.append((t, replace(tok, val=map_val(spec, tok.val))))
            elif spec.kind == "item_pipe":
                result.append((t, replace(tok, val=item_pipe_val(tok.val))))
            elif spec.kind == "filter":
                if keeps(spec, tok.val):
                    result.append((t, tok))
            else:
                result += [(t, e) for e in expand(spec, tok)]
        return result

    def stream_stage(self, xs: Timed, end: float) -> Timed:
        """Pairs: an item is held until the next one comes; the last at the end."""
        result: Timed = []
        held: Tok | None = None
        for t, tok in xs:
            bumped = replace(tok, val=tok.val + 1)
            if held is None:
                held = bumped
                continue
            result += [(t, held), (t, bumped)]
            held = None
        if held is not None:
            result.append((end, held))
        return result

    def batch_stage(self, i: int, xs: Timed, end: float, out: StageOutcome) -> Timed:
        spec, name = self.plan.stages[i], self.plan.name(i)
        groups: list[tuple[float, list[Tok]]] = []
        pending: list[Tok] = []
        due = 0.0
        load = 0
        for t, tok in xs:
            if pending and spec.max_wait is not None:
                if due == t:
                    raise Ambiguous(f"batch due at {t}, when an item arrives")
                if due < t:
                    groups.append((due, pending))
                    pending = []
            if pending and spec.max_weight is not None and load + weight(tok) > spec.max_weight:
                groups.append((t, pending))  # the item would take the batch over its weight
                pending = []
            if not pending:
                due, load = t + (spec.max_wait or 0.0), 0
            pending.append(tok)
            load += weight(tok)
            if len(pending) == spec.batch_size:
                groups.append((t, pending))
                pending = []
        if pending:
            timed_out = spec.max_wait is not None and due < end
            groups.append((due if timed_out else end, pending))
        result: Timed = []
        for t, group in groups:
            kept = [replace(x, val=x.val + 1) for x in group if self.resolve(spec, name, x, out)]
            result.append((t, batch_token(group, kept)))
        return result

    def window_stage(self, i: int, xs: Timed, end: float, sort: bool, out: StageOutcome) -> Timed:
        spec, name = self.plan.stages[i], self.plan.name(i)
        w = spec.window
        assert w is not None
        logic = _Windows(w)
        result: Timed = []

        def emit(fired: list[_Open], when: Callable[[_Open], float]) -> None:
            out.windows_fired += len(fired)
            for win in fired:
                vals = tuple(x.val for x in win.items)
                if sort:
                    vals = tuple(sorted(vals))
                ident = window_ident(
                    w.kind, win.key, win.start, win.end, vals, frozenset(win.items)
                )
                if w.key_fails or self.resolve(spec, name, ident, out):
                    items = sorted(win.items, key=lambda x: x.val) if sort else win.items
                    result.append((when(win), window_token(w, win.key, win.start, win.end, items)))

        def at(t: float) -> Callable[[_Open], float]:
            return lambda _: t

        def by_clock(win: _Open) -> float:
            return (win.end - T0_US) / 1e6

        # Event time: the watermark is the newest event time minus the lateness; with
        # idle advance it then moves with the clock from when that event came (``since``),
        # never going back. Processing time: the clock.
        lateness = us(w.lateness)
        max_ts: int | None = None
        since = 0.0
        wm: int | None = None

        def idle_mark(t: float) -> int | None:
            if not w.idle or max_ts is None or wm is None:
                return wm
            return max(wm, max_ts - lateness + us(t - since))

        def by_idle(win: _Open) -> float:
            assert max_ts is not None
            return since + (win.end - (max_ts - lateness)) / 1e6

        for t, tok in xs:
            if w.event_time:
                now = idle_mark(t)
                if now is not None and now != wm:
                    emit(logic.fire(now), by_idle)  # each by its timer
                    wm = now
            else:
                emit(logic.fire(T0_US + us(t)), by_clock)  # each by its timer, at its end
                wm = T0_US + us(t)
            if w.key_fails and not self.resolve(spec, name, tok, out):
                continue  # its key function failed: the item is in no window
            if w.event_time:
                ts = us(tok.ts)
                if max_ts is None or ts > max_ts:
                    max_ts, since = ts, t
                    if wm is None or ts - lateness > wm:
                        wm = ts - lateness
                        emit(logic.fire(wm), at(t))
            else:
                ts = T0_US + us(t)
            if not logic.add(tok, w.key_of(tok), ts, wm):
                out.counts.late += 1
                out.late.append(tok)
            if w.kind == "count":
                emit(logic.fire(0), at(t))  # full: fires at once
        if not w.event_time:
            emit(logic.fire(T0_US + us(end)), by_clock)
        elif (now := idle_mark(end)) is not None:
            emit(logic.fire(now), by_idle)
        emit(logic.flush(), at(end))
        return result


@dataclass
class _Open:
    key: Hashable
    start: int
    end: int
    seq: int
    items: list[Tok] = field(default_factory=list)


class _Windows:
    """Windows as the README describes them, kept in the simplest way."""

    def __init__(self, spec: WindowSpec) -> None:
        self.spec = spec
        self.open: list[_Open] = []
        self.full: list[_Open] = []
        self.seq = 0

    def _new(self, key: Hashable, start: int, end: int) -> _Open:
        self.seq += 1
        w = _Open(key, start, end, self.seq)
        self.open.append(w)
        return w

    def add(self, tok: Tok, key: Hashable, ts: int, wm: int | None) -> bool:
        """Put ``tok`` in its windows; ``False`` if it is late."""
        s = self.spec
        lowest = -(2**63) if wm is None else wm
        if s.kind == "count":
            w = next((o for o in self.open if o.key == key), None) or self._new(key, ts, ts)
            w.items.append(tok)
            w.end = ts
            if len(w.items) == s.count:
                self.open.remove(w)
                self.full.append(w)
            return True
        if s.kind == "session":
            gap = us(s.gap)
            touching = [o for o in self.open if o.key == key and ts < o.end and ts + gap > o.start]
            if not touching:
                if ts + gap <= lowest:
                    return False
                self._new(key, ts, ts + gap).items.append(tok)
                return True
            first = touching[0]
            for other in touching[1:]:
                first.items += other.items
                first.start = min(first.start, other.start)
                first.end = max(first.end, other.end)
                self.open.remove(other)
            first.items.append(tok)
            first.start = min(first.start, ts)
            first.end = max(first.end, ts + gap)
            return True
        size = us(s.size)
        step = us(s.slide) if s.kind == "sliding" else size
        start = ts - ts % step
        accepted = False
        while start > ts - size:
            if start + size <= lowest:
                break
            found = next((o for o in self.open if (o.key, o.start) == (key, start)), None)
            (found or self._new(key, start, start + size)).items.append(tok)
            accepted = True
            start -= step
        return accepted

    def fire(self, wm: int) -> list[_Open]:
        """The windows complete at ``wm``: by end, then start, then creation."""
        if self.spec.kind == "count":
            full, self.full = self.full, []
            return full
        fired = sorted((o for o in self.open if o.end <= wm), key=lambda o: (o.end, o.start, o.seq))
        self.open = [o for o in self.open if o.end > wm]
        return fired

    def flush(self) -> list[_Open]:
        if self.spec.kind == "count":
            rest = sorted(self.open, key=lambda o: (o.end, o.seq))
            self.open = []
            return self.fire(0) + rest
        return self.fire(2**63)


def reference(plan: Plan) -> Reference:
    """Run ``plan`` through the model."""
    model = _Model(plan)
    flags, exact_until = order_flags(plan)
    end = plan.end_time
    xs: Timed = [(plan.times[i] if plan.timed else 0.0, tok) for i, tok in enumerate(plan.toks)]
    outcomes = [StageOutcome() for _ in plan.stages]
    sorted_windows = [not ordered for ordered in flags]
    for i, spec in enumerate(plan.stages):
        if i >= exact_until:
            break
        out = outcomes[i]
        out.items_in = len(xs)
        try:
            if spec.kind == "window":
                xs = model.window_stage(i, xs, end, sorted_windows[i], out)
            elif spec.kind == "batch":
                xs = model.batch_stage(i, xs, end, out)
            elif spec.kind == "stream_pipe":
                xs = model.stream_stage(xs, end)
            else:
                xs = model.item_stage(i, xs, out)
        except Ambiguous:
            exact_until = i
            break
        out.items_out = len(xs)
    ordered = all(flags) and not any(
        s.concurrency > 1 and not s.ordered and s.kind != "batch" for s in plan.stages
    )
    return Reference(
        outputs=[tok for _, tok in xs],
        stages=outcomes,
        raises=model.raises,
        ordered=ordered,
        exact_until=exact_until,
        sorted_windows=sorted_windows,
    )


__all__ = [
    "ALWAYS",
    "T0_US",
    "Ambiguous",
    "Counts",
    "FailSpec",
    "Plan",
    "Reference",
    "StageOutcome",
    "StageSpec",
    "Tok",
    "WindowSpec",
    "batch_token",
    "decide",
    "expand",
    "fail_value",
    "item_pipe_val",
    "keeps",
    "map_val",
    "order_flags",
    "reference",
    "us",
    "weight",
    "window_ident",
    "window_token",
]
