"""Section 3: keyed event-time tumbling count, against a dict loop, async generators, bytewax.

The events are built up front as tuples ``(ts, key)``: ``ts = i / 1000`` epoch
seconds (event ``i`` happens at ``i`` ms, so events arrive in order) and ``key``
one of 100 strings (``"k00"``..``"k99"``, round robin; bytewax keys must be
strings). Every implementation counts the events per (key, 1-second tumbling
window aligned to the epoch), emits ``(key, window start, count)`` once the
watermark (the largest event time seen) passes the window's end, and flushes
the open windows at the end. 1,000,000 events make 1000 windows per key, 100,000
outputs of 10 events each.

The events are read from the list itself (a "list source") or from ``source(list)``,
an async generator handing them over one by one (an "async source"); each
pipeflow run is compared with the hand-written async generator over the same
kind of source.
"""

from __future__ import annotations

import math
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Hashable,
    Iterable,
    Mapping,
    Sequence,
)
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from typing import Any

import bytewax.operators as bw
from bench_report import Target, print_targets
from bench_rounds import Impl, Workload, measure, print_rates, same_multiset, timed_round
from bench_throughput import Results
from bytewax.dataflow import Dataflow
from bytewax.operators.windowing import EventClock, TumblingWindower, count_window
from bytewax.testing import TestingSink, TestingSource, run_main

from pipeflow.streams import Window, WindowedStreamPipe

__all__ = ["IMPLEMENTATIONS", "run_windows", "time_round"]

#: (event time in epoch seconds, key)
Event = tuple[float, str]
#: (key, window start in epoch seconds, count): what the hand-written versions emit.
Count = tuple[str, float, int]
#: What pipeflow's aggregate_window returns: the window start is a datetime.
PfCount = tuple[Hashable, datetime, int]

KEYS = tuple(f"k{k:02d}" for k in range(100))
#: The window length, in seconds.
WINDOW = 1.0
#: Items per bytewax batch (bytewax is fastest with large input batches).
BYTEWAX_BATCH = 1000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def events(m: int) -> list[Event]:
    return [(i / 1000, KEYS[i % len(KEYS)]) for i in range(m)]


# -- the hand-written versions ---------------------------------------------------------


def _fire(windows: dict[float, dict[str, int]], watermark: float) -> tuple[list[Count], float]:
    """Remove the windows whose end the watermark has reached, by start; return their
    counts and the end of the earliest window still open (``inf`` if none)."""
    fired = []
    for start in sorted(s for s in windows if s + WINDOW <= watermark):
        fired += [(key, start, count) for key, count in windows.pop(start).items()]
    return fired, min(windows, default=math.inf) + WINDOW


def dict_counts(items: Iterable[Event]) -> list[Count]:
    """The plain synchronous loop; windows are dicts of counts by key, by window start."""
    out: list[Count] = []
    windows: dict[float, dict[str, int]] = {}
    watermark = -math.inf
    due = math.inf
    for ts, key in items:
        start = ts - ts % WINDOW
        if ts > watermark:
            watermark = ts
            if watermark >= due:
                fired, due = _fire(windows, watermark)
                out += fired
        elif start + WINDOW <= watermark:
            continue  # late: its window has fired
        counts = windows.get(start)
        if counts is None:
            counts = windows[start] = {}
            due = min(due, start + WINDOW)
        counts[key] = counts.get(key, 0) + 1
    out += _fire(windows, math.inf)[0]
    return out


async def source(items: Iterable[Event]) -> AsyncIterator[Event]:
    """The async source: hands the events over one at a time, never waiting."""
    for e in items:
        yield e


async def _agen_counts(items: Iterable[Event]) -> AsyncIterator[Count]:
    """``dict_counts`` as one async generator reading the list itself."""
    windows: dict[float, dict[str, int]] = {}
    watermark = -math.inf
    due = math.inf
    for ts, key in items:
        start = ts - ts % WINDOW
        if ts > watermark:
            watermark = ts
            if watermark >= due:
                fired, due = _fire(windows, watermark)
                for c in fired:
                    yield c
        elif start + WINDOW <= watermark:
            continue
        counts = windows.get(start)
        if counts is None:
            counts = windows[start] = {}
            due = min(due, start + WINDOW)
        counts[key] = counts.get(key, 0) + 1
    for c in _fire(windows, math.inf)[0]:
        yield c


def _fire_lists(
    windows: dict[float, dict[str, list[Event]]], watermark: float
) -> tuple[list[Count], float]:
    """As ``_fire``, for windows that hold their events: counts them."""
    fired = []
    for start in sorted(s for s in windows if s + WINDOW <= watermark):
        fired += [(key, start, len(held)) for key, held in windows.pop(start).items()]
    return fired, min(windows, default=math.inf) + WINDOW


async def _agen_lists(items: Iterable[Event]) -> AsyncIterator[Count]:
    """One async generator reading the list that keeps every window's events, as a
    pipe must to hand ``aggregate_window`` the window, and counts them when it fires."""
    windows: dict[float, dict[str, list[Event]]] = {}
    watermark = -math.inf
    due = math.inf
    for e in items:
        ts, key = e
        start = ts - ts % WINDOW
        if ts > watermark:
            watermark = ts
            if watermark >= due:
                fired, due = _fire_lists(windows, watermark)
                for c in fired:
                    yield c
        elif start + WINDOW <= watermark:
            continue
        held = windows.get(start)
        if held is None:
            held = windows[start] = {}
            due = min(due, start + WINDOW)
        events_of_key = held.get(key)
        if events_of_key is None:
            held[key] = [e]
        else:
            events_of_key.append(e)
    for c in _fire_lists(windows, math.inf)[0]:
        yield c


async def _agen_counts_async_source(events: AsyncIterable[Event]) -> AsyncIterator[Count]:
    """``dict_counts`` as one async generator over the async source."""
    windows: dict[float, dict[str, int]] = {}
    watermark = -math.inf
    due = math.inf
    async for ts, key in events:
        start = ts - ts % WINDOW
        if ts > watermark:
            watermark = ts
            if watermark >= due:
                fired, due = _fire(windows, watermark)
                for c in fired:
                    yield c
        elif start + WINDOW <= watermark:
            continue
        counts = windows.get(start)
        if counts is None:
            counts = windows[start] = {}
            due = min(due, start + WINDOW)
        counts[key] = counts.get(key, 0) + 1
    for c in _fire(windows, math.inf)[0]:
        yield c


async def dict_loop(items: Sequence[Event]) -> list[Count]:
    return dict_counts(items)


async def agen_dict(items: Sequence[Event]) -> list[Count]:
    return [c async for c in _agen_counts(items)]


async def agen_lists(items: Sequence[Event]) -> list[Count]:
    return [c async for c in _agen_lists(items)]


async def agen_dict_async_source(items: Sequence[Event]) -> list[Count]:
    return [c async for c in _agen_counts_async_source(source(items))]


def _canon(c: Count) -> Hashable:
    key, start, count = c
    return key, round(start), count


# -- pipeflow ----------------------------------------------------------------------------


class CountPerKey(WindowedStreamPipe[Event, PfCount]):
    def aggregate_window(self, window: Window[Event]) -> PfCount:
        return window.key, window.start, len(window)


# Called by plain functions, so that its loop runs as deep in the stack as the
# hand-written ones' (see bench_pipelines._run_pipeflow).
async def _pf_counts(events: Iterable[Event] | AsyncIterable[Event], m: int) -> list[PfCount]:
    pipe = CountPerKey(
        timedelta(seconds=WINDOW), timestamp=itemgetter(0), key=itemgetter(1), idle_advance=False
    )
    async with pipe.stream(events) as results:
        out = [c async for c in results]
        stats = results.statistics()[0]
    if stats.items_in != m or stats.late or stats.windows_fired != len(out):
        raise RuntimeError(f"{pipe.name}: statistics() disagree: {stats}")
    return out


def pf_window(items: Sequence[Event]) -> Awaitable[list[PfCount]]:
    """``WindowedStreamPipe`` over the list."""
    return _pf_counts(items, len(items))


def pf_window_async_source(items: Sequence[Event]) -> Awaitable[list[PfCount]]:
    """``WindowedStreamPipe`` over the async source."""
    return _pf_counts(source(items), len(items))


def _pf_canon(c: PfCount) -> Hashable:
    key, start, count = c
    return key, round(start.timestamp()), count


# -- bytewax -----------------------------------------------------------------------------


def _bw_time(e: Event) -> datetime:
    """bytewax wants aware UTC datetimes."""
    return EPOCH + timedelta(seconds=e[0])


def _bw_key(e: Event) -> str:
    return e[1]


async def bytewax_count(items: Sequence[Event]) -> list[Any]:
    """``count_window`` (a keyed ``fold_window``) run by ``bytewax.testing.run_main``.

    Outputs are ``(key, (window id, count))``; the id counts windows from ``align_to``.
    """
    flow = Dataflow("windows")
    up = bw.input("events", flow, TestingSource(items, batch_size=BYTEWAX_BATCH))
    # bytewax moves its watermark on with system time after each event: with no
    # wait, a pause of a millisecond (a GC run, a busy machine) makes the next
    # in-order event late, and it is dropped. One window of slack keeps every
    # event in its window, as the other implementations do.
    clock = EventClock(_bw_time, wait_for_system_duration=timedelta(seconds=WINDOW))
    windower = TumblingWindower(length=timedelta(seconds=WINDOW), align_to=EPOCH)
    counted = count_window("count", up, clock, windower, key=_bw_key)
    out: list[Any] = []
    bw.output("out", counted.down, TestingSink(out))
    # bytewax's run_main is untyped; typed here so the call checks with or without bytewax.
    run: Callable[[Any], None] = run_main
    run(flow)
    return out


def _bw_canon(c: Any) -> Hashable:
    key, (window_id, count) = c
    return key, round(window_id * WINDOW), count


# -- the section -------------------------------------------------------------------------

IMPLEMENTATIONS: tuple[Impl[Sequence[Event]], ...] = (
    # -- list source
    Impl("dict-loop", "plain synchronous dict loop", dict_loop, canon=_canon),
    Impl("agen-dict", "one async generator with a dict", agen_dict, canon=_canon),
    Impl(
        "pf-window",
        "pipeflow WindowedStreamPipe subclass, aggregate_window",
        pf_window,
        "agen-dict",
        canon=_pf_canon,
    ),
    Impl(
        "agen-lists",
        "one async generator keeping each window's events",
        agen_lists,
        "agen-dict",
        canon=_canon,
    ),
    Impl(
        "bytewax",
        f"bytewax count_window, batch_size={BYTEWAX_BATCH}",
        bytewax_count,
        "agen-dict",
        share=0.1,
        canon=_bw_canon,
    ),
    # -- async source
    Impl(
        "agen-dict-asrc",
        "async src: one async generator with a dict",
        agen_dict_async_source,
        canon=_canon,
    ),
    Impl(
        "pf-window-asrc",
        "async src: pipeflow WindowedStreamPipe subclass",
        pf_window_async_source,
        "agen-dict-asrc",
        canon=_pf_canon,
    ),
)


def _workload() -> Workload[Sequence[Event]]:
    references: dict[int, list[Hashable]] = {}

    def check(items: Sequence[Event], got: list[Hashable]) -> str | None:
        want = references.get(len(items))
        if want is None:
            want = references[len(items)] = [_canon(c) for c in dict_counts(items)]
        return same_multiset(got, want)

    return Workload(events, check)


def _targets(res: Results) -> list[Target]:
    return [
        Target("(3) windows vs one async generator", res.ratio("pf-window", "agen-dict"), 0.8),
        Target("(3') same, async source", res.ratio("pf-window-asrc", "agen-dict-asrc"), 0.8),
        Target("(3) pipeflow windows vs bytewax", res.ratio("pf-window", "bytewax"), 5.0),
    ]


async def time_round(
    keys: Sequence[str], n: int, r: int, outputs: Mapping[str, int]
) -> dict[str, float]:
    """Round ``r`` of this section, in a process of its own (see ``bench_procs``)."""
    impls = [impl for key in keys for impl in IMPLEMENTATIONS if impl.key == key]
    return await timed_round(_workload(), impls, n, r, outputs)


def run_windows(n: int, rounds: int, only: str | None) -> list[Target]:
    """Measure, print the table and the targets; return the targets."""
    impls = [i for i in IMPLEMENTATIONS if not only or only in i.key + " " + i.label]
    if not impls:
        print(f"(no implementation matches --only {only!r})")
        return []
    windows = math.ceil(n / 1000 / WINDOW)
    print(f"{n:_} events (ts = i ms, {len(KEYS)} keys round robin), 1 s tumbling windows:")
    print(f"{windows:_} windows per key, about {windows * len(KEYS):_} (key, window) counts.")
    print("Each implementation's counts are checked once against the dict loop, as a multiset")
    print("of (key, window start, count). pipeflow runs with idle_advance=False.")
    res = measure("windows", _workload(), impls, n, rounds)
    print_rates(res, impls, rounds)
    print("\nTargets (ratios are medians of the per-round ratios):")
    targets = _targets(res)
    print_targets(targets)
    return targets
