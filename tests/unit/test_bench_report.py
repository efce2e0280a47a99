"""The benchmark report's verdicts: when a missed target counts as at its floor."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from bench_report import AT_FLOOR, Target


@pytest.mark.parametrize(
    ("measured", "floor", "verdict"),
    [
        (0.96, None, "PASS"),
        (0.95, 0.90, "PASS"),  # met: the floor does not matter
        (0.94, None, "MISS"),
        # The floor is below the target: pipeflow within the margin of it is at it.
        (0.58, 0.58, "FLOOR"),
        (0.60, 0.58, "FLOOR"),
        (0.56, 0.58, "FLOOR"),
        (0.55, 0.58, "MISS"),
        # The floor clears the target by less than the margin: as above.
        (0.93, 0.97, "FLOOR"),
        (0.92, 0.97, "MISS"),
        # The floor clears it by more: a miss is a miss, however close to the floor.
        (0.94, 1.00, "MISS"),
        (0.949, 1.01, "MISS"),
    ],
)
def test_verdict_of_a_ratio(measured: float, floor: float | None, verdict: str) -> None:
    assert Target("t", measured, 0.95, floor=floor).verdict == verdict


@pytest.mark.parametrize(
    ("measured", "floor", "work", "verdict"),
    [
        # The clock put pipeflow further below the floor than the margin, but it
        # runs no more than the margin's worth of instructions beyond the floor's.
        (0.88, 0.98, 1.02, "FLOOR"),
        (0.88, 0.98, 1.05, "FLOOR"),
        (0.88, 0.98, 1.06, "MISS"),
        (0.93, 0.97, 1.30, "FLOOR"),  # the clock alone is enough
        # Work does not make a floor that clears the target by more than the margin.
        (0.90, 1.01, 1.00, "MISS"),
        (0.96, 0.98, 1.30, "PASS"),
        (0.90, None, 1.00, "MISS"),
    ],
)
def test_verdict_with_instructions_counted(
    measured: float, floor: float | None, work: float, verdict: str
) -> None:
    assert Target("t", measured, 0.95, floor=floor, work=work).verdict == verdict


def test_work_is_shown_as_the_excess_over_the_floor() -> None:
    assert Target("t", 0.9, 0.95, floor=0.97, work=1.018).row()[4] == "+1.8%"
    assert Target("t", 0.9, 0.95, floor=0.97).row()[4] == ""


def test_the_margin_is_five_percent() -> None:
    # The cases above are written for it; the report's note prints it.
    assert AT_FLOOR == 0.95


def test_limits_and_missing_measurements() -> None:
    assert Target("rss", 0.2, 5.0, unit="MB", higher_is_better=False).verdict == "PASS"
    assert Target("rss", 5.0, 5.0, unit="MB", higher_is_better=False).verdict == "MISS"
    assert Target("t", None, 0.95, floor=0.97).verdict == "n/a"
