"""Interleaved rounds for sections 3 and 4: implementations that return their outputs.

Each section describes its workload once (the input of ``m`` items, built before
any timer starts, and a check of an implementation's outputs against the
synchronous reference). Every implementation first runs once with its outputs
checked in full; then every round times every implementation once, every other
round in reverse order, each round in a fresh interpreter (``bench_procs``), and
the rate reported is the median over the rounds, as in section 1. Timed runs only
check that the number of outputs is the one the checked run produced.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from bench_procs import WARM_UP, timed_rounds
from bench_throughput import Results, print_rate_table, print_rounds_note

__all__ = ["Impl", "Workload", "measure", "print_rates", "same_multiset", "timed_round"]

D = TypeVar("D")


@dataclass(frozen=True)
class Impl(Generic[D]):
    """An implementation: ``run`` maps the input to the list of its outputs.

    ``base`` is the key of the hand-written implementation over the same kind of
    source its table row is compared with. ``canon`` turns one output into the
    canonical form the check compares (only applied when checking, never inside
    a timed run). A slow implementation runs over ``n * share`` items, to keep
    the suite short.
    """

    key: str
    label: str
    run: Callable[[D], Awaitable[Sequence[Any]]]
    base: str | None = None
    share: float = 1.0
    canon: Callable[[Any], Hashable] | None = None

    def items(self, n: int) -> int:
        return max(int(n * self.share), 2)

    def canonical(self, outputs: Sequence[Any]) -> list[Hashable]:
        canon = self.canon
        return list(outputs) if canon is None else [canon(x) for x in outputs]


@dataclass(frozen=True)
class Workload(Generic[D]):
    """A section's input and its check.

    ``inputs(m)`` builds the input of ``m`` items (before timing; reused by every
    run). ``check(data, outputs)`` gets an input and the canonical outputs of an
    implementation over it, and returns what is wrong with them, or ``None``.
    """

    inputs: Callable[[int], D]
    check: Callable[[D, list[Hashable]], str | None]


def same_multiset(got: Sequence[Hashable], want: Sequence[Hashable]) -> str | None:
    """``None`` if ``got`` and ``want`` hold the same items (in any order), else a diff."""
    if len(got) == len(want) and Counter(got) == Counter(want):
        return None
    extra = Counter(got) - Counter(want)
    missing = Counter(want) - Counter(got)
    return (
        f"{len(got)} outputs, expected {len(want)};"
        f" unexpected {list(extra.elements())[:3]}, missing {list(missing.elements())[:3]}"
    )


async def _check(workload: Workload[D], impls: Sequence[Impl[D]], n: int) -> dict[str, int]:
    """Check every implementation's outputs; return how many each gave."""
    started = time.perf_counter()
    inputs = {m: workload.inputs(m) for m in {impl.items(n) for impl in impls}}
    outputs: dict[str, int] = {}
    for impl in impls:
        m = impl.items(n)
        got = await impl.run(inputs[m])
        if (wrong := workload.check(inputs[m], impl.canonical(got))) is not None:
            sys.exit(f"{impl.key}: wrong result over {m:_} items: {wrong}")
        outputs[impl.key] = len(got)
        del got
    print(f"  results checked: {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return outputs


async def timed_round(
    workload: Workload[D], impls: Sequence[Impl[D]], n: int, r: int, outputs: Mapping[str, int]
) -> dict[str, float]:
    """Round ``r`` of ``bench_procs``: each implementation warmed up, then timed."""
    inputs = {m: workload.inputs(m) for m in {impl.items(n) for impl in impls}}
    warm_up = workload.inputs(min(n, WARM_UP))
    for impl in impls:
        await impl.run(warm_up)
    rates: dict[str, float] = {}
    # Every other round runs backwards, so no implementation always follows the same one.
    for impl in impls if r % 2 == 0 else reversed(impls):
        m = impl.items(n)
        rates[impl.key] = m / await _timed(impl, inputs[m], outputs[impl.key])
    return rates


async def _timed(impl: Impl[D], data: D, outputs: int) -> float:
    """Seconds one run of ``impl`` over ``data`` takes (after a full collection)."""
    gc.collect()
    started = time.perf_counter()
    got = await impl.run(data)
    elapsed = time.perf_counter() - started
    if len(got) != outputs:
        sys.exit(f"{impl.key}: {len(got)} outputs in a timed run, {outputs} when checked")
    return elapsed


def measure(
    section: str, workload: Workload[D], impls: Sequence[Impl[D]], n: int, rounds: int
) -> Results:
    """Check every implementation, then time ``rounds`` rounds of ``section``."""
    outputs = asyncio.run(_check(workload, impls, n))
    keys = [impl.key for impl in impls]
    return Results(n, timed_rounds(section, keys, n, rounds, outputs))


def print_rates(res: Results, impls: Sequence[Impl[D]], rounds: int) -> None:
    """The table of items/s (median, min-max) and ratios to each one's base, a noise note."""
    print_rounds_note(rounds)
    print_rate_table(res, impls)
