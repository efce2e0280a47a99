"""Formatting shared by the benchmark sections: rates, tables and target verdicts."""

from __future__ import annotations

import statistics
import sys
import textwrap
import time
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Target", "floor_work", "median", "print_table", "print_targets", "rate"]


def rate(per_second: float) -> str:
    """``1234567.0`` -> ``'1.23M'``; ``45678.0`` -> ``'45.7k'``."""
    if per_second >= 1e6:
        return f"{per_second / 1e6:.2f}M"
    if per_second >= 1e3:
        return f"{per_second / 1e3:.1f}k"
    return f"{per_second:.0f}"


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, left: int = 1) -> None:
    """A plain-text table: the first ``left`` columns left-aligned, the others right-aligned."""
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        padded = (
            c.ljust(w) if i < left else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )
        return "  ".join(padded).rstrip()

    print(line(headers))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print(line(r))


#: A ratio this close to its floor (relatively) is at the floor. On a shared
#: machine two runs of one piece of code, or of two that do the same work, differ
#: by this much from one process or round to the next.
AT_FLOOR = 0.95


@dataclass(frozen=True)
class Target:
    """One performance target and what was measured against it.

    ``measured`` is ``None`` when an implementation it needs was not run.
    ``higher_is_better`` is false for limits such as memory growth.

    ``floor``, for a ratio, is what the same hand-written code reaches once it
    does the least any implementation keeping pipeflow's guarantees must add,
    measured in the same run. A floor below the threshold, or above it by less
    than the noise of a run (``1 - AT_FLOOR``, relatively), says that no such
    implementation can meet the target by more than that noise: the verdict of
    a missed target is then FLOOR if the measured ratio is within the same
    margin of the floor, by the clock or, where instructions were counted
    (``work``), by the work done per item, which the machine's load does not
    move. A floor that clears the threshold by more leaves a miss a MISS.
    """

    name: str
    measured: float | None
    threshold: float
    unit: str = "x"
    higher_is_better: bool = True
    floor: float | None = None
    #: pipeflow's instructions per item over its floor's (``1.02``: 2 % more),
    #: when counted: work that, unlike time, the machine's load does not change.
    work: float | None = None

    @property
    def verdict(self) -> str:
        if self.measured is None:
            return "n/a"
        if not self.higher_is_better:
            return "PASS" if self.measured < self.threshold else "MISS"
        if self.measured >= self.threshold:
            return "PASS"
        # The floor's margin over the threshold, if any, and pipeflow's distance
        # below the floor must both be within the noise of a run.
        floor = self.floor
        if floor is not None and AT_FLOOR * floor < self.threshold:
            near = self.measured >= AT_FLOOR * floor
            light = self.work is not None and AT_FLOOR * self.work <= 1.0
            return "FLOOR" if near or light else "MISS"
        return "MISS"

    def row(self) -> list[str]:
        sign = ">=" if self.higher_is_better else "<"
        fmt = "{:.2f}" if self.unit == "x" else "{:.1f}"
        got = "not run" if self.measured is None else fmt.format(self.measured) + f" {self.unit}"
        floor = "" if self.floor is None else fmt.format(self.floor) + f" {self.unit}"
        wanted = f"{sign} {fmt.format(self.threshold)} {self.unit}"
        work = "" if self.work is None else f"{self.work - 1:+.1%}"
        return [self.name, wanted, got, floor, work, self.verdict]


def print_targets(targets: Sequence[Target]) -> None:
    headers = ["target", "wanted", "measured", "floor", "work", "verdict"]
    print_table(headers, [t.row() for t in targets])
    if any(t.verdict == "FLOOR" for t in targets):
        margin = f"{1 - AT_FLOOR:.0%}"
        note = (
            f"FLOOR: missed, but pipeflow is within {margin} of the target's floor (the"
            " hand-written code doing the least that pipeflow must add to it: per-stage"
            " counts, the calls of the user's methods; in this run), by the clock or by"
            " the instructions it runs per item ('work', counted by cachegrind), and that"
            f" floor is below the target or above it by less than {margin}: what one piece"
            " of code varies by between processes and rounds on a shared machine."
        )
        print(textwrap.fill(note, 80))


#: Items in the two runs whose difference ``floor_work`` divides by.
WORK_ITEMS = (20_000, 60_000)


def floor_work(pairs: Sequence[tuple[str, str]], count: bool) -> dict[str, float]:
    """For each ``(pipeflow's key, its floor's key)``, pipeflow's instructions per
    item over the floor's, by ``count.py`` (under cachegrind). Empty when not
    ``count``, or when valgrind is not installed (said on stderr)."""
    if not count or not pairs:
        return {}
    from count import instructions_per_item  # it imports the sections: not at the top

    started = time.perf_counter()
    got = instructions_per_item([k for pair in pairs for k in pair], *WORK_ITEMS)
    if not got:
        print("  (valgrind is not installed: no instruction counts)", file=sys.stderr)
        return {}
    print(f"  instructions counted: {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return {key: got[key] / got[floor] for key, floor in pairs}
