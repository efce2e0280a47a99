"""``TestSource``: a scripted source that records how it was read, acked and closed."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from .._core._clock import Clock

__all__ = ["Cue", "TestSource"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Cue:
    """A scripted event in a ``TestSource``'s items.

    Build cues with the ``TestSource`` static methods ``wait``, ``at``, ``fail``
    and ``end`` rather than directly. Frozen.
    """

    action: str
    seconds: float = 0.0
    error: BaseException | None = None
    item: Any = None


class TestSource(Generic[T]):
    """An async source over ``items`` that counts reads, acks and closing.

    Items at hand are handed over without waiting, so a pipeline takes them in
    chunks; with ``one_by_one=True`` the source lets the event loop run before
    each item, as a network source does, and each arrives on its own.

    Besides items, the script may hold cues: ``TestSource.wait(s)`` waits ``s``
    seconds on the clock, ``TestSource.at(t, item)`` emits ``item`` once the
    clock reads ``t``, ``TestSource.fail(exc)`` raises, ``TestSource.end()``
    stops early. Timed cues need ``clock=`` (a ``VirtualClock`` in tests); without
    it they raise ``RuntimeError``.

    It implements ``Acknowledging`` and ``Pausable`` and records how it was used.
    In ``mypy --strict`` code, write ``TestSource[int]([1, TestSource.wait(1.0), 2])``
    or annotate the script as ``list[int | Cue]``: for a list mixing items and
    cues, mypy infers ``object`` items.

    Args:
        items: the script: items, and cues among them.
        clock: the clock that timed cues wait on.
        one_by_one: let the event loop run before each item.
        fail_after: raise ``fail_with`` instead of going on after this many items
            (an int >= 0).
        fail_with: the exception instance to raise; a ``RuntimeError`` by default.

    Attributes:
        read: items emitted so far.
        acked: the last count passed to ``ack`` (see ``Acknowledging``); an ack
            that goes backwards raises ``AssertionError``.
        closed: whether ``aclose`` was called.
        paused: whether the source is paused now (see ``Pausable``).
        pauses: how often it was paused.

    Raises:
        ValueError: for a ``fail_after`` that is not an int >= 0.
        TypeError: for a ``fail_with`` that is not an exception instance.

    Examples:
        >>> from pipeflow.testing import TestSource
        >>> source = TestSource([1, 2, TestSource.fail(ValueError("boom"))])
    """

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        items: Iterable[T | Cue],
        *,
        clock: Clock | None = None,
        one_by_one: bool = False,
        fail_after: int | None = None,
        fail_with: BaseException | None = None,
    ) -> None:
        if fail_after is not None and (
            isinstance(fail_after, bool) or not isinstance(fail_after, int) or fail_after < 0
        ):
            msg = f"fail_after must be an int >= 0 (items before the failure), got {fail_after!r}"
            raise ValueError(msg)
        if fail_with is not None and not isinstance(fail_with, BaseException):
            msg = f"fail_with must be an exception instance, got {fail_with!r:.60}"
            raise TypeError(msg)
        self._items = list(items)
        self._one_by_one = one_by_one
        self._clock = clock
        self._fail_after = fail_after
        self._fail_with = fail_with
        self.read = 0
        self.acked = 0
        self.closed = False
        self.paused = False
        self.pauses = 0

    @staticmethod
    def wait(seconds: float) -> Cue:
        """A cue: wait ``seconds`` on the clock before going on (the source is quiet)."""
        return Cue("wait", seconds=_seconds("TestSource.wait", seconds))

    @staticmethod
    def at(t: float, item: Any) -> Cue:
        """A cue: emit ``item`` once the clock's ``monotonic()`` reads ``t``."""
        return Cue("at", seconds=_seconds("TestSource.at", t), item=item)

    @staticmethod
    def fail(error: BaseException) -> Cue:
        """A cue: raise ``error`` from the source."""
        if not isinstance(error, BaseException):
            msg = f"TestSource.fail takes an exception instance, got {error!r:.60}"
            raise TypeError(msg)
        return Cue("fail", error=error)

    @staticmethod
    def end() -> Cue:
        """A cue: end the stream here, ignoring what follows."""
        return Cue("end")

    def __aiter__(self) -> AsyncIterator[T]:
        return self._emit()

    def _check_fail(self) -> None:
        if self._fail_after is not None and self.read >= self._fail_after:
            raise self._fail_with or RuntimeError(f"source failed after {self.read} items")

    async def _emit(self) -> AsyncIterator[T]:
        for entry in self._items:
            if isinstance(entry, Cue):
                if entry.action == "end":
                    return
                if entry.action == "fail":
                    assert entry.error is not None
                    raise entry.error
                await self._wait(entry)
                if entry.action == "wait":
                    continue
                entry = entry.item
            self._check_fail()
            if self._one_by_one:
                await asyncio.sleep(0)  # let the loop run, as a network source would
            self.read += 1
            yield entry
        self._check_fail()

    async def _wait(self, cue: Cue) -> None:
        if self._clock is None:
            msg = f"TestSource.{cue.action}() needs TestSource(..., clock=...)"
            raise RuntimeError(msg)
        delay = cue.seconds if cue.action == "wait" else cue.seconds - self._clock.monotonic()
        if delay > 0:
            await self._clock.sleep(delay)

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


def _seconds(what: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < math.inf:
        msg = f"{what} takes a finite number of seconds >= 0, got {value!r}"
        raise ValueError(msg)
    return float(value)
