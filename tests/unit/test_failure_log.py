"""What the log says of skipped and dead-lettered items: the first few in full, then
summaries on the run's clock, and a last summary when the run ends."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

import pipeflow.streams as ps
from helpers import collect
from pipeflow.streams import DeadLetter, Retry, StreamError
from pipeflow.testing import VirtualClock


def failing(x: int) -> int:
    raise ValueError(f"bad item {x}")


def failing_after(clock: VirtualClock, seconds: float) -> Callable[[int], object]:
    """An async function failing on every item, each call taking ``seconds`` of the clock."""

    async def slow_failing(x: int) -> int:
        await clock.sleep(seconds)
        raise ValueError(f"bad item {x}")

    return slow_failing


def messages(caplog: pytest.LogCaptureFixture, level: int = logging.WARNING) -> list[str]:
    """The failure lines logged at ``level`` (not the line of a run stopped early)."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "pipeflow" and r.levelno == level and not r.getMessage().startswith("run of")
    ]


def full_line(pipe: str, item: int, verb: str = "skipped", note: str = "") -> str:
    return (
        f"pipe {pipe!r} {verb} a failed item{note}: pipe {pipe!r} failed on item {item} "
        f"after 1 attempt: ValueError: bad item {item}"
    )


LAST_IN_FULL = (
    ", the last one logged in full in this run (the next are summed up, "
    "at most one line every 60 s)"
)


async def test_a_flood_of_skips_logs_ten_lines_and_a_summary(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """25 items skipped at once: the first 10 are logged in full, the other 15 in one
    summary when the run ends; the counters count all 25."""
    caplog.set_level(logging.WARNING, logger="pipeflow")
    async with ps.map(failing, on_error="skip", name="parse").stream(range(25)) as s:
        assert [] == [x async for x in s]
        (stats,) = s.statistics()
    expected = [full_line("parse", i) for i in range(9)] + [
        full_line("parse", 9, note=LAST_IN_FULL),
        "pipe 'parse' skipped 15 more failed items by the end of the run, 25 in all; "
        "the last: pipe 'parse' failed on item 24 after 1 attempt: ValueError: bad item 24",
    ]
    assert expected == messages(caplog)
    assert (25, 25) == (stats.skipped, stats.errors)


async def test_ten_skips_need_no_summary(caplog: pytest.LogCaptureFixture) -> None:
    """When every skip was logged in full, the end of the run adds no line."""
    caplog.set_level(logging.WARNING, logger="pipeflow")
    await collect(ps.map(failing, on_error="skip", name="parse").stream(range(10)))
    assert 10 == len(messages(caplog))


async def test_skips_over_time_are_summed_up_at_most_once_a_minute(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One skip every 10 s of the run's clock, 30 in all::

    t = 10 ... 100     skips 1-10, each in full
    t = 160            skips 11-16: a summary, 60 s after the last line
    t = 220, 280       skips 17-22, 23-28: a summary each
    end (t = 300)      skips 29-30: the last summary
    """
    caplog.set_level(logging.WARNING, logger="pipeflow")
    clock = VirtualClock()
    pipe = ps.map(failing_after(clock, 10.0), on_error="skip", name="slow")
    await collect(pipe.stream(range(30), clock=clock))
    summaries = messages(caplog)[10:]

    def summary(n: int, when: str, total: int) -> str:
        last = total - 1
        return (
            f"pipe 'slow' skipped {n} more failed items {when}, {total} in all; the last: "
            f"pipe 'slow' failed on item {last} after 1 attempt: ValueError: bad item {last}"
        )

    expected = [
        summary(6, "in the last 60.0 s", 16),
        summary(6, "in the last 60.0 s", 22),
        summary(6, "in the last 60.0 s", 28),
        summary(2, "by the end of the run", 30),
    ]
    assert expected == summaries
    assert 300.0 == clock.monotonic()


async def test_each_stage_logs_its_own_first_skips(caplog: pytest.LogCaptureFixture) -> None:
    """The first ten are counted per stage: a second skipping stage logs its own."""
    caplog.set_level(logging.WARNING, logger="pipeflow")

    def odd_fails(x: int) -> int:
        if x % 2:
            raise ValueError(f"bad item {x}")
        return x

    pipeline = ps.map(odd_fails, on_error="skip", name="first") | ps.map(
        failing, on_error="skip", name="second"
    )
    await collect(pipeline.stream(range(40)))
    lines = messages(caplog)
    assert 11 == sum(line.startswith("pipe 'first'") for line in lines)
    assert 11 == sum(line.startswith("pipe 'second'") for line in lines)
    expected = [
        f"pipe {name!r} skipped 10 more failed items by the end of the run, 20 in all; "
        f"the last: pipe {name!r} failed on item {last} after 1 attempt: "
        f"ValueError: bad item {last}"
        for name, last in (("first", 39), ("second", 38))
    ]
    assert expected == lines[-2:]


async def test_the_summary_comes_when_the_consumer_stops_early(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A consumer that breaks out still gets the summary of what was skipped."""
    caplog.set_level(logging.WARNING, logger="pipeflow")

    def every_third_passes(x: int) -> int:
        if x % 3:
            raise ValueError(f"bad item {x}")
        return x

    async with ps.map(every_third_passes, on_error="skip", name="p").stream(range(300)) as s:
        async for x in s:
            if x == 60:
                break
        (stats,) = s.statistics()
    lines = messages(caplog)
    assert 11 == len(lines)
    unlogged = stats.skipped - 10
    assert lines[-1].startswith(
        f"pipe 'p' skipped {unlogged} more failed items by the end of the run, "
        f"{stats.skipped} in all; the last:"
    )


async def test_the_summary_comes_when_a_later_stage_fails(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A run that fails in a later stage still sums up the skips before it."""
    caplog.set_level(logging.WARNING, logger="pipeflow")

    def odd_fails(x: int) -> int:
        if x % 2:
            raise ValueError(f"bad item {x}")
        return x

    def fails_on_forty(x: int) -> int:
        if x == 40:
            raise ValueError("bad item 40")
        return x

    pipeline = ps.map(odd_fails, on_error="skip", name="first") | ps.map(fails_on_forty)
    with pytest.raises(StreamError):
        await collect(pipeline.stream(range(100)))
    lines = messages(caplog)
    assert 11 == len(lines)
    assert lines[-1].startswith("pipe 'first' skipped 10 more failed items by the end of the run")


async def test_dead_letters_are_logged_alike_at_info(caplog: pytest.LogCaptureFixture) -> None:
    """Dead-lettered items: the first ten at INFO in full, then a summary; every one
    reaches the sink and is counted."""
    caplog.set_level(logging.INFO, logger="pipeflow")
    dead: list[StreamError] = []
    async with ps.map(failing, on_error=DeadLetter(dead), name="parse").stream(range(15)) as s:
        await collect(s)
        (stats,) = s.statistics()
    expected = [full_line("parse", i, "dead-lettered") for i in range(9)] + [
        full_line("parse", 9, "dead-lettered", LAST_IN_FULL),
        "pipe 'parse' dead-lettered 5 more failed items by the end of the run, 15 in all; "
        "the last: pipe 'parse' failed on item 14 after 1 attempt: ValueError: bad item 14",
    ]
    assert expected == messages(caplog, logging.INFO)
    assert [] == messages(caplog, logging.WARNING)
    assert (15, 15, 15) == (len(dead), stats.dead_lettered, stats.errors)


async def test_retries_that_give_up_and_skip_are_summed_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Items a Retry gives up on and then skips are logged like other skips."""
    caplog.set_level(logging.WARNING, logger="pipeflow")
    clock = VirtualClock()
    policy = Retry(attempts=2, backoff=1.0, jitter=0.0, then="skip")
    async with ps.map(failing, on_error=policy, name="r").stream(range(12), clock=clock) as s:
        await collect(s)
        (stats,) = s.statistics()
    lines = messages(caplog)
    assert 11 == len(lines)
    expected = (
        "pipe 'r' skipped 2 more failed items by the end of the run, 12 in all; the last: "
        "pipe 'r' failed on item 11 after 2 attempts: ValueError: bad item 11"
    )
    assert expected == lines[-1]
    assert (12, 12, 12) == (stats.skipped, stats.errors, stats.retries)
