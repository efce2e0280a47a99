"""Section 2: slow-consumer memory, each implementation in a fresh subprocess.

The workloads live in ``bench_slow_consumer``; this module starts one process per
implementation (so peak RSS figures are isolated), collects their JSON lines,
checks that every consumer saw the same events, and reports.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench_report import Target, print_table, rate
from bench_slow_consumer import WORKLOADS, event_bytes

__all__ = ["run_memory"]

_SCRIPT = Path(__file__).with_name("bench_slow_consumer.py")
_MB = 1024 * 1024
#: The target for pipeflow's peak RSS growth, in MB.
LIMIT_MB = 5.0


def _child(key: str, n: int) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(_SCRIPT), key, str(n)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        sys.exit(f"slow-consumer run {key!r} failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _check(results: list[dict[str, Any]]) -> None:
    for r in results:
        if r["count"] != r["n"]:
            sys.exit(f"{r['key']}: consumed {r['count']} events, expected {r['n']}")
    by_n: dict[int, set[int]] = {}
    for r in results:
        by_n.setdefault(r["n"], set()).add(r["checksum"])
    if any(len(sums) > 1 for sums in by_n.values()):
        sys.exit(f"slow-consumer checksums differ: {by_n}")


def run_memory(n: int, unbounded_n: int, only: str | None) -> list[Target]:
    """Measure, print the table, and return the memory target."""
    keys = [k for k, (label, _) in WORKLOADS.items() if not only or only in k or only in label]
    if not keys:
        return []
    cal = _child("calibrate", min(n, 100_000))
    print(f"{n:_} event dicts of ~{event_bytes()} bytes each from a sync generator; the consumer")
    print("json-serialises and crc32s each event, then awaits asyncio.sleep(0).")
    print(
        f"Alone (best of 3): source {rate(cal['source'])} events/s, consumer"
        f" {rate(cal['consumer'])} events/s: the consumer is {cal['source'] / cal['consumer']:.1f}x"
        " slower."
    )
    results = []
    for key in keys:
        results.append(_child(key, unbounded_n if key == "queue-unbounded" else n))
        print(f"  {key}: {results[-1]['seconds']:.1f} s", file=sys.stderr)
    _check(results)
    print("Each implementation runs in a fresh process. Peak RSS growth: the peak at the")
    if results[0]["peak_from"] == "VmHWM":
        print("end of the run minus RSS at its start (VmHWM, reset just before the run).\n")
    else:
        print("end minus the peak before the run (ru_maxrss; may hide growth below the")
        print("peak the process, or its parent, reached earlier).\n")
    rows = []
    for r in results:
        label = WORKLOADS[r["key"]][0]
        if r["n"] != n:
            label += f" ({r['n']:_} events)"
        rows.append(
            [
                label,
                rate(r["items_per_s"]),
                f"{r['peak_growth'] / _MB:.2f} MB",
                f"{r['max_buffered']:_}",
            ]
        )
    print_table(["implementation", "items/s", "peak RSS growth", "max buffered*"], rows)
    full = 1000 * event_bytes() / _MB
    print(f"* sampled every 1024 events. RSS at the start ~{results[0]['rss_start'] / _MB:.0f} MB;")
    print(f"  1000 buffered events hold ~{full:.1f} MB, part of which memory the process")
    print("  already holds (freed after imports) can absorb without RSS growth.")
    growth = {r["key"]: r["peak_growth"] / _MB for r in results}
    return [
        Target(
            "pipeflow slow-consumer peak RSS growth",
            growth.get("pipeflow"),
            LIMIT_MB,
            unit="MB",
            higher_is_better=False,
        )
    ]
