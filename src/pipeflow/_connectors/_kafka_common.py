"""What the Kafka source and sink share: option checks and starting a client.

The clients are aiokafka's; aiokafka is imported only when a source or a
sink is made, so nothing here imports it.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import Any

from .._core._policies import Retry
from ._reconnect import reconnecting

#: Options of the aiokafka clients that the source and the sink set themselves.
CONSUMER_OWN = frozenset(
    {
        "bootstrap_servers",
        "group_id",
        "enable_auto_commit",
        "auto_offset_reset",
        "session_timeout_ms",
        "max_poll_records",
        "key_deserializer",
        "value_deserializer",
        "loop",
    }
)
PRODUCER_OWN = frozenset(
    {
        "bootstrap_servers",
        "acks",
        "key_serializer",
        "value_serializer",
        "transactional_id",
        "request_timeout_ms",
        "loop",
    }
)


def check_servers(value: object) -> str | list[str]:
    """``bootstrap_servers``: ``"host:port"`` or a non-empty list of them."""
    if isinstance(value, str) and value:
        return value
    if (
        isinstance(value, Sequence)
        and not isinstance(value, str | bytes)
        and value
        and all(isinstance(s, str) and s for s in value)
    ):
        return list(value)
    msg = f"bootstrap_servers must be 'host:port' or a list of them, got {value!r:.80}"
    raise ValueError(msg)


def check_client_options(
    options: object, client: Callable[..., Any], own: frozenset[str], option: str
) -> dict[str, Any]:
    """``options``, checked as extra keyword arguments of the aiokafka ``client``."""
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        msg = f"{option} must be a mapping of {client.__name__} options, got {options!r:.80}"
        raise TypeError(msg)
    known = set(inspect.signature(client).parameters) - {"self", "args", "kwargs"}
    for name in options:
        if name in own:
            msg = f"{option} cannot set {name!r}: the connector sets it itself"
            raise ValueError(msg)
        if name not in known:
            msg = f"{option} got {name!r}, which is not an option of {client.__name__}"
            raise ValueError(msg)
    return dict(options)


def lost_errors(errors: ModuleType) -> tuple[type[BaseException], ...]:
    """The failures that mean the broker could not be reached (or did not answer in time)."""
    return (
        errors.KafkaConnectionError,
        errors.NodeNotReadyError,
        errors.RequestTimedOutError,
        errors.KafkaTimeoutError,
        errors.NotLeaderForPartitionError,
        errors.LeaderNotAvailableError,
        TimeoutError,
    )


async def start_client(
    make: Callable[[], Any],
    *,
    within: float,
    retry: Retry,
    lost: tuple[type[BaseException], ...],
    what: str,
) -> Any:
    """A client made by ``make`` and started, tried again while the connection is lost.

    Args:
        make: makes the aiokafka consumer or producer; called for each attempt.
        within: how long starting may take before it counts as a lost connection.
        retry: how a lost connection is retried.
        lost: the exception types that mean the connection was lost.
        what: what connecting is for, for the log and the error.
    """

    async def connect() -> Any:
        client = make()
        try:
            await asyncio.wait_for(client.start(), within)
        except BaseException:
            await client.stop()
            raise
        return client

    return await reconnecting(connect, retry=retry, lost=lost, what=what)
