"""The outside world of the clickstream demo: made-up click events, a user-profile
service and a database table, all simulated.

Nothing here uses pipeflow: it is what a real pipeline would read from and write
to (a message queue, an HTTP API, a database). ``clickstream.py`` is the pipeline.
"""

from __future__ import annotations

import asyncio
import math
import random
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

#: A click event as it arrives from the browser: untrusted, possibly broken.
RawEvent = dict[str, Any]

#: Event time the generated clicks cover, whatever their number, from ``START``.
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
EVENT_SPAN = timedelta(minutes=15)
MALFORMED_RATE = 0.02
#: Share of clicks that arrive out of order, but within the allowed lateness.
REORDER_RATE = 0.05
#: Share of clicks that arrive after their window has fired.
LATE_RATE = 0.002

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
COUNTRIES = ("DE", "US", "FR", "BR", "IN", "JP", "GB", "NL")
PLANS = ("free", "free", "free", "pro", "team")
USERS = 2_500


@dataclass(frozen=True, slots=True)
class GeneratedEvents:
    """The synthetic input, and how many of its records were broken or delayed on purpose.

    ``reordered`` and ``late`` count well-formed clicks only: ``reordered`` arrive
    out of order but within the allowed lateness, ``late`` so far behind that
    their window has fired by the time they arrive.
    """

    events: list[RawEvent]
    malformed: int
    reordered: int
    late: int


def generate_events(
    n: int, rng: random.Random, *, window: timedelta, lateness: timedelta
) -> GeneratedEvents:
    """``n`` click events over ``EVENT_SPAN``, some broken, some out of order.

    A windowed count's watermark is the newest event time seen minus the allowed
    ``lateness``. A click ``d`` behind the newest well-formed click before it
    lands in its window if ``d < lateness``, and is late if
    ``d >= window + lateness``. The generator only makes delays of those two
    kinds, so it knows which clicks will be late.
    """
    reorder_max = lateness - timedelta(seconds=1)
    late_delay = (window + lateness + timedelta(seconds=5), window + timedelta(seconds=40))
    mean_gap = EVENT_SPAN.total_seconds() / n
    events: list[RawEvent] = []
    malformed = reordered = late = 0
    clock = START
    newest: datetime | None = None  # the newest well-formed click so far
    for _ in range(n):
        clock += timedelta(seconds=rng.expovariate(1 / mean_gap))
        ts, kind = clock, "in order"
        if newest is not None:
            roll = rng.random()
            if roll < LATE_RATE and newest - late_delay[1] >= START:
                ts, kind = newest - _delay(rng, *late_delay), "late"
            elif roll < LATE_RATE + REORDER_RATE and newest - reorder_max >= START:
                ts, kind = newest - _delay(rng, timedelta(milliseconds=1), reorder_max), "reordered"
        ts = ts.replace(microsecond=ts.microsecond - ts.microsecond % 1000)  # as sent: ms
        event = _click(rng, ts)
        if rng.random() < MALFORMED_RATE:
            _corrupt(event, rng)
            malformed += 1
        elif kind == "late":
            late += 1
        elif kind == "reordered":
            reordered += 1
        else:
            newest = ts
        events.append(event)
    return GeneratedEvents(events, malformed, reordered, late)


def _delay(rng: random.Random, low: timedelta, high: timedelta) -> timedelta:
    """A delay drawn uniformly from ``[low, high)``, in whole milliseconds."""
    low_ms, high_ms = low // timedelta(milliseconds=1), high // timedelta(milliseconds=1)
    return timedelta(milliseconds=rng.randrange(low_ms, high_ms))


def _click(rng: random.Random, ts: datetime) -> RawEvent:
    """One well-formed click, with the timestamp as a UTC ISO 8601 string."""
    return {
        "user_id": f"u{rng.randrange(USERS):05d}",
        "page": rng.choices(PAGES, PAGE_WEIGHTS)[0],
        "ts": ts.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "referrer": rng.choices(REFERRERS, REFERRER_WEIGHTS)[0],
    }


def _corrupt(event: RawEvent, rng: random.Random) -> None:
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


@dataclass(frozen=True, slots=True)
class Profile:
    country: str
    plan: str


class ProfileService:
    """A remote user-profile API: every lookup is a network round trip, log-normal
    around ``median_latency`` seconds with a slow tail."""

    def __init__(self, rng: random.Random, *, median_latency: float = 0.008) -> None:
        self._rng = rng
        self._mu = math.log(median_latency)

    async def lookup(self, user_id: str) -> Profile:
        await asyncio.sleep(min(0.1, self._rng.lognormvariate(self._mu, 0.5)))
        h = zlib.crc32(user_id.encode())
        return Profile(COUNTRIES[h % len(COUNTRIES)], PLANS[(h >> 8) % len(PLANS)])


class DuplicateKeyError(Exception):
    """A row's primary key is in the table already."""


class PageCountTable:
    """A database table of (page, window start, views), primary key (page, window start).

    Every insert is one round trip of ``latency`` seconds, however many rows it
    carries: what makes writing in batches worth it.
    """

    def __init__(self, *, latency: float = 0.004) -> None:
        self._latency = latency
        self.rows: dict[tuple[str, datetime], int] = {}
        #: Rows per insert, in order.
        self.inserts: list[int] = []

    async def insert_many(self, rows: Sequence[tuple[str, datetime, int]]) -> None:
        """Insert ``rows`` all at once, or none if a key is taken."""
        await asyncio.sleep(self._latency)
        keys = [(page, start) for page, start, _ in rows]
        taken = [key for key in keys if key in self.rows]
        if taken or len(set(keys)) < len(keys):
            raise DuplicateKeyError(f"duplicate primary key {(taken or keys)[0]!r}")
        self.rows.update(zip(keys, (views for _, _, views in rows), strict=True))
        self.inserts.append(len(rows))
