"""Option checks every connector shares: a wrong type is a ``TypeError``, a wrong
value a ``ValueError``, and either names the option, what it takes and what came."""

from __future__ import annotations

__all__ = ["check_bool", "check_count", "check_text", "check_unread"]


def check_text(value: object, option: str) -> str:
    """``value``, checked as a non-empty ``str`` (a name, a URL, a subject)."""
    if not isinstance(value, str):
        msg = f"{option} must be a non-empty str, got {type(value).__name__}: {value!r:.80}"
        raise TypeError(msg)
    if not value:
        msg = f"{option} must be a non-empty str, got ''"
        raise ValueError(msg)
    return value


def check_count(value: object, option: str) -> int:
    """``value``, checked as an ``int`` of at least 1 (a batch size, a limit)."""
    if isinstance(value, bool) or not isinstance(value, int):
        msg = f"{option} must be an int >= 1, got {type(value).__name__}: {value!r:.60}"
        raise TypeError(msg)
    if value < 1:
        msg = f"{option} must be an int >= 1, got {value}"
        raise ValueError(msg)
    return value


def check_bool(value: object, option: str) -> bool:
    """``value``, checked as a ``bool`` option."""
    if not isinstance(value, bool):
        msg = f"{option} must be True or False, got {type(value).__name__}: {value!r:.60}"
        raise TypeError(msg)
    return value


def check_unread(source: object, *, read: bool, closed: bool = False) -> None:
    """Refuse to iterate ``source`` again, or after it was closed: a broker source
    is one consumer's position in the broker, for one run."""
    if read:
        msg = f"{source!r} can be iterated once; make a new one to read again"
        raise RuntimeError(msg)
    if closed:
        msg = f"{source!r} is closed"
        raise RuntimeError(msg)
