"""Timed rounds of sections 1, 3 and 4, each in a fresh interpreter.

How fast one implementation runs beside another depends, by a few percent, on
the process they run in: where the interpreter's and the input's objects happen
to lie in memory (the address space is laid out anew by every process), the
allocator's state, the hash seed. In one process that tilt is the same in every
round, so more rounds do not average it away; it can put an implementation 3 to
4 % behind another that does the same work, in every round of a run. Each round
therefore runs in an interpreter of its own: it builds the input, warms every
implementation up over a small input, and times each once, in order, or in
reverse order in every other round. The medians are then over processes too.

The parent process checks every implementation's results first (the sections do
that themselves); a round only checks the number of outputs.

    python benchmarks/bench_procs.py   # a round: reads its spec as JSON on stdin
"""

from __future__ import annotations

import asyncio
import importlib
import json
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any, TypedDict

__all__ = ["WARM_UP", "timed_rounds"]

#: Items each implementation runs over, untimed, before a round times it.
WARM_UP = 20_000

#: The module whose ``time_round(keys, n, r, outputs)`` times a round of a section.
_SECTIONS = {
    "throughput": "bench_throughput",
    "windows": "bench_windows",
    "batches": "bench_batches",
}

#: ``time_round``: the implementations' keys, the items per run, the round's
#: number (odd rounds run in reverse order) and the outputs each run must give;
#: returns each key's input items per second.
TimeRound = Callable[
    [Sequence[str], int, int, Mapping[str, int]], Coroutine[Any, Any, dict[str, float]]
]


class _Spec(TypedDict):
    section: str
    keys: list[str]
    n: int
    round: int
    outputs: dict[str, int]


def timed_rounds(
    section: str, keys: Sequence[str], n: int, rounds: int, outputs: Mapping[str, int]
) -> dict[str, list[float]]:
    """Each key's rates, one per round, every round run by a fresh interpreter."""
    rates: dict[str, list[float]] = {key: [] for key in keys}
    for r in range(rounds):
        started = time.perf_counter()
        spec: _Spec = {
            "section": section,
            "keys": list(keys),
            "n": n,
            "round": r,
            "outputs": dict(outputs),
        }
        done = subprocess.run(
            [sys.executable, str(Path(__file__).resolve())],
            input=json.dumps(spec),
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            sys.exit(f"round {r + 1} of {section} failed:\n{done.stderr[-3000:]}")
        # The rates are the last line: anything an implementation printed comes before.
        for key, rate in json.loads(done.stdout.splitlines()[-1]).items():
            rates[key].append(rate)
        print(f"  round {r + 1}/{rounds}: {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return rates


def _round(spec: _Spec) -> dict[str, float]:
    module = importlib.import_module(_SECTIONS[spec["section"]])
    time_round: TimeRound = module.time_round
    return asyncio.run(time_round(spec["keys"], spec["n"], spec["round"], spec["outputs"]))


if __name__ == "__main__":
    print(json.dumps(_round(json.load(sys.stdin))))
