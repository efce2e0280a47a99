"""The frame every consumer generator runs in: one source of truth for a run's life.

A consumer generator is the async generator a ``Stream`` hands to the consumer's
``async for``. There are four: the general one and the ``process_stream`` chain
(``_consumers.py``), and the direct consumers compiled for fused operators
(``_fusion.py``). Each is written in this frame, and nothing else opens, ends
or closes a run::

    async def consumer(run, ...):
        if run.started:          # closed, or iterated, before: no second run
            return
        async with consuming(run):
            up, ops = run.open(...)      # start the stages; the body's first step
            ...                          # yield results; run.delivered(mark) as
                                         # the consumer takes them

``consuming(run)`` binds nothing (``as`` gives ``None``). On leaving it:

- at the end of the body: ``await run.end()`` (last acknowledgements, dead-letter
  pipes finished), then ``await run.close(stopped_by=None)``;
- on an error, a ``break`` (``GeneratorExit`` at a ``yield``) or a cancellation,
  or when ``run.end()`` itself fails: ``await run.close(stopped_by=exc)`` and the
  exception goes on.

The frame costs nothing per item: it is entered once per run.
"""

from __future__ import annotations

from types import TracebackType
from typing import Protocol

__all__ = ["ClosingRun", "consuming"]


class ClosingRun(Protocol):
    """What the frame needs of a run (``_run.Run``)."""

    @property
    def started(self) -> bool:
        """Whether the run was opened (or closed before it began)."""
        ...

    async def end(self) -> None:
        """The input is used up and every result taken: settle what is owed."""

    async def close(self, *, stopped_by: BaseException | None) -> None:
        """Stop every task and generator of the run; ``stopped_by`` is what ended
        it early (``None`` at its end)."""


class consuming:
    """The async context manager that ends and closes a run (see the module docstring)."""

    __slots__ = ("_run",)

    def __init__(self, run: ClosingRun) -> None:
        self._run = run

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        run = self._run
        if exc is None:
            try:
                await run.end()
            except BaseException as failure:
                await run.close(stopped_by=failure)
                raise
        await run.close(stopped_by=exc)
