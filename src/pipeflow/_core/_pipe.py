"""``StreamPipe`` and ``Pipeline``: definitions of processing, composed with ``|``.

A pipe is a reusable definition. Nothing runs until ``stream(source)``; each
call starts an independent run with its own buffers, counters and tasks.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from typing import TYPE_CHECKING, Any, Generic

if sys.version_info >= (3, 13):
    from typing import TypeVar
else:  # TypeVar defaults (PEP 696)
    from typing_extensions import TypeVar

from ._config import BackpressureConfig
from ._policies import ErrorPolicy, Retry, check_policy
from ._sinks import DEFAULT_WRITE_RETRY, RunSummary, Sink, as_sink, check_write_retry, run_into
from ._stages import Kind, StageContext, concurrent_stage, item_stage, paced
from ._stream import Stream
from ._stream_stage import ProcessStream

if TYPE_CHECKING:
    from ._buffer import Chunk
    from ._clock import Clock
    from ._stage import BatchStep, FusedOp
    from ._stats import StatsSink
    from ._stop import StopEvent

__all__ = ["Pipeable", "Pipeline", "StreamPipe"]

In = TypeVar("In", contravariant=True, default=Any)
Out = TypeVar("Out", covariant=True, default=Any)
Next = TypeVar("Next")


class Pipeable(Generic[In, Out]):
    """What pipes and pipelines share: ``stream``, ``|``, ``set_monitor``, ``name``.

    Use it to annotate "a pipe or a pipeline". It is contravariant in ``In`` (a
    pipe that takes any object may stand where one taking ``int`` is expected)
    and covariant in ``Out``.
    """

    _monitor: StatsSink | None = None

    @property
    def name(self) -> str:
        """The name used in errors, metrics and logs."""
        raise NotImplementedError

    def _stages(self) -> list[StreamPipe[Any, Any]]:
        raise NotImplementedError

    def _parts(self) -> list[tuple[Pipeable[Any, Any], int, int]]:
        """This pipe and every pipe or pipeline composed into it, each with the
        range of stages it covers, outermost first: whose monitor sees what."""
        raise NotImplementedError

    def stream(
        self,
        source: Iterable[In] | AsyncIterable[In],
        *,
        clock: Clock | None = None,
        stop: StopEvent | None = None,
    ) -> Stream[Out]:
        """Run this pipe over ``source``.

        Args:
            source: any iterable or async iterable. It is closed (``aclose`` or
                ``close``) when the stream ends, fails, is left or is cancelled.
                A source implementing ``Acknowledging`` is told, through
                ``ack(count)``, once the results of its first ``count`` items have
                all been delivered; one implementing ``Pausable`` is paused while
                the first pipe's buffer is in backpressure.
            clock: the clock for all timing; ``SystemClock`` by default.
            stop: an ``asyncio.Event`` that ends the run gracefully once set: the
                source is read no further (a read that is waiting is cancelled),
                and what was read goes on to the consumer and is acknowledged,
                as at the end of a finite source. Open windows do not fire if the
                source takes acknowledgements: their items stay unacknowledged,
                to be delivered again. Partial batches go out.

        Returns:
            An async iterator of results (a ``Stream``) and an async context
            manager that closes everything the run opened.

        Raises:
            TypeError: at once, if ``source`` is not iterable, or ``stop`` is
                not an event.
        """
        stream: Stream[Out] = Stream(self, source, clock, stop)
        return stream

    async def run(
        self,
        source: Iterable[In] | AsyncIterable[In],
        sink: Sink | list[Any] | Callable[[Out], Any],
        *,
        clock: Clock | None = None,
        write_retry: Retry = DEFAULT_WRITE_RETRY,
        stop: StopEvent | None = None,
    ) -> RunSummary:
        """Run this pipe over ``source`` and write its results to ``sink``.

        The results go to ``sink.write`` in lists, as they come (see
        ``Stream.chunks()``), one write at a time. A source that acknowledges
        (``Acknowledging``) is told of an item only once the write holding its
        results has returned, or once it is known to give none (filtered out,
        skipped, dead-lettered): at-least-once delivery. A failed write is tried
        again as ``write_retry`` says, on the run's clock; once its attempts are
        spent the run fails with the write's exception, and the items of what
        was not written stay unacknowledged. The sink is closed after the last
        write, however the run ends (its end, an error, a cancellation).

        Args:
            source: as for ``stream()``.
            sink: a ``Sink`` (async ``write(items)`` and ``aclose()``), a list
                (appended to), or a callable taking one result (awaited if it is
                an ``async def``).
            clock: as for ``stream()``.
            write_retry: how a failed write is tried again (``then`` must be
                ``"raise"``); five attempts with backoff from 0.1 s by default.
            stop: an ``asyncio.Event`` that drains the run once set, as for
                ``stream()``: reading stops, what was read is written and
                acknowledged, the sink is closed, and ``run`` returns with
                ``stopped`` true in its summary. To stop at once instead,
                cancel the task awaiting ``run``.

        Returns:
            A ``RunSummary``: items in and out, skipped, dead-lettered, late,
            dropped, writes and their retries, and the duration.

        Raises:
            TypeError: at once, for a source that is not iterable, or a sink,
                ``write_retry`` or ``stop`` of the wrong kind.
            ValueError: for a ``write_retry`` whose ``then`` is not ``"raise"``.

        Examples:
            >>> import asyncio
            >>> from pipeflow import streams as ps
            >>> written: list[int] = []
            >>> summary = asyncio.run(ps.map(lambda x: x * 2).run(range(3), written))
            >>> written, summary.items_in, summary.items_out
            ([0, 2, 4], 3, 3)
        """
        target = as_sink(sink)
        check_write_retry(write_retry)
        stream = self.stream(source, clock=clock, stop=stop)
        return await run_into(stream, target, write_retry=write_retry)

    def set_monitor(self, monitor: StatsSink | None) -> None:
        """Report every later run of this pipe to ``monitor`` (``None`` detaches).

        Args:
            monitor: a ``StreamMonitor``, or ``None``.

        Raises:
            TypeError: for a class instead of an instance, or an object that is
                not a monitor.
        """
        if isinstance(monitor, type):
            msg = f"set_monitor() takes a monitor, not a class: {monitor.__name__}()"
            raise TypeError(msg)
        if monitor is not None and not callable(getattr(monitor, "attach", None)):
            msg = f"set_monitor() takes a StreamMonitor, got {type(monitor).__name__}"
            raise TypeError(msg)
        self._monitor = monitor

    def get_monitor(self) -> StatsSink | None:
        """The monitor ``set_monitor`` attached, or ``None``."""
        return self._monitor

    def __or__(self, other: Pipeable[Out, Next]) -> Pipeline[In, Next]:
        if not isinstance(other, Pipeable):
            raise _not_a_pipe(other)
        return Pipeline(self, other)

    if not TYPE_CHECKING:  # type checkers keep reporting ``function | pipe`` themselves

        def __ror__(self, other):
            # Only reached when the left operand is not a pipe (a function, a class).
            raise _not_a_pipe(other)


def _not_a_pipe(other: object) -> TypeError:
    """The error for composing a pipe with ``other``, which is not one."""
    if isinstance(other, type) and issubclass(other, Pipeable):
        hint = f" (the class {other.__name__}; compose an instance: {other.__name__}())"
    elif callable(other):
        hint = " (wrap a function with pipeflow.streams.map(fn))"
    else:
        hint = ""
    return TypeError(
        f"a pipe can only be composed with another pipe, got {type(other).__name__}{hint}"
    )


def _check_name(name: object) -> None:
    """Refuse a ``name`` that is neither ``None`` (for the default) nor a non-empty str."""
    if name is None or (isinstance(name, str) and name):
        return
    msg = f"name must be a non-empty str, or None for the default name; got {name!r}"
    raise ValueError(msg)


class StreamPipe(Pipeable[In, Out]):
    """A stage of stream processing. Subclass it, or use it as it is.

    Override ``process_item`` to transform items one by one (the runtime then
    moves items in chunks, applies ``concurrency``, pacing and the error policy),
    or ``process_stream`` to take over the whole stream.

    Args:
        config: a ``BackpressureConfig``. Giving one puts a bounded buffer in
            front of the pipe and runs its upstream in a task of its own.
        concurrency: how many ``process_item`` calls may be in flight at once.
        ordered: with ``concurrency > 1``, emit results in input order (default)
            or as they complete.
        on_error: the error policy for failed items (see ``pipeflow.streams``).
        name: the name in errors, metrics and logs; the class name by default.

    A ``process_stream`` override takes no error policy, concurrency or pacing
    (it makes the calls itself), and the source is acknowledged for its items
    only when its stream ends.

    Attributes:
        name: as given, or the class name.
        config: the ``BackpressureConfig``, or ``None`` for no buffer of its own.
        concurrency: the most ``process_item`` calls in flight.
        ordered: whether results keep input order under concurrency.
        on_error: the error policy.

    Raises:
        TypeError: for a ``config`` that is not a ``BackpressureConfig``, an
            ``ordered`` that is not a bool, a ``process_item`` override that is
            not ``async def``, or a ``process_stream`` override that is a plain
            generator.
        ValueError: for a ``concurrency`` that is not an int >= 1, a ``name``
            that is neither ``None`` nor a non-empty str, or a ``process_stream``
            override given ``concurrency > 1``, an ``on_error`` other than
            ``"raise"`` or a ``min_processing_time``.
    """

    def __init__(
        self,
        *,
        config: BackpressureConfig | None = None,
        concurrency: int = 1,
        ordered: bool = True,
        on_error: ErrorPolicy = "raise",
        name: str | None = None,
    ) -> None:
        if config is not None and not isinstance(config, BackpressureConfig):
            msg = f"config must be a BackpressureConfig, got {type(config).__name__}"
            raise TypeError(msg)
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            msg = f"concurrency must be an int >= 1, got {concurrency!r}"
            raise ValueError(msg)
        if not isinstance(ordered, bool):
            msg = f"ordered must be True or False, got {ordered!r:.60}"
            raise TypeError(msg)
        _check_name(name)
        cls = type(self)
        if cls.process_item is not StreamPipe.process_item and not inspect.iscoroutinefunction(
            cls.process_item
        ):
            msg = f"{cls.__name__}.process_item must be an async def (a coroutine function)"
            raise TypeError(msg)
        if inspect.isgeneratorfunction(cls.process_stream):
            msg = (
                f"{cls.__name__}.process_stream must be an async generator "
                "(async def with yield), not a generator"
            )
            raise TypeError(msg)
        if self._overrides_process_stream():
            # The runtime makes no process_item calls of its own for such a pipe:
            # options about those calls would silently do nothing.
            ignored = [
                text
                for text, given in (
                    ("concurrency", concurrency > 1),
                    ("on_error", on_error != "raise"),
                    (
                        "min_processing_time",
                        config is not None and config.min_processing_time > 0,
                    ),
                )
                if given
            ]
            if ignored:
                verb = "applies" if len(ignored) == 1 else "apply"
                msg = (
                    f"{' and '.join(ignored)} {verb} to process_item calls made by the runtime, "
                    f"but {type(self).__name__} overrides process_stream; handle failures and "
                    "pacing inside it"
                    + (" (use concurrency=1)" if "concurrency" in ignored else "")
                )
                raise ValueError(msg)
        self.config = config
        self.concurrency = concurrency
        self.ordered = ordered
        self.on_error = check_policy(on_error)
        self._name = name

    @property
    def name(self) -> str:
        return self._name or type(self).__name__

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

    async def process_item(self, item: In) -> Out:
        """Transform one item. The default returns it unchanged."""
        return item  # type: ignore[return-value]

    async def process_stream(self, stream: AsyncIterator[In]) -> AsyncIterator[Out]:
        """Transform the whole stream. The default applies ``process_item`` to each item."""
        async for item in stream:
            yield await self.process_item(item)

    # -- engine hooks: the ``Stage`` protocol (see ``_stage.py``) ---------------

    def _stages(self) -> list[StreamPipe[Any, Any]]:
        return [self]

    def _parts(self) -> list[tuple[Pipeable[Any, Any], int, int]]:
        return [(self, 0, 1)]

    def _overrides_process_stream(self) -> bool:
        return type(self).process_stream is not StreamPipe.process_stream

    def _process_stream_fn(self) -> ProcessStream | None:
        """The overridden ``process_stream`` this pipe runs (``None``: it runs none).

        Consecutive pipes that run one are chained in one task (see ``stream_stage``).
        """
        return self.process_stream if self._overrides_process_stream() else None

    def _fused_op(self) -> FusedOp | None:
        """Never: a pipe's ``process_item`` is a coroutine (operators may be fused)."""
        return None

    @property
    def _takes_slices(self) -> bool:
        """No: a pipe takes its input as it comes (batches and windows say yes)."""
        return False

    @property
    def _batches_by_count(self) -> int | None:
        """No: a pipe is no batcher (``BatchStreamPipe`` by count alone is)."""
        return None

    def _batch_step(self, ctx: StageContext) -> BatchStep:
        msg = f"{type(self).__name__} does not process its input in batches"
        raise TypeError(msg)

    @property
    def _wants_buffer(self) -> bool:
        """With a ``config`` or ``concurrency > 1``: the buffer bounds what waits
        for the pipe, and lets concurrent calls take new input as others finish."""
        return self.config is not None or self.concurrency > 1

    def _open(self, up: AsyncIterator[Chunk], ctx: StageContext) -> AsyncIterator[Chunk]:
        """The loop calling ``process_item``. (A pipe that runs an overridden
        ``process_stream`` is not opened: the run chains it, see ``stream_stage``.)"""
        return self._open_items(self.process_item, Kind.MAP, up, ctx)

    def _open_items(
        self, call: Any, kind: Kind, up: AsyncIterator[Chunk], ctx: StageContext
    ) -> AsyncIterator[Chunk]:
        """The loop calling ``call`` per item, its results taken as ``kind`` says:
        paced by ``min_processing_time``, concurrent with ``concurrency > 1``.
        For subclasses' ``_open``; not part of the ``Stage`` protocol."""
        if ctx.config.min_processing_time > 0:
            call = paced(call, ctx.config.min_processing_time, ctx.clock)
        if self.concurrency > 1:
            return concurrent_stage(
                call, kind, ctx, concurrency=self.concurrency, ordered=self.ordered
            )
        return item_stage(call, kind, up, ctx)


class Pipeline(Pipeable[In, Out]):
    """Pipes run one after the other; built by ``a | b | c`` and used like a pipe.

    Args:
        *pipes: the pipes and pipelines, in order; pipelines are flattened.
        name: the name in metrics and logs; the pipes' names joined by
            ``" | "`` by default.

    Raises:
        ValueError: without pipes, or for a name that is not a non-empty str.
        TypeError: for something that is not a pipe.
    """

    def __init__(self, *pipes: Pipeable[Any, Any], name: str | None = None) -> None:
        if not pipes:
            msg = "Pipeline needs at least one pipe"
            raise ValueError(msg)
        _check_name(name)
        stages: list[StreamPipe[Any, Any]] = []
        parts: list[tuple[Pipeable[Any, Any], int, int]] = [(self, 0, 0)]
        for p in pipes:
            if not isinstance(p, Pipeable):
                msg = f"Pipeline takes pipes, got {type(p).__name__}"
                raise TypeError(msg)
            base = len(stages)
            stages += p._stages()
            # The stages flatten; what each part covers is kept for its monitor.
            parts += [(q, base + start, base + stop) for q, start, stop in p._parts()]
        parts[0] = (self, 0, len(stages))
        self._pipes = tuple(stages)
        self._part_ranges = tuple(parts)
        self._name = name

    @property
    def name(self) -> str:
        return self._name or " | ".join(p.name for p in self._pipes)

    @property
    def pipes(self) -> tuple[StreamPipe[Any, Any], ...]:
        """The pipes in order, nested pipelines flattened."""
        return self._pipes

    def __repr__(self) -> str:
        return f"<Pipeline {self.name!r}>"

    def _stages(self) -> list[StreamPipe[Any, Any]]:
        return list(self._pipes)

    def _parts(self) -> list[tuple[Pipeable[Any, Any], int, int]]:
        return list(self._part_ranges)
