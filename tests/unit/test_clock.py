"""Clocks: SystemClock and the testing VirtualClock."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone

import pytest

from pipeflow.streams import BackpressureConfig, Clock, StreamPipe, SystemClock, WindowedStreamPipe
from pipeflow.testing import VirtualClock

# -- SystemClock -------------------------------------------------------------------


def test_system_clock_now_is_aware_utc() -> None:
    """SystemClock.now() is timezone-aware, in UTC, and close to the real time."""
    now = SystemClock().now()
    assert now.tzinfo is not None
    assert timedelta(0) == now.utcoffset()
    assert abs(datetime.now(UTC) - now) < timedelta(seconds=5)


def test_system_clock_monotonic_never_goes_back() -> None:
    """SystemClock.monotonic() does not decrease."""
    clock = SystemClock()
    readings = [clock.monotonic() for _ in range(100)]
    assert sorted(readings) == readings


async def test_system_clock_sleep_zero_returns() -> None:
    """SystemClock.sleep(0) returns."""
    await SystemClock().sleep(0)


def test_clocks_implement_the_clock_protocol() -> None:
    """SystemClock and VirtualClock are both Clocks."""
    assert isinstance(SystemClock(), Clock)
    assert isinstance(VirtualClock(), Clock)
    assert "SystemClock()" == repr(SystemClock())


# -- VirtualClock ------------------------------------------------------------------


def test_virtual_clock_starts_at_zero() -> None:
    """monotonic() starts at 0.0 and now() at the default start."""
    clock = VirtualClock()
    assert 0.0 == clock.monotonic()
    assert datetime(2026, 1, 1, tzinfo=UTC) == clock.now()
    assert 0 == clock.pending


async def test_autojump_sleep_an_hour_returns_at_once() -> None:
    """With autojump an hour-long sleep returns at once, with monotonic() at 3600."""
    clock = VirtualClock()
    loop = asyncio.get_running_loop()
    started = loop.time()
    await clock.sleep(3600)
    assert 3600.0 == clock.monotonic()
    assert loop.time() - started < 1.0


async def test_sleep_zero_or_negative_does_not_move_time() -> None:
    """sleep(0) and sleep(-1) return without moving time."""
    clock = VirtualClock()
    await clock.sleep(0)
    await clock.sleep(-1)
    assert 0.0 == clock.monotonic()


async def test_sleepers_wake_in_deadline_order_at_exact_times() -> None:
    """Several sleepers wake in deadline order, each at its own deadline."""
    clock = VirtualClock()
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append((name, clock.monotonic()))

    async with asyncio.TaskGroup() as tg:
        tg.create_task(sleeper("c", 3))
        tg.create_task(sleeper("a", 1))
        tg.create_task(sleeper("b", 2.5))
        tg.create_task(sleeper("a2", 1))
    assert [("a", 1.0), ("a2", 1.0), ("b", 2.5), ("c", 3.0)] == woke


async def test_sequential_sleeps_add_up() -> None:
    """Sleeps one after another add up exactly."""
    clock = VirtualClock()
    for _ in range(4):
        await clock.sleep(0.5)
    assert 2.0 == clock.monotonic()


async def test_advance_without_autojump_wakes_only_due_sleepers() -> None:
    """With autojump=False a sleeper wakes only once advance() reaches its deadline."""
    clock = VirtualClock(autojump=False)
    woke = asyncio.Event()

    async def sleeper() -> None:
        await clock.sleep(5)
        woke.set()

    task = asyncio.create_task(sleeper())
    await asyncio.sleep(0)
    assert 1 == clock.pending
    await clock.advance(3)
    assert 3.0 == clock.monotonic()
    assert not woke.is_set()
    assert 1 == clock.pending
    await clock.advance(2)
    assert woke.is_set()
    assert 5.0 == clock.monotonic()
    assert 0 == clock.pending
    await task


async def test_advance_wakes_each_sleeper_at_its_own_deadline() -> None:
    """One large advance() wakes sleepers one by one, at their own deadlines."""
    clock = VirtualClock(autojump=False)
    woke: list[float] = []

    async def sleeper(seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append(clock.monotonic())

    tasks = [asyncio.create_task(sleeper(s)) for s in (4, 2)]
    await asyncio.sleep(0)
    await clock.advance(10)
    assert [2.0, 4.0] == woke
    assert 10.0 == clock.monotonic()
    await asyncio.gather(*tasks)


async def test_no_time_passes_without_autojump() -> None:
    """Without autojump, time stands still until advance()."""
    clock = VirtualClock(autojump=False)
    task = asyncio.create_task(clock.sleep(1))
    for _ in range(10):
        await asyncio.sleep(0)
    assert not task.done()
    assert 0.0 == clock.monotonic()
    await clock.advance(1)
    assert task.done()


async def test_negative_advance_is_a_value_error() -> None:
    """advance() with a negative duration raises ValueError."""
    clock = VirtualClock()
    with pytest.raises(ValueError, match="backwards"):
        await clock.advance(-1)
    assert 0.0 == clock.monotonic()


def test_naive_start_is_a_value_error() -> None:
    """A naive start datetime raises ValueError."""
    with pytest.raises(ValueError, match="timezone-aware"):
        VirtualClock(datetime(2026, 1, 1))  # noqa: DTZ001


async def test_now_is_start_plus_monotonic() -> None:
    """now() is the start plus the virtual time elapsed, in UTC."""
    start = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
    clock = VirtualClock(start)
    await clock.sleep(90.5)
    assert start + timedelta(seconds=90.5) == clock.now()
    await clock.advance(10)
    assert start + timedelta(seconds=100.5) == clock.now()


def test_start_in_other_timezone_is_converted_to_utc() -> None:
    """An aware start in another zone reads back as the same instant in UTC."""
    start = datetime(2026, 1, 1, 3, 0, tzinfo=timezone(timedelta(hours=2)))
    now = VirtualClock(start).now()
    assert start == now
    assert timedelta(0) == now.utcoffset()


def test_start_that_is_not_a_datetime_is_a_type_error() -> None:
    """A start that is not a datetime raises TypeError saying what is expected."""
    with pytest.raises(TypeError, match="timezone-aware datetime, got str"):
        VirtualClock("2026")  # type: ignore[arg-type]


async def test_nan_sleep_and_advance_are_value_errors() -> None:
    """sleep(nan) cannot wait for a deadline, nor advance() move to one: ValueError."""
    clock = VirtualClock()
    with pytest.raises(ValueError, match="nan"):
        await clock.sleep(float("nan"))
    for seconds in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="finite"):
            await clock.advance(seconds)
    assert (0.0, 0) == (clock.monotonic(), clock.pending)


async def test_infinite_sleep_waits_until_cancelled_and_time_stays_finite() -> None:
    """sleep(inf) never wakes; autojump does not jump to it; cancelling ends it."""
    clock = VirtualClock()
    forever = asyncio.create_task(clock.sleep(float("inf")))
    await clock.sleep(5)
    assert not forever.done()
    assert 5.0 == clock.monotonic()
    forever.cancel()
    with pytest.raises(asyncio.CancelledError):
        await forever


@pytest.mark.parametrize(("start", "seconds"), [(1e6, 1e-12), (0.4, 0.1), (10.0, 1e-9), (0.1, 0.2)])
async def test_sleep_moves_time_by_at_least_its_duration(start: float, seconds: float) -> None:
    """However the deadline rounds, time moves by at least the time slept, never by nothing."""
    clock = VirtualClock()
    await clock.sleep(start)
    before = clock.monotonic()
    await clock.sleep(seconds)
    assert clock.monotonic() - before >= seconds
    assert clock.monotonic() > before


async def test_a_sleep_stopped_from_outside_is_no_longer_pending() -> None:
    """A sleep whose coroutine is closed (not cancelled through its task) leaves no
    timer behind for autojump to go to."""
    clock = VirtualClock()

    async def quiet() -> AsyncIterator[int]:
        yield 1
        await clock.sleep(100)
        yield 2

    gen = quiet()
    assert 1 == await gen.__anext__()
    step = asyncio.ensure_future(gen.__anext__())
    await asyncio.sleep(0)
    assert 1 == clock.pending
    step.cancel()
    with pytest.raises(asyncio.CancelledError):
        await step
    assert 0 == clock.pending
    assert 0.0 == clock.monotonic()


async def test_cancelled_sleeps_do_not_pile_up_in_the_clock() -> None:
    """A batch or window timer set and cancelled over and over leaves no trail of
    dead timers until their far deadlines."""
    clock = VirtualClock(autojump=False)
    for _ in range(1000):
        sleeper = asyncio.ensure_future(clock.sleep(3600))
        await asyncio.sleep(0)
        sleeper.cancel()
        with pytest.raises(asyncio.CancelledError):
            await sleeper
    assert len(clock._timers) <= 130
    assert 0 == clock.pending


# -- VirtualClock: when time may move -------------------------------------------------

BUSY_TURNS = 3000  # more loop turns than any fixed settling budget would allow
BLOCK = bytes(1 << 20)


async def test_autojump_waits_for_a_task_busy_for_many_turns() -> None:
    """Time stands still for as long as a task stays runnable, however many loop
    turns that takes; the sleeper then wakes at its exact deadline."""
    clock = VirtualClock()
    woke: list[float] = []

    async def sleeper() -> None:
        await clock.sleep(10)
        woke.append(clock.monotonic())

    task = asyncio.create_task(sleeper())
    seen = set()
    for _ in range(BUSY_TURNS):
        await asyncio.sleep(0)
        seen.add(clock.monotonic())
    assert ({0.0}, []) == (seen, woke)
    await task
    assert [10.0] == woke


async def test_autojump_waits_for_call_soon_callbacks() -> None:
    """A chain of loop.call_soon callbacks keeps time still until it ends."""
    clock = VirtualClock()
    loop = asyncio.get_running_loop()
    times: list[float] = []

    def tick(left: int) -> None:
        times.append(clock.monotonic())
        if left:
            loop.call_soon(tick, left - 1)

    loop.call_soon(tick, BUSY_TURNS)
    await clock.sleep(1)
    assert [0.0] * (BUSY_TURNS + 1) == times
    assert 1.0 == clock.monotonic()


async def test_autojump_holds_time_while_a_thread_result_is_awaited() -> None:
    """A task awaiting work in a thread (asyncio.to_thread, run_in_executor, also
    through gather) holds time: the thread sees time standing still, and a sleeper
    wakes only once the results are in."""
    clock = VirtualClock()
    loop = asyncio.get_running_loop()

    def work() -> float:
        """Some milliseconds of hashing (the loop runs meanwhile: hashing lets go
        of the GIL), then the time the thread sees."""
        digest = hashlib.sha256()
        for _ in range(8):
            digest.update(BLOCK)
        return clock.monotonic()

    sleeper = asyncio.create_task(clock.sleep(1))
    seen = [await asyncio.to_thread(work)]
    seen += await asyncio.gather(loop.run_in_executor(None, work), loop.run_in_executor(None, work))
    assert ([0.0, 0.0, 0.0], 0.0) == (seen, clock.monotonic())
    assert not sleeper.done()
    await sleeper
    assert 1.0 == clock.monotonic()


async def test_real_time_timers_do_not_hold_virtual_time() -> None:
    """A real-time timer on the loop that is not due does not hold virtual time;
    one that is due runs before time moves."""
    clock = VirtualClock()
    loop = asyncio.get_running_loop()
    ran: list[tuple[str, float]] = []
    later = loop.call_later(3600, ran.append, ("later", -1.0))
    loop.call_at(loop.time(), lambda: ran.append(("due", clock.monotonic())))
    await clock.sleep(5)
    assert ([("due", 0.0)], 5.0) == (ran, clock.monotonic())
    assert not later.cancelled()
    later.cancel()


async def test_a_processing_time_window_behind_a_one_item_buffer_sees_one_window() -> None:
    """A processing-time window over a source that never sleeps, fed through a
    one-item buffer, gets every item at t=0: one window, however many loop turns
    the hand-over takes."""
    clock = VirtualClock()
    pipe = StreamPipe[int, int](config=BackpressureConfig(max_buffer_size=1)) | WindowedStreamPipe[
        int
    ](1.0)
    async with pipe.stream(list(range(600)), clock=clock) as results:
        windows = [(clock.monotonic(), list(w)) async for w in results]
    assert [(0.0, list(range(600)))] == windows


async def test_advance_lets_every_task_settle_before_moving_time() -> None:
    """advance() lets a busy task run until it waits before moving time, so its
    sleep counts from t=0 and wakes at its own deadline."""
    clock = VirtualClock(autojump=False)
    woke: list[float] = []

    async def busy_then_sleep() -> None:
        for _ in range(BUSY_TURNS):
            await asyncio.sleep(0)
        await clock.sleep(1)
        woke.append(clock.monotonic())

    task = asyncio.create_task(busy_then_sleep())
    await clock.advance(10)
    assert ([1.0], 10.0) == (woke, clock.monotonic())
    await task


async def test_two_clocks_and_advance_on_one_loop_do_not_hold_each_other() -> None:
    """Two autojumping clocks on one loop, and advance() beside them, each move."""
    first, second = VirtualClock(), VirtualClock()
    async with asyncio.TaskGroup() as tg:
        tg.create_task(first.sleep(5))
        tg.create_task(second.sleep(3))
        tg.create_task(second.advance(1))
    assert (5.0, 4.0) == (first.monotonic(), second.monotonic())


async def test_autojump_stops_watching_once_no_sleep_is_pending() -> None:
    """Once every sleep is over the clock leaves nothing to run on the loop, so
    an otherwise idle loop stays idle."""
    clock = VirtualClock()
    loop = asyncio.get_running_loop()
    await clock.sleep(1)
    await asyncio.sleep(0)
    assert [] == list(loop._ready)  # type: ignore[attr-defined]


async def test_autojump_on_a_loop_it_cannot_watch_is_a_runtime_error() -> None:
    """On an event loop that does not expose asyncio.BaseEventLoop's queues, an
    autojumping sleep cannot tell when every task waits: RuntimeError."""
    clock = VirtualClock()
    loop = asyncio.get_running_loop()
    ready = loop._ready  # type: ignore[attr-defined]
    loop._ready = None  # type: ignore[attr-defined]
    try:
        with pytest.raises(RuntimeError, match=r"asyncio\.BaseEventLoop"):
            await clock.sleep(1)
    finally:
        loop._ready = ready  # type: ignore[attr-defined]
    assert (0, 0.0) == (clock.pending, clock.monotonic())
