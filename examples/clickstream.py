"""Clickstream demo: validate, enrich, count per minute and store page views with pipeflow.

Made-up click events (``clickdata.py``: seeded, so every run sees the same data)
flow through five stages::

    parse -> enrich -> label -> count -> write

- ``parse`` validates each raw record; the 2 % that are broken raise
  ``ValueError`` and go to a dead-letter list instead of stopping the stream.
- ``enrich`` looks up each user's profile in a (simulated) remote service, 32
  lookups at once, behind a bounded buffer that holds ``parse`` back.
- ``label`` tells the traffic channel from the referrer.
- ``count`` counts views per page in one-minute windows of event time. Clicks
  up to 5 s out of order still count; the few that come after their window has
  fired go to a late-data list.
- ``write`` stores the counts in a (simulated) table, 8 rows per insert, or
  fewer after 0.2 s.

A ``ConsoleReporter`` shows each stage live while the events flow, then the
per-stage table and the bottleneck. The lines after it check that every event
was counted, dead-lettered or late, and every window written once.

Run it with ``make demo`` or ``python examples/clickstream.py --events 50000``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import NamedTuple, TypeVar
from urllib.parse import urlsplit

from clickdata import (
    GeneratedEvents,
    PageCountTable,
    Profile,
    ProfileService,
    RawEvent,
    generate_events,
)
from rich.console import Console

from pipeflow.monitoring import ConsoleReporter, StreamMetrics, StreamMonitor
from pipeflow.streams import (
    BackpressureConfig,
    BatchStreamPipe,
    DeadLetter,
    LateItemError,
    Pipeline,
    StreamError,
    Window,
    WindowedStreamPipe,
    map,
)

T = TypeVar("T")

WINDOW = timedelta(minutes=1)
ALLOWED_LATENESS = timedelta(seconds=5)
ENRICH_BUFFER = BackpressureConfig(max_buffer_size=1024, throttle_threshold=0.75)
WRITE_BATCH_SIZE = 8
CHANNELS = {
    "www.google.com": "search",
    "duckduckgo.com": "search",
    "news.ycombinator.com": "social",
    "www.reddit.com": "social",
}


@dataclass(frozen=True, slots=True)
class Click:
    user_id: str
    page: str
    ts: datetime
    referrer: str | None


@dataclass(frozen=True, slots=True)
class Visit:
    click: Click
    profile: Profile


@dataclass(frozen=True, slots=True)
class PageView:
    page: str
    ts: datetime
    channel: str
    country: str
    plan: str


class PageCount(NamedTuple):
    """The views of ``page`` in ``[window_start, window_start + WINDOW)``."""

    page: str
    window_start: datetime
    views: int


def parse_click(raw: RawEvent) -> Click:
    """Validate a raw event; raise ``ValueError`` saying what is wrong with it."""
    referrer = raw.get("referrer")
    if referrer is not None and not isinstance(referrer, str):
        raise ValueError(f"field 'referrer' must be str or null, got {type(referrer).__name__}")
    ts = require(raw, "ts", str)
    try:
        when = datetime.fromisoformat(ts)
    except ValueError as exc:
        raise ValueError(f"bad timestamp {ts!r}: {exc}") from None
    if when.utcoffset() is None:
        raise ValueError(f"bad timestamp {ts!r}: no timezone, cannot place it in UTC")
    return Click(
        require(raw, "user_id", str), require(raw, "page", str), when.astimezone(UTC), referrer
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


def label_channel(visit: Visit) -> PageView:
    """Where the view came from: search, social, referral, or direct."""
    click, profile = visit.click, visit.profile
    host = urlsplit(click.referrer).hostname if click.referrer else None
    channel = "direct" if host is None else CHANNELS.get(host, "referral")
    return PageView(click.page, click.ts, channel, profile.country, profile.plan)


class PageViewCounter(WindowedStreamPipe[PageView, PageCount]):
    """Views per page in one-minute windows of event time; late views to ``late``."""

    def __init__(self, late: list[LateItemError]) -> None:
        super().__init__(
            WINDOW,
            timestamp=view_time,
            key=view_page,
            allowed_lateness=ALLOWED_LATENESS,
            # The clicks are replayed far faster than they happened: the watermark
            # follows their times only, so which clicks are late depends on the data.
            idle_advance=False,
            on_late=late,
            name="count",
        )
        self.channels: Counter[str] = Counter()

    def aggregate_window(self, window: Window[PageView]) -> PageCount:
        assert isinstance(window.key, str)
        self.channels.update(view.channel for view in window)
        return PageCount(window.key, window.start, len(window))


def view_time(view: PageView) -> datetime:
    return view.ts


def view_page(view: PageView) -> Hashable:
    return view.page


class CountWriter(BatchStreamPipe[PageCount, int]):
    """Write window counts to ``table``, up to ``WRITE_BATCH_SIZE`` rows per insert;
    emits the rows written."""

    def __init__(self, table: PageCountTable) -> None:
        super().__init__(WRITE_BATCH_SIZE, max_wait=0.2, name="write")
        self.table = table

    async def process_batch(self, batch: list[PageCount]) -> int:
        await self.table.insert_many(batch)
        return len(batch)


@dataclass(frozen=True)
class DemoResult:
    """What one run generated, set aside, wrote and measured."""

    data: GeneratedEvents
    dead_letters: list[StreamError]
    late_views: list[LateItemError]
    counts: dict[tuple[str, datetime], int]  # the table: views per (page, window start)
    batches: list[int]  # rows per insert
    channels: Counter[str]
    metrics: StreamMetrics

    @property
    def counted(self) -> int:
        return sum(self.counts.values())


async def run_demo(
    n_events: int, *, seed: int = 7, console: Console | None = None, refresh: float = 0.25
) -> DemoResult:
    """Generate ``n_events`` clicks, stream them through the pipeline, print a report."""
    console = console or Console()
    data = generate_events(n_events, random.Random(seed), window=WINDOW, lateness=ALLOWED_LATENESS)
    dead_letters: list[StreamError] = []
    late: list[LateItemError] = []
    counter = PageViewCounter(late)
    table = PageCountTable()
    profiles = ProfileService(random.Random(seed + 1))

    async def enrich(click: Click) -> Visit:
        return Visit(click, await profiles.lookup(click.user_id))

    pipeline: Pipeline[RawEvent, int] = (
        map(parse_click, name="parse", on_error=DeadLetter(dead_letters))
        | map(enrich, name="enrich", concurrency=32, config=ENRICH_BUFFER)
        | map(label_channel, name="label")
        | counter
        | CountWriter(table)
    )
    monitor = StreamMonitor()
    pipeline.set_monitor(monitor)

    batches: list[int] = []
    reporter = ConsoleReporter(
        monitor, console=console, title="clickstream", total=n_events, refresh=refresh
    )
    async with reporter, pipeline.stream(data.events) as written:
        async for rows in written:
            batches.append(rows)

    result = DemoResult(
        data, dead_letters, late, table.rows, batches, counter.channels, monitor.get_metrics()
    )
    print_summary(console, result)
    return result


def print_summary(console: Console, r: DemoResult) -> None:
    """Check that the numbers add up, and show what the pipeline set aside and counted."""
    n, dead, late = len(r.data.events), len(r.dead_letters), len(r.late_views)
    ok = r.counted + dead + late == n and late == r.data.late and dead == r.data.malformed
    console.print(
        f"{n:,} events = {r.counted:,} counted + {dead:,} dead-lettered + {late:,} late: "
        + ("[green]all accounted for[/]" if ok else "[red]MISMATCH[/]")
    )
    fired = r.metrics.stage("count").windows_fired
    ok = sum(r.batches) == len(r.counts) == fired
    console.print(
        f"{fired:,} windows fired -> {len(r.batches):,} inserts -> {len(r.counts):,} rows: "
        + ("[green]each written once[/]" if ok else "[red]MISMATCH[/]")
    )
    if r.dead_letters:
        console.print(f"A dead letter: {r.dead_letters[0]}", markup=False)
    pages: Counter[str] = Counter()
    for (page, _), views in r.counts.items():
        pages[page] += views
    console.print("Top pages: " + share(pages, 3))
    console.print("Views by channel: " + share(r.channels, 4))


def share(counts: Counter[str], k: int) -> str:
    total = counts.total()
    return ", ".join(f"{key} {n / total:.0%}" for key, n in counts.most_common(k))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=20_000, help="events to generate")
    parser.add_argument("--seed", type=int, default=7, help="seed of the synthetic data")
    args = parser.parse_args(argv)
    asyncio.run(run_demo(args.events, seed=args.seed))


if __name__ == "__main__":
    main()
