"""ConsoleReporter and print_report: the live view, the final table and the bottleneck."""

from __future__ import annotations

import asyncio
import io
import re
import subprocess
import sys
from datetime import timedelta

import pytest
from rich.console import Console

import pipeflow.streams as ps
from pipeflow._monitoring._bottleneck import MIN_DROP, find_bottleneck
from pipeflow.monitoring import (
    Bottleneck,
    ConsoleReporter,
    StageMetrics,
    StreamMonitor,
    print_report,
)
from pipeflow.streams import BackpressureConfig, DeadLetter, Pipeline, Retry, StreamError
from pipeflow.testing import TestSource, VirtualClock

#: Small input buffers, so that a slow stage holds back the ones before it at once.
SMALL = BackpressureConfig(max_buffer_size=8)
N = 200


def sleeper(clock: VirtualClock, name: str, seconds: float) -> ps.FunctionPipe[int, int]:
    """A stage that takes ``seconds`` of virtual time per item."""

    async def work(x: int) -> int:
        await clock.sleep(seconds)
        return x

    return ps.map(work, name=name, config=SMALL)


def chain(clock: VirtualClock, slow: str | None) -> Pipeline[int, int]:
    """Stages a, b, c, d taking 10 ms per item each, and 100 ms the one called ``slow``."""
    a, b, c, d = (sleeper(clock, n, 0.1 if n == slow else 0.01) for n in "abcd")
    return a | b | c | d


def console(*, terminal: bool = False) -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=200, force_terminal=terminal), out


def rows(text: str) -> dict[str, tuple[int, ...]]:
    """The final table's rows: each stage's items in and out, then the counts of
    errors and the like that are shown (the cells after the latencies)."""
    found = {}
    for line in text.splitlines():
        # Cells are apart by two spaces or more.
        cells = re.split(r"\s{2,}", line.strip())
        if len(cells) >= 6 and cells[4].endswith("%"):
            counts = [cells[1], cells[2], *cells[6:]]
            found[cells[0]] = tuple(int(n.replace(",", "")) for n in counts)
    return found


async def consume(stream: ps.Stream[int], clock: VirtualClock, per_item: float = 0.0) -> None:
    async with stream:
        async for _ in stream:
            if per_item:
                await clock.sleep(per_item)


# -- the final table ---------------------------------------------------------------


async def test_final_table_lists_every_stage_with_its_exact_counts() -> None:
    """Each stage's row shows its items in and out, and the counts some stage has
    (here dead letters and skips) in their own columns; all-zero ones are left out."""
    clock = VirtualClock()
    dead: list[StreamError] = []

    def parse(x: int) -> int:
        if x % 10 == 0:
            raise ValueError(x)
        return x

    def check(x: int) -> int:
        if x % 10 == 5:
            raise ValueError(x)
        return x

    pipeline = (
        ps.map(parse, name="parse", on_error=DeadLetter(dead))
        | sleeper(clock, "work", 0.01)
        | ps.map(check, name="check", on_error="skip")
        | ps.filter(lambda x: x % 2 == 0, name="even")
    )
    monitor = StreamMonitor()
    pipeline.set_monitor(monitor)
    con, out = console()
    async with ConsoleReporter(monitor, clock=clock, console=con, title="numbers"):
        await consume(pipeline.stream(range(N), clock=clock), clock)

    text = out.getvalue()
    assert "numbers: per-stage metrics" in text
    header = next(line for line in text.splitlines() if "out/s" in line)
    assert [
        *("stage", "in", "out", "out/s", "pressure", "p50/p99"),
        *("skipped", "letters"),
    ] == header.split()
    # in, out, skipped, dead letters
    assert {
        "parse": (200, 180, 0, 20),
        "work": (180, 180, 0, 0),
        "check": (180, 160, 20, 0),
        "even": (160, 80, 0, 0),
    } == rows(text)


async def test_an_error_raised_out_of_the_stream_has_its_column() -> None:
    """A failed item the policy raises is counted as raised, beside the retries."""
    clock = VirtualClock()

    def fail_on_7(x: int) -> int:
        if x == 7:
            raise ValueError(x)
        return x

    pipeline = ps.map(fail_on_7, name="fragile", on_error=Retry(attempts=2, backoff=0.1))
    monitor = StreamMonitor()
    pipeline.set_monitor(monitor)
    con, out = console()
    with pytest.raises(StreamError):
        async with ConsoleReporter(monitor, clock=clock, console=con):
            await consume(pipeline.stream(range(10), clock=clock), clock)

    header = next(line for line in out.getvalue().splitlines() if "out/s" in line)
    assert ["raised", "retries"] == header.split()[-2:]
    # in, out, raised, retries
    assert {"fragile": (8, 7, 1, 1)} == rows(out.getvalue())


async def test_print_report_prints_the_table_of_a_monitor_or_its_metrics() -> None:
    """print_report takes a monitor or a StreamMetrics and prints the same table."""
    clock = VirtualClock()
    pipeline = chain(clock, slow="c")
    monitor = StreamMonitor()
    pipeline.set_monitor(monitor)
    await consume(pipeline.stream(range(N), clock=clock), clock)

    con, out = console()
    print_report(monitor, console=con, title="chain")
    print_report(monitor.get_metrics(), console=con, title="chain")
    first, second = out.getvalue().split("chain: per-stage metrics")[1:]
    assert first == second
    assert {name: (N, N) for name in "abcd"} == rows(first)
    assert "Bottleneck: 'c'" in first


def test_print_report_before_any_run_says_so() -> None:
    """A monitor that saw no run prints an empty table and says no stage has run."""
    con, out = console()
    print_report(StreamMonitor(), console=con)
    assert {} == rows(out.getvalue())
    assert out.getvalue().rstrip().endswith("No stage has run yet.")


def test_print_report_names_what_it_was_given_instead_of_metrics() -> None:
    """Something that is neither a monitor nor its metrics is refused by name."""
    with pytest.raises(TypeError, match="StreamMonitor or StreamMetrics, got list"):
        print_report([])  # type: ignore[arg-type]


# -- the bottleneck -----------------------------------------------------------------


@pytest.mark.parametrize("slow", ["b", "c", "d"])
async def test_bottleneck_line_names_the_slow_stage(slow: str) -> None:
    """The stage ten times slower than the others is named, at every refresh."""
    clock = VirtualClock()
    pipeline = chain(clock, slow=slow)
    monitor = StreamMonitor()
    pipeline.set_monitor(monitor)
    con, out = console()
    reporter = ConsoleReporter(monitor, clock=clock, console=con, refresh=2.0)
    async with reporter:
        await consume(pipeline.stream(range(N), clock=clock), clock)

    bottleneck = reporter.bottleneck()
    assert bottleneck is not None
    assert slow == bottleneck.stage
    assert "abcd"[bottleneck.position - 1] == bottleneck.upstream
    # 200 items at 100 ms each: the run takes 20 s, refreshed every 2 s.
    assert re.search(rf"Bottleneck: '{slow}' \(at 10 of 10 refreshes\): ", out.getvalue())


async def test_a_slow_consumer_is_named_as_the_bottleneck() -> None:
    """When the loop over the stream is the slowest part, it is named, not a stage."""
    clock = VirtualClock()
    pipeline = chain(clock, slow=None)
    monitor = StreamMonitor()
    pipeline.set_monitor(monitor)
    con, out = console()
    async with ConsoleReporter(monitor, clock=clock, console=con):
        await consume(pipeline.stream(range(N), clock=clock), clock, per_item=0.1)

    assert "Bottleneck: the code consuming the stream (at " in out.getvalue()
    assert "'d' waited for it to take results" in out.getvalue()


async def test_a_slow_source_is_no_stage_bottleneck() -> None:
    """A source slower than every stage holds nobody back: no stage is named."""
    clock = VirtualClock()
    pipeline = chain(clock, slow=None)
    monitor = StreamMonitor()
    pipeline.set_monitor(monitor)
    source = TestSource([x for i in range(50) for x in (TestSource.wait(0.2), i)], clock=clock)
    con, out = console()
    reporter = ConsoleReporter(monitor, clock=clock, console=con)
    async with reporter:
        await consume(pipeline.stream(source, clock=clock), clock)

    assert reporter.bottleneck() is None
    assert "No bottleneck (at 10 of 10 refreshes): " in out.getvalue()
    assert "the source, or the first stage 'a', sets the pace" in out.getvalue()


def stage(name: str, backpressure: float) -> StageMetrics:
    return StageMetrics(name=name, backpressure=backpressure, window=10.0)


@pytest.mark.parametrize(
    ("pressures", "expected"),
    [
        # The largest drop names the stage after it.
        ((0.9, 0.9, 0.1, 0.0), (2, "c", "b", 0.9)),
        # a waits for b, which is free most of the time: b is slow, not c.
        ((0.9, 0.3, 0.0), (1, "b", "a", 0.9)),
        # The last stage waiting for the consumer: the consumer (no name).
        ((0.6, 0.7, 0.8), (3, None, "c", 0.8)),
        # On a tie the first drop is named.
        ((0.5, 0.0, 0.5, 0.0), (1, "b", "a", 0.5)),
        # Drops smaller than MIN_DROP name nothing.
        ((MIN_DROP - 0.01, 0.0), None),
        ((0.0, 0.0, 0.0), None),
        ((), None),
    ],
)
def test_the_bottleneck_follows_the_largest_drop_in_backpressure(
    pressures: tuple[float, ...], expected: tuple[int, str | None, str, float] | None
) -> None:
    """The rule on hand-made metrics: where waiting stops most sharply."""
    stages = [stage(name, bp) for name, bp in zip("abcd", pressures, strict=False)]
    found = find_bottleneck(stages)
    if expected is None:
        assert found is None
    else:
        position, name, upstream, waited = expected
        assert Bottleneck(name, position, upstream, waited, 10.0) == found


# -- the live view ------------------------------------------------------------------


async def test_live_view_is_redrawn_every_refresh_of_the_clock() -> None:
    """On a terminal the view is drawn on entry, then every ``refresh`` seconds of
    the virtual clock; it shows the progress of the items read."""
    clock = VirtualClock()
    pipeline = chain(clock, slow="c")
    monitor = StreamMonitor()
    pipeline.set_monitor(monitor)
    con, out = console(terminal=True)
    async with ConsoleReporter(
        monitor, clock=clock, console=con, refresh=timedelta(seconds=5), total=N
    ):
        await consume(pipeline.stream(range(N), clock=clock), clock)
        assert 20.0 < clock.monotonic() < 21.0

    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue())
    # Each redraw, once (leaving the view draws the last one again).
    heads = list(dict.fromkeys(re.findall(r"(\d+\.\d) s  ([\d,]+)/200 in", plain)))
    assert ["0.0", "5.0", "10.0", "15.0", "20.0"] == [elapsed for elapsed, _ in heads]
    read = [int(n) for _, n in heads]
    assert 0 == read[0]
    assert read == sorted(read)
    assert "Bottleneck: 'c' (at 4 of 4 refreshes)" in plain


async def test_no_live_view_on_a_console_that_is_not_a_terminal() -> None:
    """Writing to a file, only the final table appears, once, without control codes."""
    clock = VirtualClock()
    pipeline = chain(clock, slow="c")
    monitor = StreamMonitor()
    pipeline.set_monitor(monitor)
    con, out = console()
    async with ConsoleReporter(monitor, clock=clock, console=con, refresh=1.0, total=N):
        await consume(pipeline.stream(range(N), clock=clock), clock)

    text = out.getvalue()
    assert "\x1b" not in text
    assert " in, " not in text  # the live view's progress line
    assert 1 == text.count("per-stage metrics")
    assert text.startswith("pipeline: per-stage metrics")


# -- the task behind the live view ---------------------------------------------------


def other_tasks() -> set[asyncio.Task[object]]:
    return asyncio.all_tasks() - {asyncio.current_task()}


async def test_no_task_left_after_the_block_ends() -> None:
    """The redrawing task is gone once the block has ended normally."""
    clock = VirtualClock()
    pipeline = chain(clock, slow="b")
    monitor = StreamMonitor()
    pipeline.set_monitor(monitor)
    con, _ = console(terminal=True)
    async with ConsoleReporter(monitor, clock=clock, console=con):
        assert 1 == len(other_tasks())
        await consume(pipeline.stream(range(N), clock=clock), clock)
    assert set() == other_tasks()


async def test_no_task_left_after_an_error_which_propagates() -> None:
    """An error in the block stops the view, prints the table with the error's
    name, and goes on to the caller."""
    clock = VirtualClock()
    pipeline = chain(clock, slow="b")
    monitor = StreamMonitor()
    pipeline.set_monitor(monitor)
    con, out = console()

    async def run() -> None:
        async with (
            ConsoleReporter(monitor, clock=clock, console=con),
            pipeline.stream(range(N), clock=clock) as stream,
        ):
            async for x in stream:
                if x == 50:
                    raise RuntimeError("stop here")

    with pytest.raises(RuntimeError, match="stop here"):
        await run()
    assert set() == other_tasks()
    assert "stopped by RuntimeError" in out.getvalue()
    assert ["a", "b", "c", "d"] == list(rows(out.getvalue()))


async def test_no_task_left_after_cancellation() -> None:
    """A task cancelled inside the block stops the view and prints the table."""
    clock = VirtualClock()
    pipeline = chain(clock, slow="b")
    monitor = StreamMonitor()
    pipeline.set_monitor(monitor)
    con, out = console(terminal=True)

    async def run() -> None:
        async with ConsoleReporter(monitor, clock=clock, console=con):
            await consume(pipeline.stream(range(N), clock=clock), clock)

    task = asyncio.create_task(run())
    await clock.sleep(5.0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert set() == other_tasks()
    assert "stopped by CancelledError" in out.getvalue()


async def test_a_reporter_shows_one_block() -> None:
    """Entering the same reporter twice is refused with what to do instead."""
    con, _ = console()
    reporter = ConsoleReporter(StreamMonitor(), clock=VirtualClock(), console=con)
    async with reporter:
        pass
    with pytest.raises(RuntimeError, match="make a new one"):
        async with reporter:
            pass


# -- construction ---------------------------------------------------------------------


@pytest.mark.parametrize("refresh", [0, -1.0, float("nan"), float("inf"), timedelta(0), True, "1"])
def test_refresh_must_be_a_positive_duration(refresh: float | timedelta) -> None:
    """A refresh that is not a positive, finite duration is refused, naming it."""
    with pytest.raises(ValueError, match="refresh must be a positive number of seconds"):
        ConsoleReporter(StreamMonitor(), refresh=refresh)


def test_refresh_takes_seconds_or_a_timedelta() -> None:
    """A timedelta is read as its seconds."""
    assert 0.25 == ConsoleReporter(StreamMonitor(), refresh=timedelta(milliseconds=250)).refresh


def test_reporter_takes_a_monitor() -> None:
    """Something that is not a StreamMonitor is refused by name."""
    with pytest.raises(TypeError, match="StreamMonitor, got dict"):
        ConsoleReporter({})  # type: ignore[arg-type]


def test_without_rich_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without rich, creating a reporter or printing a report says which extra to install."""
    monkeypatch.setitem(sys.modules, "rich", None)
    install = re.escape("pip install 'pipeflow-streams[console]'")
    with pytest.raises(ImportError, match=f"^ConsoleReporter needs rich: {install}$"):
        ConsoleReporter(StreamMonitor())
    with pytest.raises(ImportError, match=f"^print_report needs rich: {install}$"):
        print_report(StreamMonitor())


def test_importing_monitoring_does_not_import_rich() -> None:
    """pipeflow.monitoring imports without rich: it is needed only by the reporter."""
    code = "import sys, pipeflow.monitoring; print(sorted(m for m in sys.modules if 'rich' in m))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert "[]" == result.stdout.strip()
