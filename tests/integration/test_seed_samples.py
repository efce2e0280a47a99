# ruff: noqa: I001, UP006, UP035  -- samples are verbatim; asserts are `expected == actual`
# mypy: disable-error-code="type-arg"
"""The samples of the streaming API's user documentation, run as written.

Each test defines what its sample leaves undefined (``source_data``, ``data``,
``process_result``, ``handle_stream_error``, ``handle_fatal_error``, ``pipe``) and
then runs the sample's code verbatim. The file-level ``noqa`` / mypy comments
exist because the samples use ``typing.Dict`` and ``typing.AsyncIterator``.

The Windowing and Batching samples are in ``test_seed_windows_batches.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator as AbcAsyncIterator
from typing import Any

import pytest

from pipeflow.streams import StreamError, StreamPipe, map
from pipeflow.testing import TestSource, VirtualClock


async def test_basic_streaming_sample(capsys: pytest.CaptureFixture[str]) -> None:
    """The Basic Streaming sample prints {"processed": item} for each source item."""
    source_data = [{"id": 1}, {"id": 2}, {"id": 3}]

    # -- sample: Basic Streaming ----------------------------------------------------
    from pipeflow.streams import StreamPipe
    from typing import AsyncIterator, Dict

    class MyStreamPipe(StreamPipe[Dict, Dict]):
        async def process_stream(self, stream: AsyncIterator[Dict]) -> AsyncIterator[Dict]:
            async for item in stream:
                yield await self.process_item(item)

        async def process_item(self, item: Dict) -> Dict:
            return {"processed": item}

    # Use the stream pipe
    pipe = MyStreamPipe()
    async for result in pipe.stream(source_data):
        print(result)
    # -- end of sample ----------------------------------------------------------------

    printed = capsys.readouterr().out.splitlines()
    assert [str({"processed": item}) for item in source_data] == printed


async def test_basic_streaming_sample_with_async_source(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The Basic Streaming sample works the same on an async source."""
    items = [{"id": 1}, {"id": 2}]
    source_data = TestSource(items)

    # -- sample: Basic Streaming ----------------------------------------------------
    from pipeflow.streams import StreamPipe
    from typing import AsyncIterator, Dict

    class MyStreamPipe(StreamPipe[Dict, Dict]):
        async def process_stream(self, stream: AsyncIterator[Dict]) -> AsyncIterator[Dict]:
            async for item in stream:
                yield await self.process_item(item)

        async def process_item(self, item: Dict) -> Dict:
            return {"processed": item}

    # Use the stream pipe
    pipe = MyStreamPipe()
    async for result in pipe.stream(source_data):
        print(result)
    # -- end of sample ----------------------------------------------------------------

    assert [str({"processed": item}) for item in items] == capsys.readouterr().out.splitlines()
    assert source_data.closed


async def test_backpressure_sample() -> None:
    """The Backpressure sample builds a paced, buffered pipe that passes items through."""
    # -- sample: Backpressure ---------------------------------------------------------
    from pipeflow.streams import BackpressureConfig

    config = BackpressureConfig(
        max_buffer_size=1000, throttle_threshold=0.8, min_processing_time=0.1
    )

    pipe = StreamPipe(config=config)
    # -- end of sample ----------------------------------------------------------------

    assert config is pipe.config
    clock = VirtualClock()
    data = list(range(20))
    out = [x async for x in pipe.stream(data, clock=clock)]
    assert data == out
    assert clock.monotonic() >= 20 * 0.1  # min_processing_time paces each item


def error_handlers() -> tuple[list[Any], list[StreamError], list[Exception], Any, Any, Any]:
    """The three callbacks the Error Handling sample uses, recording what they get."""
    results: list[Any] = []
    stream_errors: list[StreamError] = []
    fatal_errors: list[Exception] = []

    def process_result(result: Any) -> None:
        results.append(result)

    def handle_stream_error(e: StreamError) -> None:
        stream_errors.append(e)

    def handle_fatal_error(e: Exception) -> None:
        fatal_errors.append(e)

    return (
        results,
        stream_errors,
        fatal_errors,
        process_result,
        handle_stream_error,
        handle_fatal_error,
    )


async def test_error_handling_sample_item_failure() -> None:
    """A failing item ends the loop with a StreamError, caught by the sample's outer handler.

    The StreamError is raised by the ``async for`` itself, outside the inner ``try``
    (which only wraps ``process_result``), so it reaches ``handle_fatal_error``.
    """
    (
        results,
        stream_errors,
        fatal_errors,
        process_result,
        handle_stream_error,
        handle_fatal_error,
    ) = error_handlers()
    data = ["1", "2", "x", "4"]
    pipe = map(int)

    # -- sample: Error Handling --------------------------------------------------------
    from pipeflow.streams import StreamError

    try:
        async for result in pipe.stream(data):
            try:
                process_result(result)
            except StreamError as e:
                handle_stream_error(e)
    except Exception as e:
        handle_fatal_error(e)
    # -- end of sample ----------------------------------------------------------------

    assert [1, 2] == results
    assert [] == stream_errors
    assert 1 == len(fatal_errors)
    error = fatal_errors[0]
    assert isinstance(error, StreamError)
    assert "x" == error.item
    assert "map(int)" == error.pipe
    assert isinstance(error.__cause__, ValueError)


async def test_error_handling_sample_with_skip_policy() -> None:
    """With on_error="skip" the sample's loop runs to the end and no handler is called."""
    (
        results,
        stream_errors,
        fatal_errors,
        process_result,
        handle_stream_error,
        handle_fatal_error,
    ) = error_handlers()
    data = ["1", "2", "x", "4"]
    pipe = map(int, on_error="skip")

    # -- sample: Error Handling --------------------------------------------------------
    from pipeflow.streams import StreamError

    try:
        async for result in pipe.stream(data):
            try:
                process_result(result)
            except StreamError as e:
                handle_stream_error(e)
    except Exception as e:
        handle_fatal_error(e)
    # -- end of sample ----------------------------------------------------------------

    assert [1, 2, 4] == results
    assert [] == stream_errors
    assert [] == fatal_errors


async def test_error_handling_sample_stream_error_from_process_result() -> None:
    """A StreamError raised while processing a result reaches the inner handler."""
    results, stream_errors, fatal_errors, _, handle_stream_error, handle_fatal_error = (
        error_handlers()
    )
    data = [1, 2, 3]
    pipe: StreamPipe[int, int] = map(lambda x: x * 10)

    def process_result(result: Any) -> None:
        if result == 20:
            raise StreamError(result, "downstream", 1, ValueError("rejected"))
        results.append(result)

    # -- sample: Error Handling --------------------------------------------------------
    from pipeflow.streams import StreamError

    try:
        async for result in pipe.stream(data):
            try:
                process_result(result)
            except StreamError as e:
                handle_stream_error(e)
    except Exception as e:
        handle_fatal_error(e)
    # -- end of sample ----------------------------------------------------------------

    assert [10, 30] == results
    assert [20] == [e.item for e in stream_errors]
    assert [] == fatal_errors


async def test_error_handling_sample_source_failure() -> None:
    """A failing source reaches the sample's outer handler with its own exception."""
    (
        results,
        stream_errors,
        fatal_errors,
        process_result,
        handle_stream_error,
        handle_fatal_error,
    ) = error_handlers()
    failure = ConnectionError("source lost")
    data = TestSource([1, 2, 3, 4], fail_after=2, fail_with=failure)
    pipe: StreamPipe[int, int] = StreamPipe()

    # -- sample: Error Handling --------------------------------------------------------
    from pipeflow.streams import StreamError

    try:
        async for result in pipe.stream(data):
            try:
                process_result(result)
            except StreamError as e:
                handle_stream_error(e)
    except Exception as e:
        handle_fatal_error(e)
    # -- end of sample ----------------------------------------------------------------

    assert [1, 2] == results
    assert [] == stream_errors
    assert [failure] == fatal_errors
    assert data.closed


def printed_metrics(out: str) -> dict[str, float]:
    """Parse the 'Name: value' lines the Monitoring sample prints."""
    pairs = (line.split(": ", 1) for line in out.splitlines())
    return {name: float(value) for name, value in pairs}


async def test_monitoring_sample_before_any_run(capsys: pytest.CaptureFixture[str]) -> None:
    """Run as written (no stream in between), the sample prints zero metrics."""
    pipe: StreamPipe[int, int] = StreamPipe()

    # -- sample: Monitoring -------------------------------------------------------------
    from pipeflow.monitoring import StreamMonitor

    monitor = StreamMonitor()
    pipe.set_monitor(monitor)

    # Get stream metrics
    metrics = monitor.get_metrics()
    print(f"Throughput: {metrics.throughput}")
    print(f"Backpressure: {metrics.backpressure}")
    # -- end of sample ----------------------------------------------------------------

    assert {"Throughput": 0.0, "Backpressure": 0.0} == printed_metrics(capsys.readouterr().out)


async def test_monitoring_sample_after_a_paced_run(capsys: pytest.CaptureFixture[str]) -> None:
    """After a run of the Backpressure sample's pipe, the sample prints its throughput."""
    from pipeflow.streams import BackpressureConfig

    pipe: StreamPipe[int, int] = StreamPipe(config=BackpressureConfig(min_processing_time=0.1))
    clock = VirtualClock()

    # -- sample: Monitoring (set_monitor) ------------------------------------------------
    from pipeflow.monitoring import StreamMonitor

    monitor = StreamMonitor()
    pipe.set_monitor(monitor)
    # -- end of sample part ---------------------------------------------------------------

    async with pipe.stream(range(10), clock=clock) as results:
        assert list(range(10)) == [x async for x in results]
    assert pytest.approx(1.0) == clock.monotonic()

    # -- sample: Monitoring (metrics) ----------------------------------------------------
    # Get stream metrics
    metrics = monitor.get_metrics()
    print(f"Throughput: {metrics.throughput}")
    print(f"Backpressure: {metrics.backpressure}")
    # -- end of sample ----------------------------------------------------------------

    printed = printed_metrics(capsys.readouterr().out)
    assert pytest.approx(10.0) == printed["Throughput"]  # 10 items in 1 virtual second
    assert 0.0 == printed["Backpressure"]  # the consumer took every result at once
    assert 10 == metrics.items_out


async def test_monitoring_sample_shows_backpressure_of_a_slow_consumer(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A consumer slower than the pipe shows up as backpressure in the sample's output."""
    pipe: StreamPipe[int, int] = StreamPipe()
    clock = VirtualClock()

    # -- sample: Monitoring (set_monitor) ------------------------------------------------
    from pipeflow.monitoring import StreamMonitor

    monitor = StreamMonitor()
    pipe.set_monitor(monitor)
    # -- end of sample part ---------------------------------------------------------------

    async def slow_source() -> AbcAsyncIterator[int]:
        for i in range(4):
            yield i

    async with pipe.stream(slow_source(), clock=clock) as results:
        async for _ in results:
            await clock.sleep(1.0)  # the consumer holds the pipe up for a second per item

    # -- sample: Monitoring (metrics) ----------------------------------------------------
    # Get stream metrics
    metrics = monitor.get_metrics()
    print(f"Throughput: {metrics.throughput}")
    print(f"Backpressure: {metrics.backpressure}")
    # -- end of sample ----------------------------------------------------------------

    printed = printed_metrics(capsys.readouterr().out)
    assert printed["Backpressure"] > 0.5
    assert pytest.approx(1.0) == printed["Throughput"]  # 4 items in 4 virtual seconds


async def test_monitoring_sample_with_the_system_clock() -> None:
    """With the default clock, a monitored run reports counts and a positive throughput."""
    pipe: StreamPipe[int, int] = StreamPipe()

    from pipeflow.monitoring import StreamMonitor

    monitor = StreamMonitor()
    pipe.set_monitor(monitor)

    async def ticking() -> AbcAsyncIterator[int]:
        for i in range(50):
            await asyncio.sleep(0)
            yield i

    assert list(range(50)) == [x async for x in pipe.stream(ticking())]
    metrics = monitor.get_metrics()
    assert 50 == metrics.items_out
    assert metrics.throughput > 0
    assert 0.0 <= metrics.backpressure <= 1.0
