"""How a run stops: closing everything it started, and counting what it abandons.

However a run ends, :func:`shutdown` cancels its feeder tasks, closes its loops
from the last to the first, and lets dead-letter pipes deliver what they were
given. A run stopped before its end (an error, a break, a cancellation) first
counts, per stage, the items it held that will not be delivered, and says so in
one log line (:func:`report_abandoned`).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from ._buffer import ChunkBuffer
from ._policies import log

if TYPE_CHECKING:
    from ._dead_letters import DeadLetterStreams
    from ._sources import AsyncClosable
    from ._stats import RunStats, StageStats

__all__ = ["report_abandoned", "shutdown"]


async def shutdown(
    tasks: list[asyncio.Task[None]],
    closables: list[AsyncClosable],
    dead_letters: DeadLetterStreams,
    *,
    drain_dead_letters: bool,
) -> None:
    """Cancel the run's tasks, close its generators from the last to the first, and
    let dead-letter pipes deliver what they were given (unless the run is cancelled):
    a record counted as dead-lettered must reach its sink, however the run ends.
    """
    first: BaseException | None = None
    for t in tasks:
        t.cancel()
    if tasks:
        try:
            await asyncio.gather(*tasks, return_exceptions=True)
        except asyncio.CancelledError as exc:  # cancelled again while closing:
            first = exc  # close everything all the same, then let it through
            await asyncio.gather(*tasks, return_exceptions=True)
    for g in reversed(closables):
        try:
            await g.aclose()
        except (Exception, asyncio.CancelledError) as exc:
            first = first or exc
    try:
        if drain_dead_letters and not isinstance(first, asyncio.CancelledError):
            await dead_letters.finish()
    except (Exception, asyncio.CancelledError) as exc:
        first = first or exc
    finally:
        await dead_letters.cancel()
    if first is not None:
        raise first


def report_abandoned(
    run: RunStats,
    stopped_by: BaseException | None,
    *,
    read: int,
    untaken: int,
    unacked: int | None,
) -> None:
    """Count in each stage's ``abandoned`` what it holds, and log one line.

    ``read``: the items read from the source; ``untaken``: results at hand the
    consumer was not given; ``unacked``: the items read and not acknowledged
    (``None`` for a source that takes no acknowledgements).
    """
    held: dict[str, int] = {}
    total = 0
    stages = run.stages
    for i, stats in enumerate(stages):
        n = _held_by(stats, stages[i + 1 :], held)
        stats.abandoned += n
        total += n
    if isinstance(stopped_by, asyncio.CancelledError):
        how = "was cancelled"
    elif isinstance(stopped_by, GeneratorExit) or stopped_by is None:
        how = "was closed before its end"
    else:
        how = f"failed ({type(stopped_by).__name__})"
    where = ", ".join(f"{n} {place}" for place, n in held.items() if n)
    line = f"run of {run.name!r} {how} after reading {_items(read)} from the source"
    line += f"; {_items(total)} held were not delivered ({where})" if total else ""
    if untaken:
        line += f"; {untaken} more at hand were not given to the consumer"
    if unacked is not None:
        line += f"; {_items(unacked)} read were not acknowledged"
    (log.warning if total or untaken else log.info)("%s", line)


def _held_by(stats: StageStats, later: list[StageStats], held: dict[str, int]) -> int:
    """The items a stage holds, in its buffer and in itself, added to ``held`` by place."""
    buffer = stats.buffer
    n = 0
    if isinstance(buffer, ChunkBuffer):
        n = buffer.queued
        held["in buffers"] = held.get("in buffers", 0) + n
        # What the stages after the buffer took out is in progress, unless one of
        # them holds items itself: they went there (or on) already.
        segment = [stats]
        for s in later:
            if s.buffer is not None:
                break
            segment.append(s)
        if all(s.held is None for s in segment):
            n += buffer.taken
            held["in progress"] = held.get("in progress", 0) + buffer.taken
    if stats.held is not None:
        mine = stats.held()
        held[stats.held_in] = held.get(stats.held_in, 0) + mine
        n += mine
    return n


def _items(n: int) -> str:
    return f"{n} item" if n == 1 else f"{n} items"
