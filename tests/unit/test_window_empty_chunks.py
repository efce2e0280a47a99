"""Windowed and batching pipes take empty chunks in their stride.

An upstream stage hands on an empty chunk whenever a chunk's items all produce
nothing (a filter drops them, a flat_map returns ``[]``, a windowed pipe fires no
window) and whenever only the source position moves on (a ``process_stream``
stage at its end, an async source that has nothing ready). Every kind of window
and batch must treat such a chunk as "no items", never as an error.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from helpers import collect
from pipeflow.streams import (
    BatchStreamPipe,
    StreamPipe,
    Window,
    WindowedStreamPipe,
    filter,
    flat_map,
)
from pipeflow.testing import TestSource, VirtualClock

Make = Callable[[], StreamPipe[Any, Any]]

#: Every windowed and batching pipe: event time and processing time, every kind of window.
GROUPERS: dict[str, Make] = {
    "event-time tumbling": lambda: WindowedStreamPipe(1.0, timestamp=float),
    "event-time tumbling, keyed": lambda: WindowedStreamPipe(
        1.0, timestamp=float, key=lambda t: t > 1
    ),
    "event-time tumbling, no idle advance": lambda: WindowedStreamPipe(
        1.0, timestamp=float, idle_advance=False
    ),
    "event-time sliding": lambda: WindowedStreamPipe(1.0, slide=0.5, timestamp=float),
    "event-time session": lambda: WindowedStreamPipe(session_gap=0.5, timestamp=float),
    "event-time count": lambda: WindowedStreamPipe(count=2, timestamp=float),
    "processing-time tumbling": lambda: WindowedStreamPipe(1.0),
    "processing-time sliding": lambda: WindowedStreamPipe(1.0, slide=0.5),
    "processing-time session": lambda: WindowedStreamPipe(session_gap=0.5),
    "processing-time count": lambda: WindowedStreamPipe(count=2),
    "batch": lambda: BatchStreamPipe(2),
    "batch with max_wait": lambda: BatchStreamPipe(2, max_wait=0.5),
    "weighed batch": lambda: BatchStreamPipe(2, weight=float, max_weight=10),
    "weighed batch with max_wait": lambda: BatchStreamPipe(
        2, weight=float, max_weight=10, max_wait=0.5
    ),
}

#: Stages that turn the chunk of one event into an empty chunk.
DROPPERS: dict[str, Callable[[float], StreamPipe[float, float]]] = {
    "filter": lambda dropped: filter(lambda t: t != dropped),
    "flat_map returning []": lambda dropped: flat_map(lambda t: [] if t == dropped else [t]),
}


async def live(clock: VirtualClock, times: list[float]) -> AsyncIterator[float]:
    """A live source: each event arrives on its own, 0.1 s after the one before."""
    for t in times:
        yield t
        await clock.sleep(0.1)


def as_lists(results: list[Any]) -> list[list[Any]]:
    return [list(r) for r in results]


@pytest.mark.parametrize("dropper", DROPPERS)
@pytest.mark.parametrize("grouper", GROUPERS)
async def test_an_event_dropped_upstream_of_a_live_source_leaves_the_groups_as_without_it(
    grouper: str, dropper: str
) -> None:
    """Dropping an event upstream gives the groups of a source that never had it."""
    make = GROUPERS[grouper]
    clock = VirtualClock()
    dropped = await collect(
        (DROPPERS[dropper](0.7) | make()).stream(live(clock, [0.5, 0.7, 1.5]), clock=clock)
    )
    clock = VirtualClock()
    without = await collect(make().stream(live(clock, [0.5, 1.5]), clock=clock))
    assert [] != without
    assert as_lists(without) == as_lists(dropped)


@pytest.mark.parametrize("grouper", GROUPERS)
async def test_a_filter_dropping_every_item_gives_no_groups_and_acks_every_item(
    grouper: str,
) -> None:
    """Nothing passes the filter: no window or batch, and the whole source is acknowledged."""
    src = TestSource([i * 0.01 for i in range(600)])
    stream = (filter(lambda t: t > 100) | GROUPERS[grouper]()).stream(src, clock=VirtualClock())
    assert [] == await collect(stream)
    assert 600 == src.acked
    assert (600, 0) == (stream.statistics()[0].items_in, stream.statistics()[1].items_in)


class Passthrough(StreamPipe[float, float]):
    async def process_stream(self, stream: AsyncIterator[float]) -> AsyncIterator[float]:
        async for x in stream:
            yield x


@pytest.mark.parametrize("grouper", GROUPERS)
async def test_a_process_stream_stage_before_a_group_on_a_source_quiet_before_its_end(
    grouper: str,
) -> None:
    """The empty chunk a process_stream stage ends with, after a quiet spell, closes the groups
    as the source without the quiet spell does."""
    make = GROUPERS[grouper]
    clock = VirtualClock()
    src: TestSource[Any] = TestSource([0.5, 1.5, 2.5, TestSource.wait(5)], clock=clock)
    quiet = await collect((Passthrough() | make()).stream(src, clock=clock))
    clock = VirtualClock()
    plain = await collect(make().stream(TestSource([0.5, 1.5, 2.5], clock=clock), clock=clock))
    assert [] != plain
    assert as_lists(plain) == as_lists(quiet)


async def test_an_event_time_window_after_another_windowed_pipe() -> None:
    """A windowed pipe after another gets the empty chunks of inputs that fired no
    window: the second groups the windows of the first by their start."""
    clock = VirtualClock()
    first: WindowedStreamPipe[float, Window[float]] = WindowedStreamPipe(
        1.0, timestamp=float, idle_advance=False
    )
    second: WindowedStreamPipe[Window[float], Window[Window[float]]] = WindowedStreamPipe(
        10.0, timestamp=lambda w: w.start, idle_advance=False
    )
    out = await collect((first | second).stream(live(clock, [0.5, 0.7, 1.5]), clock=clock))
    assert [[[0.5, 0.7], [1.5]]] == [as_lists(w) for w in out]


async def test_a_processing_time_window_after_another_windowed_pipe() -> None:
    """A processing-time window after an event-time one takes its windows as they come."""
    clock = VirtualClock()
    first: WindowedStreamPipe[float, Window[float]] = WindowedStreamPipe(
        1.0, timestamp=float, idle_advance=False
    )
    second: WindowedStreamPipe[Window[float], Window[Window[float]]] = WindowedStreamPipe(10.0)
    out = await collect((first | second).stream(live(clock, [0.5, 0.7, 1.5]), clock=clock))
    assert [[[0.5, 0.7], [1.5]]] == [as_lists(w) for w in out]
