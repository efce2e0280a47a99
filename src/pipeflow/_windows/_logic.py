"""Window maths as plain synchronous code: assign items, fire on the watermark, flush.

No event loop, no clock: the windowed pipe drives these objects with times it
reads from its clock. Times are whole microseconds since the Unix epoch, so
boundaries are exact (an item exactly on a boundary belongs to the window that
starts there).

Window state is released the moment a window fires: memory is bounded by the
windows open at once, never by the length of the stream. Windows are handed
over (fired, flushed) as the user's ``Window`` lists, bounds and ``since``
set as they are then.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from operator import length_hint
from typing import Any, Protocol

from .._core._time import seconds_to_us
from ._window import Window, datetime_of, new_window

__all__ = ["CountWindows", "OpenWindow", "SessionWindows", "SlidingWindows", "TumblingWindows"]


class OpenWindow:
    """One window's state while it collects items."""

    __slots__ = ("created", "end", "fired", "items", "key", "since", "start")

    def __init__(self, key: Hashable, start: int, end: int, since: int = 0) -> None:
        self.key = key
        self.start = start
        self.end = end
        #: Its place in the order windows were created (set by ``_Heap``): the
        #: last tie-break of the firing order, kept when its bounds change.
        self.created = 0
        #: The items, in the ``Window`` handed to the user when the window fires.
        self.items = new_window(key)
        self.fired = False
        #: The source mark reached before this window's first item (for acks).
        self.since = since

    def window(self) -> Window[Any]:
        """The items as the user's ``Window``, with the bounds and ``since`` as they are now."""
        w = self.items
        w._start_us = self.start
        w._end_us = self.end
        w._since = self.since
        return w

    def __repr__(self) -> str:
        return (
            f"OpenWindow(key={self.key!r}, start={self.start}, end={self.end}, n={len(self.items)})"
        )


class WindowLogic(Protocol):
    """What the windowed pipe needs of a kind of window."""

    def add(self, item: Any, key: Hashable, ts: int, watermark: int) -> bool:
        """Put ``item`` (time ``ts``) in its windows; ``False`` if every one had fired."""
        ...

    def fire(self, watermark: int) -> list[Window[Any]]:
        """Remove and return the windows complete at ``watermark``, by end time."""
        ...

    def flush(self) -> list[Window[Any]]:
        """Remove and return every open window, by end time (end of stream)."""
        ...

    def next_end(self) -> int | None:
        """The earliest end of an open window: when the next one fires."""
        ...

    @property
    def open_count(self) -> int: ...

    #: The source position new windows record as ``since`` (set by the pipe).
    position: int
    #: Where new windows are recorded, when the pipe's source takes acks.
    opened: OpenedWindows | None

    def held_items(self) -> int:
        """Items in open windows (an item in several windows counts in each),
        counted when asked: the item loops keep no tally."""
        ...


class _Heap:
    """Open windows ordered by (end, start, creation); stale entries skipped lazily.

    A window whose bounds change is pushed again; it keeps its place in the
    creation order (a session that grows still fires before one created after it).
    """

    __slots__ = ("_heap", "_pushes", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, int, int, OpenWindow]] = []
        self._seq = 0
        self._pushes = 0  # tells apart two entries of one window with equal bounds

    def push(self, w: OpenWindow) -> None:
        if not w.created:
            self._seq += 1
            w.created = self._seq
        self._pushes += 1
        heapq.heappush(self._heap, (w.end, w.start, w.created, self._pushes, w))

    def pop_until(self, watermark: int) -> list[OpenWindow]:
        heap = self._heap
        out = []
        while heap and heap[0][0] <= watermark:
            end, start, _, _, w = heapq.heappop(heap)
            if not w.fired and w.end == end and w.start == start:
                w.fired = True
                out.append(w)
        return out

    def peek_end(self) -> int | None:
        heap = self._heap
        while heap and (heap[0][4].fired or (heap[0][4].end, heap[0][4].start) != heap[0][:2]):
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def drain(self) -> list[OpenWindow]:
        return self.pop_until(2**63)


class _Tracked(Protocol):
    """What ``OpenedWindows`` tracks: an open window (or a group of them) and the
    source mark reached before its first item."""

    since: int


class OpenedWindows:
    """The ``since`` of every open window, for acks: the oldest is found in O(log n).

    Holds no window, so a window's items go the moment it fires, however long an
    older window stays open: a heap of ``(since, id)`` entries, and each open
    window's ``since`` by id. An entry is live while it matches that record;
    stale ones (of windows closed, or whose ``since`` moved) are dropped when they
    reach the top, and all at once when they outnumber the live ones. Memory is
    bounded by the windows open at once.
    """

    __slots__ = ("_heap", "_since")

    def __init__(self) -> None:
        self._heap: list[tuple[int, int]] = []
        self._since: dict[int, int] = {}

    def push(self, w: _Tracked) -> None:
        """``w`` opened, or its ``since`` moved earlier (a session merge)."""
        self._since[id(w)] = w.since
        heapq.heappush(self._heap, (w.since, id(w)))

    def discard(self, w: _Tracked) -> None:
        """``w`` is no longer open (it fired, or merged into another): forget it.

        An id may be reused by a window opened later: a stale entry of the old
        window then matches only if it has the same ``since``, a value some open
        window does hold, so the oldest is still right.
        """
        since = self._since
        del since[id(w)]
        if len(self._heap) > 2 * len(since) + _COMPACT_SLACK:
            self._heap = [(s, i) for i, s in since.items()]
            heapq.heapify(self._heap)

    def oldest_since(self) -> int | None:
        """The least ``since`` of the windows still open (``None`` if none is)."""
        heap, since = self._heap, self._since
        while heap and since.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def __len__(self) -> int:
        """Entries held, live and stale."""
        return len(self._heap)


#: Stale entries ``OpenedWindows`` tolerates beyond the live ones before it compacts.
_COMPACT_SLACK = 64


def _discard_all(opened: OpenedWindows | None, closed: list[OpenWindow]) -> list[Window[Any]]:
    """Tell ``opened`` (when acks are tracked) that the ``closed`` windows are gone;
    return them as the user's windows."""
    if opened is not None:
        for w in closed:
            opened.discard(w)
    return [w.window() for w in closed]


class _Group:
    """The least ``since`` of one start's open windows, as ``OpenedWindows`` tracks it."""

    __slots__ = ("since",)

    def __init__(self, since: int) -> None:
        self.since = since


class TumblingWindows:
    """Fixed, non-overlapping windows ``[offset + k*size, offset + (k+1)*size)``.

    Open windows are grouped by start: every key's window for one period fires
    together, in the order the keys' windows were opened. A window is the
    user's ``Window`` from the moment it opens (its bounds never move), so
    firing a period hands over its group as it is. For acks, each open period
    is one entry in ``opened``: its windows close together, so the least
    ``since`` among them is all the acks need.
    """

    __slots__ = ("_count", "_groups", "_offset", "_since", "_size", "_starts", "opened", "position")

    def __init__(self, size: int, offset: int = 0) -> None:
        self.position = 0
        #: Set by a pipe whose source takes acks: the windows as they open.
        self.opened: OpenedWindows | None = None
        self._size = size
        self._offset = offset % size
        #: The open windows by start, then by key, in the order they opened.
        self._groups: dict[int, dict[Hashable, Window[Any]]] = {}
        self._since: dict[int, _Group] = {}  # by start, while acks are tracked
        self._starts: list[int] = []  # heap of the starts of open groups
        self._count = 0

    def add(self, item: Any, key: Hashable, ts: int, watermark: int) -> bool:
        start = ts - (ts - self._offset) % self._size
        group = self._groups.get(start)
        if group is None:
            if start + self._size <= watermark:
                return False
            group = self._open_group(start)
        w = group.get(key)
        if w is None:
            w = self._open(group, start, (key,))
        w.append(item)
        return True

    def adder_to_open(self) -> Callable[[Any, Hashable, int], bool]:
        """``add_to_open(item, key, ts)``: put ``item`` (time ``ts``) in its window if
        that is open; ``False`` (having changed nothing) if not.

        The windowed pipe's item loop tries it first, item by item: it never
        changes when the next window fires. A closure, not a method, as the
        cheapest call Python has; it stays valid as long as these windows.
        """
        groups, size, offset = self._groups, self._size, self._offset

        def add_to_open(item: Any, key: Hashable, ts: int) -> bool:
            w = groups.get(ts - (ts - offset) % size, _NO_WINDOWS).get(key)
            if w is None:
                return False
            w.append(item)
            return True

        return add_to_open

    def add_in_order(
        self, seconds: list[float], keys: list[Any] | None, items: list[Any], watermark: int
    ) -> int:
        """Add a run of ``items`` (with their ``keys``, or all under the key ``None``)
        whose event times ``seconds`` are in order: slices, not items.

        ``seconds`` are epoch seconds, ints or floats, finite and within the range
        of a ``datetime``, none before the one ahead of it; they convert as
        ``seconds_to_us`` converts them. In such a run no item is late once its
        first one is not, and no window fires between its items that a later
        item would belong to, so firing at the end of the run gives exactly what
        adding item by item gives. The run is cut where window boundaries fall
        (by bisection) and each slice goes to its windows at C speed.

        Returns how many items went in: all; none (having changed nothing) if
        the first item's window has fired at ``watermark`` (the item may be late:
        let ``add`` decide); or those before the first key that cannot be hashed
        (or fewer, never one after it: see ``_add_run``).
        """
        size, offset = self._size, self._offset
        first = seconds_to_us(seconds[0])
        start = first - (first - offset) % size
        if start + size <= watermark:
            return 0
        n = len(items)
        if seconds_to_us(seconds[-1]) < start + size:  # one window (per key) takes the run
            return self._add_run(start, keys, items)
        lo = 0
        while lo < n:
            hi = bisect_left(seconds, start + size, lo, n, key=seconds_to_us)
            took = self._add_run(start, keys[lo:hi] if keys is not None else None, items[lo:hi])
            if took < hi - lo:
                return lo + took
            lo = hi
            if lo < n:
                t = seconds_to_us(seconds[lo])
                start = t - (t - offset) % size
        return n

    def _add_run(self, start: int, keys: list[Any] | None, items: list[Any]) -> int:
        """Add ``items`` (with their ``keys``, or all under the key ``None``) to their
        windows starting at ``start``, which must not have fired: as ``add`` would,
        item by item, at C speed while every key's window is open.

        Returns how many items went in: all of them, unless a key cannot be
        hashed (``TypeError``); then those before it, or fewer (none after it).
        """
        group = self._groups.get(start)
        if keys is None:
            if group is None:
                group = self._open_group(start)
            w = group.get(None)
            if w is None:
                w = self._open(group, start, (None,))
            w.extend(items)
            return len(items)
        if group is None:
            group = _NO_WINDOWS  # every key opens its window: the group, with the first
        window_of = group.__getitem__
        keys_left, items_left = iter(keys), iter(items)
        while True:
            try:
                _consume(map(_append, map(window_of, keys_left), items_left))
                return len(items)
            except TypeError:
                return len(keys) - length_hint(keys_left) - 1  # map() stopped at that key
            except KeyError:
                # map() stopped at the first key without a window: open the windows
                # of the keys soon after it that have none (in the order they come),
                # then go on with that key's item. A key further on that has none
                # stops map() again; looking no further saves a pass over the rest.
                at = len(keys) - length_hint(keys_left) - 1
                try:
                    ahead = dict.fromkeys(keys[at : at + _LOOK_AHEAD])
                    new = [k for k in ahead if k not in group]
                except TypeError:
                    return at
                if group is _NO_WINDOWS:
                    group = self._open_group(start)
                    window_of = group.__getitem__
                self._open(group, start, new)
                _append(window_of(keys[at]), next(items_left))

    def _open_group(self, start: int) -> dict[Hashable, Window[Any]]:
        group: dict[Hashable, Window[Any]] = {}
        self._groups[start] = group
        heapq.heappush(self._starts, start)
        if self.opened is not None:
            since = self._since[start] = _Group(self.position)
            self.opened.push(since)
        return group

    def _open(
        self, group: dict[Hashable, Window[Any]], start: int, keys: tuple[Hashable] | list[Hashable]
    ) -> Window[Any]:
        """Open the windows of ``keys`` (none open yet) in ``group``; return the last."""
        first, last = datetime_of(start), datetime_of(start + self._size)
        position = self.position
        for k in keys:  # one per (key, period): inline, each store counts
            w = group[k] = _new_list(Window)
            w.key = k
            w.start = first
            w.end = last
            w._since = position
        self._count += len(keys)
        if self.opened is not None:
            since = self._since[start]
            if position < since.since:
                since.since = position
                self.opened.push(since)
        return w

    def fire(self, watermark: int) -> list[Window[Any]]:
        starts, size = self._starts, self._size
        fired: list[Window[Any]] = []
        while starts and starts[0] + size <= watermark:
            start = heapq.heappop(starts)
            group = self._groups.pop(start)
            self._count -= len(group)
            fired += group.values()
            if self.opened is not None:
                self.opened.discard(self._since.pop(start))
        return fired

    def flush(self) -> list[Window[Any]]:
        return self.fire(2**63)

    def next_end(self) -> int | None:
        return self._starts[0] + self._size if self._starts else None

    @property
    def open_count(self) -> int:
        return self._count

    def held_items(self) -> int:
        return sum(len(w) for group in self._groups.values() for w in group.values())


_append = list.append
#: The windows of a period not open yet: none (never added to).
_NO_WINDOWS: dict[Hashable, Window[Any]] = {}
_new_list = list.__new__
#: Runs an iterator to its end at C speed, keeping nothing.
_consume: Callable[[Iterable[Any]], None] = deque(maxlen=0).extend
#: How many keys ``_add_run`` looks at for windows to open at once.
_LOOK_AHEAD = 256


class SlidingWindows:
    """Windows of ``size`` starting every ``slide``; an item is in ``size/slide`` of them."""

    __slots__ = ("_heap", "_offset", "_open", "_size", "_slide", "opened", "position")

    def __init__(self, size: int, slide: int, offset: int = 0) -> None:
        self.position = 0
        #: Set by a pipe whose source takes acks: the windows as they open.
        self.opened: OpenedWindows | None = None
        self._size = size
        self._slide = slide
        self._offset = offset % slide
        self._open: dict[tuple[Hashable, int], OpenWindow] = {}
        self._heap = _Heap()

    def fire(self, watermark: int) -> list[Window[Any]]:
        fired = self._heap.pop_until(watermark)
        for w in fired:
            del self._open[w.key, w.start]
        return _discard_all(self.opened, fired)

    def flush(self) -> list[Window[Any]]:
        fired = self._heap.drain()
        self._open.clear()
        return _discard_all(self.opened, fired)

    def next_end(self) -> int | None:
        return self._heap.peek_end()

    @property
    def open_count(self) -> int:
        return len(self._open)

    def held_items(self) -> int:
        return sum(len(w.items) for w in self._open.values())

    def add(self, item: Any, key: Hashable, ts: int, watermark: int) -> bool:
        size, slide = self._size, self._slide
        start = ts - (ts - self._offset) % slide  # the latest window containing ts
        accepted = False
        while start > ts - size:
            end = start + size
            if end <= watermark:
                break  # this and every earlier window have fired
            w = self._open.get((key, start))
            if w is None:
                w = self._open[key, start] = OpenWindow(key, start, end, self.position)
                self._heap.push(w)
                if self.opened is not None:
                    self.opened.push(w)
            w.items.append(item)
            accepted = True
            start -= slide
        return accepted


class SessionWindows:
    """Per key, items closer than ``gap`` to each other form one window.

    A session spans ``[first item, last item + gap)``; an item that bridges two
    sessions merges them. It fires once the watermark passes its end.
    """

    __slots__ = ("_gap", "_heap", "_open", "_sessions", "opened", "position")

    def __init__(self, gap: int) -> None:
        self.position = 0
        #: Set by a pipe whose source takes acks: the windows as they open.
        self.opened: OpenedWindows | None = None
        self._gap = gap
        self._sessions: dict[Hashable, list[OpenWindow]] = {}
        self._heap = _Heap()
        self._open = 0  # sessions open over all keys, kept as they come and go

    def add(self, item: Any, key: Hashable, ts: int, watermark: int) -> bool:
        gap = self._gap
        sessions = self._sessions.setdefault(key, [])
        touching = [s for s in sessions if ts < s.end and ts + gap > s.start]
        if not touching:
            if ts + gap <= watermark:
                if not sessions:
                    del self._sessions[key]
                return False
            w = OpenWindow(key, ts, ts + gap, self.position)
            if self.opened is not None:
                self.opened.push(w)
            w.items.append(item)
            sessions.append(w)
            self._open += 1
            self._heap.push(w)
            return True
        w = touching[0]
        for other in touching[1:]:
            w.items.extend(other.items)
            w.start = min(w.start, other.start)
            w.end = max(w.end, other.end)
            if other.since < w.since:
                w.since = other.since
                if self.opened is not None:
                    self.opened.push(w)
            other.fired = True  # merged away: its heap entry is stale
            if self.opened is not None:
                self.opened.discard(other)
            sessions.remove(other)
            self._open -= 1
        w.items.append(item)
        bounds = (w.start, w.end)
        w.start = min(w.start, ts)
        w.end = max(w.end, ts + gap)
        if (w.start, w.end) != bounds or len(touching) > 1:
            self._heap.push(w)  # ties on the end go by start: a new start re-sorts it too
        return True

    def _release(self, fired: list[OpenWindow]) -> list[Window[Any]]:
        for w in fired:
            sessions = self._sessions[w.key]
            sessions.remove(w)
            self._open -= 1
            if not sessions:
                del self._sessions[w.key]
        return _discard_all(self.opened, fired)

    def fire(self, watermark: int) -> list[Window[Any]]:
        return self._release(self._heap.pop_until(watermark))

    def flush(self) -> list[Window[Any]]:
        return self._release(self._heap.drain())

    def next_end(self) -> int | None:
        return self._heap.peek_end()

    @property
    def open_count(self) -> int:
        return self._open

    def held_items(self) -> int:
        return sum(len(w.items) for sessions in self._sessions.values() for w in sessions)


class CountWindows:
    """Per key, a window of every ``count`` items in arrival order; time plays no part.

    ``start`` and ``end`` are the times of the first and the last item.
    """

    __slots__ = ("_count", "_full", "_open", "opened", "position")

    def __init__(self, count: int) -> None:
        self.position = 0
        #: Set by a pipe whose source takes acks: the windows as they open.
        self.opened: OpenedWindows | None = None
        self._count = count
        self._open: dict[Hashable, OpenWindow] = {}
        self._full: list[Window[Any]] = []

    def add(self, item: Any, key: Hashable, ts: int, watermark: int) -> bool:
        w = self._open.get(key)
        if w is None:
            w = self._open[key] = OpenWindow(key, ts, ts, self.position)
            if self.opened is not None:
                self.opened.push(w)
        w.items.append(item)
        w.end = ts
        if len(w.items) >= self._count:
            del self._open[key]
            w.fired = True
            if self.opened is not None:
                self.opened.discard(w)
            self._full.append(w.window())
        return True

    def fire(self, watermark: int) -> list[Window[Any]]:
        full, self._full = self._full, []
        return full

    def flush(self) -> list[Window[Any]]:
        rest = sorted(self._open.values(), key=lambda w: w.end)
        self._open.clear()
        for w in rest:
            w.fired = True
        return self.fire(0) + _discard_all(self.opened, rest)

    def next_end(self) -> int | None:
        return None

    @property
    def open_count(self) -> int:
        return len(self._open)

    def held_items(self) -> int:
        return sum(len(w.items) for w in self._open.values())
