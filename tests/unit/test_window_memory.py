"""Memory of a windowed pipe whose source takes acknowledgements.

Acks need the oldest window still open; a window that fired must nonetheless
let its items go at once, however long an older window stays open.
"""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Iterator
from itertools import chain, cycle, islice
from operator import itemgetter
from typing import Any

from pipeflow._windows._logic import CountWindows, OpenedWindows, OpenWindow, SessionWindows
from pipeflow.streams import Window, WindowedStreamPipe

#: The events of ten keys, shared: the source allocates nothing per item, so what
#: the memory tracer sees is what the pipeline holds.
EVENTS = [(k, "y" * 100) for k in range(10)]


class AckedEvents:
    """A sync source that takes acknowledgements: one event of a rare key, then ``n``
    events cycling through the ten keys of ``EVENTS``."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.acked = 0

    def __iter__(self) -> Iterator[tuple[Any, str]]:
        return chain([("rare", "x")], islice(cycle(EVENTS), self.n))

    def ack(self, count: int) -> None:
        self.acked = count


class Sizes(WindowedStreamPipe[tuple[Any, str], int]):
    def aggregate_window(self, window: Window[tuple[Any, str]]) -> int:
        return len(window)


async def test_memory_stays_flat_while_a_rare_keys_window_stays_open() -> None:
    """A million items through count windows while the window of a rare key stays open:
    the memory held after 1,000,000 items, and the peak on the way, stay within what
    the windows open at once need; they do not grow with the stream."""
    n, count = 1_000_000, 50
    src = AckedEvents(n)
    stream = Sizes(count=count, key=itemgetter(0)).stream(src)
    fired = windowed = 0
    others: list[int] = []  # sizes other than ``count``
    before = after = peak = 0
    tracemalloc.start()
    try:
        async with stream:
            async for size in stream:
                windowed += size
                if windowed == 200_000:
                    gc.collect()
                    before = tracemalloc.get_traced_memory()[0]
                    tracemalloc.reset_peak()
                elif windowed == n:
                    gc.collect()
                    after, peak = tracemalloc.get_traced_memory()
                fired += 1
                if size != count:
                    others.append(size)
    finally:
        tracemalloc.stop()
    assert (n // count + 1, [1]) == (fired, others)  # the rare key's window at the end
    assert n + 1 == src.acked
    # Leaking the windows fired meanwhile would hold their 800,000 items: megabytes.
    assert after - before < 16_000, f"memory grew by {after - before} bytes"
    assert peak - before < 256_000, f"peak {peak - before} bytes above the start"


def reachable(obj: object, depth: int) -> list[object]:
    """The objects ``obj`` refers to, within ``depth`` steps."""
    found: list[object] = []
    level = [obj]
    for _ in range(depth):
        level = gc.get_referents(*level)
        found += level
    return found


def window(since: int) -> OpenWindow:
    return OpenWindow(None, 0, 1, since)


def test_opened_windows_keeps_no_closed_window_and_stays_compact() -> None:
    """Windows closed while an older one stays open leave no reference behind, and the
    heap holds at most about twice the open windows."""
    opened = OpenedWindows()
    old = window(0)
    opened.push(old)
    holding: list[OpenWindow] = []
    for since in range(1, 10_000):
        w = window(since)
        opened.push(w)
        holding.append(w)
        if len(holding) == 3:
            opened.discard(holding.pop(0))
        assert 0 == opened.oldest_since()
    assert len(opened) <= 2 * 3 + 64
    assert not any(isinstance(x, OpenWindow) for x in reachable(opened, depth=3))
    opened.discard(old)
    assert holding[0].since == opened.oldest_since()
    for w in holding:
        opened.discard(w)
    assert opened.oldest_since() is None


def test_opened_windows_follow_a_since_moved_earlier_and_forget_a_discarded_window() -> None:
    """A window whose since moved earlier is found by its new since; once it is
    discarded, neither entry counts."""
    opened = OpenedWindows()
    a, b = window(5), window(7)
    opened.push(a)
    opened.push(b)
    b.since = 2
    opened.push(b)
    assert 2 == opened.oldest_since()
    opened.discard(b)
    assert 5 == opened.oldest_since()
    opened.discard(a)
    assert opened.oldest_since() is None


def test_count_and_session_windows_release_their_ack_entries_when_they_close() -> None:
    """Count windows that fill, and sessions merged or fired, leave the ack heap."""
    counts = CountWindows(2)
    counts.opened = OpenedWindows()
    counts.position = 0
    counts.add("rare", "r", 0, 0)
    for i in range(1, 1001):
        counts.position = i
        counts.add(i, "k", i, 0)
    assert 0 == counts.opened.oldest_since()
    counts.flush()
    assert counts.opened.oldest_since() is None

    sessions = SessionWindows(15)
    sessions.opened = OpenedWindows()
    sessions.position = 3
    sessions.add("late", "k", 30, 0)
    sessions.position = 1
    sessions.add("early", "k", 10, 0)
    sessions.position = 4
    sessions.add("bridge", "k", 20, 0)  # merges [10, 25) and [30, 45)
    assert 1 == sessions.opened.oldest_since()
    assert 1 == len(sessions.fire(100))
    assert sessions.opened.oldest_since() is None
