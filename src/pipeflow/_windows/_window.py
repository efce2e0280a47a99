"""``Window``: the items of one window, with its bounds and key."""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from datetime import datetime
from functools import lru_cache
from typing import Any, Generic, TypeVar

from ._time import from_us, to_us

__all__ = ["Window", "new_window"]

# Windows of all keys share their bounds: make each datetime once.
_datetime_of = lru_cache(maxsize=256)(from_us)

T = TypeVar("T")


class Window(list[T], Generic[T]):
    """The items of one window: a list, with ``start``, ``end`` and ``key``.

    ``start`` and ``end`` are timezone-aware UTC datetimes; the window covers
    ``[start, end)``. For count windows they are the times of the first and the
    last item. ``key`` is the item key (``None`` without ``key=``).
    """

    __slots__ = ("_end_us", "_since", "_start_us", "key")

    def __init__(
        self,
        items: Iterable[T] = (),
        start: datetime | None = None,
        end: datetime | None = None,
        key: Any = None,
    ) -> None:
        super().__init__(items)
        self._start_us = to_us(start) if start is not None else 0
        self._end_us = to_us(end) if end is not None else 0
        self.key = key
        # The source position reached before the window's first item (for acks).
        self._since = 0

    @property
    def start(self) -> datetime:
        """The window's first instant (inclusive), UTC."""
        return _datetime_of(self._start_us)

    @property
    def end(self) -> datetime:
        """The instant the window closes (exclusive), UTC."""
        return _datetime_of(self._end_us)

    def __repr__(self) -> str:
        return (
            f"Window(start={self.start.isoformat()}, end={self.end.isoformat()}, "
            f"key={self.key!r}, items={list.__repr__(self)})"
        )


_new_list = list.__new__


def new_window(key: Hashable, start: int = 0, end: int = 0, since: int = 0) -> Window[Any]:
    """An empty window for ``key`` (bounds in microseconds; those of a window whose
    bounds move are set when it fires)."""
    w: Window[Any] = _new_list(Window)
    w.key = key
    w._start_us = start
    w._end_us = end
    w._since = since
    return w
