"""map / filter / flat_map operators, composition with ``|`` and Pipeline."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any, TypeVar

import pytest

from helpers import agen, collect, collect_timed
from pipeflow.monitoring import StreamMonitor
from pipeflow.streams import (
    MAX_CHUNK,
    BackpressureConfig,
    FunctionPipe,
    Pipeable,
    Pipeline,
    Retry,
    StreamPipe,
    filter,
    flat_map,
    map,
)
from pipeflow.testing import TestSource, VirtualClock

T = TypeVar("T")


def double(x: int) -> int:
    return x * 2


async def adouble(x: int) -> int:
    await asyncio.sleep(0)
    return x * 2


def inc(x: int) -> int:
    return x + 1


def is_even(x: int) -> bool:
    return x % 2 == 0


async def ais_even(x: int) -> bool:
    await asyncio.sleep(0)
    return x % 2 == 0


def repeat(x: int) -> list[int]:
    """x copies of x."""
    return [x] * x


def repeat_gen(x: int) -> Iterator[int]:
    yield from [x] * x


async def arepeat(x: int) -> list[int]:
    await asyncio.sleep(0)
    return [x] * x


async def arepeat_gen(x: int) -> AsyncIterator[int]:
    for _ in range(x):
        await asyncio.sleep(0)
        yield x


class Inc(StreamPipe[int, int]):
    async def process_item(self, item: int) -> int:
        return item + 1


# -- map / filter / flat_map ----------------------------------------------------


async def test_map_sync_fn() -> None:
    """map applies a sync function to every item."""
    assert [0, 2, 4] == await collect(map(double).stream(range(3)))


async def test_map_async_fn() -> None:
    """map awaits an async function's result."""
    assert [0, 2, 4] == await collect(map(adouble).stream(range(3)))


async def test_map_lambda() -> None:
    """map takes a lambda."""
    pipe: FunctionPipe[int, str] = map(lambda x: str(x))
    assert ["1", "2"] == await collect(pipe.stream([1, 2]))


async def test_map_on_async_source() -> None:
    """map works on an async source too."""
    assert [2, 4] == await collect(map(adouble).stream(agen([1, 2])))


async def test_filter_sync_fn() -> None:
    """filter keeps the items for which a sync predicate is true."""
    assert [0, 2, 4] == await collect(filter(is_even).stream(range(6)))


async def test_filter_async_fn() -> None:
    """filter awaits an async predicate."""
    assert [0, 2, 4] == await collect(filter(ais_even).stream(range(6)))


async def test_filter_uses_truthiness() -> None:
    """filter keeps the item itself (not the predicate result) when the result is truthy."""
    pipe: FunctionPipe[int, int] = filter(lambda x: x % 2)
    assert [1, 3] == await collect(pipe.stream(range(5)))


async def test_filter_dropping_everything() -> None:
    """A filter that rejects everything gives an empty stream."""
    pipe: FunctionPipe[int, int] = filter(lambda _: False)
    assert [] == await collect(pipe.stream(range(1000)))


@pytest.mark.parametrize("fn", [repeat, repeat_gen, arepeat, arepeat_gen], ids=lambda f: f.__name__)
async def test_flat_map_emits_every_element(fn: Any) -> None:
    """flat_map flattens a list, a sync generator, an awaited list or an async generator."""
    expected = [1, 2, 2, 3, 3, 3]
    assert expected == await collect(flat_map(fn).stream([0, 1, 2, 3]))


async def test_flat_map_async_generator_on_async_source() -> None:
    """An async generator function works with flat_map on an async source."""
    assert [2, 2, 1] == await collect(flat_map(arepeat_gen).stream(agen([2, 0, 1])))


async def test_flat_map_str_split() -> None:
    """flat_map(str.split) splits lines into words."""
    words = await collect(flat_map(str.split).stream(["a b", "", "c"]))
    assert ["a", "b", "c"] == words


async def test_operators_are_function_pipes() -> None:
    """Operators are StreamPipe subclasses (FunctionPipe instances)."""
    for pipe in (map(double), filter(is_even), flat_map(repeat)):
        assert isinstance(pipe, FunctionPipe)
        assert isinstance(pipe, StreamPipe)


@pytest.mark.parametrize(
    ("operator", "label"), [(map, "map"), (filter, "filter"), (flat_map, "flat_map")]
)
async def test_operator_with_non_callable_raises_type_error(operator: Any, label: str) -> None:
    """An operator needs a function; the error names the operator as the user called it."""
    with pytest.raises(TypeError, match=rf"^{label}\(\) takes a function, got int"):
        operator(42)


# -- names ------------------------------------------------------------------------


async def test_default_operator_names() -> None:
    """Operators are named after the operator and the function."""
    assert "map(double)" == map(double).name
    assert "map(adouble)" == map(adouble).name
    assert "filter(is_even)" == filter(is_even).name
    assert "flat_map(repeat)" == flat_map(repeat).name


async def test_lambda_operator_name() -> None:
    """A lambda's name is used as it is."""
    assert "map(<lambda>)" == map(lambda x: x).name


async def test_operator_name_argument() -> None:
    """name= overrides the default name."""
    assert "doubler" == map(double, name="doubler").name


async def test_pipeline_default_name_joins_stage_names() -> None:
    """A pipeline is named after its pipes, joined by ' | '."""
    pipeline = map(double) | filter(is_even) | Inc()
    assert "map(double) | filter(is_even) | Inc" == pipeline.name


async def test_pipeline_name_argument() -> None:
    """Pipeline(name=...) overrides the joined name."""
    assert "etl" == Pipeline(map(double), Inc(), name="etl").name


@pytest.mark.parametrize("name", ["", 5], ids=repr)
@pytest.mark.parametrize(
    "make",
    [
        lambda name: map(double, name=name),
        lambda name: filter(is_even, name=name),
        lambda name: flat_map(repeat, name=name),
        lambda name: Pipeline(map(double), name=name),
    ],
    ids=["map", "filter", "flat_map", "Pipeline"],
)
def test_a_name_that_is_not_a_non_empty_str_is_refused(make: Any, name: Any) -> None:
    """An operator or a pipeline refuses an empty or non-str name, as StreamPipe
    does, rather than quietly using its default name."""
    with pytest.raises(ValueError, match="name must be") as info:
        make(name)
    expected = f"name must be a non-empty str, or None for the default name; got {name!r}"
    assert expected == str(info.value)


@pytest.mark.parametrize("ordered", ["no", 0, None], ids=repr)
@pytest.mark.parametrize("operator", [map, filter, flat_map], ids=lambda op: op.__name__)
def test_an_operator_refuses_an_ordered_that_is_not_a_bool(operator: Any, ordered: Any) -> None:
    """ordered takes a bool only: "no" would be true, and quietly keep the order."""
    with pytest.raises(TypeError, match="ordered must be") as info:
        operator(adouble, ordered=ordered)
    assert f"ordered must be True or False, got {ordered!r}" == str(info.value)


# -- composition --------------------------------------------------------------------


async def test_composition_runs_pipes_in_order() -> None:
    """a | b | c applies a, then b, then c."""
    pipeline: Pipeable[int, int] = map(inc) | filter(is_even) | map(lambda x: x * 10)
    assert [20, 40, 60] == await collect(pipeline.stream(range(6)))


async def test_composition_builds_a_pipeline() -> None:
    """| returns a Pipeline listing the pipes in order."""
    a, b, c = map(double), filter(is_even), Inc()
    pipeline = a | b | c
    assert isinstance(pipeline, Pipeline)
    assert (a, b, c) == pipeline.pipes


async def test_nested_pipelines_flatten() -> None:
    """Composing pipelines flattens them into one list of pipes."""
    a, b, c, d = map(double), filter(is_even), Inc(), map(adouble)
    assert (a, b, c, d) == ((a | b) | (c | d)).pipes
    assert (a, b, c, d) == (a | (b | c) | d).pipes
    assert (a, b, c, d) == Pipeline(a, Pipeline(b, Pipeline(c)), d).pipes


async def test_composition_mixes_operators_and_subclasses() -> None:
    """Operators and StreamPipe subclasses compose freely."""
    pipeline = Inc() | map(adouble) | flat_map(repeat_gen) | filter(lambda x: x > 2)
    assert [4, 4, 4, 4] == await collect(pipeline.stream([0, 1]))


async def test_same_pipe_twice_in_a_pipeline() -> None:
    """One pipe object may appear several times in a pipeline."""
    inc = Inc()
    assert [3, 4] == await collect((inc | inc).stream([1, 2]))


@pytest.mark.parametrize("other", [42, "x", None], ids=repr)
async def test_composing_with_non_pipe_raises_type_error(other: Any) -> None:
    """| with something that is not a pipe raises TypeError naming its type."""
    with pytest.raises(TypeError, match=type(other).__name__):
        map(double) | other


async def test_composing_with_plain_function_hints_at_map() -> None:
    """| with a function suggests wrapping it in map()."""
    with pytest.raises(TypeError, match=r"map\(fn\)"):
        map(double) | double  # type: ignore[operator]


async def test_non_pipe_on_the_left_raises_type_error() -> None:
    """A non-pipe on the left of | is rejected too."""
    with pytest.raises(TypeError):
        double | map(double)  # type: ignore[operator]


async def test_pipeline_constructor_rejects_non_pipes() -> None:
    """Pipeline() takes only pipes."""
    with pytest.raises(TypeError, match="int"):
        Pipeline(map(double), 42)  # type: ignore[arg-type]


async def test_pipeline_constructor_needs_a_pipe() -> None:
    """An empty Pipeline is rejected."""
    with pytest.raises(ValueError, match="at least one"):
        Pipeline()


# -- a pipeline used like a pipe ---------------------------------------------------


async def test_pipeline_streams_like_a_pipe() -> None:
    """A pipeline streams sync and async sources like a single pipe."""
    pipeline = map(double) | Inc()
    assert [1, 3, 5] == await collect(pipeline.stream([0, 1, 2]))
    assert [1, 3, 5] == await collect(pipeline.stream(TestSource([0, 1, 2])))


async def test_pipeline_is_reusable() -> None:
    """A pipeline can be streamed again, and concurrently."""
    pipeline = map(adouble) | Inc()
    a, b = await asyncio.gather(
        collect(pipeline.stream(agen([1, 2]))), collect(pipeline.stream(agen([3])))
    )
    assert [3, 5] == a
    assert [7] == b
    assert [1] == await collect(pipeline.stream([0]))


async def test_pipeline_composes_further() -> None:
    """A pipeline composes with | on either side."""
    pipeline = map(double) | Inc()
    assert [3, 5] == await collect((pipeline | filter(lambda x: x > 1)).stream([0, 1, 2]))
    assert [3, 7] == await collect((Inc() | pipeline).stream([0, 2]))


async def test_pipeline_set_monitor_counts_the_run() -> None:
    """set_monitor on a pipeline reports per-stage counts of its runs."""
    pipeline = map(double) | filter(lambda x: x % 4 == 0) | Inc()
    monitor = StreamMonitor()
    pipeline.set_monitor(monitor)
    assert [1, 5, 9] == await collect(pipeline.stream(range(6)))
    metrics = monitor.get_metrics()
    assert 6 == metrics.items_in
    assert 3 == metrics.items_out
    assert [6, 6, 3] == [s.items_in for s in metrics.stages]
    assert [6, 3, 3] == [s.items_out for s in metrics.stages]
    assert 1 == metrics.runs
    assert 0 == metrics.active_runs


async def test_set_monitor_rejects_non_monitors() -> None:
    """set_monitor takes a monitor (or None)."""
    pipeline = map(double) | Inc()
    with pytest.raises(TypeError, match="StreamMonitor"):
        pipeline.set_monitor(object())  # type: ignore[arg-type]
    pipeline.set_monitor(None)


# -- larger inputs -----------------------------------------------------------------


N = 10_000


async def test_large_sync_input_keeps_order_and_count() -> None:
    """10 000 items cross many chunk boundaries of a sync source in order."""
    assert N > 10 * MAX_CHUNK
    pipeline = map(double) | filter(lambda x: x % 3 != 0) | map(lambda x: x + 1)
    expected = [2 * x + 1 for x in range(N) if (2 * x) % 3 != 0]
    assert expected == await collect(pipeline.stream(range(N)))


async def test_large_input_through_flat_map_changes_chunk_sizes() -> None:
    """flat_map growing and shrinking chunks keeps order across chunk boundaries."""

    def copies(x: int) -> list[int]:
        return [x] * (x % 3)

    pipeline = flat_map(copies) | filter(lambda x: x % 5 != 0)
    expected = [x for x in range(N) for _ in range(x % 3) if x % 5 != 0]
    assert expected == await collect(pipeline.stream(range(N)))


async def test_large_input_through_buffers_and_async_fns() -> None:
    """10 000 items through buffered and async stages keep order and count."""

    async def not_div3(x: int) -> bool:
        return x % 3 != 0

    pipeline = (
        map(double, config=BackpressureConfig(max_buffer_size=100))
        | map(adouble)
        | Inc(config=BackpressureConfig(max_buffer_size=MAX_CHUNK + 1))
        | filter(not_div3, config=BackpressureConfig(max_buffer_size=7))
    )
    expected = [x for x in (4 * y + 1 for y in range(N)) if x % 3 != 0]
    assert [] != expected
    assert expected == await collect(pipeline.stream(range(N)))


async def test_large_input_through_buffers_keeps_everything() -> None:
    """Every one of 10 000 items passes through several buffers, in order."""
    pipeline = (
        map(double, config=BackpressureConfig(max_buffer_size=100))
        | Inc()
        | map(adouble, config=BackpressureConfig(max_buffer_size=300))
    )
    assert [(2 * x + 1) * 2 for x in range(N)] == await collect(pipeline.stream(range(N)))


async def test_large_async_source_with_concurrency() -> None:
    """A large async source through a concurrent stage keeps order and count."""
    n = 3000
    pipeline = map(adouble, concurrency=8) | filter(is_even) | Inc()
    assert [2 * x + 1 for x in range(n)] == await collect(pipeline.stream(agen(range(n))))


# -- flat_map emits as it goes ---------------------------------------------------


async def test_flat_map_does_not_collect_a_long_expansion() -> None:
    """A long (here endless) expansion goes on a chunk at a time: a slow, bounded
    downstream stops it from being read further."""
    produced = 0

    def endless(x: int) -> Iterator[int]:
        nonlocal produced
        while True:
            produced += 1
            yield x

    slow = map(inc, config=BackpressureConfig(max_buffer_size=10))
    got = []
    async with (flat_map(endless) | slow).stream([7]) as results:
        async for y in results:
            got.append(y)
            if len(got) == 3:
                break
    assert [8, 8, 8] == got
    # read ahead: the chunk the stage holds, the buffer, the chunk in the slow stage
    assert produced <= 3 * MAX_CHUNK + 10


async def test_flat_map_chunks_are_bounded() -> None:
    """However many elements one call gives, they go on in chunks of at most MAX_CHUNK."""

    def count_up(n: int) -> Iterator[int]:
        return (i for i in range(n))

    stream = flat_map(count_up).stream([1000, 10])
    sizes = [len(chunk) async for chunk in stream.chunks()]
    assert 1010 == sum(sizes)
    assert max(sizes) <= MAX_CHUNK


async def test_flat_map_async_generator_elements_go_on_as_they_come() -> None:
    """An async expansion that waits between elements is not held back: each element
    that is ready goes on before the stage waits for the next."""
    clock = VirtualClock()

    async def pages(n: int) -> AsyncIterator[tuple[int, int]]:
        for page in range(3):
            yield n, page
            await clock.sleep(10)  # the next page comes 10 s later

    results = await collect_timed(flat_map(pages).stream([1], clock=clock), clock)
    assert [(0.0, (1, 0)), (10.0, (1, 1)), (20.0, (1, 2))] == results


async def test_flat_map_closes_an_async_expansion_left_early() -> None:
    """Breaking out in the middle of an async expansion closes it at once."""
    closed: list[int] = []

    async def forever(x: int) -> AsyncIterator[int]:
        try:
            while True:
                await asyncio.sleep(0)
                yield x
        finally:
            closed.append(x)

    async with flat_map(forever).stream([5]) as results:
        async for _ in results:
            break
    assert [5] == closed


async def test_flat_map_keeps_what_came_before_a_failure() -> None:
    """Elements emitted before the expansion failed stay emitted; skip drops the rest."""

    def partly(x: int) -> Iterator[int]:
        yield x * 10
        if x == 2:
            raise ValueError("broken page")
        yield x * 10 + 1

    pipe = flat_map(partly, on_error="skip")
    assert [10, 11, 20, 30, 31] == await collect(pipe.stream([1, 2, 3]))


@pytest.mark.parametrize(
    "expand",
    [
        lambda n: range(n),  # sized, not a list
        lambda n: iter(range(n)),  # an iterator with a length hint
        lambda n: (i for i in range(n)),  # a generator
        lambda n: list(range(n)),
    ],
    ids=["range", "iterator", "generator", "list"],
)
async def test_flat_map_expansions_of_every_kind_and_size(expand: Any) -> None:
    """Small and large expansions of every kind come out whole and in order."""
    sizes = [0, 1, 3, MAX_CHUNK - 1, MAX_CHUNK, MAX_CHUNK + 1, 5 * MAX_CHUNK + 7, 2]
    stream = flat_map(expand).stream(sizes)
    chunks = [chunk async for chunk in stream.chunks()]
    assert [i for n in sizes for i in range(n)] == [x for c in chunks for x in c]
    assert max(len(c) for c in chunks) <= MAX_CHUNK


class Lookup:
    """A client object whose ``__call__`` is ``async def``."""

    async def __call__(self, x: int) -> int:
        await asyncio.sleep(0)
        return x + 100


class IsEven:
    async def __call__(self, x: int) -> bool:
        return x % 2 == 0


@pytest.mark.parametrize("concurrency", [1, 2])
async def test_an_object_with_an_async_call_is_awaited(concurrency: int) -> None:
    """Not only ``async def`` functions: a callable object whose ``__call__`` is
    ``async def`` is awaited too."""
    pipe = map(Lookup(), concurrency=concurrency) | filter(IsEven(), concurrency=concurrency)
    assert [100, 102] == await collect(pipe.stream([0, 1, 2]))
    assert map(Lookup()).is_async


async def test_a_paced_async_flat_map_awaits_its_function() -> None:
    clock = VirtualClock()

    async def twice(x: int) -> list[int]:
        return [x, x]

    pipe = flat_map(twice, config=BackpressureConfig(min_processing_time=0.5))
    assert [1, 1, 2, 2] == await collect(pipe.stream([1, 2], clock=clock))
    assert 1.0 <= clock.monotonic()


async def test_a_long_retried_expansion_does_not_upset_the_next_item() -> None:
    """A Retry that recovers an item with more than MAX_CHUNK elements: they go on in
    chunks, and the next item's expansion (a generator) is read as usual."""
    clock = VirtualClock()
    failed: list[int] = []

    def expand(x: int) -> Iterator[int]:
        if x == 0 and not failed:
            failed.append(x)
            raise ConnectionError("transient")
        return (x for _ in range(300 if x == 0 else 1))

    pipe = flat_map(expand, on_error=Retry(attempts=2, backoff=0.1, jitter=0))
    stream = pipe.stream([0, 1], clock=clock)
    chunks = [chunk async for chunk in stream.chunks()]
    assert [0] * 300 + [1] == [x for c in chunks for x in c]
    assert max(len(c) for c in chunks) <= MAX_CHUNK
