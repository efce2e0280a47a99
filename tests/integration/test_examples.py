"""The clickstream demo (examples/clickstream.py) runs and its numbers add up."""

from __future__ import annotations

import asyncio
import io
import random
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))

import clickstream

N_EVENTS = 2_000


@dataclass(frozen=True)
class Demo:
    result: clickstream.DemoResult
    text: str


@pytest.fixture(scope="module")
def demo() -> Demo:
    """One run of the demo on a small input, its report printed to a string."""
    output = io.StringIO()
    console = Console(file=output, width=100)
    result = asyncio.run(clickstream.run_demo(N_EVENTS, seed=11, console=console))
    return Demo(result, output.getvalue())


@pytest.fixture
def result(demo: Demo) -> clickstream.DemoResult:
    return demo.result


def test_every_event_is_delivered_or_dead_lettered(result: clickstream.DemoResult) -> None:
    assert result.n_events == N_EVENTS
    assert result.delivered + result.dead_lettered == N_EVENTS
    assert result.pages.total() == result.channels.total() == result.delivered


def test_dead_letters_are_exactly_the_malformed_events(result: clickstream.DemoResult) -> None:
    assert result.malformed > 0
    assert result.dead_lettered == result.malformed
    for err in result.dead_letters:
        assert err.pipe == "parse"
        assert err.attempts == 1
        assert isinstance(err.__cause__, ValueError)


def test_monitor_metrics_match_the_counts(result: clickstream.DemoResult) -> None:
    m = result.metrics
    assert [s.name for s in m.stages] == ["parse", "enrich", "label"]
    parse, enrich, label = m.stages
    assert (parse.items_in, parse.items_out) == (N_EVENTS, result.delivered)
    assert parse.errors == parse.dead_lettered == result.malformed
    for stage in (enrich, label):
        assert stage.items_in == stage.items_out == result.delivered
        assert stage.errors == stage.dead_lettered == 0
    assert (m.items_in, m.items_out) == (N_EVENTS, result.delivered)
    assert m.dead_lettered == m.errors == result.malformed
    assert m.dropped == m.skipped == m.retries == 0
    assert enrich.buffer_capacity == clickstream.ENRICH_BUFFER.max_buffer_size
    assert parse.buffer_capacity == label.buffer_capacity == 0
    assert enrich.latency_p50 is not None
    assert enrich.latency_p50 >= 0.001  # the simulated lookup sleeps for milliseconds
    assert (m.runs, m.active_runs) == (1, 0)


def test_report_is_printed(demo: Demo) -> None:
    result, text = demo.result, demo.text
    assert "Per-stage metrics" in text
    assert f"{N_EVENTS:,} events = {result.delivered:,} delivered" in text
    assert "all accounted for" in text
    assert f"Dead letters: {result.dead_lettered:,}" in text
    assert "pipe 'parse' failed on item" in text
    top_page = result.pages.most_common(1)[0][0]
    assert top_page in text


def test_generated_data_is_reproducible() -> None:
    a = clickstream.generate_events(500, random.Random(3))
    b = clickstream.generate_events(500, random.Random(3))
    assert a == b


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
def test_parse_rejects_malformed_clicks(raw: clickstream.RawEvent, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        clickstream.parse_click(raw)


def test_every_generated_event_is_either_valid_or_rejected() -> None:
    data = clickstream.generate_events(5_000, random.Random(5))
    rejected = 0
    for raw in data.events:
        try:
            clickstream.parse_click(raw)
        except ValueError:
            rejected += 1
    assert rejected == data.malformed
