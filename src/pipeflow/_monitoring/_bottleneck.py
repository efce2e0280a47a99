"""Which stage limits a pipeline's throughput, read from per-stage backpressure.

A stage is *in backpressure* while it waits for its downstream to take output:
for room in the next stage's input buffer, or, for the last stage, for the code
iterating over the stream (the consumer) to take the next result. A stage that
waits often is held back by something after it; a stage that hardly waits is
limited by its own speed or by its input. So the stage that limits throughput is
the one its upstream waits for most while it does not wait itself:

- Follow the stages in order, with the consumer after the last one as a stage
  that never waits. For each stage and its downstream, the *drop* is the
  stage's backpressure minus its downstream's.
- The bottleneck is the downstream of the largest drop (the first, on a tie),
  if that drop is at least :data:`MIN_DROP`: its upstream spent at least that
  share of the recent time waiting for it. If it is the consumer, the code
  iterating over the stream is the bottleneck.
- Otherwise no stage is held back by a slower one downstream: the pipeline
  keeps up with what reaches it, and the source (or the first stage, which
  reads it and is never held back by it) sets the pace.

Stages fused into one task (those without an input buffer of their own) wait
together, so they share one backpressure figure; the rule names the first of
them. The figures are over each stage's recent window (``StageMetrics.window``).
The rule reads the stages of one pipeline; a monitor set on several pipes lists
their stages one after another, and the rule would read them as one chain.

Nothing here imports ``rich``: the rule is plain code over ``StageMetrics``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .._core._stats import StageMetrics

__all__ = ["MIN_DROP", "Bottleneck", "describe", "find_bottleneck", "verdict"]

#: The least share of its recent time the upstream must have waited for the
#: bottleneck, more than the bottleneck itself waited for its own downstream.
MIN_DROP = 0.25


@dataclass(frozen=True, slots=True)
class Bottleneck:
    """The stage that holds back the stages before it.

    Attributes:
        stage: its name, or ``None`` for the consumer of the stream.
        position: its index in the stages read, ``len(stages)`` for the consumer.
        upstream: the name of the stage right before it, the one held back.
        waited: the upstream's backpressure (0.0-1.0).
        window: seconds of recent time that figure covers.
    """

    stage: str | None
    position: int
    upstream: str
    waited: float
    window: float


def find_bottleneck(stages: Sequence[StageMetrics]) -> Bottleneck | None:
    """The bottleneck of a pipeline's ``stages`` by the rule above, or ``None``."""
    best: Bottleneck | None = None
    best_drop = MIN_DROP
    for i, up in enumerate(stages):
        down = stages[i + 1] if i + 1 < len(stages) else None
        drop = up.backpressure - (down.backpressure if down is not None else 0.0)
        if drop >= best_drop and (best is None or drop > best_drop):
            best_drop = drop
            name = down.name if down is not None else None
            best = Bottleneck(name, i + 1, up.name, up.backpressure, up.window)
    return best


def describe(
    bottleneck: Bottleneck | None, stages: Sequence[StageMetrics], *, when: str | None = None
) -> str:
    """One sentence naming the bottleneck and the evidence for it (plain text);
    ``when`` (say, "at 9 of 10 refreshes") goes in brackets after the name."""
    head, evidence = verdict(bottleneck, stages, when=when)
    return f"{head}: {evidence}" if evidence else head


def verdict(
    bottleneck: Bottleneck | None, stages: Sequence[StageMetrics], *, when: str | None = None
) -> tuple[str, str]:
    """:func:`describe`'s sentence in two parts: the verdict, and the evidence."""
    if not stages:
        return "No stage has run yet.", ""
    at = f" ({when})" if when else ""
    if bottleneck is None:
        return f"No bottleneck{at}", (
            "no stage waited long for a slower one downstream; "
            f"the source, or the first stage {stages[0].name!r}, sets the pace."
        )
    waited = f"{bottleneck.waited:.0%} of the last {bottleneck.window:.1f} s"
    if bottleneck.stage is None:
        return f"Bottleneck: the code consuming the stream{at}", (
            f"{bottleneck.upstream!r} waited for it to take results {waited}."
        )
    return f"Bottleneck: {bottleneck.stage!r}{at}", (
        f"{bottleneck.upstream!r} waited for room in its input {waited}."
    )
