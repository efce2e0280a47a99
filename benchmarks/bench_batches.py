"""Section 4: batches of 100 over ints, each batch summed.

Every implementation groups ``range(n)`` into consecutive lists of 100 items
(the last one partial if ``n`` is not a multiple of 100) and emits the sum of
each list, in order.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Hashable, Iterable
from datetime import timedelta
from typing import Any

import bytewax.operators as bw
from aiostream import pipe, stream
from bench_report import Target, print_targets
from bench_rounds import Impl, Workload, measure, print_rates
from bench_throughput import Results
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, run_main

from pipeflow.streams import BatchStreamPipe

__all__ = ["IMPLEMENTATIONS", "run_batches"]

SIZE = 100
#: Items per bytewax input batch (its fastest setting in BASELINES.md).
BYTEWAX_BATCH = 1000
REFERENCE = "agen-lists"


# -- the hand-written versions ---------------------------------------------------------


def batch_sums(items: Iterable[int]) -> list[int]:
    """The plain synchronous loop: build each list item by item, sum it when full."""
    out: list[int] = []
    batch: list[int] = []
    for x in items:
        batch.append(x)
        if len(batch) >= SIZE:
            out.append(sum(batch))
            batch = []
    if batch:
        out.append(sum(batch))
    return out


async def for_loop(items: range) -> list[int]:
    return batch_sums(items)


async def _source(items: Iterable[int]) -> AsyncIterator[int]:
    for x in items:
        yield x


async def _batches(source: AsyncIterator[int]) -> AsyncIterator[list[int]]:
    batch: list[int] = []
    async for x in source:
        batch.append(x)
        if len(batch) >= SIZE:
            yield batch
            batch = []
    if batch:
        yield batch


async def agen_lists(items: range) -> list[int]:
    """An async generator building lists from an async generator source; the consumer sums."""
    return [sum(b) async for b in _batches(_source(items))]


# -- pipeflow ----------------------------------------------------------------------------


class SumBatch(BatchStreamPipe[int, int]):
    async def process_batch(self, batch: list[int]) -> int:
        return sum(batch)


async def pf_batch(items: range) -> list[int]:
    """``BatchStreamPipe(100)`` over the range (a sync iterable, read in chunks)."""
    async with SumBatch(SIZE).stream(items) as results:
        out = [s async for s in results]
        stats = results.statistics()[0]
    if stats.items_in != len(items) or stats.items_out != len(out):
        raise RuntimeError(f"SumBatch: statistics() disagree: {stats}")
    return out


# -- the others ------------------------------------------------------------------------


async def aiostream_chunks(items: range) -> list[int]:
    """aiostream 0.8: ``stream.iterate | pipe.chunks(100) | pipe.map(sum)``."""
    # aiostream's MapCallable protocol wants ``(arg, /, *args)``; Any keeps mypy quiet.
    total: Any = sum
    xs = stream.iterate(items) | pipe.chunks(SIZE) | pipe.map(total)
    async with xs.stream() as sums:
        out = [s async for s in sums]
    return out


def _one_key(_: int) -> str:
    return "all"


def _sum_batch(key_batch: tuple[str, list[int]]) -> int:
    return sum(key_batch[1])


async def bytewax_collect(items: range) -> list[int]:
    """``key_on`` one key, ``collect(max_size=100)`` (with a timeout no run reaches),
    ``map(sum)``, run by ``bytewax.testing.run_main``."""
    flow = Dataflow("batches")
    up = bw.input("ints", flow, TestingSource(items, batch_size=BYTEWAX_BATCH))
    keyed = bw.key_on("one_key", up, _one_key)
    batches = bw.collect("collect", keyed, timeout=timedelta(hours=1), max_size=SIZE)
    sums = bw.map("sum", batches, _sum_batch)
    out: list[int] = []
    bw.output("out", sums, TestingSink(out))
    # bytewax's run_main is untyped; typed here so the call checks with or without bytewax.
    run: Callable[[Any], None] = run_main
    run(flow)
    return out


# -- the section -------------------------------------------------------------------------

IMPLEMENTATIONS: tuple[Impl[range], ...] = (
    Impl("for-loop", "plain synchronous loop (reference)", for_loop),
    Impl("agen-lists", "hand-written async generator building lists", agen_lists),
    Impl("pf-batch", "pipeflow BatchStreamPipe(100) subclass, process_batch", pf_batch),
    Impl("aiostream", "aiostream chunks(100) | map(sum)", aiostream_chunks, divisor=10),
    Impl("bytewax", f"bytewax collect(max_size=100), batch_size={BYTEWAX_BATCH}", bytewax_collect),
)


def _check(items: range, got: list[Hashable]) -> str | None:
    """The sums must be the reference's, in the same order."""
    want: list[Hashable] = list(batch_sums(items))
    if got == want:
        return None
    first = next((i for i, (a, b) in enumerate(zip(got, want, strict=False)) if a != b), None)
    return f"{len(got)} sums, expected {len(want)}; first difference at batch {first}"


def _targets(res: Results) -> list[Target]:
    return [
        Target("(4) pipeflow batches vs async generator", res.ratio("pf-batch", REFERENCE), 0.5),
        Target("(4) pipeflow batches vs aiostream chunks", res.ratio("pf-batch", "aiostream"), 5.0),
    ]


def run_batches(n: int, rounds: int, only: str | None) -> list[Target]:
    """Measure, print the table and the targets; return the targets."""
    impls = [i for i in IMPLEMENTATIONS if not only or only in i.key + " " + i.label]
    if not impls:
        print(f"(no implementation matches --only {only!r})")
        return []
    print(f"range({n:_}) in batches of {SIZE}, each batch summed: {-(-n // SIZE):_} sums.")
    print("Each implementation's sums are checked once, in order, against the plain loop.")
    res = measure(Workload(range, _check), impls, n, rounds)
    print_rates(res, impls, REFERENCE, "vs agen", rounds)
    print("\nTargets (ratios are medians of the per-round ratios):")
    targets = _targets(res)
    print_targets(targets)
    return targets
