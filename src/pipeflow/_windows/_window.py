"""``Window``: the items of one window, with its bounds and key."""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from datetime import datetime
from functools import lru_cache
from typing import Any, Generic, TypeVar

from ._time import from_us, to_us

__all__ = ["Window", "datetime_of", "new_window"]

#: A window bound as a datetime. Windows of all keys share their bounds: each
#: datetime is made once.
datetime_of = lru_cache(maxsize=256)(from_us)

T = TypeVar("T")


class Window(list[T], Generic[T]):
    """The items of one window: a list, with ``start``, ``end`` and ``key``.

    ``start`` and ``end`` are timezone-aware UTC datetimes; the window covers
    ``[start, end)``. For count windows they are the times of the first and the
    last item. ``key`` is the item key (``None`` without ``key=``).

    A ``WindowedStreamPipe`` hands one to ``process_window`` and
    ``aggregate_window``, and emits it as it is by default.
    """

    # Plain attributes, not properties: aggregations read them once per window.
    __slots__ = ("_since", "end", "key", "start")

    #: The window's first instant (inclusive), UTC.
    start: datetime
    #: The instant the window closes (exclusive), UTC.
    end: datetime

    def __init__(
        self,
        items: Iterable[T] = (),
        start: datetime | None = None,
        end: datetime | None = None,
        key: Any = None,
    ) -> None:
        super().__init__(items)
        self.start = datetime_of(to_us(start) if start is not None else 0)
        self.end = datetime_of(to_us(end) if end is not None else 0)
        self.key = key
        # The source position reached before the window's first item (for acks).
        self._since = 0

    def __repr__(self) -> str:
        return (
            f"Window(start={self.start.isoformat()}, end={self.end.isoformat()}, "
            f"key={self.key!r}, items={list.__repr__(self)})"
        )


class _LazyWindow(Window[T]):
    """A window whose bounds are kept in microseconds and made datetimes only when
    read: sliding, session and count windows, whose bounds are seldom shared and
    often never asked for (a tumbling window shares its period's datetimes)."""

    __slots__ = ("_end_us", "_start_us")

    @property
    def start(self) -> datetime:
        return datetime_of(self._start_us)

    @start.setter
    def start(self, value: datetime) -> None:
        self._start_us = to_us(value)

    @property
    def end(self) -> datetime:
        return datetime_of(self._end_us)

    @end.setter
    def end(self, value: datetime) -> None:
        self._end_us = to_us(value)


_new_list = list.__new__


def new_window(key: Hashable) -> _LazyWindow[Any]:
    """An empty window for ``key`` whose bounds (in microseconds, with ``since``)
    are set when it fires."""
    w: _LazyWindow[Any] = _new_list(_LazyWindow)
    w.key = key
    return w
