"""Section 1: map -> filter -> map throughput, implementations interleaved round by round.

Each implementation first runs once over all its items with its outputs summed
and checked. Then every round runs every implementation once, every other round
in reverse order, so that drifts in machine speed hit them all alike; each round
runs in a fresh interpreter (``bench_procs``). The figure reported is the median
over the rounds, and a ratio is the median of the per-round ratios. A round
builds its input lists before any timer starts and reuses them for every run.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import textwrap
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from bench_pipelines import IMPLEMENTATIONS, PROCESS_STREAM_SHARE, Impl
from bench_procs import WARM_UP, timed_rounds
from bench_report import Target, floor_work, median, print_table, print_targets, rate

__all__ = ["Results", "measure", "print_rate_table", "print_rounds_note", "report", "time_round"]

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


async def _verify(impls: Sequence[Impl], n: int, inputs: dict[int, list[int]]) -> None:
    for impl in impls:
        m = impl.items(n)
        want = impl.expect(m)
        got = await impl.run(inputs[m], True)
        if got != want:
            sys.exit(f"{impl.key}: wrong result (count, sum) = {got}, expected {want}")


async def _time_one(impl: Impl, data: list[int]) -> float:
    m = len(data)
    gc.collect()
    started = time.perf_counter()
    count, _ = await impl.run(data, False)
    elapsed = time.perf_counter() - started
    if count != impl.expect(m)[0]:
        sys.exit(f"{impl.key}: consumed {count} outputs, expected {impl.expect(m)[0]}")
    return m / elapsed


async def _check(impls: Sequence[Impl], n: int) -> None:
    started = time.perf_counter()
    inputs = {m: list(range(m)) for m in {impl.items(n) for impl in impls}}
    await _verify(impls, n, inputs)
    print(f"  results checked: {time.perf_counter() - started:.1f} s", file=sys.stderr)


async def time_round(
    keys: Sequence[str], n: int, r: int, outputs: Mapping[str, int]
) -> dict[str, float]:
    """Round ``r`` (see ``bench_procs``): each implementation warmed up, then timed."""
    impls = [impl for key in keys for impl in IMPLEMENTATIONS if impl.key == key]
    inputs = {m: list(range(m)) for m in {impl.items(n) for impl in impls}}
    warm_up = list(range(min(n, WARM_UP)))
    for impl in impls:
        await impl.run(warm_up, False)
    # Every other round runs backwards, so no implementation always follows the same one.
    return {
        impl.key: await _time_one(impl, inputs[impl.items(n)])
        for impl in (impls if r % 2 == 0 else reversed(impls))
    }


def measure(impls: Sequence[Impl], n: int, rounds: int) -> Results:
    asyncio.run(_check(impls, n))
    keys = [impl.key for impl in impls]
    return Results(n, timed_rounds("throughput", keys, n, rounds, {}))


#: The targets measured against a floor: (name, pipeflow's key, the floor's key,
#: the baseline's key, the ratio wanted).
_FLOORED = (
    ("(a) operators vs one async generator inline", "pf-ops", "agen-one-count", "agen-one", 0.95),
    ("(a') same, async source", "pf-ops-asrc", "agen-one-count-asrc", "agen-one-asrc", 0.95),
    ("(e) 3 process_stream vs async-gen chain", "pf-ps", "agen-ps-bounds", "agen-ps", 0.9),
    ("(e') same, async source", "pf-ps-asrc", "agen-ps-bounds-asrc", "agen-ps-asrc", 0.9),
)


def _targets(res: Results, work: Mapping[str, float]) -> list[Target]:
    a, a_async, e, e_async = (
        Target(name, res.ratio(key, base), wanted, floor=res.ratio(floor, base), work=work.get(key))
        for name, key, floor, base, wanted in _FLOORED
    )
    return [
        a,
        a_async,
        Target(
            "(a'') operators + chunks() vs for-loop", res.ratio("pf-ops-chunks", "for-loop"), 0.75
        ),
        e,
        e_async,
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
    def base(self) -> str | None: ...

    def items(self, n: int) -> int: ...


def print_rounds_note(rounds: int) -> None:
    """What the medians and ratios of a rate table are."""
    print(f"Input items/s, median of {rounds} interleaved rounds, each in a fresh interpreter")
    print("(every other round in reverse order); 'ratio to base' is the median of the")
    print("per-round ratios to the hand-written implementation named, which reads the same")
    print("kind of source.\n")


def print_rate_table(res: Results, impls: Sequence[Measured]) -> None:
    """Items/s per implementation (median, min-max), each one's ratio to its ``base``
    (the hand-written implementation over the same kind of source), a noise note."""
    rows = []
    for impl in impls:
        r = res.rates[impl.key]
        ratio = res.ratio(impl.key, impl.base) if impl.base else None
        vs = "-" if ratio is None else f"{ratio:.2f}x {impl.base}"
        spread = f"{rate(min(r))}-{rate(max(r))}"
        m = impl.items(res.n)
        label = impl.label if m == res.n else f"{impl.label} [{m:_} items]"
        rows.append([impl.key, label, rate(res.median(impl.key) or 0.0), vs, spread])
    print_table(["key", "implementation", "items/s", "ratio to base", "min-max"], rows, left=2)
    noisy = [i.key for i in impls if max(res.rates[i.key]) > NOISY * min(res.rates[i.key])]
    if noisy:
        note = (
            f"Note: the rates of {', '.join(noisy)} varied by more than {NOISY - 1:.0%}"
            " between rounds (other load on the machine?); verdicts near a threshold may"
            " flip between runs. More --rounds narrow the medians."
        )
        print("\n" + textwrap.fill(note, 80))


def report(res: Results, impls: Sequence[Impl], rounds: int, count: bool) -> list[Target]:
    """Print the table and the targets; return the targets. With ``count``, the
    floored targets' pipeflow and floor run under cachegrind first (``floor_work``)."""
    keys = {impl.key for impl in impls}
    pairs = [(key, floor) for _, key, floor, _, _ in _FLOORED if {key, floor} <= keys]
    work = floor_work(pairs, count)
    n = res.n
    print(f"map(x+1) -> filter(even) -> map(x*2) over the ints 0..{n - 1:_}, {n // 2:_} outputs;")
    print(f"the process_stream chains (e) over the first {int(n * PROCESS_STREAM_SHARE):_}.")
    print("A list source is a list of the ints, read by the implementation itself (a")
    print("hand-written chain's first generator iterates it); an async source ('async src')")
    print("is an async generator over that list, handing items over one by one.")
    print_rounds_note(rounds)
    print_rate_table(res, impls)
    note = (
        "Floors: the hand-written code plus the least that pipeflow's per-stage counts"
        " need. (a): the one generator counting what its filter passes. (a'): counting"
        " each item, as items in must be counted too. (e), (e'): the chain's first"
        " generator reading an async iterator (a pipe's process_stream is handed one),"
        " a pass-through counting between two generators (the only place a library can"
        " count what generators it does not own pass on), and one the consumer"
        " iterates. Each floor is a ratio to the same baseline as its target, in this run."
    )
    print("\n" + textwrap.fill(note, 80))
    print("\nTargets (ratios are medians of the per-round ratios):")
    targets = _targets(res, work)
    print_targets(targets)
    return targets
