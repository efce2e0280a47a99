"""Helpers of the Redis Streams connectors: option checks, lost-connection errors, entry ids."""

from __future__ import annotations

from typing import Any

from .._core._time import duration_seconds

__all__ = ["check_count", "check_name", "id_key", "positive_seconds", "redis_errors"]


def redis_errors(exceptions: Any) -> tuple[type[BaseException], ...]:
    """The errors of redis-py that mean the connection was lost."""
    return (exceptions.ConnectionError, exceptions.TimeoutError, OSError)


def check_name(value: object, option: str) -> str:
    if not isinstance(value, str) or not value:
        msg = f"{option} must be a non-empty str, got {value!r}"
        raise TypeError(msg) if not isinstance(value, str) else ValueError(msg)
    return value


def check_count(value: object, option: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        msg = f"{option} must be an int, got {type(value).__name__}: {value!r}"
        raise TypeError(msg)
    if value < 1:
        msg = f"{option} must be at least 1, got {value}"
        raise ValueError(msg)
    return value


def positive_seconds(value: object, option: str) -> float:
    return duration_seconds(value, option)  # type: ignore[arg-type]


def id_key(entry_id: bytes | str) -> tuple[int, int]:
    """An entry id (``b"1700000000000-3"``) as numbers, to compare ids."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)
