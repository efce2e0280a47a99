"""``TestSource``: a source that records how it was read and closed."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Generic, TypeVar

__all__ = ["TestSource"]

T = TypeVar("T")


class TestSource(Generic[T]):
    """An async source over ``items`` that counts reads, acks and closing.

    Args:
        items: what to emit.
        fail_after: raise ``fail_with`` after emitting this many items.
        fail_with: the exception to raise (a ``RuntimeError`` by default).

    Attributes:
        read: items emitted so far.
        acked: the last count passed to ``ack`` (see ``Acknowledging``).
        closed: whether ``aclose`` was called.
        paused: whether the source is paused now (see ``Pausable``); ``pauses``
            counts how often it was paused.
    """

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        items: Iterable[T],
        *,
        fail_after: int | None = None,
        fail_with: BaseException | None = None,
    ) -> None:
        self._items = list(items)
        self._fail_after = fail_after
        self._fail_with = fail_with
        self.read = 0
        self.acked = 0
        self.closed = False
        self.paused = False
        self.pauses = 0

    def __aiter__(self) -> AsyncIterator[T]:
        return self._emit()

    async def _emit(self) -> AsyncIterator[T]:
        for item in self._items:
            if self._fail_after is not None and self.read >= self._fail_after:
                raise self._fail_with or RuntimeError(f"source failed after {self.read} items")
            self.read += 1
            yield item
        if self._fail_after is not None and self.read >= self._fail_after:
            raise self._fail_with or RuntimeError(f"source failed after {self.read} items")

    async def aclose(self) -> None:
        self.closed = True

    def ack(self, count: int) -> None:
        if count < self.acked:
            msg = f"ack went backwards: {count} after {self.acked}"
            raise AssertionError(msg)
        self.acked = count

    def pause(self) -> None:
        self.paused = True
        self.pauses += 1

    def resume(self) -> None:
        self.paused = False
