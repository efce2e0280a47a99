"""Clickstream demo: validate, enrich, count per minute and store page views with pipeflow.

The demo makes up a stream of website click events (a seeded ``random.Random``,
so every run sees the same data) spread over 15 minutes of event time, and
pushes it through one five-stage pipeline::

    parse  ->  enrich  ->  label  ->  count  ->  write
    (sync)     (async I/O, 32 at once,  (sync)  (1-minute event-time   (batches of
                bounded buffer)                  windows per page)      window counts)

- ``parse`` validates each raw record and turns it into a ``Click``. About 2 % of
  the records are deliberately broken (a missing field, a bad or naive
  timestamp, a value of the wrong type); ``parse`` raises ``ValueError`` for
  them and the ``DeadLetter`` policy sets them aside in a list instead of
  stopping the stream.
- ``enrich`` looks up each user's profile in a simulated remote service (an
  ``asyncio.sleep`` of a few milliseconds). It keeps 32 lookups in flight and
  sits behind a bounded buffer (``BackpressureConfig``), so the fast ``parse``
  stage is held back instead of piling up records in memory.
- ``label`` classifies the traffic channel from the referrer.
- ``count`` is a ``WindowedStreamPipe`` counting views per page in tumbling
  one-minute windows of *event time* (the click's own timestamp). Clicks do
  not arrive in order: about 5 % come up to 4 s behind the newest click, which
  the 5 s ``allowed_lateness`` absorbs, and about 0.2 % come more than a window
  plus the lateness behind, after their window has fired. Those are late: the
  pipe hands them to a late-data list (``on_late=list``) and the demo checks
  that exactly the clicks the generator delayed that much ended up there.
- ``write`` is a ``BatchStreamPipe`` that stores the window counts in a
  simulated database table, a few milliseconds per insert: a batch goes out
  when it holds 8 rows or 0.2 s after its first row, whichever comes first.
  The table has a primary key (page, window start), so a window written twice
  would stop the demo.

The demo's own loop collects the write receipts. A ``StreamMonitor`` watches
the pipeline: the live progress line and the final per-stage table print its
figures, including the windows fired and the late clicks. The accounting lines
check that every generated event was counted in a window, dead-lettered or
late, and that every window result was written exactly once. The report ends
with the busiest pages and (page, minute) windows, read back from the table.

Run it with ``make demo`` or ``python examples/clickstream.py --events 50000``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import random
import time
import zlib
from collections import Counter
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any, NamedTuple, TypeVar
from urllib.parse import urlsplit

from rich import box
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from pipeflow.monitoring import StageMetrics, StreamMetrics, StreamMonitor
from pipeflow.streams import (
    BackpressureConfig,
    BatchStreamPipe,
    DeadLetter,
    LateItemError,
    Pipeline,
    Stream,
    StreamError,
    Window,
    WindowedStreamPipe,
    map,
)

T = TypeVar("T")

#: A click event as it arrives from the browser: untrusted, possibly broken.
RawEvent = dict[str, Any]

MALFORMED_RATE = 0.02
ENRICH_CONCURRENCY = 32
#: Room for 1024 parsed clicks in front of ``enrich``; intake pauses at 75 %.
ENRICH_BUFFER = BackpressureConfig(max_buffer_size=1024, throttle_threshold=0.75)
#: Seconds between updates of the live progress line.
REFRESH_EVERY = 0.1

#: Event time the generated clicks cover, whatever their number.
EVENT_SPAN = timedelta(minutes=15)
#: ``count`` counts views per page in tumbling windows this long (event time) ...
WINDOW = timedelta(minutes=1)
#: ... and waits this long behind the newest click before it closes a window.
ALLOWED_LATENESS = timedelta(seconds=5)
#: Share of clicks that arrive out of order, but no more than ``REORDER_MAX``
#: behind the newest click: within the allowed lateness, so never late.
REORDER_RATE = 0.05
REORDER_MAX = timedelta(seconds=4)
#: Share of clicks that arrive after their window has fired: at least a window
#: plus the allowed lateness behind the newest click, so always late.
LATE_RATE = 0.002
LATE_DELAY = (WINDOW + ALLOWED_LATENESS + timedelta(seconds=5), WINDOW + timedelta(seconds=40))

#: ``write`` sends a batch when it holds this many window counts ...
WRITE_BATCH_SIZE = 8
#: ... or this many seconds after its first one, whichever comes first.
WRITE_MAX_WAIT = 0.2
#: Seconds one insert into the simulated table takes.
WRITE_LATENCY = 0.004

PAGES = ("/", "/pricing", "/docs", "/docs/quickstart", "/blog/backpressure", "/signup", "/login")
PAGE_WEIGHTS = (30, 14, 18, 11, 9, 6, 12)
REFERRERS: tuple[str | None, ...] = (
    None,
    "https://www.google.com/",
    "https://duckduckgo.com/",
    "https://news.ycombinator.com/",
    "https://www.reddit.com/r/Python/",
    "https://github.com/pipeflow/pipeflow",
)
REFERRER_WEIGHTS = (35, 30, 5, 12, 8, 10)
CHANNELS = {
    "www.google.com": "search",
    "duckduckgo.com": "search",
    "news.ycombinator.com": "social",
    "www.reddit.com": "social",
}
COUNTRIES = ("DE", "US", "FR", "BR", "IN", "JP", "GB", "NL")
PLANS = ("free", "free", "free", "pro", "team")
USERS = 2_500
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


# -- the data ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GeneratedEvents:
    """The synthetic input, and how many of its records were broken or delayed on purpose.

    ``reordered`` and ``late`` count well-formed clicks only (a broken one is
    dead-lettered before its time matters): ``reordered`` arrive out of order
    but within the allowed lateness, ``late`` so far behind that their window
    has fired by the time they arrive.
    """

    events: list[RawEvent]
    malformed: int
    reordered: int
    late: int


def generate_events(n: int, rng: random.Random, *, span: timedelta = EVENT_SPAN) -> GeneratedEvents:
    """``n`` click events over ``span`` of event time, some broken, some out of order.

    ``count``'s watermark is the newest event time it has seen minus the
    allowed lateness. A click ``d`` behind the newest well-formed click before
    it lands in its window if ``d < ALLOWED_LATENESS`` (its window ends after
    its own time, so after the watermark), and is late if
    ``d >= WINDOW + ALLOWED_LATENESS`` (its window ends at most a window after
    its own time, so at or before the watermark). The generator only makes
    delays of those two kinds, so it knows which clicks will be late.
    """
    mean_gap = span.total_seconds() / n
    events: list[RawEvent] = []
    malformed = reordered = late = 0
    clock = START
    newest: datetime | None = None  # the newest well-formed click so far
    for _ in range(n):
        clock += timedelta(seconds=rng.expovariate(1 / mean_gap))
        ts, kind = clock, "in order"
        if newest is not None:
            roll = rng.random()
            if roll < LATE_RATE and newest - LATE_DELAY[1] >= START:
                ts, kind = newest - random_delay(rng, *LATE_DELAY), "late"
            elif roll < LATE_RATE + REORDER_RATE and newest - REORDER_MAX >= START:
                ts, kind = (
                    newest - random_delay(rng, timedelta(milliseconds=1), REORDER_MAX),
                    "reordered",
                )
        ts = ts.replace(microsecond=ts.microsecond - ts.microsecond % 1000)  # as sent: ms
        event = make_click(rng, ts)
        if rng.random() < MALFORMED_RATE:
            corrupt(event, rng)
            malformed += 1
        elif kind == "late":
            late += 1
        elif kind == "reordered":
            reordered += 1
        else:
            newest = ts
        events.append(event)
    return GeneratedEvents(events, malformed, reordered, late)


def random_delay(rng: random.Random, low: timedelta, high: timedelta) -> timedelta:
    """A delay drawn uniformly from ``[low, high)``, in whole milliseconds."""
    low_ms, high_ms = low // timedelta(milliseconds=1), high // timedelta(milliseconds=1)
    return timedelta(milliseconds=rng.randrange(low_ms, high_ms))


def make_click(rng: random.Random, ts: datetime) -> RawEvent:
    """One well-formed click, with the timestamp as a UTC ISO 8601 string."""
    return {
        "user_id": f"u{rng.randrange(USERS):05d}",
        "page": rng.choices(PAGES, PAGE_WEIGHTS)[0],
        "ts": ts.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "referrer": rng.choices(REFERRERS, REFERRER_WEIGHTS)[0],
    }


def corrupt(event: RawEvent, rng: random.Random) -> None:
    """Break ``event`` the way real clients do: drop a field, garble a value."""
    kind = rng.choice(("missing", "timestamp", "type"))
    if kind == "missing":
        del event[rng.choice(("user_id", "page", "ts"))]
    elif kind == "timestamp":
        # Not a date, an impossible date, and one without a timezone.
        event["ts"] = rng.choice(("yesterday", "2026-02-30T10:15:00Z", "2026-03-02 09:00:00"))
    else:
        field, value = rng.choice((("user_id", 4711), ("page", None), ("ts", 1772442000.0)))
        event[field] = value


# -- stage 1: parse and validate ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Click:
    user_id: str
    page: str
    ts: datetime
    referrer: str | None


def parse_click(raw: RawEvent) -> Click:
    """Validate a raw event; raise ``ValueError`` saying what is wrong with it."""
    referrer = raw.get("referrer")
    if referrer is not None and not isinstance(referrer, str):
        raise ValueError(f"field 'referrer' must be str or null, got {type(referrer).__name__}")
    return Click(
        user_id=require(raw, "user_id", str),
        page=require(raw, "page", str),
        ts=parse_timestamp(require(raw, "ts", str)),
        referrer=referrer,
    )


def require(raw: RawEvent, name: str, kind: type[T]) -> T:
    """The field ``name`` of ``raw``, which must be present and of type ``kind``."""
    if name not in raw:
        raise ValueError(f"missing field {name!r}")
    value = raw[name]
    if not isinstance(value, kind):
        raise ValueError(
            f"field {name!r} must be {kind.__name__}, got {type(value).__name__} {value!r}"
        )
    return value


def parse_timestamp(text: str) -> datetime:
    """An ISO 8601 timestamp with a timezone, converted to UTC."""
    try:
        ts = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(f"bad timestamp {text!r}: {exc}") from None
    if ts.utcoffset() is None:
        raise ValueError(f"bad timestamp {text!r}: no timezone, cannot place it in UTC")
    return ts.astimezone(UTC)


# -- stage 2: enrich through (simulated) async I/O ----------------------------------


@dataclass(frozen=True, slots=True)
class Visit:
    click: Click
    country: str
    plan: str


class ProfileService:
    """A stand-in for a remote user-profile API: every lookup is a network round trip.

    Latencies are log-normal around 8 ms with a slow tail, like a real service.
    """

    def __init__(self, rng: random.Random, *, median_latency: float = 0.008) -> None:
        self._rng = rng
        self._mu = math.log(median_latency)
        self.lookups = 0

    async def enrich(self, click: Click) -> Visit:
        """``click`` with the country and plan of its user."""
        self.lookups += 1
        await asyncio.sleep(min(0.1, self._rng.lognormvariate(self._mu, 0.5)))
        h = zlib.crc32(click.user_id.encode())
        return Visit(click, COUNTRIES[h % len(COUNTRIES)], PLANS[(h >> 8) % len(PLANS)])


# -- stage 3: label ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PageView:
    page: str
    ts: datetime
    channel: str
    country: str
    plan: str


def label_channel(visit: Visit) -> PageView:
    """Where the visit came from: search, social, referral, or direct."""
    referrer = visit.click.referrer
    if referrer is None:
        channel = "direct"
    else:
        channel = CHANNELS.get(urlsplit(referrer).hostname or "", "referral")
    return PageView(visit.click.page, visit.click.ts, channel, visit.country, visit.plan)


# -- stage 4: count views per page and minute of event time -------------------------


class PageCount(NamedTuple):
    """One window's result: the views of ``page`` in ``[window_start, window_start + WINDOW)``."""

    page: str
    window_start: datetime
    views: int


def view_time(view: PageView) -> datetime:
    return view.ts


def view_page(view: PageView) -> Hashable:
    return view.page


class PageViewCounter(WindowedStreamPipe[PageView, PageCount]):
    """Views per page in tumbling ``WINDOW``s of event time, late views to ``late``.

    A window fires once the watermark (the newest click time seen minus
    ``ALLOWED_LATENESS``) passes its end; a view whose window has fired by the
    time it arrives is late. Along the way the counter tallies the channels of
    the views it counts (over every run of this instance), for the report.
    """

    def __init__(self, late: list[LateItemError]) -> None:
        super().__init__(
            WINDOW,
            timestamp=view_time,
            key=view_page,
            allowed_lateness=ALLOWED_LATENESS,
            # The clicks are replayed far faster than they happened: let the
            # watermark follow their times only, not the wall clock as well, so
            # which clicks are late depends on the data alone.
            idle_advance=False,
            on_late=late,
            name="count",
        )
        self.channels: Counter[str] = Counter()

    def aggregate_window(self, window: Window[PageView]) -> PageCount:
        assert isinstance(window.key, str)
        self.channels.update(view.channel for view in window)
        return PageCount(window.key, window.start, len(window))


# -- stage 5: write the counts in batches ----------------------------------------------


class DuplicateKeyError(Exception):
    """A row's primary key is in the table already."""


class PageCountTable:
    """A stand-in for a database table of page counts, primary key (page, window start).

    Every insert is one round trip of ``latency`` seconds, however many rows it
    carries: what makes writing in batches worth it.
    """

    def __init__(self, *, latency: float = WRITE_LATENCY) -> None:
        self._latency = latency
        self.rows: dict[tuple[str, datetime], int] = {}
        #: Rows per insert, in order.
        self.inserts: list[int] = []

    async def insert_many(self, rows: Sequence[PageCount]) -> None:
        """Insert ``rows`` all at once, or none if a key is taken."""
        await asyncio.sleep(self._latency)
        keys = [(row.page, row.window_start) for row in rows]
        taken = [key for key in keys if key in self.rows]
        if taken or len(set(keys)) < len(keys):
            raise DuplicateKeyError(f"duplicate primary key {(taken or keys)[0]!r}")
        self.rows.update(zip(keys, (row.views for row in rows), strict=True))
        self.inserts.append(len(rows))


@dataclass(frozen=True, slots=True)
class WriteReceipt:
    """What one batch insert wrote."""

    rows: int


class CountWriter(BatchStreamPipe[PageCount, WriteReceipt]):
    """Write window counts to ``table``, up to ``WRITE_BATCH_SIZE`` rows per insert."""

    def __init__(self, table: PageCountTable) -> None:
        super().__init__(WRITE_BATCH_SIZE, max_wait=WRITE_MAX_WAIT, name="write")
        self.table = table

    async def process_batch(self, batch: list[PageCount]) -> WriteReceipt:
        await self.table.insert_many(batch)
        return WriteReceipt(len(batch))


def build_pipeline(
    profiles: ProfileService,
    dead_letters: list[StreamError],
    counter: PageViewCounter,
    table: PageCountTable,
) -> Pipeline[RawEvent, WriteReceipt]:
    """parse | enrich | label | count | write.

    ``parse`` sends bad records to ``dead_letters``, ``enrich`` keeps 32 lookups
    in flight, ``counter`` counts views per page and minute, ``write`` stores
    the counts in ``table``.
    """
    parse = map(parse_click, name="parse", on_error=DeadLetter(dead_letters))
    enrich = map(
        profiles.enrich, name="enrich", concurrency=ENRICH_CONCURRENCY, config=ENRICH_BUFFER
    )
    label = map(label_channel, name="label")
    return parse | enrich | label | counter | CountWriter(table)


# -- running it ---------------------------------------------------------------------


@dataclass(frozen=True)
class DemoResult:
    """What one run of the demo generated, counted, wrote and measured."""

    n_events: int
    malformed: int
    #: Well-formed clicks the generator sent out of order within the lateness.
    reordered: int
    #: Well-formed clicks the generator delayed so far that they must be late.
    late_made: int
    dead_letters: tuple[StreamError, ...]
    #: The late-data list of ``count``.
    late_views: tuple[LateItemError, ...]
    #: The table ``write`` filled: views per (page, window start).
    counts: dict[tuple[str, datetime], int]
    #: Rows per batch, as the pipeline's write receipts report them.
    batches: tuple[int, ...]
    channels: Counter[str]
    metrics: StreamMetrics
    #: The run's own per-stage statistics at its end: they still show its buffers,
    #: which the monitor no longer counts once a run has ended.
    stages: tuple[StageMetrics, ...]
    seconds: float

    @property
    def dead_lettered(self) -> int:
        return len(self.dead_letters)

    @property
    def late(self) -> int:
        return len(self.late_views)

    @property
    def counted(self) -> int:
        """Views counted in a window: the sum of the window counts."""
        return sum(self.counts.values())

    @property
    def pages(self) -> Counter[str]:
        """Views per page, summed over the windows."""
        pages: Counter[str] = Counter()
        for (page, _), views in self.counts.items():
            pages[page] += views
        return pages


async def run_demo(n_events: int, *, seed: int = 7, console: Console | None = None) -> DemoResult:
    """Generate ``n_events`` clicks, stream them through the pipeline, print a report."""
    if console is None:
        console = Console()
    rng = random.Random(seed)
    data = generate_events(n_events, rng)
    dead_letters: list[StreamError] = []
    late: list[LateItemError] = []
    counter = PageViewCounter(late)
    table = PageCountTable()
    pipeline = build_pipeline(ProfileService(random.Random(seed + 1)), dead_letters, counter, table)
    monitor = StreamMonitor()
    pipeline.set_monitor(monitor)
    console.print(
        f"[bold]{n_events:,}[/] click events over {minutes(EVENT_SPAN)} -> [cyan]{pipeline.name}[/]"
        f"\nOn purpose: [bold]{data.malformed:,}[/] malformed, [bold]{data.reordered:,}[/] out"
        f" of order by < {seconds(ALLOWED_LATENESS)}, [bold]{data.late:,}[/] late by"
        f" {LATE_DELAY[0].total_seconds():g}-{seconds(LATE_DELAY[1])}"
    )
    started = time.perf_counter()
    with make_progress(console) as progress:
        task = progress.add_task("events", total=n_events, rate=0.0, buffer=0, dead=0, late=0)
        batches, stages = await consume(pipeline.stream(data.events), progress, task, monitor)
    result = DemoResult(
        n_events=n_events,
        malformed=data.malformed,
        reordered=data.reordered,
        late_made=data.late,
        dead_letters=tuple(dead_letters),
        late_views=tuple(late),
        counts=dict(table.rows),
        batches=tuple(batches),
        channels=counter.channels,
        metrics=monitor.get_metrics(),
        stages=stages,
        seconds=time.perf_counter() - started,
    )
    print_report(console, result)
    return result


async def consume(
    results: Stream[WriteReceipt], progress: Progress, task: TaskID, monitor: StreamMonitor
) -> tuple[list[int], tuple[StageMetrics, ...]]:
    """Collect the rows of each written batch, and the run's statistics at its end;
    refresh the progress line meanwhile.

    Receipts come only when a batch is written, so a side task refreshes the
    progress line every ``REFRESH_EVERY`` seconds.
    """

    async def refresh() -> None:
        while True:
            show_progress(progress, task, monitor)
            await asyncio.sleep(REFRESH_EVERY)

    batches: list[int] = []
    refresher = asyncio.create_task(refresh())
    try:
        async with results:
            async for receipt in results:
                batches.append(receipt.rows)
    finally:
        refresher.cancel()
        await asyncio.wait([refresher])
    show_progress(progress, task, monitor)
    return batches, results.statistics()


# -- display ------------------------------------------------------------------------


def make_progress(console: Console) -> Progress:
    """One line: a bar, events done, results/s, fill of enrich's buffer, dead and late."""
    return Progress(
        BarColumn(bar_width=None),
        MofNCompleteColumn(),
        TextColumn("[green]{task.fields[rate]:>6,.0f}[/]/s"),
        TextColumn("buffer {task.fields[buffer]:>4}/" + str(ENRICH_BUFFER.max_buffer_size)),
        TextColumn("[red]{task.fields[dead]:>4}[/] dead"),
        TextColumn("[yellow]{task.fields[late]:>3}[/] late"),
        TimeElapsedColumn(),
        console=console,
        expand=True,
    )


def show_progress(progress: Progress, task: TaskID, monitor: StreamMonitor) -> None:
    """Put the monitor's current figures on the progress line.

    An event is done once it reached ``count`` (counted in a window or late)
    or was dead-lettered.
    """
    metrics = monitor.get_metrics()
    if not metrics.stages:  # the run has not started yet
        return
    parse, enrich, label, count = (metrics.stage(n) for n in ("parse", "enrich", "label", "count"))
    progress.update(
        task,
        completed=count.items_in + parse.dead_lettered,
        rate=label.throughput,
        buffer=enrich.buffer_size,
        dead=metrics.dead_lettered,
        late=metrics.late,
    )


def print_report(console: Console, result: DemoResult) -> None:
    console.print()
    console.print(stage_table(result.metrics, result.stages))
    console.print(bottleneck_note(result.metrics.stages))
    console.print(accounting_line(result))
    console.print(writer_line(result))
    console.print()
    print_dead_letters(console, result.dead_letters)
    print_late(console, result.late_views, result.late_made)
    console.print()
    tables = Table.grid(padding=(0, 4))
    tables.add_row(top_pages_table(result.pages), busiest_windows_table(result.counts))
    console.print(tables)
    total = result.channels.total()
    mix = ", ".join(f"{ch} {n / total:.0%}" for ch, n in result.channels.most_common())
    console.print(f"Counted views by channel: {mix}" if total else "No views counted.")


def stage_table(metrics: StreamMetrics, stages: tuple[StageMetrics, ...]) -> Table:
    """The monitor's per-stage metrics, one row per stage (fits 80 columns).

    Every error in this pipeline is dead-lettered, so the errors column would
    repeat the dead letters; the windowed stage adds its late views and fired
    windows. The buffers are the run's own (``stages``): the monitor counts no
    buffer for a run that has ended.
    """
    table = Table(
        title="Per-stage metrics from the StreamMonitor",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        padding=0,
    )
    table.add_column("stage")
    headers = ("in", "out", "dead\nletters", "late", "windows\nfired", "out/s", "back-\npressure")
    for header in (*headers, "p50\nms", "p95\nms", "buffer"):
        table.add_column(header, justify="right", min_width=6)
    for s, own in zip(metrics.stages, stages, strict=True):
        windowed = bool(s.windows_fired or s.windows_open or s.late)
        table.add_row(
            s.name,
            f"{s.items_in:,}",
            f"{s.items_out:,}",
            f"{s.dead_lettered:,}",
            f"{s.late:,}" if windowed else "",
            f"{s.windows_fired:,}" if windowed else "",
            f"{s.throughput:,.0f}",
            f"{s.backpressure:.0%}",
            *(milliseconds(q) for q in (s.latency_p50, s.latency_p95)),
            f"{own.buffer_size}/{own.buffer_capacity}" if own.buffer_capacity else "fused",
        )
    return table


def milliseconds(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    ms = seconds * 1000
    return f"{ms:.3f}" if ms < 1 else f"{ms:.1f}"


def minutes(span: timedelta) -> str:
    return f"{span / timedelta(minutes=1):g} min"


def seconds(span: timedelta) -> str:
    return f"{span.total_seconds():g} s"


def bottleneck_note(stages: Sequence[StageMetrics]) -> str:
    """Name the first stage that is not in backpressure while its upstream is."""
    for up, stage in pairwise(stages):
        if up.backpressure >= 0.5 > stage.backpressure:
            return (
                f"Bottleneck: [bold]{stage.name}[/] ('{up.name}' spent {up.backpressure:.0%} "
                f"of the last {up.window:.1f} s waiting for room in its buffer)"
            )
    return "No stage was held back by a slower one downstream."


def check_mark(ok: bool, good: str) -> str:
    return f"[green]{good}[/]" if ok else "[red]MISMATCH[/]"


def accounting_line(result: DemoResult) -> str:
    """Every event was counted in a window, dead-lettered or late."""
    ok = result.counted + result.dead_lettered + result.late == result.n_events
    rate = result.n_events / result.seconds if result.seconds else 0.0
    return (
        f"{result.n_events:,} events = {result.counted:,} counted in windows + "
        f"{result.dead_lettered:,} dead-lettered + {result.late:,} late: "
        f"{check_mark(ok, 'all accounted for')} "
        f"({result.seconds:.2f} s, {rate:,.0f} events/s end to end)"
    )


def writer_line(result: DemoResult) -> str:
    """Every window result was written once, in batches no larger than the batch size."""
    fired = result.metrics.stage("count").windows_fired
    written, batches = sum(result.batches), len(result.batches)
    ok = (
        written == len(result.counts) == fired
        and batches > 0
        and max(result.batches) <= WRITE_BATCH_SIZE
    )
    return (
        f"{fired:,} windows fired -> {batches:,} batches of <= {WRITE_BATCH_SIZE} rows -> "
        f"{len(result.counts):,} rows in the table: " + check_mark(ok, "each written once")
    )


def print_dead_letters(console: Console, errors: Sequence[StreamError]) -> None:
    console.print(f"[bold]Dead letters:[/] {len(errors):,}" + (", for example:" if errors else ""))
    examples = Table.grid(padding=(0, 1))
    examples.add_column()
    examples.add_column()
    for err in distinct_examples(errors, 3):
        examples.add_row("  -", Text(str(err)))
    console.print(examples)


def distinct_examples(errors: Iterable[StreamError], k: int) -> list[StreamError]:
    """Up to ``k`` errors whose causes start differently (a missing field, a bad timestamp, ...)."""
    seen: dict[str, StreamError] = {}
    for err in errors:
        seen.setdefault(" ".join(str(err.__cause__).split()[:2]), err)
        if len(seen) == k:
            break
    return list(seen.values())


def print_late(console: Console, late: Sequence[LateItemError], expected: int, k: int = 2) -> None:
    """How many views came after their window had fired, checked against the generator."""
    console.print(
        f"[bold]Late views:[/] {len(late):,}, the generator delayed {expected:,} past their "
        f"window: {check_mark(len(late) == expected, 'as expected')}"
        + (", for example:" if late else "")
    )
    for err in late[:k]:
        behind = err.watermark - err.timestamp
        console.print(
            f"  - {err.item.page} at {clock_time(err.timestamp)}, "
            f"{behind.total_seconds():.1f} s behind the watermark {clock_time(err.watermark)}"
        )


def clock_time(ts: datetime) -> str:
    return ts.isoformat(timespec="milliseconds")[11:23]


def top_pages_table(pages: Counter[str], k: int = 5) -> Table:
    table = Table(title=f"Top {k} pages", title_justify="left")
    table.add_column("page")
    table.add_column("views", justify="right")
    table.add_column("share", justify="right")
    total = pages.total()
    for page, views in pages.most_common(k):
        table.add_row(page, f"{views:,}", f"{views / total:.1%}")
    return table


def busiest_windows_table(counts: dict[tuple[str, datetime], int], k: int = 5) -> Table:
    """The ``k`` (page, minute) windows with the most views."""
    table = Table(title=f"Busiest {k} windows", title_justify="left")
    table.add_column("page")
    table.add_column("minute (UTC)")
    table.add_column("views", justify="right")
    busiest = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0][1], kv[0][0]))[:k]
    for (page, start), views in busiest:
        table.add_row(page, f"{start:%H:%M}-{start + WINDOW:%H:%M}", f"{views:,}")
    return table


# -- command line -------------------------------------------------------------------


def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=positive_int, default=20_000, help="events to generate")
    parser.add_argument("--seed", type=int, default=7, help="seed of the synthetic data")
    args = parser.parse_args(argv)
    # pipeflow logs each failed record (skips at WARNING, dead letters at INFO); the
    # report below lists them instead, so keep log lines out of the live display.
    logging.getLogger("pipeflow").setLevel(logging.ERROR)
    asyncio.run(run_demo(args.events, seed=args.seed))


if __name__ == "__main__":
    main()
