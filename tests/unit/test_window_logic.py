"""The synchronous window maths: assigning items, firing on the watermark, flushing.

Times are whole microseconds; the tests use small integers so the diagrams read
directly. ``|`` marks a window boundary, ``*`` an item, ``W`` the watermark.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Hashable
from typing import Any

from pipeflow._windows._logic import (
    CountWindows,
    SessionWindows,
    SlidingWindows,
    TumblingWindows,
)
from pipeflow._windows._time import to_us
from pipeflow._windows._window import Window

NO_WM = -(2**62)


def bounds(w: Window[Any]) -> tuple[int, int]:
    """A window's (start, end) in microseconds, as the logic set them."""
    return to_us(w.start), to_us(w.end)


def spans(windows: list[Window[Any]]) -> list[tuple[Hashable, int, int, list[Any]]]:
    """Windows as comparable tuples: (key, start, end, items)."""
    return [(w.key, *bounds(w), list(w)) for w in windows]


def open_spans(logic: Any) -> list[tuple[Hashable, int, int, list[Any]]]:
    """The open windows, as a copy of the logic would flush them now (the logic
    itself goes on untouched), sorted so the order of a dict does not matter."""
    flushed = copy.deepcopy(logic).flush()
    return sorted(spans(flushed), key=lambda s: (s[1], s[2], repr(s[0])))


# -- tumbling -------------------------------------------------------------------


def test_tumbling_item_on_boundary_belongs_to_window_starting_there() -> None:
    """An item exactly on a boundary opens the window that starts at it, not the one ending there.

    0         10        20
    |---------|---------|
              *            item at 10 -> [10, 20)
    """
    logic = TumblingWindows(10)
    assert logic.add("x", None, 10, NO_WM)
    assert [(None, 10, 20, ["x"])] == open_spans(logic)


def test_tumbling_last_microsecond_stays_in_window() -> None:
    """The last microsecond before a boundary still belongs to the earlier window (end exclusive).

    0         10
    |--------*|      item at 9 -> [0, 10)
    """
    logic = TumblingWindows(10)
    logic.add("a", None, 9, NO_WM)
    logic.add("b", None, 0, NO_WM)
    assert [(None, 0, 10, ["a", "b"])] == open_spans(logic)


def test_tumbling_ranges_without_items_create_no_window() -> None:
    """Only windows holding items exist: a gap in the stream leaves no empty window behind.

    0         10        20        30
    |--*------|---------|----*----|
       [0,10)    (none)    [20,30)
    """
    logic = TumblingWindows(10)
    logic.add("a", None, 3, NO_WM)
    logic.add("b", None, 25, NO_WM)
    assert 2 == logic.open_count
    fired = logic.fire(40)
    assert [(None, 0, 10, ["a"]), (None, 20, 30, ["b"])] == spans(fired)


def test_tumbling_offset_shifts_boundaries() -> None:
    """With an offset, boundaries sit at offset + k*size; items on either side split there.

    -7        3         13
    |-------*-|*--------|      offset 3: item 2 -> [-7, 3), item 3 -> [3, 13)
    """
    logic = TumblingWindows(10, offset=3)
    logic.add("two", None, 2, NO_WM)
    logic.add("three", None, 3, NO_WM)
    assert [(None, -7, 3, ["two"]), (None, 3, 13, ["three"])] == open_spans(logic)


def test_tumbling_offset_larger_than_size_wraps() -> None:
    """An offset of 13 with size 10 gives the same boundaries as offset 3."""
    logic = TumblingWindows(10, offset=13)
    logic.add("x", None, 5, NO_WM)
    assert [(None, 3, 13, ["x"])] == open_spans(logic)


def test_tumbling_negative_offset_aligns_backwards() -> None:
    """A negative offset -3 puts boundaries at ..., -3, 7, 17 (same as offset 7).

    -3        7         17
    |------*--|*--------|      item 6 -> [-3, 7), item 7 -> [7, 17)
    """
    logic = TumblingWindows(10, offset=-3)
    logic.add("six", None, 6, NO_WM)
    logic.add("seven", None, 7, NO_WM)
    assert [(None, -3, 7, ["six"]), (None, 7, 17, ["seven"])] == open_spans(logic)


def test_tumbling_negative_times_align_to_epoch() -> None:
    """Times before the epoch fall in windows aligned the same way: -1 -> [-10, 0)."""
    logic = TumblingWindows(10)
    logic.add("x", None, -1, NO_WM)
    assert [(None, -10, 0, ["x"])] == open_spans(logic)


def test_tumbling_add_is_late_when_window_end_at_or_before_watermark() -> None:
    """A new window whose end <= watermark is refused: add returns False and opens nothing.

    0         10
    |----*----|          item 5, window end 10
              W=10  -> late (end <= W)
             W=9    -> accepted
    """
    logic = TumblingWindows(10)
    assert not logic.add("late", None, 5, 10)
    assert 0 == logic.open_count
    assert logic.add("ok", None, 5, 9)
    assert [(None, 0, 10, ["ok"])] == open_spans(logic)


def test_tumbling_item_after_its_window_fired_is_late() -> None:
    """Once a window fired, an item for it is refused rather than reopening it."""
    logic = TumblingWindows(10)
    logic.add("a", None, 1, NO_WM)
    assert [(None, 0, 10, ["a"])] == spans(logic.fire(10))
    assert not logic.add("b", None, 2, 10)
    assert 0 == logic.open_count
    assert [] == logic.flush()


def test_tumbling_fire_takes_only_windows_with_end_at_or_before_watermark() -> None:
    """fire(W) returns windows with end <= W and keeps the rest open.

    0         10        20
    |--*------|--*------|
              W=10: [0,10) fires, [10,20) stays
    """
    logic = TumblingWindows(10)
    logic.add("a", None, 2, NO_WM)
    logic.add("b", None, 12, NO_WM)
    assert [] == logic.fire(9)
    assert [(None, 0, 10, ["a"])] == spans(logic.fire(10))
    assert [(None, 10, 20, ["b"])] == open_spans(logic)
    assert 20 == logic.next_end()


def test_tumbling_fire_order_is_by_end_then_creation() -> None:
    """Windows fire by end; windows of different keys with the same span fire in creation order."""
    logic = TumblingWindows(10)
    logic.add(1, "b", 25, NO_WM)
    logic.add(2, "a", 5, NO_WM)
    logic.add(3, "c", 15, NO_WM)
    logic.add(4, "z", 5, NO_WM)
    logic.add(5, "a", 6, NO_WM)
    fired = logic.fire(100)
    assert [
        ("a", 0, 10, [2, 5]),
        ("z", 0, 10, [4]),
        ("c", 10, 20, [3]),
        ("b", 20, 30, [1]),
    ] == spans(fired)


def test_tumbling_flush_returns_every_window_by_end_and_clears_state() -> None:
    """flush() hands over every open window in end order and leaves nothing open."""
    logic = TumblingWindows(10)
    for t in (35, 5, 22, 14):
        logic.add(t, None, t, NO_WM)
    flushed = logic.flush()
    assert [0, 10, 20, 30] == [bounds(w)[0] for w in flushed]
    assert 0 == logic.open_count
    assert logic.next_end() is None
    assert [] == logic.flush()


def test_tumbling_state_released_after_fire() -> None:
    """After its window fires, nothing of it is kept: open_count is back to 0."""
    logic = TumblingWindows(10)
    for t in range(10):
        logic.add(t, None, t, NO_WM)
    assert 1 == logic.open_count
    logic.fire(10)
    assert 0 == logic.open_count
    assert 0 == logic.held_items()
    assert [] == logic.flush()
    assert logic.next_end() is None


def test_tumbling_keys_have_their_own_windows() -> None:
    """The same span for two keys is two windows, each with its key's items only."""
    logic = TumblingWindows(10)
    logic.add("a1", "a", 1, NO_WM)
    logic.add("b1", "b", 2, NO_WM)
    logic.add("a2", "a", 3, NO_WM)
    assert [("a", 0, 10, ["a1", "a2"]), ("b", 0, 10, ["b1"])] == open_spans(logic)


def test_tumbling_idle_key_fires_while_other_key_continues() -> None:
    """A key that stops sending still has its window fired by the watermark other keys move.

    key a: |-*-------|                (no more items)
    key b: |-*-------|-*-------|-*--
                     W=10     W=20
    """
    logic = TumblingWindows(10)
    logic.add("a", "a", 1, NO_WM)
    logic.add("b0", "b", 2, NO_WM)
    logic.add("b1", "b", 12, 2)
    assert [("a", 0, 10, ["a"]), ("b", 0, 10, ["b0"])] == spans(logic.fire(12))
    logic.add("b2", "b", 22, 12)
    assert [("b", 10, 20, ["b1"])] == spans(logic.fire(22))
    assert [("b", 20, 30, ["b2"])] == open_spans(logic)
    assert 1 == logic.open_count


def test_tumbling_next_end_is_the_earliest_open_end() -> None:
    """next_end() is the end of the window that fires next, None when nothing is open."""
    logic = TumblingWindows(10)
    assert logic.next_end() is None
    logic.add("x", None, 45, NO_WM)
    logic.add("y", None, 12, NO_WM)
    assert 20 == logic.next_end()
    logic.fire(20)
    assert 50 == logic.next_end()


def test_tumbling_records_position_for_new_windows() -> None:
    """A window remembers the source position set when it was opened (for acks)."""
    logic = TumblingWindows(10)
    logic.position = 4
    logic.add("x", None, 1, NO_WM)
    logic.position = 9
    logic.add("y", None, 2, NO_WM)
    logic.add("z", None, 11, NO_WM)
    by_start = {bounds(w)[0]: w._since for w in copy.deepcopy(logic).flush()}
    assert {0: 4, 10: 9} == by_start


def test_tumbling_add_in_order_gives_what_adding_item_by_item_gives() -> None:
    """A run in order is cut at the window boundaries; each key's windows get the
    same items, in the same order, as ``add`` one by one would give them.

    0 s       1 s       2 s       3 s
    |-*-*-----*-*-------|-------*-|      seconds 0.2 0.4 1.0 1.2 2.8, keys a b a b a
    """
    seconds = [0.2, 0.4, 1, 1.2, 2.8]
    keys = ["a", "b", "a", "b", "a"]
    items = ["a1", "b1", "a2", "b2", "a3"]
    run, one_by_one = TumblingWindows(1_000_000), TumblingWindows(1_000_000)
    assert 5 == run.add_in_order(seconds, keys, items, NO_WM)
    for x, k, t in zip(items, keys, seconds, strict=True):
        one_by_one.add(x, k, round(t * 1e6), NO_WM)
    assert spans(one_by_one.flush()) == spans(run.flush())


def test_tumbling_add_in_order_with_more_new_keys_than_it_looks_ahead_at() -> None:
    """Many keys, each new in its period, in a run over two periods: the windows
    open in the order the keys first come, and get what adding one by one gives,
    however far apart a key's first item is from the one that opened windows."""
    rng = random.Random(7)
    n = 3000
    seconds = [i / n * 2 for i in range(n)]  # two 1 s periods
    keys = [f"k{rng.randrange(900)}" for _ in range(n)]
    items = [f"{k}@{i}" for i, k in enumerate(keys)]
    run, one_by_one = TumblingWindows(1_000_000), TumblingWindows(1_000_000)
    assert n == run.add_in_order(seconds, keys, items, NO_WM)
    for x, k, t in zip(items, keys, seconds, strict=True):
        one_by_one.add(x, k, round(t * 1e6), NO_WM)
    assert spans(one_by_one.flush()) == spans(run.flush())


def test_tumbling_add_in_order_stops_at_an_unhashable_key_far_into_the_run() -> None:
    """An unhashable key far from where windows were opened stops the run there at
    the latest: what went in is exactly the items before the count returned."""
    keys: list[Any] = [f"k{i}" for i in range(600)]
    keys[500] = []
    items = [f"x{i}" for i in range(600)]
    logic = TumblingWindows(1_000_000)
    took = logic.add_in_order([0.001 * i for i in range(600)], keys, items, NO_WM)
    assert took <= 500
    assert sorted(items[:took]) == sorted(x for w in logic.flush() for x in w)


def test_tumbling_add_in_order_takes_nothing_when_the_first_window_has_fired() -> None:
    """The first item's window has fired: it may be late, so none of the run goes in.

    0 s       1 s
    |----*----|  W at 1 s      run starting at 0.5 s -> 0 taken, no window opened
    """
    logic = TumblingWindows(1_000_000)
    assert 0 == logic.add_in_order([0.5, 1.5], None, ["x", "y"], 1_000_000)
    assert 0 == logic.open_count


def test_tumbling_add_in_order_stops_at_a_key_that_cannot_be_hashed() -> None:
    """With their windows open, the items before an unhashable key go in; it and
    those after it do not (none at all when the key is met opening windows)."""
    logic = TumblingWindows(1_000_000)
    keys: list[Any] = ["a", "b", [], "a"]
    assert 0 == logic.add_in_order([0.1, 0.2, 0.3, 0.4], keys, ["a1", "b1", "x", "a2"], NO_WM)
    logic.add("a0", "a", 0, NO_WM)
    logic.add("b0", "b", 0, NO_WM)
    assert 2 == logic.add_in_order([0.1, 0.2, 0.3, 0.4], keys, ["a1", "b1", "x", "a2"], NO_WM)
    expected = [("a", 0, 1_000_000, ["a0", "a1"]), ("b", 0, 1_000_000, ["b0", "b1"])]
    assert expected == spans(logic.flush())


def test_tumbling_add_to_open_adds_only_to_a_window_already_open() -> None:
    """``add_to_open`` changes nothing when the item's window is not open (another
    key's window for the same period does not count); then it joins the open one.

    0         10
    |-*--*----|      a at 1 opened by add; b at 2 refused; a at 4 added
    """
    logic = TumblingWindows(10)
    add_to_open = logic.adder_to_open()
    assert not add_to_open("a0", "a", 1)
    logic.add("a1", "a", 1, NO_WM)
    assert not add_to_open("b1", "b", 2)
    assert add_to_open("a2", "a", 4)
    assert not add_to_open("a3", "a", 10)
    assert [("a", 0, 10, ["a1", "a2"])] == spans(logic.flush())


# -- sliding --------------------------------------------------------------------


def test_sliding_item_in_size_over_slide_windows() -> None:
    """With size 10 and slide 5 each item lands in two windows.

    -5   0    5    10   15
    |---------|               [-5, 5)
         |---------|          [0, 10)     item 7 is in [0,10) and [5,15)
              |---------|     [5, 15)
                 *
    """
    logic = SlidingWindows(10, 5)
    assert logic.add("x", None, 7, NO_WM)
    assert [(None, 0, 10, ["x"]), (None, 5, 15, ["x"])] == open_spans(logic)


def test_sliding_item_on_boundary() -> None:
    """An item exactly on a slide boundary is in the window starting there, not the one ending.

    0    5    10   15   20
    |---------|               [0, 10)    item 10: not here (end exclusive)
         |---------|          [5, 15)    yes
              |---------|     [10, 20)   yes
              *
    """
    logic = SlidingWindows(10, 5)
    logic.add("x", None, 10, NO_WM)
    assert [(None, 5, 15, ["x"]), (None, 10, 20, ["x"])] == open_spans(logic)


def test_sliding_membership_size_three_slides() -> None:
    """size 6, slide 2: item 4 is in the three windows starting at 0, 2 and 4."""
    logic = SlidingWindows(6, 2)
    logic.add("x", None, 4, NO_WM)
    assert [
        (None, 0, 6, ["x"]),
        (None, 2, 8, ["x"]),
        (None, 4, 10, ["x"]),
    ] == open_spans(logic)


def test_sliding_with_offset() -> None:
    """Sliding windows shift with the offset: size 10, slide 5, offset 2 -> starts at 2 + 5k.

    -3   2    7    12   17
         |---------|          [2, 12)
              |---------|     [7, 17)    item 7 in both
              *
    """
    logic = SlidingWindows(10, 5, offset=2)
    logic.add("x", None, 7, NO_WM)
    assert [(None, 2, 12, ["x"]), (None, 7, 17, ["x"])] == open_spans(logic)


def test_sliding_equal_to_size_is_tumbling() -> None:
    """slide == size gives exactly one window per item, like tumbling windows."""
    logic = SlidingWindows(10, 10)
    logic.add("x", None, 10, NO_WM)
    logic.add("y", None, 9, NO_WM)
    assert [(None, 0, 10, ["y"]), (None, 10, 20, ["x"])] == open_spans(logic)


def test_sliding_partly_late_item_goes_only_into_open_windows() -> None:
    """An item whose earlier window is behind the watermark lands only in its later window.

    0    5    10   15
    |---------|             [0, 10)  end 10 <= W: closed for the item
         |---------|        [5, 15)  end 15 >  W: takes it
           *  W=10
    """
    logic = SlidingWindows(10, 5)
    assert logic.add("x", None, 7, 10)
    assert [(None, 5, 15, ["x"])] == open_spans(logic)


def test_sliding_late_only_when_every_window_ended() -> None:
    """add returns False only when all the item's windows have end <= watermark."""
    logic = SlidingWindows(10, 5)
    assert not logic.add("x", None, 7, 15)
    assert 0 == logic.open_count
    assert logic.add("y", None, 7, 14)
    assert [(None, 5, 15, ["y"])] == open_spans(logic)


def test_sliding_fire_order_by_end() -> None:
    """Overlapping windows fire one by one in order of end as the watermark passes them."""
    logic = SlidingWindows(10, 5)
    for t in (1, 6, 11):
        logic.add(t, None, t, NO_WM)
    assert [(None, -5, 5, [1])] == spans(logic.fire(5))
    assert [(None, 0, 10, [1, 6]), (None, 5, 15, [6, 11])] == spans(logic.fire(15))
    assert [(None, 10, 20, [11])] == spans(logic.flush())
    assert 0 == logic.open_count


def test_sliding_state_released_after_fire() -> None:
    """Every window of every item is released once fired: open_count back to 0."""
    logic = SlidingWindows(10, 2)
    for t in range(0, 30, 3):
        logic.add(t, None, t, NO_WM)
    assert logic.open_count > 0
    fired = logic.fire(10**6)
    assert len(fired) == len({bounds(w)[0] for w in fired})
    assert 0 == logic.open_count
    assert logic.next_end() is None


def test_held_items_counts_an_item_in_each_open_window_it_is_in() -> None:
    """Sliding windows hold an item once per window; firing and flushing release
    them. Every kind counts what its open windows hold.

    0    5    10   15   20
    |---------|              [0, 10)
         |---------|         [5, 15)
              |---------|    [10, 20)
           *  *              7 in [0, 10) and [5, 15); 10 in [5, 15) and [10, 20)
    """
    sliding = SlidingWindows(10, 5)
    sliding.add("a", None, 7, NO_WM)
    sliding.add("b", None, 10, NO_WM)
    assert 4 == sliding.held_items()
    sliding.fire(10)
    assert 3 == sliding.held_items()
    sessions, counts = SessionWindows(gap=10), CountWindows(3)
    for t in (0, 5, 30):
        sessions.add(t, "k", t, NO_WM)
        counts.add(t, "k", t, NO_WM)
    assert 3 == sessions.held_items()
    assert 0 == counts.held_items()  # full: it fired
    counts.add(40, "k", 40, NO_WM)
    assert 1 == counts.held_items()
    for logic in (sliding, sessions, counts):
        logic.flush()
        assert 0 == logic.held_items()


# -- sessions -------------------------------------------------------------------


def test_session_grows_while_items_within_gap() -> None:
    """A session spans [first item, last item + gap); items inside it extend it.

    0    5    10   15
    *---------)                 item 0 -> [0, 10)
         *---------)            item 5 -> [0, 15)
    """
    logic = SessionWindows(10)
    logic.add("a", None, 0, NO_WM)
    assert [(None, 0, 10, ["a"])] == open_spans(logic)
    logic.add("b", None, 5, NO_WM)
    assert [(None, 0, 15, ["a", "b"])] == open_spans(logic)
    assert 15 == logic.next_end()


def test_session_item_exactly_gap_after_starts_new_session() -> None:
    """An item at exactly last + gap is outside [first, last + gap): it starts a new session.

    0         10        20
    *---------)
              *---------)     two sessions
    """
    logic = SessionWindows(10)
    logic.add("a", None, 0, NO_WM)
    logic.add("b", None, 10, NO_WM)
    assert [(None, 0, 10, ["a"]), (None, 10, 20, ["b"])] == open_spans(logic)
    assert 2 == logic.open_count


def test_session_item_before_a_session_extends_its_start() -> None:
    """An out-of-order item less than gap before a session pulls its start back.

    12   20        30
         *---------)     session [20, 30)
    *---------)          item 12: 12 + 10 > 20 -> merged [12, 30)
    """
    logic = SessionWindows(10)
    logic.add("late", None, 20, NO_WM)
    logic.add("early", None, 12, NO_WM)
    assert [(None, 12, 30, ["late", "early"])] == open_spans(logic)


def test_session_bridging_item_merges_two_sessions() -> None:
    """An item touching two sessions merges them into one with all their items.

    15        25   30        40
    *---------)    *---------)       sessions [15,25) and [30,40)
           *---------)               item 22 -> [22,32) touches both
    *------------------------)       merged [15, 40)
    """
    logic = SessionWindows(10)
    logic.add("a", None, 15, NO_WM)
    logic.add("c", None, 30, NO_WM)
    assert 2 == logic.open_count
    logic.add("b", None, 22, NO_WM)
    assert 1 == logic.open_count
    [(key, start, end, items)] = open_spans(logic)
    assert (None, 15, 40) == (key, start, end)
    assert ["a", "b", "c"] == sorted(items)


def test_session_merge_fires_once_at_merged_end() -> None:
    """A merged session fires once, at its merged end, not at the end of a part merged into it."""
    logic = SessionWindows(10)
    logic.add("a", None, 15, NO_WM)
    logic.add("c", None, 30, NO_WM)
    logic.add("b", None, 22, NO_WM)
    assert 40 == logic.next_end()
    assert [] == logic.fire(39)
    fired = logic.fire(40)
    assert 1 == len(fired)
    assert (15, 40) == bounds(fired[0])
    assert [] == logic.fire(100)
    assert 0 == logic.open_count


def test_session_merge_of_three_sessions() -> None:
    """Merging chains: each bridging item joins the sessions on both sides of it.

    0    3  6    10 12   17       gap 5
    *----)  *----)  *----)        [0,5) [6,11) [12,17)
       *----)                     item 3 -> [3,8) bridges the first two -> [0,11)
              *----)              item 10 -> [10,15) bridges the rest   -> [0,17)
    """
    logic = SessionWindows(5)
    logic.add("a", None, 0, NO_WM)
    logic.add("c", None, 6, NO_WM)  # [6, 11): 6 >= 5, a new session
    logic.add("e", None, 12, NO_WM)  # [12, 17)
    assert 3 == logic.open_count
    logic.add("b", None, 3, NO_WM)  # [3, 8) touches [0,5) and [6,11) -> [0, 11)
    assert 2 == logic.open_count
    logic.add("d", None, 10, NO_WM)  # [10, 15) touches [0,11) and [12,17) -> [0, 17)
    assert 1 == logic.open_count
    [fired] = logic.flush()
    assert (0, 17) == bounds(fired)
    assert ["a", "b", "c", "d", "e"] == sorted(fired)


def test_session_new_session_behind_watermark_is_late() -> None:
    """A new session whose end (ts + gap) <= watermark is refused; one ending after is opened.

    0         10
    *---------)      W=10 -> late
    *---------)      W=9  -> opened
    """
    logic = SessionWindows(10)
    assert not logic.add("x", None, 0, 10)
    assert 0 == logic.open_count
    assert logic.add("y", None, 0, 9)
    assert [(None, 0, 10, ["y"])] == open_spans(logic)


def test_session_item_joining_open_session_is_not_late() -> None:
    """An item behind the watermark still joins a session that is open (its end > watermark)."""
    logic = SessionWindows(10)
    logic.add("a", None, 20, NO_WM)  # [20, 30)
    assert logic.add("b", None, 12, 25)  # 12 + 10 = 22 <= 25, but it touches [20, 30)
    assert [(None, 12, 30, ["a", "b"])] == open_spans(logic)


def test_session_keys_are_independent() -> None:
    """Items of different keys never share or merge sessions."""
    logic = SessionWindows(10)
    logic.add("a0", "a", 0, NO_WM)
    logic.add("b0", "b", 5, NO_WM)
    logic.add("a1", "a", 8, NO_WM)
    assert [("a", 0, 18, ["a0", "a1"]), ("b", 5, 15, ["b0"])] == open_spans(logic)


def test_session_fire_order_by_end_and_state_released() -> None:
    """Sessions fire by end across keys; fired sessions leave no state behind."""
    logic = SessionWindows(10)
    logic.add(1, "a", 0, NO_WM)  # [0, 10)
    logic.add(2, "b", 3, NO_WM)  # [3, 13)
    logic.add(3, "a", 30, NO_WM)  # [30, 40)
    logic.add(4, "c", 1, NO_WM)  # [1, 11)
    fired = logic.fire(13)
    assert [("a", 0, 10, [1]), ("c", 1, 11, [4]), ("b", 3, 13, [2])] == spans(fired)
    assert 1 == logic.open_count
    assert [("a", 30, 40, [3])] == spans(logic.flush())
    assert 0 == logic.open_count
    assert logic.next_end() is None


def test_session_idle_key_fires_while_other_key_continues() -> None:
    """A quiet key's session fires when another key's items move the watermark past it."""
    logic = SessionWindows(5)
    logic.add("a", "a", 0, NO_WM)
    for t in range(0, 20, 3):
        logic.add(t, "b", t, t)
        logic.fire(t)
    assert [("b", 0, 23, [0, 3, 6, 9, 12, 15, 18])] == open_spans(logic)
    assert [("b", 0, 23, [0, 3, 6, 9, 12, 15, 18])] == spans(logic.flush())


def test_session_item_after_fired_session_opens_new_session() -> None:
    """An item for a session that already fired, but whose own end is after W, opens a new one.

    0         10   15
    *---------)              fired at W=10
         *---------)         item 5 at W=10: 5 + 10 = 15 > W -> new session [5, 15)
    """
    logic = SessionWindows(10)
    logic.add("a", None, 0, NO_WM)
    assert [(None, 0, 10, ["a"])] == spans(logic.fire(10))
    assert logic.add("b", None, 5, 10)
    assert [(None, 5, 15, ["b"])] == open_spans(logic)


# -- count ------------------------------------------------------------------------


def test_count_window_fires_when_full() -> None:
    """Every count items per key make a window; start/end are the first and last item times."""
    logic = CountWindows(3)
    for i, t in enumerate((50, 10, 30, 70)):
        assert logic.add(i, None, t, NO_WM)
    assert [(None, 50, 30, [0, 1, 2])] == spans(logic.fire(0))
    assert [] == logic.fire(10**9)
    assert [(None, 70, 70, [3])] == open_spans(logic)
    assert 1 == logic.open_count


def test_count_windows_per_key() -> None:
    """Each key counts its own items; full windows come out in the order they filled."""
    logic = CountWindows(2)
    logic.add("a1", "a", 1, NO_WM)
    logic.add("b1", "b", 2, NO_WM)
    logic.add("b2", "b", 3, NO_WM)
    logic.add("a2", "a", 4, NO_WM)
    assert [("b", 2, 3, ["b1", "b2"]), ("a", 1, 4, ["a1", "a2"])] == spans(logic.fire(0))
    assert 0 == logic.open_count


def test_count_windows_ignore_the_watermark() -> None:
    """Count windows never refuse an item, however far behind the watermark it is."""
    logic = CountWindows(2)
    assert logic.add("x", None, 0, 10**9)
    assert logic.next_end() is None


def test_count_flush_full_windows_first_then_partial_by_end() -> None:
    """flush() returns full windows not yet fired, then partial ones by their last item's time."""
    logic = CountWindows(2)
    logic.add("a1", "a", 5, NO_WM)
    logic.add("b1", "b", 1, NO_WM)
    logic.add("c1", "c", 3, NO_WM)
    logic.add("c2", "c", 9, NO_WM)
    assert [
        ("c", 3, 9, ["c1", "c2"]),
        ("b", 1, 1, ["b1"]),
        ("a", 5, 5, ["a1"]),
    ] == spans(logic.flush())
    assert 0 == logic.open_count
    assert [] == logic.flush()


def test_session_open_count_follows_sessions_opened_merged_and_fired() -> None:
    """Kept as sessions come and go (summing over keys per chunk cost time per key)."""
    logic = SessionWindows(gap=10)
    for ts, key in [(0, "a"), (100, "a"), (50, "b"), (5, "a"), (55, "b"), (60, "c")]:
        logic.add(ts, key, ts, NO_WM)
        assert len(open_spans(logic)) == logic.open_count
    logic.add(12, "a", 12, NO_WM)  # bridges nothing: extends a's first session
    logic.add(108, "a", 108, NO_WM)
    assert 4 == logic.open_count == len(open_spans(logic))
    logic.fire(30)
    assert 3 == logic.open_count == len(open_spans(logic))
    logic.flush()
    assert 0 == logic.open_count


def test_sessions_ending_together_fire_in_creation_order() -> None:
    """Two sessions with the same bounds fire by creation, even when the one
    created first was extended last.

    key a:  x(0.0) ..... x(0.5) ----------- end 1.5   created first
    key b:  x(0.0) x(0.5) --------------------- end 1.5   extended first
    """
    logic = SessionWindows(1_000_000)
    for ts, key in [(0, "a"), (0, "b"), (500_000, "b"), (500_000, "a")]:
        assert logic.add(ts, key, ts, -1)
    assert ["a", "b"] == [w.key for w in logic.fire(1_500_000)]
