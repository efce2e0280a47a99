"""What a type checker infers for users' code: ``make typecheck`` runs mypy --strict
over this file, so every ``assert_type`` here is a check. (At run time
``assert_type`` does nothing; the tests only build the pipes.)"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, assert_type

from pipeflow.streams import (
    BackpressureConfig,
    BatchStreamPipe,
    FunctionPipe,
    Pipeable,
    Pipeline,
    Stream,
    StreamPipe,
    Window,
    WindowedStreamPipe,
    filter,
    flat_map,
    map,
)


def parse(line: str) -> int:
    return int(line)


async def fetch(n: int) -> str:
    return str(n)


async def pages(n: int) -> AsyncIterator[bytes]:
    yield b"%d" % n


def test_named_functions_give_precise_types() -> None:
    assert_type(map(parse), FunctionPipe[str, int])
    assert_type(map(fetch), FunctionPipe[int, str])
    assert_type(filter(parse), FunctionPipe[str, str])
    assert_type(flat_map(str.split), FunctionPipe[str, str])
    assert_type(flat_map(pages), FunctionPipe[int, bytes])
    assert_type(map(parse) | map(fetch), Pipeline[str, str])
    assert_type((map(parse) | map(fetch)).stream(["1"]), Stream[str])


def test_a_lambda_at_the_head_of_a_pipeline_takes_anything() -> None:
    """With nothing to infer its input from, a lambda's input is Any, not Never:
    the pipeline can be streamed without annotations."""
    head = map(lambda x: x + 1)
    assert_type(head, FunctionPipe[Any, Any])
    head.stream(range(3))
    assert_type(map(parse) | map(lambda n: n * 2), Pipeline[str, int])


def test_a_bare_stream_pipe_is_a_buffer_of_anything() -> None:
    buffer = StreamPipe(config=BackpressureConfig(max_buffer_size=10))
    assert_type(buffer, StreamPipe[Any, Any])
    buffer.stream(["a", 1])


class Parse(StreamPipe[str, int]):
    async def process_item(self, item: str) -> int:
        return int(item)


class IsPositive(StreamPipe[int, bool]):
    async def process_item(self, item: int) -> bool:
        return item > 0


class Double(StreamPipe[int, int]):
    async def process_item(self, item: int) -> int:
        return item * 2


class Show(StreamPipe[object, str]):
    """Takes anything, as a logging pipe would."""

    async def process_item(self, item: object) -> str:
        return repr(item)


def first_stage_name(pipe: Pipeable[str, object]) -> str:
    return pipe.name


def test_pipes_compose_by_variance() -> None:
    """A pipe takes what its input type's subtypes give (a bool is an int, anything
    is an object): pipes are contravariant in their input, covariant in output."""
    assert_type(IsPositive() | Double(), Pipeline[int, int])
    assert_type(Parse() | Show(), Pipeline[str, str])
    assert "Parse" == first_stage_name(Parse())


def test_window_keys_and_bare_window_and_batch_pipes() -> None:
    """A window's key is whatever ``key=`` returns; window and batch pipes made
    without type arguments take anything."""
    counts = WindowedStreamPipe(count=3)
    assert_type(counts, WindowedStreamPipe[Any, Any])
    batches = BatchStreamPipe(10)
    assert_type(batches, BatchStreamPipe[Any, Any])

    class PerPage(WindowedStreamPipe[tuple[float, str], tuple[str, int]]):
        def aggregate_window(self, window: Window[tuple[float, str]]) -> tuple[str, int]:
            page: str = window.key
            return page, len(window)

    PerPage(60.0, key=lambda view: view[1])
