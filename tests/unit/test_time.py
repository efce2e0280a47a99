"""Durations and seconds as whole microseconds: the contracts of ``pipeflow._core._time``."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from pipeflow._core._time import duration_seconds, duration_us, seconds_to_us, us_to_seconds
from pipeflow._windows._time import to_us


def test_duration_us_converts_each_kind_of_duration() -> None:
    """A timedelta is exact, int seconds are exact, float seconds round half to even."""
    assert 1_500_000 == duration_us(timedelta(seconds=1.5), "d")
    assert 10**30 * 1_000_000 == duration_us(10**30, "d")
    assert 2 == duration_us(2.5e-6, "d")  # 2.5 microseconds: half to even
    assert 0.25 == duration_seconds(timedelta(milliseconds=250), "d")


@pytest.mark.parametrize(
    ("value", "kwargs", "error", "message"),
    [
        ("1s", {}, TypeError, "max_wait must be a timedelta or a number of seconds, got '1s'"),
        (True, {}, TypeError, "max_wait must be a timedelta or a number of seconds, got True"),
        (float("nan"), {}, ValueError, "max_wait must be a finite number of seconds > 0, got nan"),
        (0, {}, ValueError, "max_wait must be > 0, got 0"),
        (1e-7, {}, ValueError, r"max_wait must be > 0 \(at least one microsecond\), got 1e-07"),
        (-1, {"allow_zero": True}, ValueError, "max_wait must be >= 0, got -1"),
    ],
)
def test_duration_us_names_the_option_what_it_expected_and_what_came(
    value: Any, kwargs: dict[str, bool], error: type[Exception], message: str
) -> None:
    """A bad duration raises an error naming the option, the bound and the value."""
    with pytest.raises(error, match=f"^{message}$"):
        duration_us(value, "max_wait", **kwargs)


def test_duration_us_allows_zero_and_negative_durations_only_when_asked() -> None:
    """allow_zero admits 0; allow_negative admits any value."""
    assert 0 == duration_us(0, "d", allow_zero=True)
    assert -8 * 3600 * 1_000_000 == duration_us(timedelta(hours=-8), "d", allow_negative=True)


@pytest.mark.parametrize("seconds", [0, 1.5, -0.25, 1_700_000_000.123456, 253_402_300_799])
def test_seconds_to_us_lands_where_event_times_do(seconds: float) -> None:
    """Unchecked seconds convert to the microsecond a checked event time gives,
    and back to the seconds they came from (to the microsecond)."""
    us = seconds_to_us(seconds)
    assert to_us(seconds) == us
    assert seconds == pytest.approx(us_to_seconds(us), abs=1e-6)
