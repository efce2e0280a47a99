"""File connectors in a real process: on its standard input and output (``"-"``),
and under a file size limit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import IO

import orjson
import pytest

FILTER = """
import asyncio, sys
from pipeflow import streams as ps
from pipeflow.connectors import {source}, {sink}

async def main() -> None:
    pipe = ps.map({fn}, on_error="skip")
    summary = await pipe.run({source}("-"), {sink}("-"))
    print(f"in={{summary.items_in}} out={{summary.items_out}} skipped={{summary.skipped}}",
          file=sys.stderr)

asyncio.run(main())
"""

JSON = FILTER.format(
    source="JsonLinesSource", sink="JsonLinesSink", fn='lambda m: {"at": m.position, **m.value}'
)
CSV = FILTER.format(
    source="CsvSource", sink="CsvSink", fn='lambda m: {**m.value, "at": m.position}'
)

INPUT = b'{"a": 1}\n\nnot json\n{"a": 2}'
OUTPUT = [{"at": 1, "a": 1}, {"at": 4, "a": 2}]


def run(
    script: str, *, input: bytes | None = None, stdin: int | IO[bytes] | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-c", script],
        input=input,
        stdin=stdin,
        capture_output=True,
        timeout=30,
        check=True,
    )


def test_stdin_pipe_to_stdout() -> None:
    """A pipe on standard input is read to its end; results go to standard output."""
    done = run(JSON, input=INPUT)
    assert OUTPUT == [orjson.loads(line) for line in done.stdout.splitlines()]
    assert b"in=3 out=2 skipped=1" in done.stderr


def test_stdin_regular_file_to_stdout(tmp_path: Path) -> None:
    """Standard input redirected from a file (``< file``) is read as a file."""
    path = tmp_path / "in.jsonl"
    path.write_bytes(INPUT)
    with path.open("rb") as stdin:
        done = run(JSON, stdin=stdin)
    assert OUTPUT == [orjson.loads(line) for line in done.stdout.splitlines()]


@pytest.mark.parametrize("stdin", [subprocess.DEVNULL, None], ids=["devnull", "closed-pipe"])
def test_stdin_empty(stdin: int | None) -> None:
    """Nothing on standard input (``/dev/null``, or a pipe closed at once): nothing out."""
    done = run(JSON, stdin=stdin) if stdin is not None else run(JSON, input=b"")
    assert b"" == done.stdout
    assert b"in=0 out=0 skipped=0" in done.stderr


def test_csv_through_stdin_and_stdout() -> None:
    """CSV rows in, a header and rows out."""
    done = run(CSV, input=b'name,n\r\nann,1\r\nbob\r\n"c, d",3\r\n')
    assert b'name,n,at\r\nann,1,2\r\n"c, d",3,4\r\n' == done.stdout
    assert b"in=3 out=2 skipped=1" in done.stderr


PARTIAL = """
import asyncio, errno, resource, signal, sys
from pipeflow.connectors import JsonLinesSink

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails instead

async def main() -> None:
    sink = JsonLinesSink(sys.argv[1], codec="text")
    await sink.write(["a" * 10])
    resource.setrlimit(resource.RLIMIT_FSIZE, (100, resource.RLIM_INFINITY))
    try:
        await sink.write(["b" * 50, "c" * 50])  # 89 bytes fit, then EFBIG
    except OSError as exc:
        print(errno.errorcode[exc.errno])
    await sink.aclose()

asyncio.run(main())
"""


def test_a_write_failing_part_way_leaves_none_of_its_list(tmp_path: Path) -> None:
    """A write cut short (here by the file size limit) is taken back: no half line stays."""
    path = tmp_path / "out.txt"
    done = subprocess.run(
        [sys.executable, "-c", PARTIAL, str(path)],
        capture_output=True,
        timeout=30,
        check=True,
    )
    assert b"EFBIG\n" == done.stdout
    assert b"a" * 10 + b"\n" == path.read_bytes()
