"""The clickstream demo (examples/clickstream.py) runs and its numbers add up."""

from __future__ import annotations

import asyncio
import io
import random
import re
import sys
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
from rich.console import Console

from pipeflow.testing import TestSource, VirtualClock

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))

import clickdata
import clickstream
from clickdata import START
from clickstream import ALLOWED_LATENESS, WINDOW, WRITE_BATCH_SIZE, PageCount

N_EVENTS = 2_000
#: A seed whose 2,000 events include a handful of late ones (5).
SEED = 12

Key = tuple[str, datetime]


def generate(n: int, seed: int) -> clickdata.GeneratedEvents:
    """The events the demo makes from ``seed``."""
    return clickdata.generate_events(
        n, random.Random(seed), window=WINDOW, lateness=ALLOWED_LATENESS
    )


@dataclass(frozen=True)
class Demo:
    result: clickstream.DemoResult
    text: str
    data: clickdata.GeneratedEvents


@pytest.fixture(scope="module")
def demo() -> Demo:
    """One run of the demo on a small input, its report printed to a string."""
    output = io.StringIO()
    console = Console(file=output, width=100)
    result = asyncio.run(clickstream.run_demo(N_EVENTS, seed=SEED, console=console))
    return Demo(result, output.getvalue(), generate(N_EVENTS, SEED))


@pytest.fixture
def result(demo: Demo) -> clickstream.DemoResult:
    return demo.result


def minute_of(ts: datetime) -> datetime:
    return ts.replace(second=0, microsecond=0)


def expected_windows(events: list[clickdata.RawEvent]) -> tuple[Counter[Key], list[Key]]:
    """Views per (page, minute) and the late (page, time)s, worked out without pipeflow.

    In arrival order: a well-formed click is late if its minute ended at or
    before the newest earlier click's time minus the allowed lateness.
    """
    counts: Counter[Key] = Counter()
    late: list[Key] = []
    newest: datetime | None = None
    for raw in events:
        try:
            click = clickstream.parse_click(raw)
        except ValueError:
            continue
        start = minute_of(click.ts)
        if newest is not None and start + WINDOW <= newest - ALLOWED_LATENESS:
            late.append((click.page, click.ts))
            continue
        counts[click.page, start] += 1
        newest = click.ts if newest is None else max(newest, click.ts)
    return counts, late


# -- the demo run adds up ----------------------------------------------------------


def test_the_demo_reads_the_events_it_generated(demo: Demo) -> None:
    assert demo.data == demo.result.data
    assert N_EVENTS == len(demo.result.data.events)


def test_every_event_is_counted_dead_lettered_or_late(result: clickstream.DemoResult) -> None:
    dead, late = len(result.dead_letters), len(result.late_views)
    assert result.counted + dead + late == N_EVENTS
    assert result.counted > 0
    assert dead > 0
    assert late > 0
    assert result.channels.total() == result.counted


def test_dead_letters_are_exactly_the_malformed_events(result: clickstream.DemoResult) -> None:
    assert result.data.malformed > 0
    assert len(result.dead_letters) == result.data.malformed
    for err in result.dead_letters:
        assert err.pipe == "parse"
        assert err.attempts == 1
        assert isinstance(err.__cause__, ValueError)


def test_late_views_are_the_ones_the_generator_made_late(demo: Demo) -> None:
    result = demo.result
    assert len(result.late_views) == demo.data.late >= 3
    assert result.metrics.stage("count").late == demo.data.late
    _, late = expected_windows(demo.data.events)
    assert [(err.item.page, err.item.ts) for err in result.late_views] == late
    for err in result.late_views:
        assert err.pipe == "count"
        assert err.timestamp == err.item.ts
        # Delayed by more than a window plus the lateness: behind by over a window.
        assert err.watermark - err.timestamp >= WINDOW


def test_window_counts_are_the_views_per_page_and_minute(demo: Demo) -> None:
    result = demo.result
    counts, _ = expected_windows(demo.data.events)
    assert result.counts == dict(counts)
    starts = {start for _, start in result.counts}
    assert len(starts) >= 10  # several windows: 15 minutes of event time
    assert min(starts) == START
    assert all(start == minute_of(start) for start in starts)
    # The out-of-order clicks within the lateness were counted, not late.
    assert demo.data.reordered > len(result.late_views)


def test_the_writer_wrote_every_window_result_exactly_once(result: clickstream.DemoResult) -> None:
    count, write = result.metrics.stage("count"), result.metrics.stage("write")
    assert count.windows_fired == count.items_out == write.items_in == len(result.counts)
    # The table refuses a key twice, so rows written == distinct keys == windows fired.
    assert sum(result.batches) == len(result.counts)
    assert write.items_out == len(result.batches)
    assert all(1 <= rows <= WRITE_BATCH_SIZE for rows in result.batches)


def test_monitor_metrics_match_the_counts(result: clickstream.DemoResult) -> None:
    m = result.metrics
    malformed, late = result.data.malformed, len(result.late_views)
    assert [s.name for s in m.stages] == ["parse", "enrich", "label", "count", "write"]
    parse, enrich, label, count, write = m.stages
    assert (parse.items_in, parse.items_out) == (N_EVENTS, N_EVENTS - malformed)
    assert parse.errors == parse.dead_lettered == malformed
    for stage in (enrich, label):
        assert stage.items_in == stage.items_out == result.counted + late
    assert count.items_in == result.counted + late
    assert (count.late, count.windows_open) == (late, 0)
    for stage in (enrich, label, count, write):
        assert stage.errors == stage.dead_lettered == 0
    assert (m.items_in, m.items_out) == (N_EVENTS, len(result.batches))
    assert m.dead_lettered == m.errors == malformed
    assert m.dropped == m.skipped == m.retries == 0
    assert enrich.latency_p50 is not None
    assert enrich.latency_p50 >= 0.001  # the simulated lookup sleeps for milliseconds
    assert (m.runs, m.active_runs) == (1, 0)


def test_report_is_printed(demo: Demo) -> None:
    result, text = demo.result, demo.text
    # The reporter's table, one row per stage with its counts.
    assert "clickstream: per-stage metrics" in text
    for s in result.metrics.stages:
        assert re.search(rf"^{s.name} +{s.items_in:,} +{s.items_out:,} ", text, re.MULTILINE)
    # Which stage limits depends on the machine's speed: a verdict is printed.
    assert re.search(r"^(Bottleneck: '\w+'|No bottleneck)", text, re.M)
    dead, late = len(result.dead_letters), len(result.late_views)
    assert f"{N_EVENTS:,} events = {result.counted:,} counted + {dead:,} dead-lettered" in text
    assert f"+ {late:,} late: all accounted for" in text
    assert "each written once" in text
    assert "MISMATCH" not in text
    assert "A dead letter: pipe 'parse' failed on item" in text
    assert "Top pages: / " in text


# -- the writer and its table ------------------------------------------------------


def rows(n: int) -> list[PageCount]:
    return [PageCount(f"/p{i}", START, i) for i in range(n)]


async def test_writer_batches_by_size_and_by_max_wait() -> None:
    clock = VirtualClock()
    table = clickdata.PageCountTable(latency=0)
    first, second = rows(5), rows(15)[5:]
    source: TestSource[PageCount] = TestSource([*first, TestSource.wait(1.0), *second], clock=clock)
    written = [n async for n in clickstream.CountWriter(table).stream(source, clock=clock)]
    # The first 5 rows wait max_wait for more, then go; the next 10 make a full batch + 2.
    assert written == [5, WRITE_BATCH_SIZE, 10 - WRITE_BATCH_SIZE]
    assert table.inserts == [5, WRITE_BATCH_SIZE, 10 - WRITE_BATCH_SIZE]
    assert table.rows == {(r.page, r.window_start): r.views for r in rows(15)}


async def test_table_refuses_a_key_twice() -> None:
    table = clickdata.PageCountTable(latency=0)
    await table.insert_many(rows(3))
    with pytest.raises(clickdata.DuplicateKeyError, match="/p1"):
        await table.insert_many(rows(2)[1:])
    with pytest.raises(clickdata.DuplicateKeyError):
        await table.insert_many([PageCount("/x", START, 1), PageCount("/x", START, 2)])
    assert table.inserts == [3]
    assert len(table.rows) == 3


# -- the generated data and the parser ---------------------------------------------


def test_generated_data_is_reproducible() -> None:
    a, b = generate(500, 3), generate(500, 3)
    assert a == b


@pytest.mark.parametrize(("n", "seed"), [(2_000, 1), (5_000, 2), (20_000, 7)])
def test_generator_knows_which_clicks_are_late(n: int, seed: int) -> None:
    data = generate(n, seed)
    counts, late = expected_windows(data.events)
    assert len(late) == data.late > 0
    assert counts.total() + len(late) + data.malformed == n
    assert data.reordered > 0


def test_parse_accepts_a_well_formed_click() -> None:
    click = clickstream.parse_click(
        {
            "user_id": "u00001",
            "page": "/docs",
            "ts": "2026-03-02T10:00:00.250+01:00",
            "referrer": None,
        }
    )
    assert click.ts.isoformat() == "2026-03-02T09:00:00.250000+00:00"
    assert click.referrer is None


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"page": "/", "ts": "2026-03-02T09:00:00Z"}, "missing field 'user_id'"),
        ({"user_id": 4711, "page": "/", "ts": "2026-03-02T09:00:00Z"}, "'user_id' must be str"),
        ({"user_id": "u1", "page": "/", "ts": "yesterday"}, "bad timestamp 'yesterday'"),
        ({"user_id": "u1", "page": "/", "ts": "2026-02-30T10:15:00Z"}, "bad timestamp"),
        ({"user_id": "u1", "page": "/", "ts": "2026-03-02 09:00:00"}, "no timezone"),
    ],
)
def test_parse_rejects_malformed_clicks(raw: clickdata.RawEvent, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        clickstream.parse_click(raw)


def test_every_generated_event_is_either_valid_or_rejected() -> None:
    data = generate(5_000, 5)
    rejected = 0
    for raw in data.events:
        try:
            clickstream.parse_click(raw)
        except ValueError:
            rejected += 1
    assert rejected == data.malformed
