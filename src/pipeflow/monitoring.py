"""Monitoring: per-stage throughput, backpressure, latency and counts.

>>> from pipeflow.monitoring import StreamMonitor
>>> monitor = StreamMonitor()
"""

from ._core._stats import StageMetrics as StageMetrics
from ._monitoring._monitor import StreamMetrics as StreamMetrics
from ._monitoring._monitor import StreamMonitor as StreamMonitor
from ._monitoring._prometheus import PrometheusCollector as PrometheusCollector

__all__ = ["PrometheusCollector", "StageMetrics", "StreamMetrics", "StreamMonitor"]
