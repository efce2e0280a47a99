"""The map -> filter -> map pipelines under test: baselines and pipeflow variants.

Every implementation computes ``x + 1``, keeps even results, then ``x * 2`` over
``range(n)``, and consumes every output. ``run(n, check)`` returns
``(count, total)``: with ``check`` the outputs are also summed (and pipeflow's own
counters are checked), without it they are only counted, which is what is timed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from itertools import islice
from typing import Any

from aiostream import pipe, stream

from pipeflow.monitoring import StreamMonitor
from pipeflow.streams import BackpressureConfig, Pipeable, StreamPipe
from pipeflow.streams import filter as pf_filter
from pipeflow.streams import map as pf_map

__all__ = ["IMPLEMENTATIONS", "Impl", "Tally", "expected"]

#: (number of outputs, sum of outputs or 0 when not checking)
Tally = tuple[int, int]

#: Items per slot of the hand-written queue pipeline (pipeflow's MAX_CHUNK too).
BATCH = 256
QUEUE_SLOTS = 1000


def expected(n: int) -> Tally:
    """The outputs are 2*y for the even y in 1..n: count k = n // 2, sum 2k(k+1)."""
    k = n // 2
    return k, 2 * k * (k + 1)


# -- the per-item functions -----------------------------------------------------


def add_one(x: int) -> int:
    return x + 1


def is_even(x: int) -> bool:
    return x % 2 == 0


def double(x: int) -> int:
    return x * 2


async def add_one_async(x: int) -> int:
    return x + 1


async def is_even_async(x: int) -> bool:
    return x % 2 == 0


async def double_async(x: int) -> int:
    return x * 2


# -- consuming ----------------------------------------------------------------------


async def drain(items: AsyncIterable[int], check: bool) -> Tally:
    """Consume every output: count it (and sum it when checking)."""
    count = 0
    if check:
        total = 0
        async for x in items:
            count += 1
            total += x
        return count, total
    async for _ in items:
        count += 1
    return count, 0


# -- baselines ----------------------------------------------------------------------


async def sync_loop(n: int, check: bool) -> Tally:
    """A plain for-loop calling the sync functions: the Python limit."""
    count = total = 0
    if check:
        for x in range(n):
            y = add_one(x)
            if is_even(y):
                count += 1
                total += double(y)
        return count, total
    for x in range(n):
        y = add_one(x)
        if is_even(y):
            double(y)
            count += 1
    return count, 0


async def _numbers(n: int) -> AsyncIterator[int]:
    for x in range(n):
        yield x


async def _amap(fn: Callable[[int], int], items: AsyncIterable[int]) -> AsyncIterator[int]:
    async for x in items:
        yield fn(x)


async def _amap_first(fn: Callable[[int], int], items: Iterable[int]) -> AsyncIterator[int]:
    """A first stage reading a plain iterable, as pipeflow reads ``range(n)``."""
    for x in items:
        yield fn(x)


async def _afilter(fn: Callable[[int], bool], items: AsyncIterable[int]) -> AsyncIterator[int]:
    async for x in items:
        if fn(x):
            yield x


async def _amap_await(
    fn: Callable[[int], Awaitable[int]], items: AsyncIterable[int]
) -> AsyncIterator[int]:
    async for x in items:
        yield await fn(x)


async def _amap_await_first(
    fn: Callable[[int], Awaitable[int]], items: Iterable[int]
) -> AsyncIterator[int]:
    for x in items:
        yield await fn(x)


async def _afilter_await(
    fn: Callable[[int], Awaitable[bool]], items: AsyncIterable[int]
) -> AsyncIterator[int]:
    async for x in items:
        if await fn(x):
            yield x


async def agen_chain(n: int, check: bool) -> Tally:
    """Async generators chained by hand, calling the sync functions; the first one
    iterates ``range(n)``, the source pipeflow's (a) reads."""
    return await drain(_amap(double, _afilter(is_even, _amap_first(add_one, range(n)))), check)


async def _one_generator(n: int) -> AsyncIterator[int]:
    for x in range(n):
        y = add_one(x)
        if is_even(y):
            yield double(y)


async def agen_one(n: int, check: bool) -> Tally:
    """One async generator doing all three steps inline: the least an async
    iterator can cost per result, whatever library produces it."""
    return await drain(_one_generator(n), check)


async def agen_chain_async_source(n: int, check: bool) -> Tally:
    """The same chain over an async-generator source: one generator more per item."""
    return await drain(_amap(double, _afilter(is_even, _amap(add_one, _numbers(n)))), check)


async def agen_chain_async(n: int, check: bool) -> Tally:
    """The chain of ``agen_chain``, awaiting async functions."""
    chain = _amap_await(
        double_async, _afilter_await(is_even_async, _amap_await_first(add_one_async, range(n)))
    )
    return await drain(chain, check)


Batch = list[int] | None  # None ends the stream


async def _queue_stage(
    fn: Callable[[list[int]], list[int]], inq: asyncio.Queue[Batch], outq: asyncio.Queue[Batch]
) -> None:
    while (batch := await inq.get()) is not None:
        if out := fn(batch):
            await outq.put(out)
    await outq.put(None)


async def _queue_source(n: int, outq: asyncio.Queue[Batch]) -> None:
    it = iter(range(n))
    while batch := list(islice(it, BATCH)):
        await outq.put(batch)
    await outq.put(None)


async def queue_pipeline(n: int, check: bool) -> Tally:
    """A source task and one task per stage, joined by asyncio.Queue(maxsize=1000)
    holding lists of up to 256 items per slot."""
    q: list[asyncio.Queue[Batch]] = [asyncio.Queue(maxsize=QUEUE_SLOTS) for _ in range(4)]
    stages: list[Callable[[list[int]], list[int]]] = [
        lambda b: [add_one(x) for x in b],
        lambda b: [x for x in b if is_even(x)],
        lambda b: [double(x) for x in b],
    ]
    tasks = [asyncio.create_task(_queue_source(n, q[0]))]
    tasks += [asyncio.create_task(_queue_stage(fn, q[i], q[i + 1])) for i, fn in enumerate(stages)]
    try:
        return await _drain_batches(q[3], check)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _drain_batches(q: asyncio.Queue[Batch], check: bool) -> Tally:
    count = total = 0
    if check:
        while (batch := await q.get()) is not None:
            for x in batch:
                count += 1
                total += x
        return count, total
    while (batch := await q.get()) is not None:
        for _ in batch:
            count += 1
    return count, 0


async def aiostream_chain(n: int, check: bool) -> Tally:
    """aiostream 0.8: ``stream.iterate | pipe.map | pipe.filter | pipe.map``."""
    # aiostream's MapCallable protocol wants ``(arg, /, *args)``, though one-argument
    # functions are what its docs show; Any keeps mypy quiet with or without aiostream.
    first: Any = add_one
    last: Any = double
    xs = stream.iterate(range(n)) | pipe.map(first) | pipe.filter(is_even) | pipe.map(last)
    async with xs.stream() as items:
        tally = await drain(items, check)
    return tally


# -- pipeflow -------------------------------------------------------------------------


class AddOne(StreamPipe[int, int]):
    async def process_item(self, item: int) -> int:
        return item + 1


class Double(StreamPipe[int, int]):
    async def process_item(self, item: int) -> int:
        return item * 2


class KeepEven(StreamPipe[int, int]):
    """A subclass can only drop items by taking over ``process_stream``."""

    async def process_stream(self, stream: AsyncIterator[int]) -> AsyncIterator[int]:
        async for x in stream:
            if await is_even_async(x):
                yield x


def _buffered() -> BackpressureConfig:
    return BackpressureConfig()


async def _run_pipeflow(
    pipeline: Pipeable[int, int], source: Iterable[int] | AsyncIterable[int], n: int, check: bool
) -> Tally:
    async with pipeline.stream(source) as results:
        tally = await drain(results, check)
        if check:
            want = expected(n)[0]
            stats = results.statistics()
            if stats[0].items_in != n or stats[-1].items_out != want:
                raise RuntimeError(f"{pipeline.name}: statistics() disagree: {stats}")
    return tally


async def pf_operators(n: int, check: bool) -> Tally:
    """pipeflow ``map(f1) | filter(f2) | map(f3)`` with sync functions."""
    pipeline = pf_map(add_one) | pf_filter(is_even) | pf_map(double)
    return await _run_pipeflow(pipeline, range(n), n, check)


async def pf_operators_chunks(n: int, check: bool) -> Tally:
    """As ``pf_operators``, the results taken a list at a time with ``chunks()``
    (as the queue pipeline's consumer takes its lists)."""
    pipeline = pf_map(add_one) | pf_filter(is_even) | pf_map(double)
    count = total = 0
    async with pipeline.stream(range(n)) as results:
        if check:
            async for chunk in results.chunks():
                count += len(chunk)
                total += sum(chunk)
            return count, total
        async for chunk in results.chunks():
            for _ in chunk:
                count += 1
    return count, 0


async def pf_subclasses(n: int, check: bool) -> Tally:
    """Subclasses overriding ``process_item``; the filter is ``filter(async fn)``."""
    pipeline = AddOne() | pf_filter(is_even_async) | Double()
    return await _run_pipeflow(pipeline, range(n), n, check)


async def pf_subclasses_stream_filter(n: int, check: bool) -> Tally:
    """Three subclasses; the filter one overrides ``process_stream``."""
    pipeline = AddOne() | KeepEven() | Double()
    return await _run_pipeflow(pipeline, range(n), n, check)


async def pf_operators_async_source(n: int, check: bool) -> Tally:
    """As ``pf_operators``, over the async-generator source the chains read."""
    pipeline = pf_map(add_one) | pf_filter(is_even) | pf_map(double)
    return await _run_pipeflow(pipeline, _numbers(n), n, check)


def _buffered_pipeline() -> Pipeable[int, int]:
    return (
        AddOne(config=_buffered())
        | pf_filter(is_even_async, config=_buffered())
        | Double(config=_buffered())
    )


async def pf_buffered(n: int, check: bool) -> Tally:
    """As ``pf_subclasses``, each pipe with ``config=BackpressureConfig()``."""
    return await _run_pipeflow(_buffered_pipeline(), range(n), n, check)


async def pf_buffered_monitored(n: int, check: bool) -> Tally:
    """As ``pf_buffered``, with a ``StreamMonitor`` set on the pipeline."""
    pipeline = _buffered_pipeline()
    monitor = StreamMonitor()
    pipeline.set_monitor(monitor)
    tally = await _run_pipeflow(pipeline, range(n), n, check)
    if check:
        metrics = monitor.get_metrics()
        if metrics.items_in != n or metrics.items_out != expected(n)[0]:
            raise RuntimeError(f"monitor disagrees: {metrics}")
    return tally


# -- the registry -----------------------------------------------------------------------


@dataclass(frozen=True)
class Impl:
    """An implementation: ``key`` is what ``--only`` and the targets refer to.

    A slow one runs over ``n // divisor`` items, to keep the suite short.
    """

    key: str
    label: str
    run: Callable[[int, bool], Awaitable[Tally]]
    divisor: int = 1

    def items(self, n: int) -> int:
        return max(n // self.divisor, 2)


#: In the order they run in each round: the implementations a target compares run
#: next to each other, so that a change in the machine's speed between them
#: (the machine may be shared) skews their ratio as little as possible.
IMPLEMENTATIONS: tuple[Impl, ...] = (
    Impl("for-loop", "plain synchronous for-loop (the Python limit)", sync_loop),
    Impl("pf-ops", "(a) pipeflow map | filter | map, sync functions", pf_operators),
    Impl("agen-sync", "async-generator chain, sync functions", agen_chain),
    Impl("pf-ops-chunks", "(a'') = (a), results taken in lists: chunks()", pf_operators_chunks),
    Impl("agen-one", "one async generator, all three steps inline", agen_one),
    Impl(
        "agen-sync-asrc",
        "the chain over an async-generator source",
        agen_chain_async_source,
    ),
    Impl(
        "pf-ops-asrc",
        "(a') = (a) over that async-generator source",
        pf_operators_async_source,
    ),
    Impl("agen-async", "async-generator chain, awaiting async functions", agen_chain_async),
    Impl("pf-sub", "(b) pipeflow subclasses (process_item), async filter", pf_subclasses),
    Impl("pf-sub-buf", "(c) = (b), each pipe config=BackpressureConfig()", pf_buffered),
    Impl("pf-sub-mon", "(d) = (c) + StreamMonitor via set_monitor", pf_buffered_monitored),
    Impl(
        "pf-sub-stream",
        "(b') pipeflow 3 subclasses, filter via process_stream",
        pf_subclasses_stream_filter,
    ),
    Impl("queue-256", "asyncio.Queue(1000) per stage, lists of 256", queue_pipeline),
    Impl("aiostream", "aiostream map | filter | map (sync functions)", aiostream_chain, 10),
)
