"""The map -> filter -> map pipelines under test: baselines and pipeflow variants.

Every implementation computes ``x + 1``, keeps even results, then ``x * 2`` over
the ints ``0..m-1`` and consumes every output. Its input is a list of them, built
before any timer starts. An implementation reads that list itself (a "list
source"), or ``numbers(list)``, an async generator handing the items over one by
one (an "async source"): both sides of every comparison read the same kind of
source. ``run(data, check)`` returns ``(count, total)``: with ``check`` the
outputs are also summed (and pipeflow's own counters are checked), without it
they are only counted, which is what is timed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from aiostream import pipe, stream

from pipeflow.monitoring import StreamMonitor
from pipeflow.streams import BackpressureConfig, Pipeable, StreamPipe
from pipeflow.streams import filter as pf_filter
from pipeflow.streams import map as pf_map

__all__ = ["IMPLEMENTATIONS", "Impl", "Tally", "every_item", "expected", "numbers"]

#: (number of outputs, sum of outputs or 0 when not checking)
Tally = tuple[int, int]

#: Items per slot of the hand-written queue pipeline (pipeflow's MAX_CHUNK too).
BATCH = 256
QUEUE_SLOTS = 1000
#: The share of the items the ``process_stream`` chains run over (300,000 of 1,000,000).
PROCESS_STREAM_SHARE = 0.3


def expected(m: int) -> Tally:
    """The outputs are 2*y for the even y in 1..m: count k = m // 2, sum 2k(k+1)."""
    k = m // 2
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


# -- sources and consuming -----------------------------------------------------------


async def numbers(items: Iterable[int]) -> AsyncIterator[int]:
    """The async source: hands the items over one at a time, never waiting."""
    for x in items:
        yield x


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


async def sync_loop(data: list[int], check: bool) -> Tally:
    """A plain for-loop calling the sync functions: the Python limit."""
    count = total = 0
    if check:
        for x in data:
            y = add_one(x)
            if is_even(y):
                count += 1
                total += double(y)
        return count, total
    for x in data:
        y = add_one(x)
        if is_even(y):
            double(y)
            count += 1
    return count, 0


async def _passing(items: Iterable[int]) -> AsyncIterator[int]:
    """One async generator yielding every item of the list, nothing else."""
    for x in items:
        yield x


def every_item(m: int) -> Tally:
    """What draining all ``m`` input items gives: count m, sum m(m-1)/2."""
    return m, m * (m - 1) // 2


async def agen_bare(data: list[int], check: bool) -> Tally:
    """One async generator handing the consumer every item of the list: what an
    ``async for`` over an async generator costs per item, with no work at all."""
    return await drain(_passing(data), check)


async def source_bare(data: list[int], check: bool) -> Tally:
    """The async source itself, drained: what reading it costs per item."""
    return await drain(numbers(data), check)


async def _amap(fn: Callable[[int], int], items: AsyncIterable[int]) -> AsyncIterator[int]:
    async for x in items:
        yield fn(x)


async def _amap_first(fn: Callable[[int], int], items: Iterable[int]) -> AsyncIterator[int]:
    """A first stage reading the list itself, as pipeflow reads it."""
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


async def agen_chain(data: list[int], check: bool) -> Tally:
    """Async generators chained by hand, calling the sync functions; the first one
    iterates the list itself."""
    return await drain(_amap(double, _afilter(is_even, _amap_first(add_one, data))), check)


async def agen_chain_async_source(data: list[int], check: bool) -> Tally:
    """The same chain over the async source."""
    return await drain(_amap(double, _afilter(is_even, _amap(add_one, numbers(data)))), check)


async def _one_generator(items: Iterable[int]) -> AsyncIterator[int]:
    for x in items:
        y = add_one(x)
        if is_even(y):
            yield double(y)


async def _one_generator_async_source(items: AsyncIterable[int]) -> AsyncIterator[int]:
    async for x in items:
        y = add_one(x)
        if is_even(y):
            yield double(y)


async def agen_one(data: list[int], check: bool) -> Tally:
    """One async generator doing all three steps inline over the list: the least an
    async iterator can cost per result, whatever library produces it."""
    return await drain(_one_generator(data), check)


async def agen_one_async_source(data: list[int], check: bool) -> Tally:
    """One async generator doing all three steps inline over the async source."""
    return await drain(_one_generator_async_source(numbers(data)), check)


# -- floors: the hand-written code plus the least that per-stage counts add --------
#
# pipeflow keeps, for every stage, how many items went in and came out, readable
# at any time (``statistics()``, monitors). These are the baselines with the least
# such counting costs, written by hand: what no implementation that keeps the
# counts can beat. Counters are floats, the cheapest Python number to add to (one
# from the interpreter's free list; an int past 256 is a new object every time).


async def _one_generator_counted(items: Iterable[int]) -> AsyncIterator[int]:
    """``_one_generator``, counting what the filter passes (the items in and the
    other counts follow from the list's length)."""
    passed = 0.0
    for x in items:
        y = add_one(x)
        if is_even(y):
            passed += 1.0
            yield double(y)


async def _one_generator_counted_async_source(items: AsyncIterable[int]) -> AsyncIterator[int]:
    """``_one_generator_async_source``, counting each item once, where it ends
    (yielded or dropped): from an async source, items in must be counted too."""
    passed = dropped = 0.0
    async for x in items:
        y = add_one(x)
        if is_even(y):
            passed += 1.0
            yield double(y)
        else:
            dropped += 1.0


async def agen_one_counted(data: list[int], check: bool) -> Tally:
    """Floor for (a): one async generator, three steps inline, counting its filter's passes."""
    return await drain(_one_generator_counted(data), check)


async def agen_one_counted_async_source(data: list[int], check: bool) -> Tally:
    """Floor for (a'): the same over the async source, counting each item."""
    return await drain(_one_generator_counted_async_source(numbers(data)), check)


async def _handed(items: Iterable[int]) -> AsyncIterator[int]:
    """The list handed over as an async iterator (a library's first
    ``process_stream`` gets one; its items are counted a list at a time)."""
    for x in items:
        yield x


async def _counting(items: AsyncIterable[int]) -> AsyncIterator[int]:
    """A pass-through counting what goes by: the only place a library can count
    between two ``process_stream`` generators it does not own."""
    n = 0.0
    async for x in items:
        n += 1.0
        yield x


def _bounded_chain(first: AsyncIterable[int]) -> AsyncIterator[int]:
    """``agen_chain_async``'s three generators over ``first``, counted between them,
    and the pass-through the consumer iterates (it counts the last one's outputs)."""
    chain = _amap_await(
        double_async,
        _counting(_afilter_await(is_even_async, _counting(_amap_await(add_one_async, first)))),
    )
    return _counting(chain)


async def agen_chain_bounded(data: list[int], check: bool) -> Tally:
    """Floor for (e): the hand-written chain with the generators a library adds."""
    return await drain(_bounded_chain(_handed(data)), check)


async def agen_chain_bounded_async_source(data: list[int], check: bool) -> Tally:
    """Floor for (e'): the same over the async source, whose items a library counts
    as it hands them to the first generator."""
    return await drain(_bounded_chain(_counting(numbers(data))), check)


async def agen_chain_async(data: list[int], check: bool) -> Tally:
    """A chain of three async generators, each awaiting its async function per item;
    the first one iterates the list itself."""
    chain = _amap_await(
        double_async, _afilter_await(is_even_async, _amap_await_first(add_one_async, data))
    )
    return await drain(chain, check)


async def agen_chain_async_async_source(data: list[int], check: bool) -> Tally:
    """``agen_chain_async`` whose first generator iterates the async source."""
    chain = _amap_await(
        double_async, _afilter_await(is_even_async, _amap_await(add_one_async, numbers(data)))
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


async def _queue_source(data: list[int], outq: asyncio.Queue[Batch]) -> None:
    for i in range(0, len(data), BATCH):
        await outq.put(data[i : i + BATCH])
    await outq.put(None)


async def queue_pipeline(data: list[int], check: bool) -> Tally:
    """A source task slicing the list and one task per stage, joined by
    asyncio.Queue(maxsize=1000) holding lists of up to 256 items per slot."""
    q: list[asyncio.Queue[Batch]] = [asyncio.Queue(maxsize=QUEUE_SLOTS) for _ in range(4)]
    stages: list[Callable[[list[int]], list[int]]] = [
        lambda b: [add_one(x) for x in b],
        lambda b: [x for x in b if is_even(x)],
        lambda b: [double(x) for x in b],
    ]
    tasks = [asyncio.create_task(_queue_source(data, q[0]))]
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


async def aiostream_chain(data: list[int], check: bool) -> Tally:
    """aiostream 0.8: ``stream.iterate(async source) | pipe.map | pipe.filter | pipe.map``.

    Given the async source, ``stream.iterate`` reads it as it is (given a plain
    iterable, it would let the event loop run after every item).
    """
    # aiostream's MapCallable protocol wants ``(arg, /, *args)``, though one-argument
    # functions are what its docs show; Any keeps mypy quiet with or without aiostream.
    first: Any = add_one
    last: Any = double
    xs = stream.iterate(numbers(data)) | pipe.map(first) | pipe.filter(is_even) | pipe.map(last)
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


class AddOneStream(StreamPipe[int, int]):
    """``process_stream`` awaiting an async function per item."""

    async def process_stream(self, stream: AsyncIterator[int]) -> AsyncIterator[int]:
        async for x in stream:
            yield await add_one_async(x)


class DoubleStream(StreamPipe[int, int]):
    """``process_stream`` awaiting an async function per item."""

    async def process_stream(self, stream: AsyncIterator[int]) -> AsyncIterator[int]:
        async for x in stream:
            yield await double_async(x)


def _buffered() -> BackpressureConfig:
    return BackpressureConfig()


# The pipeflow implementations below are plain functions returning this
# coroutine, so that the loop taking the results runs as deep in the stack as the
# hand-written ones' (``agen_one`` awaits ``drain``): CPython does a little work
# per frame running when an async generator hands an item over.
async def _run_pipeflow(
    pipeline: Pipeable[int, int], source: Iterable[int] | AsyncIterable[int], m: int, check: bool
) -> Tally:
    async with pipeline.stream(source) as results:
        tally = await drain(results, check)
        if check:
            want = expected(m)[0]
            stats = results.statistics()
            if stats[0].items_in != m or stats[-1].items_out != want:
                raise RuntimeError(f"{pipeline.name}: statistics() disagree: {stats}")
    return tally


def _operators() -> Pipeable[int, int]:
    return pf_map(add_one) | pf_filter(is_even) | pf_map(double)


def pf_operators(data: list[int], check: bool) -> Awaitable[Tally]:
    """pipeflow ``map(f1) | filter(f2) | map(f3)`` with sync functions."""
    return _run_pipeflow(_operators(), data, len(data), check)


def pf_operators_async_source(data: list[int], check: bool) -> Awaitable[Tally]:
    """As ``pf_operators``, over the async source."""
    return _run_pipeflow(_operators(), numbers(data), len(data), check)


async def pf_operators_chunks(data: list[int], check: bool) -> Tally:
    """As ``pf_operators``, the results taken a list at a time with ``chunks()``
    (as the queue pipeline's consumer takes its lists)."""
    count = total = 0
    async with _operators().stream(data) as results:
        if check:
            async for chunk in results.chunks():
                count += len(chunk)
                total += sum(chunk)
            return count, total
        async for chunk in results.chunks():
            for _ in chunk:
                count += 1
    return count, 0


def pf_subclasses(data: list[int], check: bool) -> Awaitable[Tally]:
    """Subclasses overriding ``process_item``; the filter is ``filter(async fn)``."""
    pipeline = AddOne() | pf_filter(is_even_async) | Double()
    return _run_pipeflow(pipeline, data, len(data), check)


def pf_subclasses_stream_filter(data: list[int], check: bool) -> Awaitable[Tally]:
    """Three subclasses; the filter one overrides ``process_stream``."""
    pipeline = AddOne() | KeepEven() | Double()
    return _run_pipeflow(pipeline, data, len(data), check)


def _stream_subclasses() -> Pipeable[int, int]:
    return AddOneStream() | KeepEven() | DoubleStream()


def pf_process_stream(data: list[int], check: bool) -> Awaitable[Tally]:
    """Three subclasses overriding ``process_stream``, each awaiting an async function
    per item, over the list."""
    return _run_pipeflow(_stream_subclasses(), data, len(data), check)


def pf_process_stream_async_source(data: list[int], check: bool) -> Awaitable[Tally]:
    """As ``pf_process_stream``, over the async source."""
    return _run_pipeflow(_stream_subclasses(), numbers(data), len(data), check)


def _buffered_pipeline() -> Pipeable[int, int]:
    return (
        AddOne(config=_buffered())
        | pf_filter(is_even_async, config=_buffered())
        | Double(config=_buffered())
    )


def pf_buffered(data: list[int], check: bool) -> Awaitable[Tally]:
    """As ``pf_subclasses``, each pipe with ``config=BackpressureConfig()``."""
    return _run_pipeflow(_buffered_pipeline(), data, len(data), check)


async def pf_buffered_monitored(data: list[int], check: bool) -> Tally:
    """As ``pf_buffered``, with a ``StreamMonitor`` set on the pipeline."""
    pipeline = _buffered_pipeline()
    monitor = StreamMonitor()
    pipeline.set_monitor(monitor)
    tally = await _run_pipeflow(pipeline, data, len(data), check)
    if check:
        metrics = monitor.get_metrics()
        if metrics.items_in != len(data) or metrics.items_out != expected(len(data))[0]:
            raise RuntimeError(f"monitor disagrees: {metrics}")
    return tally


# -- the registry -----------------------------------------------------------------------


@dataclass(frozen=True)
class Impl:
    """An implementation: ``key`` is what ``--only`` and the targets refer to.

    ``base`` is the key of the hand-written implementation over the same kind of
    source its table row is compared with. A slow one runs over ``n * share``
    items, to keep the suite short. The two floors (an async generator that
    only hands items over) output every item: ``expect`` says what they give.
    """

    key: str
    label: str
    run: Callable[[list[int], bool], Awaitable[Tally]]
    base: str | None = None
    share: float = 1.0
    #: The outputs over ``m`` items: the pipelines' by default.
    expect: Callable[[int], Tally] = expected

    def items(self, n: int) -> int:
        return max(int(n * self.share), 2)


_PS = PROCESS_STREAM_SHARE

#: In the order they run in each round: the implementations a target compares run
#: next to each other, so that a change in the machine's speed between them
#: (the machine may be shared) skews their ratio as little as possible.
IMPLEMENTATIONS: tuple[Impl, ...] = (
    # -- list source
    Impl("for-loop", "plain synchronous for-loop (the Python limit)", sync_loop),
    Impl(
        "pf-ops-chunks",
        "(a'') = (a), results taken in lists: chunks()",
        pf_operators_chunks,
        "for-loop",
    ),
    Impl("agen-one", "one async generator, all three steps inline", agen_one),
    Impl("pf-ops", "(a) pipeflow map | filter | map, sync functions", pf_operators, "agen-one"),
    Impl(
        "agen-one-count",
        "floor for (a): the one generator, counting its filter's passes",
        agen_one_counted,
        "agen-one",
    ),
    Impl("agen-sync", "async-generator chain, sync functions", agen_chain, "agen-one"),
    Impl(
        "agen-bare",
        "floor: an async generator yielding every item, no work",
        agen_bare,
        "agen-one",
        expect=every_item,
    ),
    Impl("agen-async", "async-generator chain, awaiting async functions", agen_chain_async),
    Impl(
        "pf-sub",
        "(b) pipeflow subclasses (process_item), async filter",
        pf_subclasses,
        "agen-async",
    ),
    Impl(
        "pf-sub-buf", "(c) = (b), each pipe config=BackpressureConfig()", pf_buffered, "agen-async"
    ),
    Impl(
        "pf-sub-mon",
        "(d) = (c) + StreamMonitor via set_monitor",
        pf_buffered_monitored,
        "agen-async",
    ),
    Impl(
        "pf-sub-stream",
        "(b') = (b), the filter a process_stream override",
        pf_subclasses_stream_filter,
        "agen-async",
    ),
    Impl("queue-256", "asyncio.Queue(1000) per stage, lists of 256", queue_pipeline, "agen-one"),
    Impl("agen-ps", "the chain awaiting async functions", agen_chain_async, share=_PS),
    Impl(
        "pf-ps",
        "(e) pipeflow 3 process_stream subclasses, async fns",
        pf_process_stream,
        "agen-ps",
        share=_PS,
    ),
    Impl(
        "agen-ps-bounds",
        "floor for (e): the chain, with a library's generators",
        agen_chain_bounded,
        "agen-ps",
        share=_PS,
    ),
    # -- async source
    Impl(
        "agen-one-asrc", "async src: one async generator, three steps inline", agen_one_async_source
    ),
    Impl("pf-ops-asrc", "async src: (a') = (a)", pf_operators_async_source, "agen-one-asrc"),
    Impl(
        "agen-one-count-asrc",
        "async src: floor for (a'): counting each item",
        agen_one_counted_async_source,
        "agen-one-asrc",
    ),
    Impl(
        "src-bare",
        "async src: floor: the source alone, drained",
        source_bare,
        "agen-one-asrc",
        expect=every_item,
    ),
    Impl(
        "agen-sync-asrc",
        "async src: async-generator chain, sync functions",
        agen_chain_async_source,
        "agen-one-asrc",
    ),
    Impl(
        "agen-ps-asrc",
        "async src: the chain awaiting async functions",
        agen_chain_async_async_source,
        share=_PS,
    ),
    Impl(
        "pf-ps-asrc",
        "async src: (e') = (e)",
        pf_process_stream_async_source,
        "agen-ps-asrc",
        share=_PS,
    ),
    Impl(
        "agen-ps-bounds-asrc",
        "async src: floor for (e')",
        agen_chain_bounded_async_source,
        "agen-ps-asrc",
        share=_PS,
    ),
    Impl(
        "aiostream",
        "async src: aiostream map | filter | map, sync fns",
        aiostream_chain,
        "agen-one-asrc",
        share=0.1,
    ),
)
