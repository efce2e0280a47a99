"""File connectors: JSON Lines and CSV sources and sinks, on real files."""

# The tests prepare and read small local files with plain blocking calls.
# ruff: noqa: ASYNC240

from __future__ import annotations

import asyncio
import contextlib
import csv
import math
import os
import tempfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeflow import streams as ps
from pipeflow._connectors._blocks import BLOCK
from pipeflow.connectors import (
    CsvSink,
    CsvSource,
    DecodeError,
    EncodeError,
    JsonLinesSink,
    JsonLinesSource,
    Message,
    UndecodableMessage,
)
from pipeflow.testing import VirtualClock

# ---------------------------------------------------------------------------- helpers


def open_paths() -> list[str]:
    """What this process's file descriptors point to."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            found.append(os.readlink(f"/proc/self/fd/{fd}"))
    return found


def is_open(path: Path) -> bool:
    return str(path.resolve()) in open_paths()


async def read_all(source: Any) -> list[Message]:
    out: list[Message] = []
    await ps.map(lambda m: m).run(source, out)
    return out


def values(messages: list[Message]) -> list[tuple[int, Any]]:
    return [(m.position, m.value) for m in messages]


class Collect:
    """A sink that keeps what it is given and tells when it holds ``n`` results."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.changed = asyncio.Event()

    async def write(self, items: list[Any]) -> None:
        self.items += items
        self.changed.set()

    async def aclose(self) -> None:
        pass

    async def wait_for(self, n: int) -> None:
        while len(self.items) < n:
            self.changed.clear()
            await self.changed.wait()


@pytest.fixture
def jsonl(tmp_path: Path) -> Path:
    return tmp_path / "in.jsonl"


# ---------------------------------------------------------------------------- JSON Lines source


async def test_lines_become_messages_with_their_line_numbers(jsonl: Path) -> None:
    """Each line is a message: its value decoded, source the path as given, position its line."""
    jsonl.write_text('{"a": 1}\n[2]\n"three"\n')
    got = await read_all(JsonLinesSource(jsonl))
    expected = [
        Message({"a": 1}, source=str(jsonl), position=1),
        Message([2], source=str(jsonl), position=2),
        Message("three", source=str(jsonl), position=3),
    ]
    assert expected == got
    assert [None, None, None] == [m.timestamp for m in got]


async def test_blank_lines_are_skipped_and_still_counted(jsonl: Path) -> None:
    """Empty and whitespace-only lines give nothing; the lines after keep their numbers."""
    jsonl.write_bytes(b"\n1\n\n  \t\n2\n\r\n3\n\n")
    assert [(2, 1), (5, 2), (7, 3)] == values(await read_all(JsonLinesSource(str(jsonl))))


async def test_a_last_line_without_newline_is_a_line(jsonl: Path) -> None:
    """Without follow, the end of the file ends the last line."""
    jsonl.write_bytes(b'1\n{"b": 2}')
    assert [(1, 1), (2, {"b": 2})] == values(await read_all(JsonLinesSource(jsonl)))


async def test_crlf_line_endings(jsonl: Path) -> None:
    """``\\r\\n`` ends a line as ``\\n`` does, for every codec."""
    jsonl.write_bytes(b'{"a": 1}\r\n"x"\r\nlast\r')
    got = await read_all(JsonLinesSource(jsonl, codec="text"))
    assert [(1, '{"a": 1}'), (2, '"x"'), (3, "last")] == values(got)
    jsonl.write_bytes(b'{"a": 1}\r\n"x"\r\n')
    assert [(1, {"a": 1}), (2, "x")] == values(await read_all(JsonLinesSource(jsonl)))
    jsonl.write_bytes(b"ab\r\n")
    assert [(1, b"ab")] == values(await read_all(JsonLinesSource(jsonl, codec="raw")))


async def test_unicode_values(jsonl: Path) -> None:
    """UTF-8 text of any script comes through, in JSON and as text."""
    text = ["héllo", "日本語", "emoji 🎉", "\u2028 separator"]
    jsonl.write_bytes(b"".join(orjson.dumps(t) + b"\n" for t in text))
    assert text == [m.value for m in await read_all(JsonLinesSource(jsonl))]
    jsonl.write_text("".join(t + "\n" for t in text[:3]), encoding="utf-8")
    assert text[:3] == [m.value for m in await read_all(JsonLinesSource(jsonl, codec="text"))]


async def test_lines_across_blocks(jsonl: Path) -> None:
    """Lines cut by block boundaries, and a line longer than several blocks, are whole."""
    long = "x" * (3 * BLOCK + 17)
    records = [{"i": i, "pad": "y" * (i % 50)} for i in range(20_000)]
    lines = [orjson.dumps(r) for r in records[:10_000]]
    lines += [orjson.dumps(long)] + [orjson.dumps(r) for r in records[10_000:]]
    jsonl.write_bytes(b"\n".join(lines))
    got = await read_all(JsonLinesSource(jsonl))
    assert len(records) + 1 == len(got)
    assert records == [m.value for m in got if m.position != 10_001]
    assert long == got[10_000].value
    assert list(range(1, len(records) + 2)) == [m.position for m in got]


async def test_undecodable_lines_become_undecodable_messages(jsonl: Path) -> None:
    """A line that is not JSON (or not UTF-8) is a message that raises where its value is read."""
    jsonl.write_bytes(b'1\n{oops\n\xff\xfe\n"fine"\n')
    got = await read_all(JsonLinesSource(jsonl))
    assert [1, 2, 3, 4] == [m.position for m in got]
    bad = [m for m in got if isinstance(m, UndecodableMessage)]
    assert [b"{oops", b"\xff\xfe"] == [m.raw for m in bad]
    with pytest.raises(DecodeError) as caught:
        _ = bad[0].value
    assert "json" == caught.value.codec
    assert f"{jsonl}[0]@2" == caught.value.where


async def test_undecodable_lines_skipped_are_counted(jsonl: Path) -> None:
    """Under ``on_error="skip"`` a bad line is counted in ``skipped`` and the run goes on."""
    jsonl.write_text('{"x": 1}\nnot json\n{"x": 3}\n')
    out: list[int] = []
    pipe = ps.map(lambda m: m.value["x"], on_error="skip")
    summary = await pipe.run(JsonLinesSource(jsonl), out)
    assert [1, 3] == out
    assert (3, 2, 1, 0) == (
        summary.items_in,
        summary.items_out,
        summary.skipped,
        summary.dead_lettered,
    )


async def test_undecodable_lines_dead_lettered_keep_raw_bytes_and_position(jsonl: Path) -> None:
    """A ``DeadLetter`` gets the message, with its raw line and line number."""
    jsonl.write_text('{"x": 1}\n\n{"x": \n{"x": 3}\n')
    dead: list[ps.StreamError] = []
    out: list[int] = []
    pipe = ps.map(lambda m: m.value["x"], on_error=ps.DeadLetter(dead.append))
    summary = await pipe.run(JsonLinesSource(jsonl), out)
    assert [1, 3] == out
    assert (1, 0) == (summary.dead_lettered, summary.skipped)
    item = dead[0].item
    assert isinstance(item, UndecodableMessage)
    assert (b'{"x": ', 3) == (item.raw, item.position)
    assert isinstance(dead[0].__cause__, DecodeError)


async def test_undecodable_line_under_raise_fails_the_run(jsonl: Path) -> None:
    """Without an error policy, the first pipe fails on the bad line, naming where it is."""
    jsonl.write_text("1\n{\n")
    with pytest.raises(ps.StreamError) as caught:
        await ps.map(lambda m: m.value).run(JsonLinesSource(jsonl), [])
    assert isinstance(caught.value.__cause__, DecodeError)
    assert not is_open(jsonl)


async def test_each_iteration_reads_from_the_start(jsonl: Path) -> None:
    """A source iterated twice reads the whole file twice."""
    jsonl.write_text("1\n2\n")
    source = JsonLinesSource(jsonl)
    assert [1, 2] == [m.value async for m in source]
    assert [1, 2] == [m.value async for m in source]
    await source.aclose()


async def test_a_custom_codec_decodes_each_line(jsonl: Path) -> None:
    """Any object with encode and decode serves as the codec."""

    class Upper:
        def encode(self, value: str) -> bytes:
            return value.lower().encode()

        def decode(self, data: bytes) -> str:
            return data.decode().upper()

    jsonl.write_text("ab\ncd\n")
    assert ["AB", "CD"] == [m.value for m in await read_all(JsonLinesSource(jsonl, codec=Upper()))]


async def test_missing_file_raises_when_iteration_starts(tmp_path: Path) -> None:
    """Construction succeeds; the run fails with FileNotFoundError naming the path."""
    missing = tmp_path / "nope.jsonl"
    source = JsonLinesSource(missing)
    with pytest.raises(FileNotFoundError, match=r"nope\.jsonl"):
        await ps.map(lambda m: m).run(source, [])


# ---------------------------------------------------------------------------- follow


async def test_follow_reads_appended_lines_and_holds_a_partial_line(jsonl: Path) -> None:
    """Like ``tail -f``: lines appended later are read; a line without its newline waits for it."""
    jsonl.write_bytes(b"1\n2\n")
    clock = VirtualClock()
    sink = Collect()
    source = JsonLinesSource(jsonl, follow=True, poll=timedelta(seconds=2), clock=clock)
    run = asyncio.create_task(ps.map(lambda m: (m.position, m.value)).run(source, sink))
    await sink.wait_for(2)
    with jsonl.open("ab") as f:
        f.write(b'{"n": ')
    await clock.sleep(60)  # the source polls 30 times meanwhile
    assert [(1, 1), (2, 2)] == sink.items
    with jsonl.open("ab") as f:
        f.write(b"3}\n\n5\n")
    started = clock.monotonic()
    await sink.wait_for(4)
    assert [(1, 1), (2, 2), (3, {"n": 3}), (5, 5)] == sink.items
    assert clock.monotonic() - started <= 2.0  # seen at the next poll
    assert not run.done()
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert not is_open(jsonl)


async def test_follow_ends_when_the_run_is_stopped(jsonl: Path) -> None:
    """A following source ends gracefully with the run's ``stop`` event: what was
    read is written, and the file is closed."""
    jsonl.write_bytes(b"1\n2\n")
    clock = VirtualClock()
    sink = Collect()
    stop = asyncio.Event()
    source = JsonLinesSource(jsonl, follow=True, poll=1, clock=clock)
    run = asyncio.create_task(ps.map(lambda m: m.value).run(source, sink, stop=stop))
    await sink.wait_for(2)
    with jsonl.open("ab") as f:
        f.write(b"3\n")
    await sink.wait_for(3)
    await clock.sleep(10)
    stop.set()
    summary = await run
    assert [1, 2, 3] == sink.items
    assert (True, 3, 3) == (summary.stopped, summary.items_in, summary.items_out)
    assert not is_open(jsonl)


async def test_follow_waits_for_the_first_line_of_an_empty_file(jsonl: Path) -> None:
    """An empty file is followed until lines come."""
    jsonl.write_bytes(b"")
    clock = VirtualClock()
    source = JsonLinesSource(jsonl, follow=True, poll=0.5, clock=clock)
    it = aiter(source)

    async def first_message() -> Message:
        return await anext(it)

    first = asyncio.create_task(first_message())
    await clock.sleep(10)
    assert not first.done()
    jsonl.write_bytes(b'"hello"\n')
    msg = await first
    assert ("hello", 1) == (msg.value, msg.position)
    await source.aclose()
    assert not is_open(jsonl)


# ---------------------------------------------------------------------------- closing


async def test_file_closed_when_a_stream_is_left(jsonl: Path) -> None:
    """Breaking out of a stream over the source closes the file."""
    jsonl.write_text("".join(f"{i}\n" for i in range(10_000)))
    async with ps.map(lambda m: m.value).stream(JsonLinesSource(jsonl)) as results:
        async for _ in results:
            assert is_open(jsonl)
            break
    assert not is_open(jsonl)


async def test_file_closed_when_the_run_fails(jsonl: Path) -> None:
    """A pipe failing closes the file."""
    jsonl.write_text("1\n2\n3\n")

    def boom(m: Message) -> Any:
        raise RuntimeError("boom")

    with pytest.raises(ps.StreamError):
        await ps.map(boom).run(JsonLinesSource(jsonl), [])
    assert not is_open(jsonl)


async def test_file_closed_when_the_run_is_cancelled(jsonl: Path) -> None:
    """Cancelling a run that is waiting for lines closes the file."""
    jsonl.write_text("1\n")
    sink = Collect()
    clock = VirtualClock()
    run = asyncio.create_task(
        ps.map(lambda m: m).run(JsonLinesSource(jsonl, follow=True, clock=clock), sink)
    )
    await sink.wait_for(1)
    assert is_open(jsonl)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert not is_open(jsonl)


async def test_aclose_closes_an_iteration_left_open(jsonl: Path) -> None:
    """An iteration left half way is closed by the source's aclose()."""
    jsonl.write_text("1\n2\n")
    source = JsonLinesSource(jsonl)
    it = aiter(source)
    assert 1 == (await anext(it)).value
    assert is_open(jsonl)
    await source.aclose()
    assert not is_open(jsonl)
    await source.aclose()  # twice does no harm


async def test_file_closed_after_a_bare_loop_is_left(jsonl: Path) -> None:
    """Leaving a plain ``async for`` over the source closes its file within a few
    turns of the loop, as the event loop finalizes the abandoned iteration."""
    jsonl.write_text("1\n2\n")
    async for msg in JsonLinesSource(jsonl):
        assert 1 == msg.value
        break
    for _ in range(3):
        await asyncio.sleep(0)
    assert not is_open(jsonl)


async def test_file_is_opened_only_when_iteration_starts(jsonl: Path) -> None:
    """Constructing a source opens nothing."""
    jsonl.write_text("1\n")
    source = JsonLinesSource(jsonl)
    assert not is_open(jsonl)
    assert [1] == [m.value for m in await read_all(source)]
    assert not is_open(jsonl)


# ---------------------------------------------------------------------------- standard input


@contextlib.contextmanager
def stdin_from_pipe() -> Iterator[int]:
    """Standard input replaced by a pipe; yields its writing end (closed by the caller)."""
    saved = os.dup(0)
    read, write = os.pipe()
    os.dup2(read, 0)
    os.close(read)
    try:
        yield write
    finally:
        os.dup2(saved, 0)
        os.close(saved)


async def test_stdin_pipe_is_read_without_blocking_the_loop() -> None:
    """``"-"`` reads a pipe on standard input through the event loop, as its data comes."""
    with stdin_from_pipe() as write:
        blocking = os.get_blocking(0)
        sink = Collect()
        run = asyncio.create_task(
            ps.map(lambda m: (m.position, m.value)).run(JsonLinesSource("-"), sink)
        )
        os.write(write, b'{"a": 1}\n{"a"')
        await sink.wait_for(1)  # the loop runs while the source waits for the rest
        assert [(1, {"a": 1})] == sink.items
        os.write(write, b": 2}\n\n3")
        await sink.wait_for(2)
        os.close(write)
        summary = await run
        assert [(1, {"a": 1}), (2, {"a": 2}), (4, 3)] == sink.items
        assert 3 == summary.items_in
        assert blocking == os.get_blocking(0)  # left as it was


async def test_stdin_pipe_with_follow_ends_at_its_end() -> None:
    """A pipe cannot grow after its end: follow makes no difference."""
    with stdin_from_pipe() as write:
        os.write(write, b"1\n2")
        os.close(write)
        source = JsonLinesSource("-", follow=True, clock=VirtualClock())
        assert [(1, 1), (2, 2)] == values(await read_all(source))


async def test_stdin_source_closed_when_cancelled() -> None:
    """Cancelling a run waiting on a pipe closes its descriptor and restores standard input."""
    with stdin_from_pipe() as write:
        before = len(open_paths())
        blocking = os.get_blocking(0)
        sink = Collect()
        run = asyncio.create_task(ps.map(lambda m: m).run(JsonLinesSource("-"), sink))
        os.write(write, b"1\n")
        await sink.wait_for(1)
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
        assert before == len(open_paths())
        assert blocking == os.get_blocking(0)
        os.close(write)


async def test_stdin_terminal_is_read_through_the_loop() -> None:
    """A terminal on standard input is read line by line as typed; Ctrl-D ends it."""
    saved = os.dup(0)
    master, slave = os.openpty()
    os.dup2(slave, 0)
    os.close(slave)
    try:
        sink = Collect()
        run = asyncio.create_task(ps.map(lambda m: m.value).run(JsonLinesSource("-"), sink))
        os.write(master, b'{"typed": 1}\n')
        await sink.wait_for(1)
        os.write(master, b"2\n\x04")
        await run
        assert [{"typed": 1}, 2] == sink.items
    finally:
        os.dup2(saved, 0)
        os.close(saved)
        os.close(master)


async def test_stdin_regular_file(jsonl: Path) -> None:
    """Standard input that is a regular file is read as a file."""
    jsonl.write_text("7\n8\n")
    saved = os.dup(0)
    with jsonl.open("rb") as f:
        os.dup2(f.fileno(), 0)
    try:
        assert [(1, 7), (2, 8)] == values(await read_all(JsonLinesSource("-")))
    finally:
        os.dup2(saved, 0)
        os.close(saved)


# ---------------------------------------------------------------------------- JSON Lines sink


async def test_sink_round_trip(tmp_path: Path) -> None:
    """What the sink writes, the source reads back; Message results by their value."""
    out = tmp_path / "out.jsonl"
    results = [{"a": 1}, Message([1, 2], key=b"k"), "text", None, 2.5]
    summary = await ps.map(lambda x: x).run(results, JsonLinesSink(out))
    assert 5 == summary.items_out
    assert b'{"a":1}\n[1,2]\n"text"\nnull\n2.5\n' == out.read_bytes()
    assert [{"a": 1}, [1, 2], "text", None, 2.5] == [
        m.value for m in await read_all(JsonLinesSource(out))
    ]


async def test_sink_appends(tmp_path: Path) -> None:
    """An existing file is appended to, never truncated."""
    out = tmp_path / "out.jsonl"
    out.write_bytes(b"0\n")
    await ps.map(lambda x: x).run([1, 2], JsonLinesSink(out))
    await ps.map(lambda x: x).run([3], JsonLinesSink(out))
    assert b"0\n1\n2\n3\n" == out.read_bytes()


async def test_sink_write_is_flushed_when_it_returns(tmp_path: Path) -> None:
    """Once write() returns, another handle on the file reads the lines."""
    out = tmp_path / "out.jsonl"
    for fsync in (False, True):
        sink = JsonLinesSink(out, fsync=fsync)
        await sink.write([{"n": 1}, {"n": 2}])
        assert b'{"n":1}\n{"n":2}\n' == out.read_bytes()
        await sink.write([3])
        assert b'{"n":1}\n{"n":2}\n3\n' == out.read_bytes()
        await sink.aclose()
        assert not is_open(out)
        out.unlink()


async def test_sink_opens_the_file_at_the_first_write(tmp_path: Path) -> None:
    """No write, no file; an empty list creates nothing either."""
    out = tmp_path / "out.jsonl"
    sink = JsonLinesSink(out)
    await sink.write([])
    await sink.aclose()
    assert not out.exists()


async def test_sink_encode_errors_write_nothing_of_the_list(tmp_path: Path) -> None:
    """A result the codec refuses fails the write, and its list is not written at all."""
    out = tmp_path / "out.jsonl"
    sink = JsonLinesSink(out)
    await sink.write([1])
    with pytest.raises(EncodeError) as caught:
        await sink.write([2, object(), 3])
    assert "json" == caught.value.codec
    assert b"1\n" == out.read_bytes()
    await sink.aclose()


async def test_text_codec_refuses_a_newline(tmp_path: Path) -> None:
    """With the text codec, text holding a newline cannot be one line: EncodeError."""
    out = tmp_path / "out.txt"
    sink = JsonLinesSink(out, codec="text")
    await sink.write(["one", "two"])
    for bad in ("a\nb", "end\r"):
        with pytest.raises(EncodeError, match="newline"):
            await sink.write(["fine", bad])
    assert b"one\ntwo\n" == out.read_bytes()
    await sink.aclose()


async def test_encode_error_fails_the_run_without_retrying(tmp_path: Path) -> None:
    """run() fails with the EncodeError at once: it is not retried."""
    out = tmp_path / "out.jsonl"
    with pytest.raises(EncodeError):
        await ps.map(lambda x: x).run([1, {1, 2}], JsonLinesSink(out))
    assert not is_open(out)


async def test_sink_refuses_writes_after_aclose(tmp_path: Path) -> None:
    """A closed sink says so."""
    sink = JsonLinesSink(tmp_path / "out.jsonl")
    await sink.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await sink.write([1])


async def test_undecodable_message_is_written_as_its_raw_line(tmp_path: Path) -> None:
    """A bad line passed through untouched is copied as it was."""
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_bytes(b'{"a": 1}\n{bad\n')
    await ps.map(lambda m: m).run(JsonLinesSource(src), JsonLinesSink(out))
    assert b'{"a":1}\n{bad\n' == out.read_bytes()


async def test_stdout_sink(capfd: pytest.CaptureFixture[str]) -> None:
    """``"-"`` writes to standard output, which stays open."""
    sink = JsonLinesSink("-")
    print("before", flush=False)
    await sink.write([{"a": 1}, 2])
    await sink.aclose()
    print("after")
    assert 'before\n{"a":1}\n2\nafter\n' == capfd.readouterr().out


# ---------------------------------------------------------------------------- property


def jsonable() -> st.SearchStrategy[Any]:
    text = st.text(st.characters(exclude_categories=["Cs"]), max_size=20)
    scalars = (
        st.none()
        | st.booleans()
        | st.integers(min_value=-(2**63), max_value=2**64 - 1)
        | st.floats(allow_nan=False, allow_infinity=False)
        | text
    )
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
        max_leaves=10,
    )


@settings(max_examples=60)
@given(st.lists(jsonable(), max_size=30))
def test_values_written_and_read_back_are_the_same(data: list[Any]) -> None:
    """Any JSON values through JsonLinesSink and back through JsonLinesSource: the same
    values, at positions 1 to n."""

    async def round_trip(path: Path) -> list[Message]:
        await ps.map(lambda x: x).run(data, JsonLinesSink(path))
        return await read_all(JsonLinesSource(path)) if path.exists() else []

    with tempfile.TemporaryDirectory() as tmp:
        got = asyncio.run(round_trip(Path(tmp, "p.jsonl")))
    assert list(range(1, len(data) + 1)) == [m.position for m in got]
    assert len(data) == len(got)
    for expected, message in zip(data, got, strict=True):
        assert same(expected, message.value)


def same(a: Any, b: Any) -> bool:
    """Equal, with -0.0 and 0.0 told apart as JSON keeps them apart."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


# ---------------------------------------------------------------------------- CSV


async def test_csv_header_gives_the_names(tmp_path: Path) -> None:
    """The first row names the fields; each later row is a dict of strings at its line."""
    path = tmp_path / "in.csv"
    path.write_text("id,name\n1,ann\n\n2,bob\n")
    got = await read_all(CsvSource(path))
    assert [(2, {"id": "1", "name": "ann"}), (4, {"id": "2", "name": "bob"})] == values(got)
    assert [str(path)] * 2 == [m.source for m in got]


async def test_csv_fieldnames_given_make_the_first_row_data(tmp_path: Path) -> None:
    """With fieldnames, every row is data."""
    path = tmp_path / "in.csv"
    path.write_text("1;ann\n2;bob")
    got = await read_all(CsvSource(path, fieldnames=["id", "name"], delimiter=";"))
    assert [(1, {"id": "1", "name": "ann"}), (2, {"id": "2", "name": "bob"})] == values(got)


async def test_csv_quoted_fields_crlf_and_bom(tmp_path: Path) -> None:
    """Quoted fields hold delimiters, quotes and newlines; the row's position is its first line."""
    path = tmp_path / "in.csv"
    path.write_bytes(
        b'\xef\xbb\xbfa,b\r\n"x, y","say ""hi"""\r\n"multi\r\nline",z\r\n"\xc3\xa9",\r\n'
    )
    got = await read_all(CsvSource(path))
    assert [
        (2, {"a": "x, y", "b": 'say "hi"'}),
        (3, {"a": "multi\r\nline", "b": "z"}),
        (5, {"a": "é", "b": ""}),
    ] == values(got)


async def test_csv_malformed_rows_go_to_the_error_policy(tmp_path: Path) -> None:
    """A row with the wrong number of fields, or not UTF-8, is undecodable (codec "csv")."""
    path = tmp_path / "in.csv"
    path.write_bytes(b"a,b\n1,2\n1,2,3\r\n4\n\xff,5\n6,7\n")
    dead: list[ps.StreamError] = []
    out: list[dict[str, str]] = []
    summary = await ps.map(lambda m: m.value, on_error=ps.DeadLetter(dead.append)).run(
        CsvSource(path), out
    )
    assert [{"a": "1", "b": "2"}, {"a": "6", "b": "7"}] == out
    assert 3 == summary.dead_lettered
    items = [error.item for error in dead]
    assert all(isinstance(item, UndecodableMessage) for item in items)
    assert [(3, b"1,2,3"), (4, b"4"), (5, b"\xff,5")] == [(i.position, i.raw) for i in items]
    causes = [error.__cause__ for error in dead]
    assert all(isinstance(c, DecodeError) and c.codec == "csv" for c in causes)
    assert "expected 2 fields" in str(causes[0])


async def test_csv_skip_counts_malformed_rows(tmp_path: Path) -> None:
    """Under skip, malformed rows are counted in ``skipped``."""
    path = tmp_path / "in.csv"
    path.write_text("a\n1\n2,3\n4\n")
    out: list[str] = []
    summary = await ps.map(lambda m: m.value["a"], on_error="skip").run(CsvSource(path), out)
    assert (["1", "4"], 1) == (out, summary.skipped)


async def test_csv_repeated_header_names_fail_the_run(tmp_path: Path) -> None:
    """A header that repeats a name gives no usable rows: ValueError."""
    path = tmp_path / "in.csv"
    path.write_text("a,b,a\n1,2,3\n")
    with pytest.raises(ValueError, match="repeat a name, got 'a'"):
        await read_all(CsvSource(path))
    assert not is_open(path)


async def test_csv_an_unclosed_quote_at_the_end(tmp_path: Path) -> None:
    """A quoted field still open at the end of the file ends there."""
    path = tmp_path / "in.csv"
    path.write_text('a,b\n1,"open\nmore')
    got = await read_all(CsvSource(path))
    assert [(2, {"a": "1", "b": "open\nmore"})] == values(got)


async def test_csv_a_quote_inside_a_field_is_a_character(tmp_path: Path) -> None:
    """A quote that does not start a field opens nothing, as for ``csv`` itself."""
    path = tmp_path / "in.csv"
    path.write_text('item,size\nscreen,27"\ncable,2m\n')
    got = await read_all(CsvSource(path))
    assert [(2, {"item": "screen", "size": '27"'}), (3, {"item": "cable", "size": "2m"})] == (
        values(got)
    )


async def test_csv_a_quoted_field_left_open_gives_up_at_the_field_size_limit(
    tmp_path: Path,
) -> None:
    """A quoted field never closed is one undecodable row of at most about
    ``csv.field_size_limit()`` bytes; the rows after it are read again."""
    path = tmp_path / "in.csv"
    path.write_text('a,b\n1,"never closed\n' + "filler,line\n" * 20 + "2,3\n4,5\n")
    limit = csv.field_size_limit(100)
    try:
        dead: list[ps.StreamError] = []
        out: list[Any] = []
        pipe = ps.map(lambda m: m.value, on_error=ps.DeadLetter(dead.append))
        await pipe.run(CsvSource(path), out)
    finally:
        csv.field_size_limit(limit)
    bad = dead[0].item
    assert (2, True) == (bad.position, bad.raw.startswith(b'1,"never closed\nfiller,line\n'))
    assert "field limit" in str(dead[0].__cause__)
    assert {"a": "2", "b": "3"} in out
    assert {"a": "4", "b": "5"} == out[-1]


async def test_csv_follow_holds_a_row_until_its_quote_closes(tmp_path: Path) -> None:
    """Following, a row is read once complete: its quoted newline does not end it."""
    path = tmp_path / "in.csv"
    path.write_text('a,b\n1,"x\n')
    clock = VirtualClock()
    sink = Collect()
    source = CsvSource(path, follow=True, clock=clock)
    run = asyncio.create_task(ps.map(lambda m: (m.position, m.value)).run(source, sink))
    await clock.sleep(5)
    assert [] == sink.items
    with path.open("a") as f:
        f.write('y"\n3,4\n')
    await sink.wait_for(2)
    assert [(2, {"a": "1", "b": "x\ny"}), (4, {"a": "3", "b": "4"})] == sink.items
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert not is_open(path)


async def test_csv_sink_writes_a_header_then_rows(tmp_path: Path) -> None:
    """Names from the first result; a header first; missing fields empty; Message values too."""
    path = tmp_path / "out.csv"
    rows = [{"id": 1, "name": "a,b"}, Message({"name": 'q"'}), {"id": None, "name": "x\ny"}]
    await ps.map(lambda x: x).run(rows, CsvSink(path))
    assert b'id,name\r\n1,"a,b"\r\n,"q"""\r\n,"x\ny"\r\n' == path.read_bytes()
    got = await read_all(CsvSource(path))
    expected = [{"id": "1", "name": "a,b"}, {"id": "", "name": 'q"'}, {"id": "", "name": "x\ny"}]
    assert expected == [m.value for m in got]


async def test_csv_sink_appends_under_the_existing_header(tmp_path: Path) -> None:
    """A file with a header keeps it: its names order the columns, no second header."""
    path = tmp_path / "out.csv"
    path.write_text("b,a\n1,2\n")
    sink = CsvSink(path)
    await sink.write([{"a": "x", "b": "y"}])
    assert b"b,a\n1,2\ny,x\r\n" == path.read_bytes()
    await sink.aclose()
    with pytest.raises(ValueError, match=r"header is \['b', 'a'\], not the fieldnames"):
        CsvSink(path, fieldnames=["a", "b"])
    late = tmp_path / "late.csv"
    sink = CsvSink(late, fieldnames=["a", "b"])
    late.write_text("b,a\n")
    with pytest.raises(ValueError, match="header is"):
        await sink.write([{"a": 1}])
    await sink.aclose()


async def test_csv_sink_fieldnames_and_flush(tmp_path: Path) -> None:
    """Given fieldnames set the columns; each write is in the file when it returns."""
    path = tmp_path / "out.csv"
    sink = CsvSink(path, fieldnames=("x", "y"), delimiter="\t")
    await sink.write([{"y": 2, "x": 1}])
    assert b"x\ty\r\n1\t2\r\n" == path.read_bytes()
    await sink.write([{"x": 3}])
    assert b"x\ty\r\n1\t2\r\n3\t\r\n" == path.read_bytes()
    await sink.aclose()
    assert not is_open(path)


async def test_csv_sink_encode_errors(tmp_path: Path) -> None:
    """Not a mapping, or a key outside the names: EncodeError, nothing of the list written."""
    path = tmp_path / "out.csv"
    sink = CsvSink(path)
    with pytest.raises(EncodeError, match="mapping"):
        await sink.write([[1, 2]])
    await sink.write([{"a": 1}])
    with pytest.raises(EncodeError, match=r"\['b'\] are not among \['a'\]") as caught:
        await sink.write([{"a": 2}, {"a": 3, "b": 4}])
    assert "csv" == caught.value.codec
    with pytest.raises(EncodeError):
        await sink.write([5])
    assert b"a\r\n1\r\n" == path.read_bytes()
    await sink.aclose()
    with pytest.raises(EncodeError, match="field names must be str"):
        await CsvSink(tmp_path / "other.csv").write([{1: "a"}])


# ---------------------------------------------------------------------------- arguments


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: JsonLinesSource(3), TypeError, "path must be a str or an os.PathLike, got int"),  # type: ignore[arg-type]
        (lambda: JsonLinesSource(""), ValueError, "must not be empty"),
        (lambda: JsonLinesSource(b"x"), TypeError, "got bytes"),  # type: ignore[arg-type]
        (lambda: JsonLinesSource("x", follow=1), TypeError, "follow must be True or False"),  # type: ignore[arg-type]
        (lambda: JsonLinesSource("x", codec="yaml"), ValueError, "codec must be one of"),
        (lambda: JsonLinesSource("x", codec=3), TypeError, "codec must be"),  # type: ignore[arg-type]
        (lambda: JsonLinesSource("x", poll=0), ValueError, "poll must be > 0, got 0"),
        (lambda: JsonLinesSource("x", poll=-1.5), ValueError, "poll must be > 0"),
        (lambda: JsonLinesSource("x", poll="1"), TypeError, "poll must be a timedelta"),  # type: ignore[arg-type]
        (lambda: JsonLinesSource("x", clock=VirtualClock), TypeError, "clock must be a Clock"),  # type: ignore[arg-type]
        (lambda: JsonLinesSource("x", clock=object()), TypeError, "clock must be a Clock"),  # type: ignore[arg-type]
        (lambda: JsonLinesSink("x", fsync="yes"), TypeError, "fsync must be True or False"),  # type: ignore[arg-type]
        (lambda: JsonLinesSink("x", codec="xml"), ValueError, "codec must be one of"),
        (
            lambda: JsonLinesSink("/no/such/dir/x.jsonl"),
            FileNotFoundError,
            "directory '/no/such/dir'",
        ),
        (lambda: JsonLinesSink("/"), IsADirectoryError, "is a directory"),
        (lambda: CsvSource("x", delimiter=",,"), ValueError, "delimiter must be one character"),
        (lambda: CsvSource("x", delimiter='"'), ValueError, "other than a quote"),
        (lambda: CsvSource("x", delimiter=1), TypeError, "delimiter must be a str"),  # type: ignore[arg-type]
        (lambda: CsvSource("x", fieldnames="ab"), TypeError, "fieldnames must be a sequence"),
        (lambda: CsvSource("x", fieldnames=[]), ValueError, "at least one field"),
        (lambda: CsvSource("x", fieldnames=["a", 1]), TypeError, "must all be str, got 1"),  # type: ignore[list-item]
        (lambda: CsvSource("x", fieldnames=["a", "a"]), ValueError, "repeat a name"),
        (lambda: CsvSource("x", poll=timedelta(0)), ValueError, "poll must be > 0"),
        (lambda: CsvSink("/no/such/dir/x.csv"), FileNotFoundError, "does not exist"),
        (lambda: CsvSink("x.csv", fieldnames=["a", "a"]), ValueError, "repeat a name"),
    ],
)
def test_bad_arguments_are_refused_clearly(make: Any, error: type[Exception], match: str) -> None:
    """Each bad option raises at construction, naming the option and what came."""
    with pytest.raises(error, match=match):
        make()


def test_reprs() -> None:
    """Sources and sinks say what they read and write."""
    assert "JsonLinesSource('a.jsonl', follow=True, codec='text')" == repr(
        JsonLinesSource("a.jsonl", follow=True, codec="text")
    )
    assert "CsvSource('a.csv', delimiter=';')" == repr(CsvSource("a.csv", delimiter=";"))
    assert "JsonLinesSink('-', codec='json')" == repr(JsonLinesSink("-"))
    assert "CsvSink('-', delimiter=',')" == repr(CsvSink("-"))


csv_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=8)


@settings(max_examples=60)
@given(
    st.lists(csv_text, min_size=1, max_size=4, unique=True).flatmap(
        lambda names: st.tuples(
            st.just(names),
            st.lists(st.fixed_dictionaries({name: csv_text for name in names}), max_size=10),
        )
    )
)
def test_rows_written_and_read_back_are_the_same(
    case: tuple[list[str], list[dict[str, str]]],
) -> None:
    """Any rows of text through CsvSink and back through CsvSource: the same dicts."""
    names, rows = case

    async def round_trip(path: Path) -> list[Message]:
        await ps.map(lambda x: x).run(rows, CsvSink(path, fieldnames=names))
        return await read_all(CsvSource(path)) if path.exists() else []

    with tempfile.TemporaryDirectory() as tmp:
        got = asyncio.run(round_trip(Path(tmp, "p.csv")))
    assert rows == [m.value for m in got]
