"""The plan of a run: where the boundaries fall and which stages run together.

Each case draws the pipeline and its plan; ``|`` between stages is a boundary
(a buffer, and a feeder task for what is upstream of it)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from pipeflow._core._plan import (
    Group,
    How,
    boundary_before,
    chain_tail,
    direct_tail,
    plan,
)
from pipeflow._core._stage import Stage
from pipeflow.streams import (
    BackpressureConfig,
    BatchStreamPipe,
    Pipeable,
    StreamPipe,
    WindowedStreamPipe,
    filter,
    map,
)


def inc(x: int) -> int:
    return x + 1


def even(x: int) -> bool:
    return x % 2 == 0


class Proc(StreamPipe[int, int]):
    async def process_stream(self, stream: AsyncIterator[int]) -> AsyncIterator[int]:
        async for x in stream:
            yield x


def stages(pipe: Pipeable[int, int]) -> Sequence[Stage]:
    return pipe._stages()


def test_operators_alone_are_the_consumers_own() -> None:
    """map filter map: all three run in the consumer's generator; timed, fused."""
    s = stages(map(inc) | filter(even) | map(inc))
    assert 0 == direct_tail(s)
    assert None is chain_tail(s)
    assert [Group(How.TAIL, 0, 3, False)] == plan(s, 0)
    assert [Group(How.FUSED, 0, 3, False)] == plan(s, len(s))


def test_a_windowed_pipe_cuts_the_operators_before_it_from_those_after() -> None:
    """map filter | windowed map: fused, then the window behind its buffer, then the tail."""
    s = stages(map(inc) | filter(even) | WindowedStreamPipe[int, int](count=2) | map(inc))
    assert [False, False, True, False] == [boundary_before(s, i) for i in range(4)]
    assert 3 == direct_tail(s)
    assert [
        Group(How.FUSED, 0, 2, False),
        Group(How.SINGLE, 2, 3, True),
        Group(How.TAIL, 3, 4, False),
    ] == plan(s, 3)


def test_a_stage_after_process_stream_overrides_gets_a_buffer() -> None:
    """proc proc | map: the overrides chained, the map behind a buffer, in the tail."""
    s = stages(Proc() | Proc() | map(inc))
    assert [False, False, True] == [boundary_before(s, i) for i in range(3)]
    assert None is chain_tail(s)
    assert 2 == direct_tail(s)
    assert [Group(How.CHAIN, 0, 2, False), Group(How.TAIL, 2, 3, True)] == plan(s, 2)


def test_process_stream_overrides_ending_the_pipeline_are_the_consumers_own() -> None:
    """map proc proc: a lone map is opened on its own; the chain is the tail."""
    s = stages(map(inc) | Proc() | Proc())
    assert 1 == chain_tail(s)
    assert None is direct_tail(s)
    assert [Group(How.SINGLE, 0, 1, False), Group(How.TAIL, 1, 3, False)] == plan(s, 1)


def test_a_buffer_ends_a_chain_and_a_fused_run() -> None:
    """map | map(config) map proc | proc(config): buffers split what would run together."""
    buffered = BackpressureConfig(max_buffer_size=10)
    s = stages(
        map(inc)
        | map(inc, config=buffered)
        | map(inc)
        | Proc()
        | Proc(config=buffered)
        | BatchStreamPipe[int](2)
    )
    assert [False, True, False, False, True, True] == [boundary_before(s, i) for i in range(6)]
    assert [
        Group(How.SINGLE, 0, 1, False),
        Group(How.SINGLE, 1, 2, True),
        Group(How.SINGLE, 2, 3, False),
        Group(How.CHAIN, 3, 4, False),
        Group(How.CHAIN, 4, 5, True),
        Group(How.SINGLE, 5, 6, True),
    ] == plan(s, len(s))
