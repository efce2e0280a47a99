"""The broker benchmarks' check of an output: it must catch every way a run can go wrong."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from pathlib import Path

import orjson
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from brokerbench.workload import (
    check_outputs,
    expected_count,
    input_values,
    transform,
)

N = 1000


def outputs(n: int) -> list[bytes]:
    return [data for v in input_values(n) if (data := transform(v)) is not None]


def test_expected_count_is_the_number_of_amounts_above_ten() -> None:
    for n in [0, 1, 11, 12, 96, 97, 98, 200, 1000, 200_000]:
        assert sum(1 for i in range(n) if i % 97 > 10) == expected_count(n)
    assert 177_318 == expected_count(200_000)


def test_the_hand_written_step_passes() -> None:
    got = outputs(N)
    assert expected_count(N) == len(got)
    assert check_outputs(got, N) is None
    assert check_outputs(reversed(got), N) is None  # order is not checked


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda out: out[1:], "missing"),
        (lambda out: [*out, out[0]], "duplicate"),
        (
            lambda out: [*out, orjson.dumps({"id": 3, "user": "u3", "amount": 3, "cents": 300})],
            "expected",
        ),
        (lambda out: [out[0].replace(b'"cents":', b'"cent":'), *out[1:]], "expected"),
        (lambda out: [b'{"user":"u1"}', *out[1:]], "integer id"),
    ],
)
def test_a_wrong_output_is_named(
    change: Callable[[list[bytes]], Iterable[bytes]], says: str
) -> None:
    wrong = check_outputs(change(outputs(N)), N)
    assert wrong is not None
    assert says in wrong
