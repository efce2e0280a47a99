"""Durations and instants as whole microseconds, the unit timed stages reckon in.

Two kinds of input, two contracts:

- A *duration option* a user configures (``max_wait=``, ``window_size=``): a
  ``timedelta`` or a real number of seconds, checked when the pipe is built.
  ``duration_us`` and ``duration_seconds`` validate it and say what was wrong
  in an error that names the option.
- A number of seconds pipeflow already knows to be a finite real number (an
  epoch time checked beforehand, a measured delay): ``seconds_to_us`` converts
  it without checks, fast enough for a per-item loop, and ``us_to_seconds``
  converts back.

Seconds become microseconds by ``round(seconds * 1e6)``: round half to even on
the float product, so every path that converts seconds (validated or not)
lands on the same microsecond. A ``timedelta`` is exact: its microseconds.
"""

from __future__ import annotations

import math
from datetime import timedelta

__all__ = ["US_PER_SECOND", "duration_seconds", "duration_us", "seconds_to_us", "us_to_seconds"]

US_PER_SECOND = 1_000_000
_US = timedelta(microseconds=1)


def seconds_to_us(seconds: float) -> int:
    """Seconds (an int or a float) as whole microseconds: ``round(seconds * 1e6)``.

    Unchecked, for values known to be finite real numbers. An int of seconds
    within ``datetime``'s range converts exactly. ``ValueError`` for a NaN,
    ``OverflowError`` for an infinity or an int too large for a float.
    """
    return round(seconds * 1e6)


def us_to_seconds(us: int) -> float:
    """Whole microseconds as seconds (a float)."""
    return us / US_PER_SECOND


def duration_us(
    value: timedelta | float, option: str, *, allow_zero: bool = False, allow_negative: bool = False
) -> int:
    """A duration option, given as a ``timedelta`` or seconds, checked, in whole microseconds.

    Float seconds are rounded as ``seconds_to_us`` rounds them, int seconds
    convert exactly, and a ``timedelta`` is exact (it holds no less than a
    microsecond). By default the duration
    must be positive (at least one microsecond once converted); ``allow_zero``
    admits zero, ``allow_negative`` any value.

    Args:
        value: the duration as given.
        option: the option's name, for the error message.
        allow_zero: whether zero is allowed.
        allow_negative: whether any value, negative and zero included, is allowed.

    Raises:
        TypeError: for anything but a ``timedelta`` or a real number (a bool is not one).
        ValueError: for a NaN or an infinity, or a duration below what ``option`` allows.
    """
    bound = "" if allow_negative else " >= 0" if allow_zero else " > 0"
    if isinstance(value, timedelta):
        us = value // _US
    elif isinstance(value, int | float) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            msg = f"{option} must be a finite number of seconds{bound}, got {value!r}"
            raise ValueError(msg)
        us = round(value * US_PER_SECOND)  # an int exactly, a float as seconds_to_us
    else:
        msg = f"{option} must be a timedelta or a number of seconds, got {value!r:.60}"
        raise TypeError(msg)
    if (us < 0 and not allow_negative) or (us == 0 and not (allow_zero or allow_negative)):
        if value and not us:
            bound += " (at least one microsecond)"
        msg = f"{option} must be{bound}, got {value!r}"
        raise ValueError(msg)
    return us


def duration_seconds(
    value: timedelta | float, option: str, *, allow_zero: bool = False, allow_negative: bool = False
) -> float:
    """``duration_us`` as seconds: the same checks, the value at microsecond resolution."""
    us = duration_us(value, option, allow_zero=allow_zero, allow_negative=allow_negative)
    return us_to_seconds(us)
