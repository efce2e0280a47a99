"""Event times: aware datetimes or epoch seconds, as the whole microseconds windows use.

Durations and plain seconds convert in ``pipeflow._core._time``; what is here
knows about ``datetime``: the range it can hold, and turning microseconds back
into one.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

from .._core._time import seconds_to_us

__all__ = ["EPOCH", "MAX_US", "MIN_US", "from_us", "to_us"]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
#: The event times a ``datetime`` can hold (years 1 to 9999 in UTC), in microseconds.
MIN_US = (datetime.min.replace(tzinfo=UTC) - EPOCH) // _US
MAX_US = (datetime.max.replace(tzinfo=UTC) - EPOCH) // _US
# Whole seconds just outside that range: a float beyond them is refused before it is
# scaled (which could overflow), one within them after.
_MIN_S = MIN_US // 1_000_000 - 1
_MAX_S = MAX_US // 1_000_000 + 1
_YEAR_S = 31_556_952  # seconds in an average Gregorian year


def to_us(value: Any) -> int:
    """An event time (aware datetime, or epoch seconds) as microseconds since the epoch.

    Epoch seconds that are a float round as ``seconds_to_us`` rounds them (the
    windowed hot loops convert floats inline the same way); an int and a
    datetime convert exactly; a subclass of int or float goes as its float.

    Raises:
        TypeError: for anything but a datetime or a real number (a bool is not one).
        ValueError: for a naive datetime, a NaN or an infinity, or a time a
            ``datetime`` cannot hold (beyond the years 1 to 9999), such as epoch
            milliseconds taken as seconds.
    """
    if type(value) is int:
        us = value * 1_000_000
    elif type(value) is float:
        if not math.isfinite(value):
            msg = f"an event time must be finite, got {value!r}"
            raise ValueError(msg)
        if not _MIN_S <= value <= _MAX_S:
            raise _beyond_datetime(value)
        us = seconds_to_us(value)
    elif isinstance(value, datetime):
        if value.tzinfo is None:
            msg = f"an event time must be timezone-aware, got naive {value!r}"
            raise ValueError(msg)
        us = (value - EPOCH) // _US
    elif isinstance(value, int | float) and not isinstance(value, bool):
        return to_us(float(value))
    else:
        msg = (
            "timestamp= must return a timezone-aware datetime or epoch seconds, "
            f"got {type(value).__name__}: {value!r:.60}"
        )
        raise TypeError(msg)
    if not MIN_US <= us <= MAX_US:
        raise _beyond_datetime(value)
    return us


def _beyond_datetime(value: int | float | datetime) -> ValueError:
    """The error for an event time outside what a ``datetime`` can hold: it says
    where the time falls, and which unit would bring epoch seconds in range."""
    if isinstance(value, datetime):
        msg = (
            f"an event time must lie within datetime's range (years 1 to 9999 in UTC), "
            f"got {value.isoformat()}, which is {'after' if value.year > 1 else 'before'} it in UTC"
        )
        return ValueError(msg)
    seconds = value if abs(value) < 1e300 else 1e300 if value > 0 else -1e300
    year = 1970 + seconds / _YEAR_S
    if abs(year) < 1e9:
        when = f"about the year {year:,.0f}"
    else:
        when = "far after the year 9999" if year > 0 else "far before the year 1"
    if isinstance(value, int) and not -(10**24) < value < 10**24:
        given = f"an int of about {int(abs(value).bit_length() * 0.30103) + 1} digits"
    else:
        given = repr(value)
    msg = (
        "an event time in epoch seconds must lie within datetime's range (years 1 to 9999), "
        f"got {given}, {when}"
    )
    for factor, unit in ((1_000, "milliseconds"), (1_000_000, "microseconds")):
        if MIN_US <= seconds / factor * 1e6 <= MAX_US:
            msg += f": if it is in {unit}, divide it by {factor:,}"
            break
    return ValueError(msg)


def from_us(us: int) -> datetime:
    """Microseconds since the epoch as an aware datetime in UTC (``to_us`` undone)."""
    return EPOCH + timedelta(microseconds=us)
