"""The contract between the engine and a stage, and between a run and its pipe.

The planner (``_plan.py``) and the run (``_run.py``) read a pipeline through
these two protocols only, never through ``StreamPipe``'s internals:

- :class:`Stage`: one stage of a pipeline. ``StreamPipe`` implements it, and
  through it every operator, ``WindowedStreamPipe`` and ``BatchStreamPipe``,
  which override some of its hooks.
- :class:`Composition`: what a ``Stream`` reads of the pipe or pipeline it runs:
  its stages, and which monitor watches which of them.

The members with a leading underscore are hooks: the engine calls them, users
neither call nor (outside pipeflow) override them. Each member's docstring is
its contract: what the engine may assume of what it reads, and when it reads it.
Every member is read while a run is planned and opened, never per item.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from ._buffer import Chunk
    from ._config import BackpressureConfig
    from ._errors import StreamError
    from ._policies import ErrorPolicy
    from ._stages import Kind, StageContext
    from ._stats import StatsSink
    from ._stream_stage import ProcessStream

__all__ = ["BatchStep", "Composition", "FusedOp", "Stage"]

#: A stage the engine may fuse: its sync function, and how a result becomes output.
FusedOp = tuple[Callable[[Any], Any], "Kind"]
#: A batcher's processing of one batch: its results, and the error that must end
#: the stream after them, if any.
BatchStep = Callable[[list[Any]], Awaitable[tuple[list[Any], "StreamError | None"]]]


@runtime_checkable
class Stage(Protocol):
    """One stage of a pipeline, as the engine sees it.

    The engine runs a stage in one of three ways, chosen by the hooks below:

    1. Fused: ``_fused_op()`` gives a sync function that the engine calls inside
       one compiled loop with its fusable neighbours (see ``_fusion.py``).
    2. Chained: ``_process_stream_fn()`` gives an async generator function that
       the engine chains with adjacent ones, item by item (see ``_stream_stage``).
    3. Opened: otherwise ``_open(up, ctx)`` gives the stage's own loop over chunks.

    Whatever the way, a stage whose ``_wants_buffer`` is true gets a
    ``ChunkBuffer`` in front of it, and everything upstream runs in a task of
    its own that fills it.
    """

    @property
    def name(self) -> str:
        """The stage's name in errors, metrics, logs and task names. Read once per run."""
        ...

    @property
    def config(self) -> BackpressureConfig | None:
        """The stage's flow control; ``None`` for the defaults.

        The engine sizes the stage's buffer by it (when it has one) and hands it
        to the stage in ``StageContext.config`` (the defaults when ``None``).
        """
        ...

    @property
    def on_error(self) -> ErrorPolicy:
        """The error policy the engine binds to the stage for one run
        (``StageContext.errors``). A policy that may send to a dead-letter pipe
        makes the run look for that pipe's failure at each delivery."""
        ...

    @property
    def _wants_buffer(self) -> bool:
        """Whether the stage runs decoupled from its upstream, behind a buffer of
        its own: it has a ``config``, runs calls concurrently, or must act while no
        input arrives (a timer). Then ``up`` iterates that buffer's chunks, and
        ``StageContext.buffer`` is the buffer itself, for a stage that waits on it
        and on other events at once (a timer, calls that finish).

        The planner may also put a buffer in front of a stage that does not want
        one (see ``_plan.boundary_before``); the stage then sees it the same way.
        """
        ...

    @property
    def _takes_slices(self) -> bool:
        """Whether, first in a pipeline, the stage wants its input in long slices
        (up to ``SLICE_CHUNK`` items, more than ``MAX_CHUNK``): it cuts its input
        into pieces of its own (batches, windows), and fewer chunks save work.
        Only the first stage's counts, and only in an untimed run."""
        ...

    @property
    def _batches_by_count(self) -> int | None:
        """The batch size, if running the stage is exactly: cut the input into
        consecutive lists of that many items (the last one shorter), in order,
        and pass each to the stage's ``_batch_step``. The engine may then run a
        stage that is the whole pipeline over a source it reads item by item,
        in the consumer's own generator. ``None``: the stage is not one."""
        ...

    def _fused_op(self) -> FusedOp | None:
        """The stage as one sync function applied per item, if it is one.

        Returning ``(fn, kind)`` promises that running the stage is exactly:
        call ``fn(item)`` once per item, in order, on the event loop, and treat
        the result as ``kind`` says (a ``MAP`` result is the output; a ``FILTER``
        result keeps the item or not); and that the stage has no buffer, no
        concurrency and no pacing of its own. Adjacent such stages are then
        compiled into one loop. ``None``: the stage runs by one of the other ways.
        """
        ...

    def _process_stream_fn(self) -> ProcessStream | None:
        """The async generator function that is the whole stage, if it is one.

        Given an async iterator of the stage's input items, it yields the
        stage's outputs; it may hold items as long as it likes. The engine calls
        it once per run, chains it with adjacent ones in one task, counts what
        passes between them and closes every generator of the chain. ``None``:
        the stage is opened with ``_open`` (or fused).
        """
        ...

    def _open(self, up: AsyncIterator[Chunk], ctx: StageContext) -> AsyncIterator[Chunk]:
        """Start the stage's loop for one run and return its output chunks.

        ``up`` yields the input chunks (``(items, mark)``; with a buffer, that
        buffer's, see ``_wants_buffer``). Each output chunk's mark is the source
        position whose items' results are all in this or earlier chunks.
        The loop counts into ``ctx.stats``, sends failures to ``ctx.errors``, and
        must be an async generator (or have ``aclose``): the run closes it, from
        the last stage to the first, however the run ends. Called once per run,
        only for a stage that is neither fused nor chained.
        """
        ...

    def _batch_step(self, ctx: StageContext) -> BatchStep:
        """For a stage with ``_batches_by_count``: the function that processes one
        batch in the run ``ctx`` belongs to (an untimed one). It returns the
        batch's results, and the error that must end the stream after them (the
        policy gave up on the batch or an item of it); it counts the results and
        the failures into ``ctx.stats``, the engine the items in. Called once per
        run, instead of ``_open``.
        """
        ...


class Composition(Protocol):
    """What a ``Stream`` reads of the pipe or pipeline it runs (``Pipeable``)."""

    @property
    def name(self) -> str:
        """The run's name in metrics and logs."""
        ...

    @property
    def _monitor(self) -> StatsSink | None:
        """The monitor told of every run of this pipe or pipeline, if any."""
        ...

    def _stages(self) -> Sequence[Stage]:
        """The stages in order, nested pipelines flattened; a new list per call."""
        ...

    def _parts(self) -> Sequence[tuple[Composition, int, int]]:
        """This composition and every one composed into it, each with the range
        ``[start, stop)`` of stages it covers, outermost first: whose monitor sees
        what."""
        ...
