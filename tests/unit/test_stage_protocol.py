"""Every kind of pipe implements the ``Stage`` protocol the engine reads stages
through, and pipes and pipelines the ``Composition`` a ``Stream`` reads.

``make typecheck`` runs mypy --strict over this file: the annotated assignments
are checks of the protocols' member types, the ``isinstance`` ones of their
presence at run time."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from pipeflow._core._stage import Composition, Stage
from pipeflow._core._stages import Kind
from pipeflow.streams import (
    BackpressureConfig,
    BatchStreamPipe,
    FunctionPipe,
    StreamPipe,
    WindowedStreamPipe,
    filter,
    flat_map,
    map,
)


def inc(x: int) -> int:
    return x + 1


class Streaming(StreamPipe[int, int]):
    async def process_stream(self, stream: AsyncIterator[int]) -> AsyncIterator[int]:
        async for x in stream:
            yield x


def test_every_kind_of_pipe_is_a_stage_for_the_type_checker() -> None:
    """StreamPipe, its operators, WindowedStreamPipe and BatchStreamPipe are Stages."""
    stages: list[Stage] = [
        StreamPipe[int, int](),
        map(inc),
        WindowedStreamPipe[int, int](count=3),
        BatchStreamPipe[int](3),
    ]
    composed: Composition = map(inc) | filter(bool)
    assert 4 == len(stages)
    assert 2 == len(composed._stages())


@pytest.mark.parametrize(
    "pipe",
    [
        StreamPipe[int, int](),
        Streaming(),
        map(inc),
        flat_map(lambda x: [x]),
        WindowedStreamPipe[int, int](count=3),
        BatchStreamPipe[int](3),
    ],
    ids=["StreamPipe", "process_stream", "map", "flat_map", "windowed", "batches"],
)
def test_every_kind_of_pipe_is_a_stage_at_run_time(pipe: StreamPipe[int, int]) -> None:
    """Each has every member of the protocol (``runtime_checkable``)."""
    assert isinstance(pipe, Stage)


def test_only_sync_maps_and_filters_without_options_are_fused() -> None:
    """``_fused_op`` gives the function and its kind, and nothing for other stages."""

    async def ainc(x: int) -> int:
        return x + 1

    assert (inc, Kind.MAP) == map(inc)._fused_op()
    assert (bool, Kind.FILTER) == filter(bool)._fused_op()
    not_fused = [
        map(ainc),
        flat_map(lambda x: [x]),
        map(inc, config=BackpressureConfig()),
        StreamPipe[int, int](),
        Streaming(),
        BatchStreamPipe[int](3),
    ]
    assert [None] * len(not_fused) == [p._fused_op() for p in not_fused]


def test_a_stage_runs_one_way_only() -> None:
    """A ``process_stream`` override is chained, not fused, even on an operator."""

    class Chained(FunctionPipe[int, int]):
        async def process_stream(self, stream: AsyncIterator[int]) -> AsyncIterator[int]:
            async for x in stream:
                yield x

    pipe = Chained(inc, Kind.MAP)
    assert None is pipe._fused_op()
    assert pipe._process_stream_fn() is not None


def test_which_stages_want_a_buffer() -> None:
    """A config, concurrency or a timer asks for a buffer; nothing else does."""

    async def ainc(x: int) -> int:
        return x + 1

    wants = {
        "plain": StreamPipe[int, int](),
        "config": StreamPipe[int, int](config=BackpressureConfig()),
        "concurrency": map(ainc, concurrency=2),
        "windows": WindowedStreamPipe[int, int](count=3),
        "batches by count": BatchStreamPipe[int](3),
        "batches with a timer": BatchStreamPipe[int](3, max_wait=1.0),
    }
    assert {
        "plain": False,
        "config": True,
        "concurrency": True,
        "windows": True,
        "batches by count": False,
        "batches with a timer": True,
    } == {name: p._wants_buffer for name, p in wants.items()}
