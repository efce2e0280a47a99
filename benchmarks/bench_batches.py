"""Section 4: batches of 100 over ints, each batch summed.

Every implementation groups the ints ``0..m-1`` into consecutive lists of 100
(the last one partial if ``m`` is not a multiple of 100) and emits the sum of
each list, in order. The input is a list of the ints, built before any timer
starts; it is read by the implementation itself (a "list source") or from
``numbers(list)``, an async generator handing the items over one by one (an
"async source"). Each pipeflow run is compared with the best hand-written async
generator over the same kind of source: slices of the list cut with ``islice``
(slicing the list directly is shown too), or appends from the async source.
The floor for the async source is that generator awaiting an async function on
each batch, as a pipe hands each batch to ``process_batch``.
"""

from __future__ import annotations

from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Hashable,
    Iterable,
    Mapping,
    Sequence,
)
from datetime import timedelta
from itertools import islice
from typing import Any

import bytewax.operators as bw
from aiostream import pipe, stream
from bench_pipelines import numbers
from bench_report import Target, floor_work, print_targets
from bench_rounds import Impl, Workload, measure, print_rates, timed_round
from bench_throughput import Results
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, run_main

from pipeflow.streams import BatchStreamPipe

__all__ = ["IMPLEMENTATIONS", "run_batches", "time_round"]

SIZE = 100
#: Items per bytewax input batch (bytewax is fastest with large input batches).
BYTEWAX_BATCH = 1000


# -- the hand-written versions ---------------------------------------------------------


def batch_sums(items: list[int]) -> list[int]:
    """The plain synchronous loop: the sum of each slice of the list."""
    return [sum(items[i : i + SIZE]) for i in range(0, len(items), SIZE)]


async def for_loop(items: list[int]) -> list[int]:
    return batch_sums(items)


async def _islices(items: Iterable[int]) -> AsyncIterator[list[int]]:
    it = iter(items)
    while batch := list(islice(it, SIZE)):
        yield batch


async def agen_islice(items: list[int]) -> list[int]:
    """An async generator cutting lists from the list with ``islice``; the consumer sums."""
    return [sum(b) async for b in _islices(items)]


async def _slices(items: list[int]) -> AsyncIterator[list[int]]:
    for i in range(0, len(items), SIZE):
        yield items[i : i + SIZE]


async def agen_slices(items: list[int]) -> list[int]:
    """An async generator slicing the list; the consumer sums."""
    return [sum(b) async for b in _slices(items)]


async def _appended(source: AsyncIterable[int]) -> AsyncIterator[list[int]]:
    batch: list[int] = []
    append = batch.append
    async for x in source:
        append(x)
        if len(batch) >= SIZE:
            yield batch
            batch = []
            append = batch.append
    if batch:
        yield batch


async def agen_appends(items: list[int]) -> list[int]:
    """An async generator appending items of the async source to lists; the consumer sums."""
    return [sum(b) async for b in _appended(numbers(items))]


# -- the floor: the hand-written code plus the least a batching pipe adds ----------------
#
# A pipe hands each batch to ``process_batch``, an async method the user writes,
# and yields what it returns; it counts the items it takes in (a batch at a time).
# The hand-written generator does the work inline and the consumer sums.


async def _sum(batch: list[int]) -> int:
    return sum(batch)


async def _appended_processed(
    source: AsyncIterable[int], process: Callable[[list[int]], Awaitable[int]]
) -> AsyncIterator[int]:
    """``_appended``, awaiting ``process`` on each batch and yielding its result,
    counting the items a batch at a time."""
    batch: list[int] = []
    append = batch.append
    read = 0
    async for x in source:
        append(x)
        if len(batch) >= SIZE:
            read += SIZE
            yield await process(batch)
            batch = []
            append = batch.append
    if batch:
        read += len(batch)
        yield await process(batch)


async def agen_appends_processed(items: list[int]) -> list[int]:
    """Floor for (4'): the appending generator, awaiting an async function per batch."""
    return [s async for s in _appended_processed(numbers(items), _sum)]


# -- pipeflow ----------------------------------------------------------------------------


class SumBatch(BatchStreamPipe[int, int]):
    async def process_batch(self, batch: list[int]) -> int:
        return sum(batch)


# Called by plain functions, so that its loop runs as deep in the stack as the
# hand-written ones' (see bench_pipelines._run_pipeflow).
async def _pf_sums(source: Iterable[int] | AsyncIterable[int], m: int) -> list[int]:
    async with SumBatch(SIZE).stream(source) as results:
        out = [s async for s in results]
        stats = results.statistics()[0]
    if stats.items_in != m or stats.items_out != len(out):
        raise RuntimeError(f"SumBatch: statistics() disagree: {stats}")
    return out


def pf_batch(items: list[int]) -> Awaitable[list[int]]:
    """``BatchStreamPipe(100)`` over the list."""
    return _pf_sums(items, len(items))


def pf_batch_async_source(items: list[int]) -> Awaitable[list[int]]:
    """``BatchStreamPipe(100)`` over the async source."""
    return _pf_sums(numbers(items), len(items))


# -- the others ------------------------------------------------------------------------


async def aiostream_chunks(items: list[int]) -> list[int]:
    """aiostream 0.8: ``stream.iterate(async source) | pipe.chunks(100) | pipe.map(sum)``.

    Given the async source, ``stream.iterate`` reads it as it is (given a plain
    iterable, it would let the event loop run after every item).
    """
    # aiostream's MapCallable protocol wants ``(arg, /, *args)``; Any keeps mypy quiet.
    total: Any = sum
    xs = stream.iterate(numbers(items)) | pipe.chunks(SIZE) | pipe.map(total)
    async with xs.stream() as sums:
        out = [s async for s in sums]
    return out


def _one_key(_: int) -> str:
    return "all"


def _sum_batch(key_batch: tuple[str, list[int]]) -> int:
    return sum(key_batch[1])


async def bytewax_collect(items: list[int]) -> list[int]:
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

IMPLEMENTATIONS: tuple[Impl[list[int]], ...] = (
    # -- list source
    Impl("for-loop", "plain synchronous loop, slices", for_loop),
    Impl("agen-islice", "async generator, lists cut with islice", agen_islice),
    Impl("pf-batch", "pipeflow BatchStreamPipe(100), process_batch", pf_batch, "agen-islice"),
    Impl("agen-slices", "async generator slicing the list", agen_slices, "agen-islice"),
    Impl(
        "bytewax",
        f"bytewax collect(max_size=100), batch_size={BYTEWAX_BATCH}",
        bytewax_collect,
        "agen-islice",
    ),
    # -- async source
    Impl("agen-appends", "async src: async generator appending to lists", agen_appends),
    Impl(
        "pf-batch-asrc",
        "async src: pipeflow BatchStreamPipe(100)",
        pf_batch_async_source,
        "agen-appends",
    ),
    Impl(
        "agen-appends-step",
        "async src: floor for (4'): appends, async fn per batch",
        agen_appends_processed,
        "agen-appends",
    ),
    Impl(
        "aiostream",
        "async src: aiostream chunks(100) | map(sum)",
        aiostream_chunks,
        "agen-appends",
        share=0.1,
    ),
)


def _check(items: list[int], got: list[Hashable]) -> str | None:
    """The sums must be the reference's, in the same order."""
    want: list[Hashable] = list(batch_sums(items))
    if got == want:
        return None
    first = next((i for i, (a, b) in enumerate(zip(got, want, strict=False)) if a != b), None)
    return f"{len(got)} sums, expected {len(want)}; first difference at batch {first}"


def _inputs(m: int) -> list[int]:
    return list(range(m))


def _targets(res: Results, work: Mapping[str, float]) -> list[Target]:
    return [
        Target(
            "(4) batches vs async generator (islice)", res.ratio("pf-batch", "agen-islice"), 0.9
        ),
        Target(
            "(4') same, async source (appends)",
            res.ratio("pf-batch-asrc", "agen-appends"),
            0.9,
            floor=res.ratio("agen-appends-step", "agen-appends"),
            work=work.get("pf-batch-asrc"),
        ),
        Target(
            "(4') batches vs aiostream chunks, async src",
            res.ratio("pf-batch-asrc", "aiostream"),
            5.0,
        ),
    ]


async def time_round(
    keys: Sequence[str], n: int, r: int, outputs: Mapping[str, int]
) -> dict[str, float]:
    """Round ``r`` of this section, in a process of its own (see ``bench_procs``)."""
    impls = [impl for key in keys for impl in IMPLEMENTATIONS if impl.key == key]
    return await timed_round(Workload(_inputs, _check), impls, n, r, outputs)


def run_batches(n: int, rounds: int, only: str | None, count: bool) -> list[Target]:
    """Measure, print the table and the targets; return the targets. With
    ``count``, the floored target's pipeflow and floor run under cachegrind too."""
    impls = [i for i in IMPLEMENTATIONS if not only or only in i.key + " " + i.label]
    if not impls:
        print(f"(no implementation matches --only {only!r})")
        return []
    print(f"The ints 0..{n - 1:_} in batches of {SIZE}, each batch summed: {-(-n // SIZE):_} sums.")
    print("Each implementation's sums are checked once, in order, against the plain loop.")
    res = measure("batches", Workload(_inputs, _check), impls, n, rounds)
    print_rates(res, impls, rounds)
    print("\nTargets (ratios are medians of the per-round ratios):")
    keys = {impl.key for impl in impls}
    pair = ("pf-batch-asrc", "agen-appends-step")
    work = floor_work([pair] if set(pair) <= keys else [], count)
    targets = _targets(res, work)
    print_targets(targets)
    return targets
