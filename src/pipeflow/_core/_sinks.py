"""Sinks, and a run from a source into one: ``pipe.run(source, sink)``.

A run into a sink reads the stream's results in lists, as ``Stream.chunks()``
does but up to ``SLICE_CHUNK`` long (an async source's items at hand go on
together, so a broker client's fetch is written in one call), and writes each
list before it asks for the next. The source is acknowledged for a
list's items only when the consumer asks for more, so only once ``write`` has
returned: nothing is acknowledged before its results are where the sink puts
them. A write that fails is tried again with backoff on the run's clock; once
the attempts are spent the run fails, and what was not written is never
acknowledged, to be read again from the source.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, cast, runtime_checkable

from ._errors import EncodeError
from ._policies import Retry, log, retry_failed
from ._sources import SLICE_CHUNK

if TYPE_CHECKING:
    from ._clock import Clock
    from ._stream import Stream

__all__ = [
    "DEFAULT_WRITE_RETRY",
    "RunSummary",
    "Sink",
    "as_sink",
    "check_write_retry",
    "run_into",
]

#: How a failed write is tried again unless the run says otherwise: five
#: attempts in all, waiting 0.1 s, 0.2 s, 0.4 s and 0.8 s (plus jitter) between them.
DEFAULT_WRITE_RETRY = Retry(attempts=5, backoff=0.1, max_backoff=5.0, jitter=0.1)


@runtime_checkable
class Sink(Protocol):
    """Where a run's results go: ``pipe.run(source, sink)``.

    ``write(items)`` takes a list of results and returns only once they are
    durable (written and flushed; acknowledged by the broker): the run
    acknowledges their items to the source after it returns. It is never called
    concurrently with itself. ``aclose()`` is called once, after the last write,
    however the run ends.

    A ``list`` (appended to) and a callable taking one result (sync, or
    ``async def``: awaited) serve as sinks too.
    """

    async def write(self, items: list[Any]) -> None:
        """Write ``items``; return once they are durable, raise if they are not."""

    async def aclose(self) -> None:
        """Release what the sink holds; no write follows."""


@dataclass(frozen=True, slots=True)
class RunSummary:
    """What a run into a sink did, returned by ``run()``.

    Attributes:
        items_in: the items the first stage took from the source.
        items_out: the results written to the sink.
        skipped: failed items the error policies skipped, over all stages.
        dead_lettered: failed items sent to dead-letter sinks, over all stages.
        late: items behind the watermark, over all windowed stages.
        dropped: items a full buffer dropped (``overflow="drop_..."``).
        writes: the lists written (each one call of ``write`` that succeeded).
        write_retries: the extra attempts failed writes took.
        duration: seconds on the run's clock, from start to the sink closed.
        stopped: whether the run's ``stop`` event ended it before its source ran out.
        in_flight_at_stop: the items read and not yet written when the stop
            came (0 without a stop).
        unacknowledged: the items read whose acknowledgement did not complete:
            a source that acknowledges (a broker) delivers them again. Items
            held in open windows at a stop are among them.
    """

    items_in: int
    items_out: int
    skipped: int
    dead_lettered: int
    late: int
    dropped: int
    writes: int
    write_retries: int
    duration: float
    stopped: bool = False
    in_flight_at_stop: int = 0
    unacknowledged: int = 0


class _ListSink:
    __slots__ = ("_items",)

    def __init__(self, items: list[Any]) -> None:
        self._items = items

    async def write(self, items: list[Any]) -> None:
        self._items += items

    async def aclose(self) -> None:
        pass


class _CallableSink:
    __slots__ = ("_fn",)

    def __init__(self, fn: Callable[[Any], Any]) -> None:
        self._fn = fn

    async def write(self, items: list[Any]) -> None:
        fn = self._fn
        for item in items:
            result = fn(item)
            if inspect.isawaitable(result):
                await result

    async def aclose(self) -> None:
        pass


def as_sink(sink: object) -> Sink:
    """``sink`` as a ``Sink``: itself, or a list or callable adapted.

    Raises:
        TypeError: for anything else, or a class instead of an instance.
    """
    if isinstance(sink, type):
        msg = f"run() takes a sink, not a class: {sink.__name__}(...)"
        raise TypeError(msg)
    if isinstance(sink, list):
        return _ListSink(sink)
    write = getattr(sink, "write", None)
    if callable(write):
        if not inspect.iscoroutinefunction(write):
            msg = f"{type(sink).__name__}.write must be an async def (a coroutine function)"
            raise TypeError(msg)
        if not callable(getattr(sink, "aclose", None)):
            msg = f"{type(sink).__name__} has write() but no aclose(): a Sink has both"
            raise TypeError(msg)
        return cast("Sink", sink)
    if callable(sink):
        return _CallableSink(sink)
    msg = (
        "run() takes a sink: an object with async write(items) and aclose(), "
        f"a list, or a callable taking one result; got {type(sink).__name__}"
    )
    raise TypeError(msg)


def check_write_retry(retry: object) -> Retry:
    """``retry``, checked as a ``write_retry``."""
    if not isinstance(retry, Retry):
        msg = f"write_retry must be a Retry, got {type(retry).__name__}"
        raise TypeError(msg)
    if retry.then != "raise":
        msg = (
            "write_retry takes a Retry with then='raise': results that cannot be "
            f"written fail the run (their items stay unacknowledged); got then={retry.then!r}"
        )
        raise ValueError(msg)
    return retry


class _Writer:
    """Writes lists to a sink, trying each again as ``retry`` says."""

    __slots__ = ("clock", "items", "retries", "retry", "sink", "writes")

    def __init__(self, sink: Sink, retry: Retry, clock: Clock) -> None:
        self.sink = sink
        self.retry = retry
        self.clock = clock
        self.writes = self.items = self.retries = 0

    async def write(self, items: list[Any]) -> None:
        try:
            await self.sink.write(items)
        except Exception as exc:
            await self._retry(items, exc)
        self.writes += 1
        self.items += len(items)

    async def _retry(self, items: list[Any], exc: Exception) -> None:
        retry = self.retry
        ok, last, attempts = await retry_failed(
            retry,
            exc,
            lambda: self.sink.write(items),
            sleep=self.clock.sleep,
            # A result the sink cannot encode will not encode next time either.
            worth_it=lambda e: isinstance(e, retry.on) and not isinstance(e, EncodeError),
        )
        self.retries += attempts - 1
        if not ok:
            last.add_note(
                f"pipeflow: writing {len(items)} results to {self.sink!r} failed "
                f"(attempt {attempts} of {retry.attempts}); their items are not acknowledged"
            )
            raise last


async def run_into(stream: Stream[Any], sink: Sink, *, write_retry: Retry) -> RunSummary:
    """Write every result of ``stream`` to ``sink``; see ``Pipeable.run``."""
    clock = stream.clock
    writer = _Writer(sink, write_retry, clock)
    started = clock.monotonic()
    try:
        async with stream:
            async for items in stream._lists(SLICE_CHUNK, bulk=True):
                await writer.write(items)
    except BaseException:
        # The run's own failure is the one to see; the sink's on closing is logged.
        try:
            await writer.sink.aclose()
        except Exception:
            log.exception("pipeflow: closing the sink %r after the run failed failed too", sink)
        raise
    await writer.sink.aclose()
    stages = stream.statistics()
    return RunSummary(
        items_in=stages[0].items_in if stages else 0,
        items_out=writer.items,
        skipped=sum(s.skipped for s in stages),
        dead_lettered=sum(s.dead_lettered for s in stages),
        late=sum(s.late for s in stages),
        dropped=sum(s.dropped for s in stages),
        writes=writer.writes,
        write_retries=writer.retries,
        duration=clock.monotonic() - started,
        stopped=stream.stopped,
        in_flight_at_stop=stream._run.unread_at_stop or 0,
        unacknowledged=stream._run.unacknowledged(),
    )
