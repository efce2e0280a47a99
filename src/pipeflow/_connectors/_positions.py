"""From the run's acknowledgement counts to a source's positions.

A run acknowledges its source with a count: the first ``count`` items it read
are done with (``Acknowledging.ack``). A broker source acknowledges by
position (a Redis entry id, a NATS message, a Kafka offset), so it records the
position of each item as it hands it over, in order, and turns each new count
into the positions it newly covers.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Iterable
from typing import Generic, TypeVar

__all__ = ["Positions"]

P = TypeVar("P")


class Positions(Generic[P]):
    """The positions of the items handed over and not yet acknowledged, in order."""

    __slots__ = ("_acked", "_pending")

    def __init__(self) -> None:
        self._pending: deque[P] = deque()
        #: How many items, from the first one handed over, are acknowledged.
        self._acked = 0

    def extend(self, positions: Iterable[P]) -> None:
        """Record the positions of items about to be handed over, in their order."""
        self._pending.extend(positions)

    def append(self, position: P) -> None:
        """Record the position of one item about to be handed over."""
        self._pending.append(position)

    def take(self, count: int) -> list[P]:
        """The positions the acknowledgement of the first ``count`` items newly covers.

        Raises:
            ValueError: if ``count`` is more than the items recorded.
        """
        n = count - self._acked
        if n <= 0:
            return []
        pending = self._pending
        if n > len(pending):
            msg = (
                f"acknowledged {count} items, but only {self._acked + len(pending)} "
                "were handed over"
            )
            raise ValueError(msg)
        self._acked = count
        return [pending.popleft() for _ in range(n)]

    def pending(self) -> Collection[P]:
        """The positions handed over and not yet acknowledged, oldest first (read only)."""
        return self._pending

    @property
    def acked(self) -> int:
        """How many items are acknowledged."""
        return self._acked

    def __len__(self) -> int:
        """How many items are handed over and not yet acknowledged."""
        return len(self._pending)
