"""Monitoring: per-stage throughput, backpressure, latency and counts.

>>> from pipeflow.monitoring import StreamMonitor
>>> monitor = StreamMonitor()

``ConsoleReporter`` and ``print_report`` draw the metrics on a terminal; they
need the ``console`` extra (``pip install 'pipeflow-streams[console]'``).
"""

from ._core._stats import StageMetrics as StageMetrics
from ._monitoring._bottleneck import Bottleneck as Bottleneck
from ._monitoring._console import ConsoleReporter as ConsoleReporter
from ._monitoring._console import print_report as print_report
from ._monitoring._monitor import StreamMetrics as StreamMetrics
from ._monitoring._monitor import StreamMonitor as StreamMonitor
from ._monitoring._prometheus import PrometheusCollector as PrometheusCollector

__all__ = [
    "Bottleneck",
    "ConsoleReporter",
    "PrometheusCollector",
    "StageMetrics",
    "StreamMetrics",
    "StreamMonitor",
    "print_report",
]
