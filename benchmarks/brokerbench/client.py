"""One implementation's run, in its own process: ``python -m brokerbench.client IMPL CONFIG``.

``CONFIG`` is a JSON object (addresses, names, ``n``). After importing what the
implementation needs, and before opening any connection, the process prints the
start mark (a JSON line with ``t0``, the monotonic clock shared by every process,
and the CPU time used so far); at its end it prints its CPU time and peak RSS.
Implementations that never end on their own are stopped by the driver with SIGTERM.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

__all__ = ["IMPLS", "cpu_seconds", "peak_rss"]

#: Implementation key -> module in this package with a ``run(config)`` function.
IMPLS = {
    "redis_hiredis": "redis_loop",
    "nats_loop": "nats_loop",
    "aiokafka_batch": "aiokafka_loop",
    "bytewax_rec": "bytewax_flow",
    "quix": "quix_app",
    "pipeflow_redis": "pipeflow_apps",
    "pipeflow_nats": "pipeflow_apps",
    "pipeflow_kafka": "pipeflow_apps",
    "pipeflow_redis_slow": "pipeflow_apps",
}


def cpu_seconds() -> float:
    """User + system CPU time of this process, all threads."""
    t = os.times()
    return t.user + t.system


def peak_rss() -> int:
    """This process's peak resident set size in bytes (VmHWM)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def _emit(record: dict[str, Any]) -> None:
    print(json.dumps(record), flush=True)


def main(argv: list[str]) -> None:
    key, config = argv[0], json.loads(argv[1])
    module = importlib.import_module(f"brokerbench.{IMPLS[key]}")
    run: Callable[[str, dict[str, Any]], dict[str, Any] | None] = module.run
    _emit({"t0": time.monotonic(), "cpu0": cpu_seconds()})
    extra = run(key, config) or {}
    _emit({"t_end": time.monotonic(), "cpu": cpu_seconds(), "peak_rss": peak_rss(), **extra})


if __name__ == "__main__":
    main(sys.argv[1:])
