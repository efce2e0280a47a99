"""StreamPipe used on its own: the default, overrides, sources, names, reuse, validation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any, TypeVar

import pytest

from helpers import agen, collect, collect_timed, collect_until_error
from pipeflow.streams import BackpressureConfig, BatchStreamPipe, StreamPipe, WindowedStreamPipe
from pipeflow.streams import map as map_
from pipeflow.testing import TestSource, VirtualClock

T = TypeVar("T")


class Double(StreamPipe[int, int]):
    async def process_item(self, item: int) -> int:
        return item * 2


class EvensTwice(StreamPipe[int, int]):
    """Drops odd items and emits every even item twice."""

    async def process_stream(self, stream: AsyncIterator[int]) -> AsyncIterator[int]:
        async for item in stream:
            if item % 2 == 0:
                yield item
                yield item


class RunningSum(StreamPipe[int, int]):
    """Keeps its state in the generator, so each run has its own."""

    async def process_stream(self, stream: AsyncIterator[int]) -> AsyncIterator[int]:
        total = 0
        async for item in stream:
            total += item
            yield total


async def test_default_pipe_is_identity() -> None:
    """A plain StreamPipe passes every item through unchanged, in order."""
    pipe: StreamPipe[int, int] = StreamPipe()
    assert [1, 2, 3] == await collect(pipe.stream([1, 2, 3]))


async def test_default_pipe_keeps_items_of_any_type() -> None:
    """The identity pipe does not copy or convert items."""
    marker = object()
    items: list[Any] = [None, "a", marker, {"k": 1}]
    out = await collect(StreamPipe[Any, Any]().stream(items))
    assert items == out
    assert marker is out[2]


async def test_process_item_override_transforms_each_item() -> None:
    """Overriding process_item applies it to every item, in input order."""
    assert [0, 2, 4, 6] == await collect(Double().stream(range(4)))


async def test_process_stream_override_can_filter_and_emit_several() -> None:
    """A process_stream override may drop items and emit several outputs per input."""
    assert [0, 0, 2, 2, 4, 4] == await collect(EvensTwice().stream(range(6)))


async def test_process_stream_override_sees_the_whole_stream() -> None:
    """A process_stream override keeps state across items within a run."""
    assert [1, 3, 6, 10] == await collect(RunningSum().stream([1, 2, 3, 4]))


async def test_process_stream_override_that_emits_nothing() -> None:
    """A process_stream that yields nothing gives an empty stream."""
    assert [] == await collect(EvensTwice().stream([1, 3, 5]))


async def test_sync_generator_source() -> None:
    """A sync generator is a valid source."""
    assert [0, 2, 4] == await collect(Double().stream(x for x in range(3)))


async def test_sync_iterator_source() -> None:
    """A bare iterator (not re-iterable) is a valid source."""
    source: Iterator[int] = iter([5, 6])
    assert [10, 12] == await collect(Double().stream(source))


async def test_async_generator_source() -> None:
    """An async generator is a valid source."""
    assert [2, 4, 6] == await collect(Double().stream(agen([1, 2, 3])))


async def test_async_iterable_source() -> None:
    """An async iterable object (TestSource) is read completely."""
    source = TestSource([1, 2, 3])
    assert [2, 4, 6] == await collect(Double().stream(source))
    assert 3 == source.read


async def test_async_source_through_process_stream_override() -> None:
    """A process_stream override works on an async source."""
    assert [0, 0, 2, 2] == await collect(EvensTwice().stream(agen(range(4))))


@pytest.mark.parametrize(
    "source",
    [[], (), iter([]), TestSource([])],
    ids=["list", "tuple", "iterator", "async"],
)
async def test_empty_source_gives_empty_stream(source: Any) -> None:
    """An empty source, sync or async, ends the stream at once without results."""
    assert [] == await collect(Double().stream(source))


async def test_empty_async_generator_through_process_stream() -> None:
    """An empty async generator through a process_stream override gives nothing."""
    assert [] == await collect(RunningSum().stream(agen([])))


async def test_stream_without_async_with() -> None:
    """A stream can be iterated directly with async for, without async with."""
    out = [x async for x in Double().stream([1, 2])]
    assert [2, 4] == out


async def test_name_defaults_to_class_name() -> None:
    """Without name=, a pipe is called after its class."""
    assert "StreamPipe" == StreamPipe[int, int]().name
    assert "Double" == Double().name
    assert "EvensTwice" == EvensTwice().name


async def test_name_argument_overrides_class_name() -> None:
    """name= sets the pipe's name, for base and subclasses alike."""
    assert "ingest" == StreamPipe[int, int](name="ingest").name
    assert "doubler" == Double(name="doubler").name


async def test_repr_shows_class_and_name() -> None:
    """repr names the class and the pipe."""
    assert "<Double 'doubler'>" == repr(Double(name="doubler"))


async def test_same_pipe_streamed_twice_sequentially() -> None:
    """A pipe is a reusable definition: a second run starts fresh."""
    pipe = RunningSum()
    assert [1, 3, 6] == await collect(pipe.stream([1, 2, 3]))
    assert [10, 30] == await collect(pipe.stream([10, 20]))


async def test_same_pipe_streamed_concurrently_gives_independent_results() -> None:
    """Two runs of one pipe interleaved on the loop do not share state."""
    pipe = RunningSum()
    a, b = await asyncio.gather(
        collect(pipe.stream(agen([1, 2, 3, 4]))),
        collect(pipe.stream(agen([100, 200, 300]))),
    )
    assert [1, 3, 6, 10] == a
    assert [100, 300, 600] == b


async def test_buffered_concurrent_pipe_streamed_concurrently() -> None:
    """Runs of a pipe with a buffer and concurrency>1 each get their own buffer and workers."""
    pipe = Double(config=BackpressureConfig(max_buffer_size=3), concurrency=2)
    a, b, c = await asyncio.gather(
        collect(pipe.stream(agen(range(50)))),
        collect(pipe.stream(range(100, 140))),
        collect(pipe.stream(TestSource(range(7)))),
    )
    assert [2 * x for x in range(50)] == a
    assert [2 * x for x in range(100, 140)] == b
    assert [2 * x for x in range(7)] == c


@pytest.mark.parametrize("source", [42, 3.5, None, object()], ids=repr)
async def test_stream_on_non_iterable_raises_type_error_at_once(source: Any) -> None:
    """stream() rejects a non-iterable source immediately, naming its type."""
    with pytest.raises(TypeError, match=type(source).__name__):
        StreamPipe[Any, Any]().stream(source)


@pytest.mark.parametrize("concurrency", [0, -1, True, False, 1.0, "2"], ids=repr)
async def test_invalid_concurrency_raises_value_error(concurrency: Any) -> None:
    """concurrency must be an int >= 1 (bools and other types rejected)."""
    with pytest.raises(ValueError, match="concurrency"):
        StreamPipe[int, int](concurrency=concurrency)


async def test_concurrency_error_message_shows_value() -> None:
    """The concurrency error shows the value that was given."""
    with pytest.raises(ValueError, match="got 0"):
        StreamPipe[int, int](concurrency=0)


@pytest.mark.parametrize("name", ["", 5, b"x"], ids=repr)
@pytest.mark.parametrize(
    "pipe_class",
    [
        StreamPipe,
        lambda name: WindowedStreamPipe(60, name=name),
        lambda name: BatchStreamPipe(2, name=name),
    ],
    ids=["StreamPipe", "WindowedStreamPipe", "BatchStreamPipe"],
)
async def test_invalid_name_raises_value_error(pipe_class: Any, name: Any) -> None:
    """name must be None (the default name) or a non-empty str, for every kind of pipe."""
    with pytest.raises(ValueError, match="name must be") as info:
        pipe_class(name=name)
    expected = f"name must be a non-empty str, or None for the default name; got {name!r}"
    assert expected == str(info.value)


@pytest.mark.parametrize("ordered", ["no", 1, None], ids=repr)
async def test_ordered_that_is_not_a_bool_raises_type_error(ordered: Any) -> None:
    """ordered must be a bool, as concurrency must be an int: a truthy "no" is refused."""
    with pytest.raises(TypeError, match="ordered must be") as info:
        StreamPipe[int, int](ordered=ordered, concurrency=2)
    assert f"ordered must be True or False, got {ordered!r}" == str(info.value)


@pytest.mark.parametrize("ordered", [True, False])
async def test_ordered_keeps_the_bool_given(ordered: bool) -> None:
    """A bool ordered is kept as it is."""
    assert ordered is StreamPipe[int, int](ordered=ordered, concurrency=2).ordered


@pytest.mark.parametrize(
    "config",
    [{"max_buffer_size": 10}, 10, "block", BackpressureConfig],
    ids=["dict", "int", "str", "class"],
)
async def test_config_of_wrong_type_raises_type_error(config: Any) -> None:
    """config must be a BackpressureConfig instance; the error names what was given."""
    with pytest.raises(TypeError, match=f"BackpressureConfig, got {type(config).__name__}"):
        StreamPipe[int, int](config=config)


async def test_concurrency_with_process_stream_override_raises_value_error() -> None:
    """concurrency>1 cannot apply to a pipe that takes over process_stream."""
    with pytest.raises(ValueError, match="process_stream"):
        EvensTwice(concurrency=2)


async def test_concurrency_one_with_process_stream_override_is_allowed() -> None:
    """concurrency=1 (explicit) is fine for a process_stream override."""
    pipe = EvensTwice(concurrency=1)
    assert [2, 2] == await collect(pipe.stream([1, 2, 3]))


async def test_process_stream_override_with_config() -> None:
    """A process_stream override behind its own buffer still sees every item in order."""
    pipe = RunningSum(config=BackpressureConfig(max_buffer_size=2))
    assert [sum(range(k + 1)) for k in range(600)] == await collect(pipe.stream(range(600)))


# -- mistakes caught where they are made ----------------------------------------------


class SyncItem(StreamPipe[str, str]):
    def process_item(self, item: str) -> str:  # type: ignore[override]
        return item.upper()


class SyncStream(StreamPipe[int, int]):
    def process_stream(self, stream: Any) -> Iterator[int]:  # type: ignore[override]
        yield 1


def test_a_sync_process_item_is_rejected_when_the_pipe_is_made() -> None:
    """Not, item by item, as a failure each error policy would hide."""
    with pytest.raises(TypeError, match=r"SyncItem.process_item must be an async def"):
        SyncItem(on_error="skip")


def test_a_generator_process_stream_is_rejected_when_the_pipe_is_made() -> None:
    with pytest.raises(TypeError, match=r"SyncStream.process_stream must be an async generator"):
        SyncStream()


def test_a_monitor_class_is_rejected() -> None:
    from pipeflow.monitoring import StreamMonitor

    with pytest.raises(TypeError, match=r"not a class: StreamMonitor\(\)"):
        Double().set_monitor(StreamMonitor)  # type: ignore[arg-type]


async def test_a_clock_must_be_a_clock_instance() -> None:
    from pipeflow.testing import VirtualClock

    with pytest.raises(TypeError, match=r"clock must be a Clock \(an instance: VirtualClock\(\)\)"):
        Double().stream([1], clock=VirtualClock)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="clock must be a Clock"):
        Double().stream([1], clock=object())  # type: ignore[arg-type]


def test_composing_with_a_pipe_class_suggests_an_instance() -> None:
    for compose in (lambda: Double() | Double, lambda: Double | Double()):
        with pytest.raises(TypeError, match=r"the class Double; compose an instance: Double\(\)"):
            compose()  # type: ignore[no-untyped-call]


def test_a_function_left_of_a_pipe_suggests_map() -> None:
    def double(x: int) -> int:
        return 2 * x

    with pytest.raises(TypeError, match=r"map\(fn\)"):
        double | Double()  # type: ignore[operator]


# -- a process_stream with a stage after it -----------------------------------------


class ParseUntilCorrupt(StreamPipe[str, int]):
    async def process_stream(self, stream: AsyncIterator[str]) -> AsyncIterator[int]:
        async for line in stream:
            if line == "corrupt":
                raise OSError("corrupt record")
            yield int(line)


@pytest.mark.parametrize(
    "after",
    [
        lambda: map_(ident),
        lambda: map_(ident, config=BackpressureConfig(max_buffer_size=2)),
        lambda: map_(aident, concurrency=2),
    ],
    ids=["fused", "buffered", "concurrent"],
)
async def test_results_before_a_process_stream_failure_reach_the_consumer(after: Any) -> None:
    got: list[int] = []
    stream = (ParseUntilCorrupt() | after()).stream(["0", "1", "2", "corrupt", "4"])
    with pytest.raises(OSError, match="corrupt record"):
        await collect_until_error(stream, got)
    assert [0, 1, 2] == got


async def test_a_process_stream_waits_for_room_after_it() -> None:
    """One input, endless outputs, a 10-item buffer after it: it is paused, not
    left to pile its outputs up in memory."""
    produced = 0

    class Expand(StreamPipe[int, int]):
        async def process_stream(self, stream: AsyncIterator[int]) -> AsyncIterator[int]:
            nonlocal produced
            async for x in stream:
                while True:
                    produced += 1
                    yield x
                    await asyncio.sleep(0)

    pipeline = Expand() | map_(ident, config=BackpressureConfig(max_buffer_size=10))
    async with pipeline.stream([1]) as results:
        async for i, _ in aenumerate(results):
            if i == 1000:
                break
    assert produced <= 1000 + 10 + 2 * 256


async def test_a_process_stream_output_is_not_held_back_by_the_stage_after_it() -> None:
    """The next stage gets each output as soon as it waits for one, not once the
    process_stream has used up its input chunk."""
    clock = VirtualClock()

    class RateLimited(StreamPipe[int, int]):
        async def process_stream(self, stream: AsyncIterator[int]) -> AsyncIterator[int]:
            async for x in stream:
                yield x
                await clock.sleep(1.0)

    results = await collect_timed(
        (RateLimited() | map_(ident)).stream(range(5), clock=clock), clock
    )
    assert [(float(i), i) for i in range(5)] == results


async def aident(x: int) -> int:
    return x


def ident(x: int) -> int:
    return x


async def aenumerate(items: AsyncIterator[T]) -> AsyncIterator[tuple[int, T]]:
    i = 0
    async for x in items:
        yield i, x
        i += 1


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"on_error": "skip"}, "on_error"),
        ({"config": BackpressureConfig(min_processing_time=1.0)}, "min_processing_time"),
    ],
    ids=["on_error", "pacing"],
)
def test_options_about_process_item_calls_are_refused_with_a_process_stream_override(
    options: dict[str, Any], named: str
) -> None:
    """The runtime makes no process_item calls for such a pipe: the options would do nothing."""
    with pytest.raises(ValueError, match=f"{named} applies to process_item calls"):
        EvensTwice(**options)
