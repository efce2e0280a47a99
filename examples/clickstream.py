"""Clickstream demo: validate, enrich and count page views with pipeflow.

The demo makes up a stream of website click events (a seeded ``random.Random``,
so every run sees the same data) and pushes it through a three-stage pipeline::

    parse  ->  enrich  ->  label
    (sync)     (async I/O, 32 at once, bounded buffer)     (sync)

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

The demo's own loop consumes the results and counts views per page. A
``StreamMonitor`` watches the pipeline: the live progress line and the final
per-stage table print its figures, and the accounting line checks that every
generated event was either delivered or dead-lettered.

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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any, TypeVar
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
from pipeflow.streams import BackpressureConfig, DeadLetter, Pipeline, Stream, StreamError, map

T = TypeVar("T")

#: A click event as it arrives from the browser: untrusted, possibly broken.
RawEvent = dict[str, Any]

MALFORMED_RATE = 0.02
ENRICH_CONCURRENCY = 32
#: Room for 1024 parsed clicks in front of ``enrich``; intake pauses at 75 %.
ENRICH_BUFFER = BackpressureConfig(max_buffer_size=1024, throttle_threshold=0.75)
#: Seconds between updates of the live progress line.
REFRESH_EVERY = 0.1

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
    """The synthetic input, and how many of its records were broken on purpose."""

    events: list[RawEvent]
    malformed: int


def generate_events(n: int, rng: random.Random) -> GeneratedEvents:
    """``n`` click events, about ``MALFORMED_RATE`` of them malformed."""
    events: list[RawEvent] = []
    malformed = 0
    ts = START
    for _ in range(n):
        ts += timedelta(milliseconds=rng.expovariate(1 / 40))
        event = make_click(rng, ts)
        if rng.random() < MALFORMED_RATE:
            corrupt(event, rng)
            malformed += 1
        events.append(event)
    return GeneratedEvents(events, malformed)


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
    return PageView(visit.click.page, channel, visit.country, visit.plan)


def build_pipeline(
    profiles: ProfileService, dead_letters: list[StreamError]
) -> Pipeline[RawEvent, PageView]:
    """parse (bad records to ``dead_letters``) | enrich (32 lookups at once) | label."""
    parse = map(parse_click, name="parse", on_error=DeadLetter(dead_letters))
    enrich = map(
        profiles.enrich, name="enrich", concurrency=ENRICH_CONCURRENCY, config=ENRICH_BUFFER
    )
    label = map(label_channel, name="label")
    return parse | enrich | label


# -- running it ---------------------------------------------------------------------


@dataclass(frozen=True)
class DemoResult:
    """What one run of the demo generated, delivered and measured."""

    n_events: int
    malformed: int
    delivered: int
    dead_letters: tuple[StreamError, ...]
    pages: Counter[str]
    channels: Counter[str]
    metrics: StreamMetrics
    seconds: float

    @property
    def dead_lettered(self) -> int:
        return len(self.dead_letters)


async def run_demo(n_events: int, *, seed: int = 7, console: Console | None = None) -> DemoResult:
    """Generate ``n_events`` clicks, stream them through the pipeline, print a report."""
    if console is None:
        console = Console()
    rng = random.Random(seed)
    data = generate_events(n_events, rng)
    dead_letters: list[StreamError] = []
    pipeline = build_pipeline(ProfileService(random.Random(seed + 1)), dead_letters)
    monitor = StreamMonitor()
    pipeline.set_monitor(monitor)
    console.print(
        f"[bold]{n_events:,}[/] click events ([bold]{data.malformed:,}[/] malformed on purpose)"
        f" -> [cyan]{pipeline.name}[/]"
    )
    started = time.perf_counter()
    with make_progress(console) as progress:
        task = progress.add_task("events", total=n_events, rate=0.0, buffer=0, dead=0)
        pages, channels = await consume(
            pipeline.stream(data.events), progress, task, monitor, dead_letters
        )
    result = DemoResult(
        n_events=n_events,
        malformed=data.malformed,
        delivered=pages.total(),
        dead_letters=tuple(dead_letters),
        pages=pages,
        channels=channels,
        metrics=monitor.get_metrics(),
        seconds=time.perf_counter() - started,
    )
    print_report(console, result)
    return result


async def consume(
    results: Stream[PageView],
    progress: Progress,
    task: TaskID,
    monitor: StreamMonitor,
    dead_letters: list[StreamError],
) -> tuple[Counter[str], Counter[str]]:
    """Count page views and channels, refreshing the progress line as results come."""
    pages: Counter[str] = Counter()
    channels: Counter[str] = Counter()
    next_refresh = 0.0
    async with results:
        async for view in results:
            pages[view.page] += 1
            channels[view.channel] += 1
            if time.monotonic() >= next_refresh:
                next_refresh = time.monotonic() + REFRESH_EVERY
                show_progress(progress, task, monitor, pages.total() + len(dead_letters))
    show_progress(progress, task, monitor, pages.total() + len(dead_letters))
    return pages, channels


# -- display ------------------------------------------------------------------------


def make_progress(console: Console) -> Progress:
    """One line: a bar, items done, results/s, fill of enrich's buffer, dead letters."""
    return Progress(
        BarColumn(bar_width=None),
        MofNCompleteColumn(),
        TextColumn("[green]{task.fields[rate]:>6,.0f}[/]/s"),
        TextColumn("buffer {task.fields[buffer]:>4}/" + str(ENRICH_BUFFER.max_buffer_size)),
        TextColumn("[red]{task.fields[dead]:>4}[/] dead"),
        TimeElapsedColumn(),
        console=console,
        expand=True,
    )


def show_progress(progress: Progress, task: TaskID, monitor: StreamMonitor, done: int) -> None:
    """Put the monitor's current figures on the progress line."""
    metrics = monitor.get_metrics()
    progress.update(
        task,
        completed=done,
        rate=metrics.throughput,
        buffer=metrics.stage("enrich").buffer_size,
        dead=metrics.dead_lettered,
    )


def print_report(console: Console, result: DemoResult) -> None:
    console.print()
    console.print(stage_table(result.metrics))
    console.print(bottleneck_note(result.metrics.stages))
    console.print(accounting_line(result))
    console.print()
    print_dead_letters(console, result.dead_letters)
    console.print()
    console.print(top_pages_table(result.pages))
    mix = ", ".join(f"{ch} {n / result.delivered:.0%}" for ch, n in result.channels.most_common())
    console.print(f"Traffic by channel: {mix}" if result.delivered else "No traffic delivered.")


def stage_table(metrics: StreamMetrics) -> Table:
    """The monitor's per-stage metrics, one row per stage (fits 80 columns)."""
    table = Table(
        title="Per-stage metrics from the StreamMonitor",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        padding=0,
    )
    table.add_column("stage")
    for header in ("in", "out", "errors", "dead\nletters", "out/s", "back-\npressure"):
        table.add_column(header, justify="right", min_width=6 if header == "out/s" else 7)
    for header in ("p50\nms", "p95\nms", "p99\nms", "buffer"):
        table.add_column(header, justify="right")
    for s in metrics.stages:
        table.add_row(
            s.name,
            f"{s.items_in:,}",
            f"{s.items_out:,}",
            f"{s.errors:,}",
            f"{s.dead_lettered:,}",
            f"{s.throughput:,.0f}",
            f"{s.backpressure:.0%}",
            *(milliseconds(q) for q in (s.latency_p50, s.latency_p95, s.latency_p99)),
            f"{s.buffer_size}/{s.buffer_capacity}" if s.buffer_capacity else "fused",
        )
    return table


def milliseconds(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    ms = seconds * 1000
    return f"{ms:.3f}" if ms < 1 else f"{ms:.1f}"


def bottleneck_note(stages: Sequence[StageMetrics]) -> str:
    """Name the first stage that is not in backpressure while its upstream is."""
    for up, stage in pairwise(stages):
        if up.backpressure >= 0.5 > stage.backpressure:
            return (
                f"Bottleneck: [bold]{stage.name}[/] ('{up.name}' spent {up.backpressure:.0%} "
                f"of the last {up.window:.1f} s waiting for room in its buffer)"
            )
    return "No stage was held back by a slower one downstream."


def accounting_line(result: DemoResult) -> str:
    ok = result.delivered + result.dead_lettered == result.n_events
    mark = "[green]all accounted for[/]" if ok else "[red]MISMATCH[/]"
    rate = result.n_events / result.seconds if result.seconds else 0.0
    return (
        f"{result.n_events:,} events = {result.delivered:,} delivered + "
        f"{result.dead_lettered:,} dead-lettered: {mark} "
        f"({result.seconds:.2f} s, {rate:,.0f} events/s end to end)"
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


def top_pages_table(pages: Counter[str], k: int = 5) -> Table:
    table = Table(title=f"Top {k} pages", title_justify="left")
    table.add_column("page")
    table.add_column("views", justify="right")
    table.add_column("share", justify="right")
    total = pages.total()
    for page, views in pages.most_common(k):
        table.add_row(page, f"{views:,}", f"{views / total:.1%}")
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
    # pipeflow logs every dead-lettered record at WARNING; the report below lists
    # them instead, so keep those lines from tearing through the live display.
    logging.getLogger("pipeflow").setLevel(logging.ERROR)
    asyncio.run(run_demo(args.events, seed=args.seed))


if __name__ == "__main__":
    main()
