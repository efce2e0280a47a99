"""``SourceIdle``: how long the run's source has had nothing to hand over."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._clock import Clock

__all__ = ["SourceIdle"]


class SourceIdle:
    """The time the run's source has kept its reader waiting for the next item.

    The run's source reader records each wait of an async source that has
    nothing ready: ``since`` is the clock's ``monotonic()`` when the wait in
    progress began (``None`` while the reader reads what is ready, hands it on,
    or is held up downstream), ``total`` the seconds of the waits that are over.
    A sync source never waits, so it is never idle. Stages read it to tell a
    quiet source from a slow stage upstream of them (see the idle advance of
    ``WindowedStreamPipe``).
    """

    __slots__ = ("_clock", "since", "total")

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self.since: float | None = None
        self.total = 0.0

    def seconds(self) -> float:
        """Seconds the source has kept the reader waiting so far, the wait in progress included."""
        since = self.since
        return self.total if since is None else self.total + (self._clock.monotonic() - since)

    def begin(self) -> None:
        """A wait of the source begins."""
        self.since = self._clock.monotonic()

    def end(self) -> None:
        """The wait in progress, if any, is over."""
        since = self.since
        if since is not None:
            self.total += self._clock.monotonic() - since
            self.since = None
