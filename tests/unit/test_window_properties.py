"""Windowed pipes against small reference models, on random out-of-order event streams.

The models are written from the documented semantics, item by item:

- watermark = the largest event time seen - allowed_lateness (idle_advance=False,
  so the clock never moves it);
- a time window fires once the watermark reaches its end; a sliding-window item
  goes only into its windows whose end is still after the watermark, and it is
  late when none is left;
- a session is [first, last + gap) per key; an item overlapping sessions merges
  them; a new session whose end is at or before the watermark is late;
- the end of the stream flushes whatever is open.

Windows with the same end may come out in any order among themselves, so the
output is compared as: ends never decrease, and per end the same multiset.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeflow.streams import LateItemError, Pipeable, Window, WindowedStreamPipe, flat_map
from pipeflow.testing import TestSource, VirtualClock

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MS = timedelta(milliseconds=1)

Item = tuple[int, str, int]  # (event time in ms, key, unique id)
# A window as compared: (end, key, start, ids of its items, sorted)
Emitted = tuple[int, Any, int, tuple[int, ...]]

SETTINGS = settings(max_examples=100, deadline=None)

events = st.lists(st.tuples(st.integers(0, 3000), st.sampled_from("abc")), max_size=40)


def numbered(raw: list[tuple[int, str]]) -> list[Item]:
    return [(t, k, i) for i, (t, k) in enumerate(raw)]


def event_time(item: Item) -> datetime:
    return EPOCH + item[0] * MS


def epoch_seconds(item: Item) -> float:
    return item[0] / 1000


def key_of(item: Item) -> str:
    return item[1]


def to_ms(d: datetime) -> int:
    return (d - EPOCH) // MS


async def agen(items: Iterable[Item]) -> AsyncIterator[Item]:
    for x in items:
        await asyncio.sleep(0)
        yield x


@dataclass
class Run:
    windows: list[Emitted]
    late: int
    routed: list[int]
    windows_fired: int
    windows_open: int


def run_pipe(
    pipe: WindowedStreamPipe[Item, Window[Item]],
    items: list[Item],
    sink: list[LateItemError] | None,
    one_by_one: bool,
) -> Run:
    """Stream ``items`` through ``pipe`` on a VirtualClock; collect windows and counters."""

    async def main() -> Run:
        clock = VirtualClock()
        source = agen(items) if one_by_one else items
        stream = pipe.stream(source, clock=clock)
        async with stream:
            out = [
                (to_ms(w.end), w.key, to_ms(w.start), tuple(sorted(x[2] for x in w)))
                async for w in stream
            ]
        [stats] = stream.statistics()
        routed = [e.item[2] for e in sink] if sink is not None else []
        return Run(out, stats.late, routed, stats.windows_fired, stats.windows_open)

    return asyncio.run(main())


def assert_same_windows(expected: list[Emitted], actual: list[Emitted]) -> None:
    """Ends never decrease; per end, the same windows (any order among equal ends)."""
    ends = [w[0] for w in actual]
    assert sorted(ends) == ends
    assert Counter(expected) == Counter(actual)
    assert len(set(actual)) == len(actual)  # no window emitted twice


# -- time windows -------------------------------------------------------------------


@dataclass
class TimeModel:
    """Tumbling (slide == size) or sliding windows, per key, with lateness."""

    size: int
    slide: int
    offset: int
    lateness: int
    keyed: bool
    max_seen: int | None = None
    open: dict[tuple[Any, int], list[int]] = field(default_factory=dict)
    out: list[Emitted] = field(default_factory=list)
    late: list[int] = field(default_factory=list)

    def starts(self, t: int) -> list[int]:
        """Starts of every window [s, s + size) holding t, s = offset + k * slide."""
        lo = (t - self.size - self.offset) // self.slide
        hi = (t - self.offset) // self.slide
        candidates = (self.offset + k * self.slide for k in range(lo, hi + 1))
        return [s for s in candidates if s <= t < s + self.size]

    def watermark(self) -> int | None:
        return None if self.max_seen is None else self.max_seen - self.lateness

    def fire(self, until: int | None) -> None:
        due = sorted(
            (s + self.size, k, s) for (k, s) in self.open if until is None or s + self.size <= until
        )
        for end, k, s in due:
            self.out.append((end, k, s, tuple(sorted(self.open.pop((k, s))))))

    def add(self, item: Item) -> None:
        t, key, ident = item
        k = key if self.keyed else None
        self.max_seen = t if self.max_seen is None else max(self.max_seen, t)
        wm = self.watermark()
        assert wm is not None
        self.fire(wm)
        targets = [s for s in self.starts(t) if s + self.size > wm]
        if not targets:
            self.late.append(ident)
        for s in targets:
            self.open.setdefault((k, s), []).append(ident)

    def finish(self) -> None:
        self.fire(None)


@st.composite
def time_windows(draw: st.DrawFn) -> dict[str, Any]:
    slide = draw(st.integers(1, 600))
    per = draw(st.integers(1, 4))
    return {
        "size": slide * per,
        "slide": slide,
        "sliding": per > 1 or draw(st.booleans()),
        # Negative offsets too: taken modulo the slide, as positive ones are.
        "offset": draw(st.integers(-2 * slide * per, 2 * slide * per)),
        "lateness": draw(st.integers(0, 1500)),
    }


@SETTINGS
@given(
    raw=events,
    spec=time_windows(),
    keyed=st.booleans(),
    route=st.booleans(),
    one_by_one=st.booleans(),
    float_seconds=st.booleans(),
    in_order=st.booleans(),
)
def test_time_windows_match_reference_model(
    raw: list[tuple[int, str]],
    spec: dict[str, Any],
    keyed: bool,
    route: bool,
    one_by_one: bool,
    float_seconds: bool,
    in_order: bool,
) -> None:
    """Tumbling and sliding windows hold exactly the model's items; late items are counted.

    Event times come as datetimes or as float epoch seconds, and streams in time
    order as well as out of it (in-order chunks of floats take a faster path).
    """
    if in_order:
        raw = sorted(raw, key=lambda e: e[0])
    items = numbered(raw)
    model = TimeModel(spec["size"], spec["slide"], spec["offset"], spec["lateness"], keyed)
    for item in items:
        model.add(item)
    model.finish()

    sink: list[LateItemError] | None = [] if route else None
    pipe: WindowedStreamPipe[Item, Window[Item]] = WindowedStreamPipe(
        spec["size"] * MS,
        slide=spec["slide"] * MS if spec["sliding"] else None,
        offset=spec["offset"] * MS,
        timestamp=epoch_seconds if float_seconds else event_time,
        key=key_of if keyed else None,
        allowed_lateness=spec["lateness"] * MS,
        idle_advance=False,
        on_late=sink if sink is not None else "drop",
    )
    got = run_pipe(pipe, items, sink, one_by_one)

    assert_same_windows(model.out, got.windows)
    assert len(model.late) == got.late
    if route:
        assert model.late == got.routed
    assert len(model.out) == got.windows_fired
    assert 0 == got.windows_open


@SETTINGS
@given(raw=events, spec=time_windows())
def test_every_in_time_item_lands_in_all_its_open_windows(
    raw: list[tuple[int, str]], spec: dict[str, Any]
) -> None:
    """An item is in 1..size/slide windows, each containing its time; late items in none."""
    items = numbered(raw)
    sink: list[LateItemError] = []
    pipe: WindowedStreamPipe[Item, Window[Item]] = WindowedStreamPipe(
        spec["size"] * MS,
        slide=spec["slide"] * MS,
        offset=spec["offset"] * MS,
        timestamp=event_time,
        allowed_lateness=spec["lateness"] * MS,
        idle_advance=False,
        on_late=sink,
    )
    got = run_pipe(pipe, items, sink, one_by_one=False)
    times = {i: t for t, _, i in items}
    membership: Counter[int] = Counter()
    for end, _, start, ids in got.windows:
        assert end - start == spec["size"]
        assert (start - spec["offset"]) % spec["slide"] == 0
        for i in ids:
            assert start <= times[i] < end
        membership.update(ids)
    per = spec["size"] // spec["slide"]
    for _, _, i in items:
        if i in got.routed:
            assert 0 == membership[i]
        else:
            assert 1 <= membership[i] <= per


@st.composite
def in_order_runs(draw: st.DrawFn) -> dict[str, Any]:
    """Tumbling windows over event times in order, read in chunks that end where
    the source waits: chunks holding several windows, windows spread over
    several chunks, chunk ends on and off window ends, and gaps that skip windows.

    Event times step by 0 to 1.5 window sizes, now and then by up to 5 (several
    empty windows in between); up to 300 items, so that some runs also cross the
    ``MAX_CHUNK`` chunk limit; the source waits before about one item in 20.
    """
    size = draw(st.integers(1, 400))
    steps = st.one_of(st.integers(0, size * 3 // 2), st.integers(0, 5 * size))
    n = draw(st.integers(1, 300))
    times = [draw(st.integers(0, 2 * size))]
    for step in draw(st.lists(steps, min_size=n - 1, max_size=n - 1)):
        times.append(times[-1] + step)
    keys = draw(st.lists(st.sampled_from("abc"), min_size=n, max_size=n))
    waits = draw(st.sets(st.integers(0, n - 1), max_size=max(1, n // 20)))
    return {
        "items": [(t, k, i) for i, (t, k) in enumerate(zip(times, keys, strict=True))],
        "size": size,
        "offset": draw(st.integers(-2 * size, 2 * size)),
        "lateness": draw(st.integers(0, 3 * size)),
        "waits": waits,
    }


async def waiting_before(items: list[Item], waits: set[int]) -> AsyncIterator[Item]:
    """The items, waiting for the loop before each index in ``waits``: a reader's
    chunk ends there."""
    for i, x in enumerate(items):
        if i in waits:
            await asyncio.sleep(0)
        yield x


def check_in_order_tumbling(run: dict[str, Any], keyed: bool, dropped: set[int]) -> None:
    """Stream ``run`` through tumbling windows, with a stage in front that drops
    the items numbered in ``dropped``; compare with the model of what is left."""
    items: list[Item] = run["items"]
    model = TimeModel(run["size"], run["size"], run["offset"], run["lateness"], keyed)
    for item in items:
        if item[2] not in dropped:
            model.add(item)
    model.finish()
    assert [] == model.late

    window: WindowedStreamPipe[Item, Window[Item]] = WindowedStreamPipe(
        run["size"] * MS,
        offset=run["offset"] * MS,
        timestamp=epoch_seconds,
        key=key_of if keyed else None,
        allowed_lateness=run["lateness"] * MS,
        idle_advance=False,
    )
    pipe: Pipeable[Item, Window[Item]] = (
        flat_map(lambda x: [] if x[2] in dropped else [x]) | window if dropped else window
    )

    async def main() -> tuple[list[Emitted], int]:
        stream = pipe.stream(waiting_before(items, run["waits"]), clock=VirtualClock())
        async with stream:
            out = [
                (to_ms(w.end), w.key, to_ms(w.start), tuple(sorted(x[2] for x in w)))
                async for w in stream
            ]
        return out, stream.statistics()[-1].late

    windows, late = asyncio.run(main())
    assert_same_windows(model.out, windows)
    assert 0 == late


@settings(max_examples=60, deadline=None)  # runs of up to 300 items: fewer examples
@given(run=in_order_runs(), keyed=st.booleans())
def test_in_order_tumbling_chunks_match_reference_model(run: dict[str, Any], keyed: bool) -> None:
    """Tumbling windows over float event times in order, read in chunks of every
    shape (the slice-by-window path), hold exactly the model's items, none late."""
    check_in_order_tumbling(run, keyed, set())


@settings(max_examples=60, deadline=None)
@given(run=in_order_runs(), keyed=st.booleans(), data=st.data())
def test_in_order_tumbling_behind_a_dropping_stage_match_reference_model(
    run: dict[str, Any], keyed: bool, data: st.DataObject
) -> None:
    """In-order tumbling windows behind a stage that drops some items (emptying
    whole chunks at times) hold exactly the model's items that are left."""
    ids = [x[2] for x in run["items"]]
    dropped = data.draw(st.sets(st.sampled_from(ids), min_size=1))
    check_in_order_tumbling(run, keyed, dropped)


# -- sessions -------------------------------------------------------------------------


@dataclass
class SessionModel:
    gap: int
    lateness: int
    keyed: bool
    max_seen: int | None = None
    # per key: list of [start, end, ids]
    sessions: dict[Any, list[tuple[int, int, list[int]]]] = field(default_factory=dict)
    out: list[Emitted] = field(default_factory=list)
    late: list[int] = field(default_factory=list)

    def fire(self, until: int | None) -> None:
        due: list[Emitted] = []
        for k, sessions in self.sessions.items():
            keep = []
            for start, end, ids in sessions:
                if until is None or end <= until:
                    due.append((end, k, start, tuple(sorted(ids))))
                else:
                    keep.append((start, end, ids))
            self.sessions[k] = keep
        self.out += sorted(due)

    def add(self, item: Item) -> None:
        t, key, ident = item
        k = key if self.keyed else None
        self.max_seen = t if self.max_seen is None else max(self.max_seen, t)
        wm = self.max_seen - self.lateness
        self.fire(wm)
        sessions = self.sessions.setdefault(k, [])
        mine = (t, t + self.gap)
        touching = [s for s in sessions if s[0] < mine[1] and mine[0] < s[1]]
        if not touching:
            if mine[1] <= wm:
                self.late.append(ident)
                return
            sessions.append((mine[0], mine[1], [ident]))
            return
        start = min([mine[0], *(s[0] for s in touching)])
        end = max([mine[1], *(s[1] for s in touching)])
        ids = [ident, *(i for s in touching for i in s[2])]
        self.sessions[k] = [s for s in sessions if s not in touching] + [(start, end, ids)]

    def finish(self) -> None:
        self.fire(None)


@SETTINGS
@given(
    raw=events,
    gap=st.integers(1, 400),
    lateness=st.integers(0, 1500),
    keyed=st.booleans(),
    route=st.booleans(),
    one_by_one=st.booleans(),
)
def test_session_windows_match_reference_model(
    raw: list[tuple[int, str]],
    gap: int,
    lateness: int,
    keyed: bool,
    route: bool,
    one_by_one: bool,
) -> None:
    """Sessions (merging, per key, with lateness) hold exactly the model's items."""
    items = numbered(raw)
    model = SessionModel(gap, lateness, keyed)
    for item in items:
        model.add(item)
    model.finish()

    sink: list[LateItemError] | None = [] if route else None
    pipe: WindowedStreamPipe[Item, Window[Item]] = WindowedStreamPipe(
        session_gap=gap * MS,
        timestamp=event_time,
        key=key_of if keyed else None,
        allowed_lateness=lateness * MS,
        idle_advance=False,
        on_late=sink if sink is not None else "drop",
    )
    got = run_pipe(pipe, items, sink, one_by_one)

    assert_same_windows(model.out, got.windows)
    assert len(model.late) == got.late
    if route:
        assert model.late == got.routed
    assert len(model.out) == got.windows_fired
    assert 0 == got.windows_open


# -- count windows ----------------------------------------------------------------------


@SETTINGS
@given(raw=events, count=st.integers(1, 6), keyed=st.booleans(), one_by_one=st.booleans())
def test_count_windows_match_reference_model(
    raw: list[tuple[int, str]], count: int, keyed: bool, one_by_one: bool
) -> None:
    """Every `count` items of a key form a window in arrival order; the rest flush at the end."""
    items = numbered(raw)
    pending: dict[Any, list[Item]] = {}
    full: list[Emitted] = []

    def as_emitted(k: Any, group: list[Item]) -> Emitted:
        return (group[-1][0], k, group[0][0], tuple(sorted(x[2] for x in group)))

    for item in items:
        k = item[1] if keyed else None
        group = pending.setdefault(k, [])
        group.append(item)
        if len(group) == count:
            full.append(as_emitted(k, pending.pop(k)))
    rest = [as_emitted(k, group) for k, group in pending.items()]

    pipe: WindowedStreamPipe[Item, Window[Item]] = WindowedStreamPipe(
        count=count, timestamp=event_time, key=key_of if keyed else None, idle_advance=False
    )
    got = run_pipe(pipe, items, None, one_by_one)

    # Full windows come out in the order they filled; the partial ones after, by end.
    assert full == got.windows[: len(full)]
    tail = got.windows[len(full) :]
    assert sorted(w[0] for w in tail) == [w[0] for w in tail]
    assert Counter(rest) == Counter(tail)
    assert 0 == got.late
    assert sorted(x[2] for x in items) == sorted(i for w in got.windows for i in w[3])


# -- in-order runs of tumbling windows, chunk by chunk --------------------------------


async def cut_agen(items: list[Item], cuts: set[int]) -> AsyncIterator[Item]:
    """Hands the items over without waiting, but lets the loop run before each index
    in ``cuts``: a reader's chunk ends there."""
    for i, x in enumerate(items):
        if i in cuts:
            await asyncio.sleep(0)
        yield x


def whole_seconds(item: Item) -> int:
    return item[0] // 1000


class WatchedSource(TestSource[Item]):
    """A ``TestSource`` that, at each ack, notes the acked items no window the
    consumer has taken holds (and that are not late)."""

    __test__ = False

    def __init__(
        self, script: list[Any], clock: VirtualClock, taken: list[Emitted], late: set[int]
    ):
        super().__init__(script, clock=clock)
        self.taken = taken
        self.late = late
        self.too_soon: list[int] = []

    def ack(self, count: int) -> None:
        delivered = {i for w in self.taken for i in w[3]} | self.late
        self.too_soon += [i for i in range(count) if i not in delivered]
        super().ack(count)


@st.composite
def cut_in_order_runs(draw: st.DrawFn) -> dict[str, Any]:
    """Many events in time order, over windows short enough for several per chunk."""
    n = draw(st.integers(1, 300))
    steps = draw(st.lists(st.integers(0, 40), min_size=n, max_size=n))
    start = draw(st.integers(0, 5000))
    times = [start + sum(steps[: i + 1]) for i in range(n)]
    return {
        "times": times,
        "keys": draw(st.lists(st.sampled_from("abcd"), min_size=n, max_size=n)),
        "size": draw(st.integers(1, 400)),
        "offset": draw(st.integers(-500, 500)),
        "lateness": draw(st.sampled_from([0, 0, 30, 500])),
        "cuts": draw(st.sets(st.integers(1, max(1, n - 1)), max_size=12)),
        "unhashable": draw(st.sets(st.integers(0, n - 1), max_size=3)),
    }


@SETTINGS
@given(
    run=cut_in_order_runs(),
    keyed=st.booleans(),
    source_kind=st.sampled_from(["list", "cut async", "acking"]),
    whole=st.booleans(),
)
def test_tumbling_windows_over_in_order_chunks_match_reference_model(
    run: dict[str, Any], keyed: bool, source_kind: str, whole: bool
) -> None:
    """Events in time order, chunks ending anywhere (inside a window, on its end, with
    several windows in one chunk): the model's windows, each once, counters agreeing;
    an acknowledging source is acked only past items whose windows went out. An item
    whose key cannot be hashed is skipped (on_error="skip"), wherever it falls.

    Event times come as float seconds or as whole int seconds (both in-order paths).
    """
    ms = [t * 1000 for t in run["times"]] if whole else run["times"]
    items = numbered(list(zip(ms, run["keys"], strict=True)))
    size, offset, lateness = run["size"], run["offset"], run["lateness"]
    if whole:  # whole seconds: a window of whole seconds too
        size, offset, lateness = size * 1000, offset * 1000, lateness * 1000
    unhashable: set[int] = run["unhashable"] if keyed else set()
    model = TimeModel(size, size, offset, lateness, keyed)
    for item in items:
        if item[2] not in unhashable:
            model.add(item)
    model.finish()
    late = set(model.late) | unhashable

    def key(item: Item) -> Any:
        return [item[1]] if item[2] in unhashable else item[1]

    pipe: WindowedStreamPipe[Item, Window[Item]] = WindowedStreamPipe(
        size * MS,
        offset=offset * MS,
        timestamp=whole_seconds if whole else epoch_seconds,
        key=key if keyed else None,
        allowed_lateness=lateness * MS,
        idle_advance=False,
        on_error="skip",
    )
    cuts = run["cuts"]

    async def main() -> tuple[list[Emitted], list[int], int | None]:
        clock = VirtualClock()
        out: list[Emitted] = []
        test_source: WatchedSource | None = None
        source: Any
        if source_kind == "list":
            source = items
        elif source_kind == "cut async":
            source = cut_agen(items, cuts)
        else:
            script: list[Any] = []
            for i, x in enumerate(items):
                if i in cuts:
                    script.append(TestSource.wait(0.01))
                script.append(x)
            source = test_source = WatchedSource(script, clock, out, late)
        stream = pipe.stream(source, clock=clock)
        async with stream:
            async for w in stream:
                out.append((to_ms(w.end), w.key, to_ms(w.start), tuple(sorted(x[2] for x in w))))
        [stats] = stream.statistics()
        assert len(out) == stats.windows_fired
        assert 0 == stats.windows_open
        assert len(model.late) == stats.late
        assert len(unhashable) == stats.skipped
        assert len(items) == stats.items_in
        if test_source is None:
            return out, [], None
        return out, test_source.too_soon, test_source.acked

    got, acked_too_soon, acked = asyncio.run(main())
    assert_same_windows(model.out, got)
    assert [] == acked_too_soon
    if source_kind == "acking":
        assert len(items) == acked
