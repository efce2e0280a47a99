"""Conversions between datetimes, seconds and the whole microseconds windows use."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = ["EPOCH", "from_us", "seconds_to_us", "to_us"]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def to_us(value: Any) -> int:
    """An event time (aware datetime, or epoch seconds) as microseconds since the epoch."""
    if type(value) is int:
        return value * 1_000_000
    if type(value) is float:
        if not math.isfinite(value):
            msg = f"an event time must be finite, got {value!r}"
            raise ValueError(msg)
        return round(value * 1e6)  # the same rounding as the windowed hot loops
    if isinstance(value, datetime):
        if value.tzinfo is None:
            msg = f"an event time must be timezone-aware, got naive {value!r}"
            raise ValueError(msg)
        return (value - EPOCH) // _US
    if isinstance(value, int | float) and not isinstance(value, bool):
        return to_us(float(value))
    msg = (
        "timestamp= must return a timezone-aware datetime or epoch seconds, "
        f"got {type(value).__name__}: {value!r:.60}"
    )
    raise TypeError(msg)


def from_us(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def seconds_to_us(
    value: timedelta | float, field: str, *, allow_zero: bool = False, allow_negative: bool = False
) -> int:
    """A duration given as a timedelta or seconds, validated, in whole microseconds.

    ``TypeError`` for anything but a timedelta or a real number; ``ValueError``
    for a value that is not finite, or below what ``field`` allows.
    """
    bound = "" if allow_negative else " >= 0" if allow_zero else " > 0"
    if isinstance(value, timedelta):
        us = value // _US
    elif isinstance(value, int | float) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            msg = f"{field} must be a finite number of seconds{bound}, got {value!r}"
            raise ValueError(msg)
        us = round(value * 1_000_000)
    else:
        msg = f"{field} must be a timedelta or a number of seconds, got {value!r:.60}"
        raise TypeError(msg)
    if (us < 0 and not allow_negative) or (us == 0 and not (allow_zero or allow_negative)):
        if value and not us:
            bound += " (at least one microsecond)"
        msg = f"{field} must be{bound}, got {value!r}"
        raise ValueError(msg)
    return us
