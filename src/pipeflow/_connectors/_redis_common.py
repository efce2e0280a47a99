"""Helpers of the Redis Streams connectors: lost-connection errors, entry ids."""

from __future__ import annotations

from typing import Any

__all__ = ["id_key", "redis_errors"]


def redis_errors(exceptions: Any) -> tuple[type[BaseException], ...]:
    """The errors of redis-py that mean the connection was lost."""
    return (exceptions.ConnectionError, exceptions.TimeoutError, OSError)


def id_key(entry_id: bytes | str) -> tuple[int, int]:
    """An entry id (``b"1700000000000-3"``) as numbers, to compare ids."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)
