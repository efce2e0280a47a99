"""Stopping a run from outside: stop reading, let what was read finish.

``pipe.run(source, sink, stop=event)`` and ``pipe.stream(source, stop=event)``
take an ``asyncio.Event``. Once it is set the run reads nothing more from its
source: a read that is waiting (a broker client blocked on the network) is
cancelled, as a task's ``await`` would be, and the source ends there. What was
read goes on through the pipeline to the consumer, and is acknowledged, as at
the end of a finite source; then the source is closed.

Two kinds of stage hold items by design. A batch is work in flight: its
partial batch goes out, as at any end. A window is state: with a source that
takes acknowledgements, its open windows do not fire, and their items stay
unacknowledged for the source to deliver again to the next run, which then
builds the whole window (firing early would put out a partial result, and the
next run a second one for the same window). A source that does not
acknowledge cannot deliver them again, so there windows fire as at the end.

Reading goes through ``StoppingSource``, which costs a little per item; a run
without ``stop=`` reads its source directly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Generator
from typing import Any, Protocol

from ._sources import close_source

__all__ = ["StopEvent", "StoppingSource", "check_stop", "stopping"]


class StopEvent(Protocol):
    """What ``stop=`` takes: an ``asyncio.Event``, or anything with its
    ``is_set()`` and ``wait()``."""

    def is_set(self) -> bool: ...

    def wait(self) -> Awaitable[Any]: ...


def check_stop(stop: object) -> StopEvent:
    """``stop``, checked: it must look like an ``asyncio.Event``."""
    if isinstance(stop, type) or not (
        callable(getattr(stop, "is_set", None)) and callable(getattr(stop, "wait", None))
    ):
        msg = f"stop must be an asyncio.Event (is_set() and wait()), got {stop!r:.80}"
        raise TypeError(msg)
    return stop  # type: ignore[return-value]


class StoppingSource:
    """A source read until ``stop`` is set.

    It passes on the source's optional parts (``ack``, ``pause``, ``resume``,
    ``aclose``/``close``), so the run treats it as it would the source.
    """

    def __init__(self, source: Any, stop: StopEvent) -> None:
        self.source = source
        self.stop = stop
        #: Whether the stop ended reading (the source had more, or might have).
        self.requested = False
        #: Called once, when reading first finds the stop set.
        self.on_stop: Callable[[], None] | None = None
        #: The future a waiting read is parked on, to cancel when the stop comes.
        self.parked: asyncio.Future[Any] | None = None
        self._watcher: asyncio.Task[None] | None = None
        for name in ("ack", "pause", "resume"):
            method = getattr(source, name, None)
            if callable(method):
                setattr(self, name, method)

    def __repr__(self) -> str:
        return repr(self.source)

    def stopped(self) -> bool:
        """Whether reading must end now (and note that it did)."""
        if not self.requested and self.stop.is_set():
            self.requested = True
            if self.on_stop is not None:
                self.on_stop()
        return self.requested

    def watch(self) -> None:
        """Cancel a parked read as soon as the stop is set (from the running loop)."""
        if self._watcher is None:
            self._watcher = asyncio.get_running_loop().create_task(
                self._wait(), name="pipeflow: wait for stop"
            )

    async def _wait(self) -> None:
        await self.stop.wait()
        self.stopped()
        parked = self.parked
        if parked is not None:
            parked.cancel()

    async def aclose(self) -> None:
        """Stop watching, then close the source."""
        watcher = self._watcher
        if watcher is not None:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
        await close_source(self.source)


class _AsyncStopping(StoppingSource):
    def __aiter__(self) -> _AsyncReader:
        return _AsyncReader(self, self.source.__aiter__())


class _SyncStopping(StoppingSource):
    def __iter__(self) -> _SyncReader:
        return _SyncReader(self, iter(self.source))


def stopping(source: Any, stop: StopEvent) -> StoppingSource:
    """``source``, read until ``stop`` is set; async if ``source`` is."""
    if hasattr(source, "__aiter__"):
        return _AsyncStopping(source, stop)
    return _SyncStopping(source, stop)


class _SyncReader:
    __slots__ = ("_it", "_owner")

    def __init__(self, owner: StoppingSource, it: Any) -> None:
        self._owner = owner
        self._it = it

    def __iter__(self) -> _SyncReader:
        return self

    def __next__(self) -> Any:
        if self._owner.stopped():
            raise StopIteration
        return next(self._it)

    def close(self) -> None:
        close = getattr(self._it, "close", None)
        if close is not None:
            close()


class _AsyncReader:
    __slots__ = ("_anext", "_it", "_owner")

    def __init__(self, owner: StoppingSource, it: Any) -> None:
        self._owner = owner
        self._it = it
        self._anext = it.__anext__

    def __aiter__(self) -> _AsyncReader:
        return self

    def __anext__(self) -> _Read:
        return _Read(self._owner, self._anext)

    async def aclose(self) -> None:
        aclose = getattr(self._it, "aclose", None)
        if aclose is not None:
            await aclose()


class _Read:
    """One ``__anext__`` of the source, driven step by step: where it waits on a
    future, the stop can cancel that future (``StoppingSource.watch``)."""

    __slots__ = ("_anext", "_owner")

    def __init__(self, owner: StoppingSource, anext: Any) -> None:
        self._owner = owner
        self._anext = anext

    def __await__(self) -> Generator[Any, Any, Any]:
        owner = self._owner
        if owner.stopped():
            raise StopAsyncIteration
        step = self._anext().__await__()
        sent: Any = None
        thrown: BaseException | None = None
        watching = False
        while True:
            try:
                signal = step.send(sent) if thrown is None else step.throw(thrown)
            except StopIteration as done:
                return done.value
            except asyncio.CancelledError:
                # The stop cancelled the read, and the source gave up: it ends
                # here. A cancellation of the task itself goes on.
                if owner.stopped() and not _task_cancelling():
                    raise StopAsyncIteration from None
                raise
            if not watching:
                owner.watch()
                watching = True
            parked = signal if isinstance(signal, asyncio.Future) else None
            if parked is not None and owner.stopped():
                # The stop came while the read was not parked (the watcher found
                # nothing to cancel): this wait is cancelled before it begins.
                parked.cancel()
            owner.parked = parked
            try:
                sent, thrown = (yield signal), None
            except BaseException as exc:  # passed on into the read, as ``await`` does
                sent, thrown = None, exc
            finally:
                owner.parked = None


def _task_cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
