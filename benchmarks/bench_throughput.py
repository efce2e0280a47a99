"""Section 1: map -> filter -> map throughput, implementations interleaved round by round.

Each implementation first runs once over all ``n`` items with its outputs summed
and checked (this doubles as a warm-up). Then every round runs every
implementation once, in the same order, so that drifts in machine speed hit
them all alike; the figure reported is the median over the rounds.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import textwrap
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from bench_pipelines import Impl, expected
from bench_report import Target, median, print_table, print_targets, rate

__all__ = ["Results", "measure", "print_rate_table", "report"]

#: The ratios in the table are against this implementation.
REFERENCE = "agen-sync"
#: A max/min ratio of an implementation's rates above this is flagged as noise.
NOISY = 1.25


@dataclass
class Results:
    """Input items per second of each implementation, one entry per round."""

    n: int
    rates: dict[str, list[float]] = field(default_factory=dict)

    def median(self, key: str) -> float | None:
        r = self.rates.get(key)
        return median(r) if r else None

    def ratio(self, key: str, base: str) -> float | None:
        """Median over rounds of ``key``'s rate divided by ``base``'s in the same round."""
        a, b = self.rates.get(key), self.rates.get(base)
        if not a or not b:
            return None
        return median([x / y for x, y in zip(a, b, strict=True)])


async def _verify(impls: Sequence[Impl], n: int) -> None:
    for impl in impls:
        want = expected(impl.items(n))
        got = await impl.run(impl.items(n), True)
        if got != want:
            sys.exit(f"{impl.key}: wrong result (count, sum) = {got}, expected {want}")


async def _time_one(impl: Impl, n: int) -> float:
    m = impl.items(n)
    gc.collect()
    started = time.perf_counter()
    count, _ = await impl.run(m, False)
    elapsed = time.perf_counter() - started
    if count != m // 2:
        sys.exit(f"{impl.key}: consumed {count} outputs, expected {m // 2}")
    return m / elapsed


async def _measure(impls: Sequence[Impl], n: int, rounds: int) -> Results:
    started = time.perf_counter()
    await _verify(impls, n)
    print(f"  results checked (warm-up): {time.perf_counter() - started:.1f} s", file=sys.stderr)
    results = Results(n, {impl.key: [] for impl in impls})
    for r in range(rounds):
        started = time.perf_counter()
        # Every other round runs backwards, so no implementation always follows the same one.
        for impl in impls if r % 2 == 0 else reversed(impls):
            results.rates[impl.key].append(await _time_one(impl, n))
        elapsed = time.perf_counter() - started
        print(f"  round {r + 1}/{rounds}: {elapsed:.1f} s", file=sys.stderr)
    return results


def measure(impls: Sequence[Impl], n: int, rounds: int) -> Results:
    return asyncio.run(_measure(impls, n, rounds))


def _targets(res: Results) -> list[Target]:
    return [
        Target(
            "(a) sync operators vs async-gen chain (sync fns)", res.ratio("pf-ops", REFERENCE), 2.0
        ),
        Target("(a) sync operators vs plain for-loop", res.ratio("pf-ops", "for-loop"), 0.7),
        Target(
            "(b) subclasses vs async-gen chain (async fns)", res.ratio("pf-sub", "agen-async"), 1.0
        ),
        Target("(c) bounded buffers vs (b)", res.ratio("pf-sub-buf", "pf-sub"), 0.8),
        Target("(d) with StreamMonitor vs (c)", res.ratio("pf-sub-mon", "pf-sub-buf"), 0.9),
    ]


class Measured(Protocol):
    """What a rate table needs of an implementation (sections share the table)."""

    @property
    def key(self) -> str: ...
    @property
    def label(self) -> str: ...
    @property
    def divisor(self) -> int: ...

    def items(self, n: int) -> int: ...


def print_rate_table(res: Results, impls: Sequence[Measured], reference: str, column: str) -> None:
    """Items/s per implementation (median, min-max), ratios to ``reference``, a noise note."""
    rows = []
    for impl in impls:
        r = res.rates[impl.key]
        ratio = res.ratio(impl.key, reference)
        vs = "-" if ratio is None else f"{ratio:.2f}x"
        spread = f"{rate(min(r))}-{rate(max(r))}"
        label = impl.label if impl.divisor == 1 else f"{impl.label} [{impl.items(res.n):_} items]"
        rows.append([impl.key, label, rate(res.median(impl.key) or 0.0), vs, spread])
    print_table(["key", "implementation", "items/s", column, "min-max"], rows, left=2)
    noisy = [i.key for i in impls if max(res.rates[i.key]) > NOISY * min(res.rates[i.key])]
    if noisy:
        note = (
            f"Note: the rates of {', '.join(noisy)} varied by more than {NOISY - 1:.0%}"
            " between rounds (other load on the machine?); verdicts near a threshold may"
            " flip between runs. More --rounds narrow the medians."
        )
        print("\n" + textwrap.fill(note, 80))


def report(res: Results, impls: Sequence[Impl], rounds: int) -> list[Target]:
    """Print the table and the targets; return the targets."""
    print(f"map(x+1) -> filter(even) -> map(x*2) over range({res.n:_}), {res.n // 2:_} outputs.")
    print(f"Input items/s, median of {rounds} interleaved rounds (every other round in")
    print("reverse order). 'vs chain' is the median of the per-round ratios to the")
    print("hand-written async-generator chain calling the same sync functions, whose")
    print("first generator iterates range(n) as pipeflow does.\n")
    print_rate_table(res, impls, REFERENCE, "vs chain")
    notes = [
        ("(a) vs one async generator doing all three steps inline", "pf-ops", "agen-one"),
        ("(a') vs the chain over the same async-generator source", "pf-ops-asrc", "agen-sync-asrc"),
    ]
    print()
    for text, key, base in notes:
        ratio = res.ratio(key, base)
        if ratio is not None:
            print(f"{text}: {ratio:.2f}x")
    print("\nTargets (ratios are medians of the per-round ratios):")
    targets = _targets(res)
    print_targets(targets)
    return targets
