"""PrometheusCollector: a monitor's per-stage metrics in the Prometheus text format."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from pipeflow.monitoring import PrometheusCollector, StreamMonitor
from pipeflow.streams import Pipeline, filter, map
from pipeflow.testing import VirtualClock


async def test_exposes_counts_rates_and_latency_per_stage() -> None:
    """Each stage's counters and gauges appear with pipeline, stage and position labels."""
    clock = VirtualClock()
    pipe: Pipeline[int, int] = map(lambda x: x + 1, name="inc") | filter(
        lambda x: x % 2 == 0, name="even"
    )
    monitor = StreamMonitor()
    pipe.set_monitor(monitor)
    registry = CollectorRegistry()
    PrometheusCollector(monitor, pipeline="numbers").register(registry)
    async with pipe.stream(range(10), clock=clock) as stream:
        assert [2, 4, 6, 8, 10] == [x async for x in stream]

    text = generate_latest(registry).decode()
    assert 'pipeflow_items_in_total{pipeline="numbers",position="0",stage="inc"} 10.0' in text
    assert 'pipeflow_items_out_total{pipeline="numbers",position="1",stage="even"} 5.0' in text
    assert 'pipeflow_dropped_total{pipeline="numbers",position="1",stage="even"} 0.0' in text
    assert "pipeflow_backpressure_ratio{" in text
    assert 'quantile="0.99"' in text


def test_scrape_before_any_run_is_empty_but_valid() -> None:
    """A monitor that saw no run yet exposes the families with no samples."""
    registry = CollectorRegistry()
    PrometheusCollector(StreamMonitor(), pipeline="idle", prefix="app").register(registry)
    text = generate_latest(registry).decode()
    assert "# TYPE app_items_in_total counter" in text
    assert "app_items_in_total{" not in text


def test_rejects_something_that_is_not_a_monitor() -> None:
    """The collector names what it was given instead of a StreamMonitor."""
    with pytest.raises(TypeError, match="StreamMonitor, got dict"):
        PrometheusCollector({}, pipeline="x")  # type: ignore[arg-type]
