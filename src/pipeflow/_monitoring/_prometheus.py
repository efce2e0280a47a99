"""Prometheus exposition of a ``StreamMonitor`` (the ``pipeflow-streams[prometheus]`` extra).

The collector reads ``monitor.get_metrics()`` at every scrape and turns each
stage's record into metric families; nothing is kept in between. It needs
``prometheus_client`` only when it is created.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ._monitor import StreamMonitor

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric
    from prometheus_client.registry import CollectorRegistry

__all__ = ["PrometheusCollector"]

_LABELS = ["pipeline", "stage", "position"]

#: (name, help, StageMetrics field) of the counters, exposed as ``<prefix>_<name>_total``.
_COUNTERS = (
    ("items_in", "Items the stage received.", "items_in"),
    ("items_out", "Items the stage emitted.", "items_out"),
    ("errors", "Items whose processing failed for good.", "errors"),
    ("retries", "Extra attempts made by a Retry policy.", "retries"),
    ("skipped", "Failed items skipped by the error policy.", "skipped"),
    ("dead_lettered", "Failed items sent to a dead-letter sink.", "dead_lettered"),
    ("dropped", "Items dropped by a full input buffer.", "dropped"),
    (
        "abandoned",
        "Items held when a run stopped before its end (cancelled, closed or failed).",
        "abandoned",
    ),
    ("late", "Items that arrived after all their windows had fired.", "late"),
    (
        "windows_fired",
        "Windows closed and dealt with (emitted, or handed to the error policy).",
        "windows_fired",
    ),
)

#: (name, help, StageMetrics field) of the gauges.
_GAUGES = (
    ("throughput_items_per_second", "Items emitted per second, recent window.", "throughput"),
    ("backpressure_ratio", "Share of recent time blocked on the downstream.", "backpressure"),
    (
        "buffer_items",
        "Items in the stage's input buffer, or taken out and not passed on yet.",
        "buffer_size",
    ),
    ("buffer_capacity_items", "Capacity of the input buffer (0: none).", "buffer_capacity"),
    ("throttled", "1 while the input buffer is above its throttle threshold.", "throttled"),
    ("windows_open", "Windows holding items.", "windows_open"),
)


class PrometheusCollector:
    """Expose a monitor's per-stage metrics to Prometheus.

    Counters and gauges carry the labels ``pipeline`` (the name given here),
    ``stage`` (the pipe's name) and ``position`` (its index in the pipeline, as
    names may repeat). Processing latency is a gauge per quantile (0.5, 0.95,
    0.99) in seconds.

    At each scrape it reads the monitor and exposes, per stage, a counter
    ``<prefix>_<field>_total`` for each of ``items_in``, ``items_out``,
    ``errors``, ``retries``, ``skipped``, ``dead_lettered``, ``dropped``,
    ``abandoned``, ``late`` and ``windows_fired``; the gauges
    ``<prefix>_throughput_items_per_second``, ``<prefix>_backpressure_ratio``,
    ``<prefix>_buffer_items``, ``<prefix>_buffer_capacity_items``,
    ``<prefix>_throttled`` and ``<prefix>_windows_open``; and
    ``<prefix>_latency_seconds`` by ``quantile``. Needs the
    ``prometheus`` extra: ``pip install 'pipeflow-streams[prometheus]'``.

    Args:
        monitor: the ``StreamMonitor`` to read.
        pipeline: the value of the ``pipeline`` label.
        prefix: the start of every metric name.

    Raises:
        ImportError: if ``prometheus_client`` is not installed.
        TypeError: if ``monitor`` is not a ``StreamMonitor``.
    """

    def __init__(self, monitor: StreamMonitor, *, pipeline: str, prefix: str = "pipeflow") -> None:
        try:
            from prometheus_client import core
        except ImportError as exc:
            msg = (
                "PrometheusCollector needs prometheus_client: "
                "pip install 'pipeflow-streams[prometheus]'"
            )
            raise ImportError(msg) from exc
        if not isinstance(monitor, StreamMonitor):
            msg = f"PrometheusCollector takes a StreamMonitor, got {type(monitor).__name__}"
            raise TypeError(msg)
        self._core: Any = core
        self.monitor = monitor
        self.pipeline = pipeline
        self.prefix = prefix

    def register(self, registry: CollectorRegistry | None = None) -> PrometheusCollector:
        """Register with ``registry`` (the default registry if ``None``); returns self."""
        if registry is None:
            from prometheus_client import REGISTRY

            registry = REGISTRY
        registry.register(self)
        return self

    def collect(self) -> Iterator[Metric]:
        """Called by ``prometheus_client`` at each scrape."""
        core, p = self._core, self.prefix
        stages = self.monitor.get_metrics().stages
        for name, doc, field in _COUNTERS:
            family = core.CounterMetricFamily(f"{p}_{name}", doc, labels=_LABELS)
            for i, s in enumerate(stages):
                family.add_metric([self.pipeline, s.name, str(i)], getattr(s, field))
            yield family
        for name, doc, field in _GAUGES:
            family = core.GaugeMetricFamily(f"{p}_{name}", doc, labels=_LABELS)
            for i, s in enumerate(stages):
                family.add_metric([self.pipeline, s.name, str(i)], float(getattr(s, field)))
            yield family
        latency = core.GaugeMetricFamily(
            f"{p}_latency_seconds",
            "Processing time per item over recent items, by quantile.",
            labels=[*_LABELS, "quantile"],
        )
        for i, s in enumerate(stages):
            for q, value in (
                ("0.5", s.latency_p50),
                ("0.95", s.latency_p95),
                ("0.99", s.latency_p99),
            ):
                if value is not None:
                    latency.add_metric([self.pipeline, s.name, str(i), q], value)
        yield latency
