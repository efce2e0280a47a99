"""``Stream``: the results of one run, as the user holds them.

A ``Stream`` is what ``pipe.stream(source)`` returns. It checks its arguments,
sets up the run's statistics and monitors, and hands the consumer a consumer
generator (``_consumers.consumer_for``); iterating that generator opens the
run, and ending, leaving or cancelling it closes the run. The ``Stream`` itself
runs nothing: it only reads the pipe through the ``Composition`` protocol.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Iterable
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

from ._buffer import MAX_CHUNK
from ._clock import SYSTEM_CLOCK, Clock
from ._consumers import consumer_for, iterate
from ._run import Run
from ._sources import check_source, close_source
from ._stage import Composition
from ._stats import RunStats, StageMetrics, StageStats
from ._stop import StopEvent, check_stop, stopping

__all__ = ["Stream"]

T = TypeVar("T")


class Stream(Generic[T]):
    """The results of one run. Iterate it with ``async for``; close it with ``async with``.

    Returned by ``stream()``; not built directly. Breaking out of the loop,
    leaving the ``async with``, an exception or a cancellation closes the source
    and every task the run started.

    A stream is one run, read once by one consumer: iterating a stream that has
    ended or was closed raises ``RuntimeError``; call ``stream()`` again for
    another run.
    """

    __slots__ = ("_agen", "_chunked", "_closed", "_run")

    def __init__(
        self,
        pipe: Composition,
        source: Iterable[Any] | AsyncIterable[Any],
        clock: Clock | None,
        stop: StopEvent | None = None,
    ) -> None:
        check_source(source)
        clock = _check_clock(clock)
        read: Any = source if stop is None else stopping(source, check_stop(stop))
        stages = pipe._stages()
        # The pipe's monitor sees the whole run; the monitor of a pipe or pipeline
        # composed into it sees the stages that part covers.
        watched = [
            (m, p, start, stop) for p, start, stop in pipe._parts() if (m := p._monitor) is not None
        ]
        timed = bool(watched)
        stats = RunStats(pipe.name, [StageStats(p.name, clock, timed=timed) for p in stages])
        watchers = [
            (monitor, stats if p is pipe else stats.view(p.name, start, stop))
            for monitor, p, start, stop in watched
        ]
        self._run = Run(stages, read, clock, stats, watchers)
        self._chunked = self._closed = False
        #: The consumer generator: results one by one, or lists of them after ``chunks()``.
        self._agen: AsyncGenerator[Any, None] = consumer_for(self._run, timed=timed)

    def __aiter__(self) -> AsyncIterator[T]:
        if self._chunked:
            msg = "this stream is read with chunks(): iterate what chunks() returned"
            raise RuntimeError(msg)
        # A loop that breaks off may be followed by another that goes on; one over
        # a run that is over would silently get nothing.
        if self._run.started and getattr(self._agen, "ag_frame", True) is None:
            self._used_up()
        return self._agen

    def _used_up(self) -> None:
        what = "was closed" if self._closed else "has been read to its end"
        msg = f"this stream {what}: a stream is one run; call stream() again for another"
        raise RuntimeError(msg)

    def chunks(self) -> AsyncIterator[list[T]]:
        """The results in lists: each holds the results at hand, up to ``MAX_CHUNK``,
        and none waits for more to come. For a consumer that writes in bulk.

        Call it instead of iterating the stream itself, before the run starts.
        Closing works as for the stream: ``async with`` the stream around the loop.

        Raises:
            RuntimeError: if the stream was iterated, closed, or ``chunks()`` was
                called already.
        """
        return self._lists(MAX_CHUNK)

    def _lists(self, limit: int, *, bulk: bool = False) -> AsyncIterator[list[T]]:
        """``chunks()`` with lists of up to ``limit`` results. With ``bulk`` (a run
        into a sink), an async source's items at hand go on together, up to
        ``SLICE_CHUNK``, where a pipeline of fused operators reads it directly:
        a sink writes a broker's fetch in one call."""
        if self._closed:
            self._used_up()
        if self._chunked:
            msg = "chunks() was called already: iterate what it returned"
            raise RuntimeError(msg)
        if self._run.started:
            msg = "chunks() must be called before the stream is iterated"
            raise RuntimeError(msg)
        self._run.bulk = bulk
        chunks = self._agen = iterate(self._run, chunked=True, limit=limit)
        self._chunked = True
        return chunks

    async def __anext__(self) -> T:
        if self._chunked:
            self.__aiter__()  # raises
        result: T = await self._agen.__anext__()
        return result

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the run: close the source and every task and generator it opened."""
        self._closed = True
        run = self._run
        if not run.started:
            run.started = True  # a stream closed before it began never begins
            run.stats.finish()
            await close_source(run.source)
        await self._agen.aclose()

    @property
    def stopped(self) -> bool:
        """Whether the run's ``stop`` event ended reading before the source ran out."""
        stopping = self._run.stopping
        return stopping is not None and stopping.requested

    @property
    def clock(self) -> Clock:
        """The clock the run keeps time by."""
        return self._run.clock

    def statistics(self) -> tuple[StageMetrics, ...]:
        """A snapshot of each stage's counters, in pipeline order.

        Counters move a chunk at a time. Throughput, backpressure and latency
        are measured only in a run a monitor watches (``set_monitor``).
        """
        self._run.flush()
        return tuple(s.statistics() for s in self._run.stats.stages)


def _check_clock(clock: Clock | None) -> Clock:
    """``clock``, or the system clock for ``None``; refuse what is not a clock."""
    if clock is None:
        return SYSTEM_CLOCK
    if isinstance(clock, type) or not all(
        callable(getattr(clock, name, None)) for name in ("monotonic", "now", "sleep")
    ):
        hint = f" (an instance: {clock.__name__}())" if isinstance(clock, type) else ""
        msg = f"clock must be a Clock{hint}, got {clock!r:.80}"
        raise TypeError(msg)
    return clock
