"""``pipe.run(source, sink)``: results written in lists, the source acknowledged
only for what the sink has written, failed writes retried, the sink closed."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pipeflow import streams as ps
from pipeflow.testing import TestSource, VirtualClock


class RecordingSink:
    """A sink that records each list it is given and the source's ack at that time;
    the first ``fail`` writes raise ``OSError``."""

    def __init__(self, source: TestSource[Any] | None = None, *, fail: int = 0) -> None:
        self.source = source
        self.fail = fail
        self.attempts = 0
        self.written: list[list[Any]] = []
        self.acked_at_write: list[int] = []
        self.closed = 0

    async def write(self, items: list[Any]) -> None:
        self.attempts += 1
        if self.source is not None:
            self.acked_at_write.append(self.source.acked)
        if self.fail:
            self.fail -= 1
            raise OSError("disk full")
        self.written.append(list(items))

    async def aclose(self) -> None:
        self.closed += 1

    @property
    def items(self) -> list[Any]:
        return [x for part in self.written for x in part]


async def test_results_reach_a_list_and_the_summary_counts_them() -> None:
    """A list is a sink; the summary counts what came in, went out, was skipped."""

    def check(x: int) -> int:
        if x == 3:
            raise ValueError("three")
        return x

    written: list[int] = []
    pipeline = ps.map(check, on_error="skip") | ps.filter(lambda x: x % 2 == 0)
    summary = await pipeline.run(range(10), written, clock=VirtualClock())
    assert [0, 2, 4, 6, 8] == written
    assert (10, 5, 1, 0) == (
        summary.items_in,
        summary.items_out,
        summary.skipped,
        summary.write_retries,
    )
    assert 1 == summary.writes  # ten items at hand: one list
    assert 0.0 == summary.duration


async def test_acknowledgements_never_run_ahead_of_the_writes() -> None:
    """When a list is written, the source has been acknowledged for at most the
    items of the lists written before it; all of them at the end."""
    clock = VirtualClock()
    source = TestSource(list(range(1000)), one_by_one=True)
    sink = RecordingSink(source)
    summary = await ps.map(lambda x: x + 1).run(source, sink, clock=clock)
    assert list(range(1, 1001)) == sink.items
    assert len(sink.written) > 10  # the items came one by one, so many writes
    done = 0
    for acked, part in zip(sink.acked_at_write, sink.written, strict=True):
        assert acked <= done
        done += len(part)
    assert 1000 == source.acked
    assert (1, True) == (sink.closed, source.closed)
    assert 1000 == summary.items_out


async def test_a_failed_write_is_tried_again_on_the_clock() -> None:
    """Two failures, then success: the list is written once, after the backoff."""
    clock = VirtualClock()
    sink = RecordingSink(fail=2)
    retry = ps.Retry(attempts=3, backoff=1.0, jitter=0.0)
    summary = await ps.map(str).run([1, 2], sink, clock=clock, write_retry=retry)
    assert [["1", "2"]] == sink.written
    assert (3, 2) == (sink.attempts, summary.write_retries)
    assert 3.0 == clock.monotonic()  # waited 1 s, then 2 s


async def test_a_write_that_keeps_failing_fails_the_run_unacknowledged() -> None:
    """Once the attempts are spent the write's error ends the run, with a note;
    what was not written is not acknowledged, and the sink is closed."""
    clock = VirtualClock()
    source = TestSource(list(range(10)))
    sink = RecordingSink(source, fail=100)
    retry = ps.Retry(attempts=2, backoff=0.5, jitter=0.0)
    with pytest.raises(OSError, match="disk full") as info:
        await ps.map(lambda x: x).run(source, sink, clock=clock, write_retry=retry)
    assert any("not acknowledged" in note for note in info.value.__notes__)
    assert (0, 1, True) == (source.acked, sink.closed, source.closed)


async def test_callables_are_sinks() -> None:
    """A sync or async callable taking one result is called once per result."""
    got: list[int] = []

    async def store(x: int) -> None:
        await asyncio.sleep(0)
        got.append(x)

    await ps.map(lambda x: x * 10).run([1, 2, 3], got.append)
    await ps.map(lambda x: x * 10).run([4], store)
    assert [10, 20, 30, 40] == got


async def test_dead_letters_and_filtered_items_are_acknowledged() -> None:
    """Items that give no result are acknowledged too, and counted."""
    source = TestSource(list(range(6)))
    dead: list[ps.StreamError] = []

    def odd_fails(x: int) -> int:
        if x % 2:
            raise ValueError(x)
        return x

    pipeline = ps.map(odd_fails, on_error=ps.DeadLetter(dead)) | ps.filter(lambda x: x > 0)
    summary = await pipeline.run(source, [])
    assert (6, 2, 3, 6) == (
        summary.items_in,
        summary.items_out,
        summary.dead_lettered,
        source.acked,
    )


async def test_cancelling_a_run_closes_the_sink() -> None:
    """A cancelled run closes its sink and its source, and acknowledges nothing unwritten."""
    clock = VirtualClock()
    source = TestSource([1, 2, TestSource.wait(60.0), 3], clock=clock)
    sink = RecordingSink(source)
    task = asyncio.create_task(ps.map(lambda x: x).run(source, sink, clock=clock))
    await clock.sleep(10.0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [1, 2] == sink.items
    assert (1, True) == (sink.closed, source.closed)
    assert 2 == source.acked  # what was written before the quiet minute


@pytest.mark.parametrize(
    ("sink", "message"),
    [
        (list, "not a class"),
        (42, "a list, or a callable"),
    ],
)
async def test_what_is_not_a_sink_is_refused_at_once(sink: object, message: str) -> None:
    """A bad sink is a TypeError that says what a sink is; nothing is read."""
    source = TestSource([1])
    with pytest.raises(TypeError, match=message):
        await ps.map(str).run(source, sink)  # type: ignore[arg-type]
    assert 0 == source.read


async def test_a_sink_with_a_sync_write_is_refused() -> None:
    """``write`` must be async: the run awaits it before acknowledging."""

    class SyncWrite:
        def write(self, items: list[Any]) -> None:
            pass

        async def aclose(self) -> None:
            pass

    with pytest.raises(TypeError, match="write must be an async def"):
        await ps.map(str).run([1], SyncWrite())  # type: ignore[arg-type]


async def test_write_retry_must_raise_in_the_end() -> None:
    """Results that cannot be written cannot be skipped: then= must be 'raise'."""
    with pytest.raises(ValueError, match="then='raise'"):
        await ps.map(str).run([1], [], write_retry=ps.Retry(then="skip"))
    with pytest.raises(TypeError, match="write_retry must be a Retry"):
        await ps.map(str).run([1], [], write_retry=3)  # type: ignore[arg-type]


async def test_a_sink_failing_to_close_after_a_failed_run_does_not_hide_its_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The run's error goes on; the sink's error on closing is logged."""

    class Broken(RecordingSink):
        async def aclose(self) -> None:
            raise ConnectionError("gone")

    def fails(x: int) -> int:
        raise KeyError(x)

    with pytest.raises(ps.StreamError):
        await ps.map(fails).run([1], Broken())
    assert 1 == sum("closing the sink" in r.getMessage() for r in caplog.records)


async def test_a_sink_failing_to_close_after_a_clean_run_fails_the_run() -> None:
    """At the end of a run, a sink that cannot close is the run's failure, not
    something to pass over (what it wrote was durable when write returned)."""

    class Broken(RecordingSink):
        async def aclose(self) -> None:
            raise ConnectionError("gone")

    sink = Broken()
    with pytest.raises(ConnectionError, match="gone"):
        await ps.map(str).run([1], sink)
    assert [["1"]] == sink.written


async def test_what_an_async_source_has_at_hand_is_written_in_one_call() -> None:
    """A broker client's fetch (items at hand together) makes one write, past MAX_CHUNK."""
    source = TestSource(range(1000))
    sink = RecordingSink(source)
    summary = await ps.map(lambda x: x + 1).run(source, sink)
    assert [list(range(1, 1001))] == sink.written
    assert (1, 1000) == (summary.writes, source.acked)


async def test_items_that_come_one_by_one_are_written_as_they_come() -> None:
    source = TestSource(range(5), one_by_one=True)
    sink = RecordingSink(source)
    await ps.map(lambda x: x).run(source, sink)
    assert list(range(5)) == sink.items
    assert 1 < len(sink.written)


async def test_behind_a_buffer_writes_stay_within_a_chunk() -> None:
    """Bulk reads only where fused operators read the source themselves; a buffer
    keeps its own bounds."""
    source = TestSource(range(2000))
    sink = RecordingSink(source)
    config = ps.BackpressureConfig(max_buffer_size=100)
    await ps.map(lambda x: x, config=config).run(source, sink)
    assert list(range(2000)) == sink.items
    assert max(map(len, sink.written)) <= ps.MAX_CHUNK
