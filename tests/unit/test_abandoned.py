"""A run that stops before its end says what it held and did not deliver.

One log line per run: how it stopped, the items read, those held (in buffers, in
progress, in open windows, in partial batches) and, for an acknowledging source,
those not acknowledged. The stages count what they held as ``abandoned``.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

import pipeflow.streams as ps
from pipeflow.monitoring import StreamMonitor
from pipeflow.streams import BackpressureConfig, BatchStreamPipe, StreamError
from pipeflow.testing import TestSource, VirtualClock


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "pipeflow"]


def held_in(line: str) -> dict[str, int]:
    """The breakdown of a line: {"in buffers": 3, ...}."""
    match = re.search(r"not delivered \((.*?)\)", line)
    if match is None:
        return {}
    return {
        place: int(n) for n, place in (part.split(" ", 1) for part in match.group(1).split(", "))
    }


def accounts(line: str) -> tuple[int, int, dict[str, int]]:
    """A line's items read, results at hand not given to the consumer, and what was held."""
    read = re.search(r"after reading (\d+) items", line)
    assert read is not None, line
    at_hand = re.search(r"(\d+) more at hand were not given to the consumer", line)
    return int(read.group(1)), int(at_hand.group(1)) if at_hand else 0, held_in(line)


async def test_breaking_out_logs_what_windows_and_buffers_held(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every item read was delivered, is in a result at hand the consumer did not
    take, or is counted as held, in the line and in the stages' ``abandoned``."""
    pipe = ps.map(lambda x: x, config=BackpressureConfig(max_buffer_size=10)) | (
        ps.WindowedStreamPipe(count=5)
    )
    monitor = StreamMonitor()
    pipe.set_monitor(monitor)
    with caplog.at_level(logging.INFO, logger="pipeflow"):
        async with pipe.stream(range(1000), clock=VirtualClock()) as results:
            async for window in results:
                assert 5 == len(window)
                break
    (line,) = lines(caplog)
    assert line.startswith(f"run of {pipe.name!r} was closed before its end after reading ")
    read, untaken, where = accounts(line)
    assert read == 5 * (1 + untaken) + sum(where.values())
    metrics = monitor.get_metrics()
    assert sum(where.values()) == metrics.abandoned
    assert [s.abandoned for s in metrics.stages] == [
        where.get("in buffers", 0) + where.get("in progress", 0),
        where.get("in open windows", 0),
    ]
    assert 0 < read < 1000


async def test_cancelling_logs_partial_batch_and_unacknowledged_items(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A cancelled run with an acknowledging source says what the partial batch held
    and how many items read were not acknowledged: exactly those not delivered."""
    clock = VirtualClock(autojump=True)
    source = TestSource(
        [*range(25), TestSource.wait(100.0), *range(25, 50)], clock=clock, one_by_one=True
    )
    started = asyncio.Event()

    class Sum(BatchStreamPipe[int, int]):
        async def process_batch(self, batch: list[int]) -> int:
            return sum(batch)

    async def consume() -> None:
        async for _ in Sum(10).stream(source, clock=clock):
            started.set()

    with caplog.at_level(logging.INFO, logger="pipeflow"):
        task = asyncio.ensure_future(consume())
        await started.wait()
        await clock.sleep(50.0)  # the source waits; the batch holds items 20-24
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    (line,) = lines(caplog)
    assert (
        "run of 'Sum' was cancelled after reading 25 items from the source; "
        "5 items held were not delivered (5 in partial batches); "
        "5 items read were not acknowledged"
    ) == line
    assert 20 == source.acked
    assert source.closed


async def test_a_failed_run_logs_what_it_held(caplog: pytest.LogCaptureFixture) -> None:
    """A run that fails names the failure in its line."""

    def boom(x: int) -> int:
        if x == 30:
            raise ValueError("bad")
        return x

    pipe = ps.map(boom) | ps.WindowedStreamPipe(count=100)

    async def consume() -> None:
        async for _ in pipe.stream(range(50)):
            pass

    with caplog.at_level(logging.INFO, logger="pipeflow"), pytest.raises(StreamError):
        await consume()
    (line,) = lines(caplog)
    assert "failed (StreamError) after reading 50 items" in line
    assert {"in open windows": 30} == held_in(line)


async def test_a_run_that_ends_logs_nothing_and_abandons_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A run read to its end holds nothing: no line, no abandoned items."""
    pipe = ps.map(lambda x: x, config=BackpressureConfig(max_buffer_size=4)) | BatchStreamPipe(7)
    with caplog.at_level(logging.INFO, logger="pipeflow"):
        async with pipe.stream(range(100)) as results:
            batches: list[Any] = [b async for b in results]
            stats = results.statistics()
    assert 100 == sum(len(b) for b in batches)
    assert [] == lines(caplog)
    assert [0, 0] == [s.abandoned for s in stats]


async def test_a_run_stopped_holding_nothing_logs_at_info(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Breaking out of a run that holds nothing is ordinary: one INFO line."""

    async def source() -> AsyncIterator[int]:
        for i in range(10):
            await asyncio.sleep(0)
            yield i

    with caplog.at_level(logging.INFO, logger="pipeflow"):
        async with ps.map(lambda x: x).stream(source()) as results:
            async for x in results:
                if x == 3:
                    break
    (record,) = [r for r in caplog.records if r.name == "pipeflow"]
    assert logging.INFO == record.levelno
    assert "was closed before its end after reading" in record.getMessage()


async def test_a_batch_fused_after_a_buffer_is_not_counted_twice(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Items a fused batcher took from the buffer before it count once: in the partial
    batch (or in the batches at hand), not again as in progress."""
    pipe = ps.map(lambda x: x, config=BackpressureConfig(max_buffer_size=10)) | BatchStreamPipe(7)
    with caplog.at_level(logging.INFO, logger="pipeflow"):
        async with pipe.stream(range(1000), clock=VirtualClock()) as results:
            async for batch in results:
                assert 7 == len(batch)
                break
    (line,) = lines(caplog)
    read, untaken, where = accounts(line)
    assert "in progress" not in where
    assert read == 7 * (1 + untaken) + sum(where.values())
