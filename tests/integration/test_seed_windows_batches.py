# ruff: noqa: UP006, UP035  -- `expected == actual`; the samples use typing.Dict/List
# The verbatim samples are not --strict clean: bare Dict/List (type-arg), and the Windowing
# sample passes its `List[Dict]` parameter to aggregate_window, typed `Window[In] -> Any`
# (arg-type, no-any-return).
# mypy: disable-error-code="type-arg, arg-type, no-any-return"
"""The Windowing and Batching samples of the seed docs (stream-processing.md), run as written.

The classes below are copied verbatim from the docs; only the imports the
samples leave out (``Dict``/``List``) are added, as a user would.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Dict, List

from pipeflow.streams import BatchStreamPipe, Stream, Window, WindowedStreamPipe
from pipeflow.testing import TestSource, VirtualClock

# ---- sample: Windowing (verbatim) ------------------------------------------------------


class WindowProcessor(WindowedStreamPipe[Dict, List]):
    def __init__(self, window_size: timedelta):
        super().__init__(window_size)

    async def process_window(self, window: List[Dict]) -> List:
        return self.aggregate_window(window)


# ---- sample: Batching (verbatim) ---------------------------------------------------------


class BatchProcessor(BatchStreamPipe[Dict, List]):
    def __init__(self, batch_size: int):
        super().__init__(batch_size)

    async def process_batch(self, batch: List[Dict]) -> List:
        return await self.process_items(batch)


# ------------------------------------------------------------------------------------------

START = datetime(2026, 1, 1, tzinfo=UTC)


async def collect_timed(stream: Stream[Any], clock: VirtualClock) -> list[tuple[float, Any]]:
    async with stream:
        return [(clock.monotonic(), x) async for x in stream]


async def test_window_processor_sample_groups_items_by_second() -> None:
    """WindowProcessor(1 s) emits one Window per second holding that second's items, on time."""
    clock = VirtualClock()
    at = TestSource.at
    events: list[Any] = [
        at(0.0, {"id": 1}),
        at(0.5, {"id": 2}),
        at(1.25, {"id": 3}),
        at(3.5, {"id": 4}),
        TestSource.wait(2),
    ]
    source: TestSource[Any] = TestSource(events, clock=clock)
    out = await collect_timed(
        WindowProcessor(timedelta(seconds=1)).stream(source, clock=clock), clock
    )
    assert [
        (1.0, [{"id": 1}, {"id": 2}]),
        (2.0, [{"id": 3}]),
        (4.0, [{"id": 4}]),
    ] == [(t, list(w)) for t, w in out]
    windows = [w for _, w in out]
    assert all(isinstance(w, Window) for w in windows)
    assert [START, START + timedelta(seconds=1), START + timedelta(seconds=3)] == [
        w.start for w in windows
    ]
    assert [timedelta(seconds=1)] * 3 == [w.end - w.start for w in windows]


async def test_window_processor_sample_flushes_at_end_of_stream() -> None:
    """The open window is emitted when the source ends, before its end time."""
    clock = VirtualClock()
    source: TestSource[Any] = TestSource([{"id": 1}, {"id": 2}], clock=clock)
    out = await collect_timed(
        WindowProcessor(timedelta(seconds=1)).stream(source, clock=clock), clock
    )
    assert [(0.0, [{"id": 1}, {"id": 2}])] == [(t, list(w)) for t, w in out]


async def test_batch_processor_sample_gives_batches_of_processed_items() -> None:
    """BatchProcessor(n) emits lists of n processed items (identity by default), the rest last."""
    items = [{"id": i} for i in range(7)]
    async with BatchProcessor(3).stream(items) as stream:
        out = [batch async for batch in stream]
    assert [items[0:3], items[3:6], items[6:7]] == out


async def test_batch_processor_sample_applies_process_item() -> None:
    """A user subclass overriding process_item gets it applied to every item of each batch."""

    class Enricher(BatchProcessor):
        async def process_item(self, item: Dict) -> Any:
            return {**item, "processed": True}

    async with Enricher(2).stream([{"id": 1}, {"id": 2}, {"id": 3}]) as stream:
        out = [batch async for batch in stream]
    assert [
        [{"id": 1, "processed": True}, {"id": 2, "processed": True}],
        [{"id": 3, "processed": True}],
    ] == out
