"""Planning a run: where the buffers go, and which stages run together.

The plan reads the stages through the ``Stage`` protocol only. It cuts the
pipeline into segments at every *boundary* (:func:`boundary_before`): a
``ChunkBuffer`` that a feeder task fills with everything upstream of it. Within
a segment, stages run in one task, grouped (:func:`plan`):

- ``FUSED``: two or more adjacent fusable operators, compiled into one loop;
- ``CHAIN``: adjacent ``process_stream`` overrides, chained item by item;
- ``SINGLE``: any other stage, opened on its own (``Stage._open``);
- ``TAIL``: the stages from ``tail`` on, which the consumer's own generator runs:
  fused operators (:func:`direct_tail`) or a ``process_stream`` chain
  (:func:`chain_tail`).

For example, ``map(f) | filter(g) | WindowedStreamPipe(...) | map(h)``, read
by ``async for``::

    source -> [map(f) filter(g): FUSED] -> buffer -> [windowed: SINGLE] -> [map(h): TAIL]
              '------------ feeder task -----------'  '--------- consumer's task --------'

A plan is data; the run (``_run.Run.open``) builds the loops it describes.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from ._stage import Stage

__all__ = ["Group", "How", "boundary_before", "chain_tail", "direct_tail", "plan"]


def boundary_before(stages: Sequence[Stage], i: int) -> bool:
    """Whether stage ``i`` gets a buffer in front of it, and its upstream a task.

    Besides a stage that wants one (``Stage._wants_buffer``), a stage after an
    overridden ``process_stream`` gets one: such a stage emits item by item, and
    a buffer lets what follows take its output in chunks without holding any of
    it back. Another ``process_stream`` override does not: it is chained to the
    first and reads its output item by item anyway.
    """
    return stages[i]._wants_buffer or (
        i > 0
        and stages[i - 1]._process_stream_fn() is not None
        and stages[i]._process_stream_fn() is None
    )


def chain_tail(stages: Sequence[Stage]) -> int | None:
    """Where the chain of ``process_stream`` overrides that ends the pipeline
    begins, if one does: the consumer's generator runs it and yields each result
    of the last as it comes (see ``_consumers.iterate_chain``)."""
    start = len(stages)
    while start > 0 and stages[start - 1]._process_stream_fn() is not None:
        if start < len(stages) and boundary_before(stages, start):
            break
        start -= 1
    return start if start < len(stages) else None


def direct_tail(stages: Sequence[Stage]) -> int | None:
    """Where the fused operators that end the pipeline begin, if any do.

    The consumer's own generator runs them and yields each result as it comes
    (see ``_fusion.direct_consumer``); no boundary may sit between them.
    """
    tail = len(stages)
    while tail > 0 and stages[tail - 1]._fused_op() is not None:
        if tail < len(stages) and boundary_before(stages, tail):
            break
        tail -= 1
    return tail if tail < len(stages) else None


class How(enum.Enum):
    """How the stages of a :class:`Group` run."""

    FUSED = "fused"  # one compiled loop (fused_stage)
    CHAIN = "chain"  # process_stream overrides chained in one task (stream_stage)
    SINGLE = "single"  # one stage, opened on its own (Stage._open)
    TAIL = "tail"  # run by the consumer's generator itself


@dataclass(frozen=True, slots=True)
class Group:
    """Stages ``start:stop`` of a pipeline, run together as ``how`` says.

    ``boundary``: a buffer sits in front of stage ``start`` (the group's first
    stage reads it; everything before runs in a feeder task). A boundary only
    ever falls at the start of a group.
    """

    how: How
    start: int
    stop: int
    boundary: bool


def plan(stages: Sequence[Stage], tail: int) -> list[Group]:
    """The groups the stages run in, in order, covering every stage once.

    The stages from ``tail`` on (none when ``tail == len(stages)``) form one
    ``TAIL`` group: the caller found them with :func:`direct_tail` or
    :func:`chain_tail`. Before it, a fusable stage is fused with the fusable
    stages after it up to the next boundary; a lone one is opened on its own.
    """
    n = len(stages)
    bounds = [boundary_before(stages, i) for i in range(n)]
    fusable = [s._fused_op() is not None for s in stages]
    chained = [s._process_stream_fn() is not None for s in stages]
    groups: list[Group] = []
    i = 0
    while i < n:
        start = i
        if i >= tail:
            how, i = How.TAIL, n
        elif fusable[i] and i + 1 < tail and fusable[i + 1] and not bounds[i + 1]:
            how, i = How.FUSED, _extend(fusable, bounds, i, tail)
        elif chained[i]:
            how, i = How.CHAIN, _extend(chained, bounds, i, tail)
        else:
            how, i = How.SINGLE, i + 1
        groups.append(Group(how, start, i, bounds[start]))
    return groups


def _extend(alike: list[bool], bounds: list[bool], i: int, tail: int) -> int:
    """The end of the run of ``alike`` stages from ``i`` on, stopping at a
    boundary and at ``tail``."""
    i += 1
    while i < tail and alike[i] and not bounds[i]:
        i += 1
    return i
