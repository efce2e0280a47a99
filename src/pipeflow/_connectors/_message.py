"""``Message``: what a broker or file source yields.

A message carries its decoded ``value`` and where it came from. A payload its
source's codec cannot decode still becomes a message, an ``UndecodableMessage``:
reading its ``value`` raises ``DecodeError``, so the failure surfaces in the
pipe that reads it (normally the first) and goes to that pipe's error policy,
with the message, its raw bytes and its position as the failed item.
"""

from __future__ import annotations

import reprlib
from datetime import datetime
from typing import Any, NoReturn

from .._core._errors import DecodeError

__all__ = ["Message", "UndecodableMessage"]

_short = reprlib.Repr()
_short.maxstring = 60
_short.maxother = 60
_short.maxdict = 6


class Message:
    """One message from a broker or a file, with its decoded value.

    Sinks write a ``Message`` result by its ``value`` and keep its ``key`` and
    ``headers``, so a pipe may return ``msg.replace(value=...)`` to pass the key
    on. Messages compare equal when all their fields are equal.

    Attributes:
        value: the payload, decoded by the source's codec.
        key: the message key (Kafka), or ``None``.
        headers: the message headers (Kafka, NATS), or an empty dict.
        timestamp: the broker's time for the message (timezone-aware UTC), or
            ``None`` where there is none (files).
        source: the stream, subject, topic or file it came from.
        partition: the partition (Kafka); 0 where the system has none.
        position: where it is in its partition: the Redis entry id (a ``str``),
            the NATS stream sequence, the Kafka offset, the file's line number.
        raw: the payload as received, kept only for a message whose payload
            could not be decoded; else ``None``.
    """

    __slots__ = ("headers", "key", "partition", "position", "raw", "source", "timestamp", "value")

    def __init__(
        self,
        value: Any,
        *,
        key: Any = None,
        headers: dict[str, Any] | None = None,
        timestamp: datetime | None = None,
        source: str = "",
        partition: int = 0,
        position: Any = None,
    ) -> None:
        self.value = value
        self.key = key
        self.headers = {} if headers is None else headers
        self.timestamp = timestamp
        self.source = source
        self.partition = partition
        self.position = position
        self.raw: bytes | None = None

    def replace(self, **changes: Any) -> Message:
        """A copy with the given fields changed: ``msg.replace(value=new)``.

        Raises:
            TypeError: for a name that is not a field of ``Message``.
        """
        fields = self._fields()
        unknown = sorted(set(changes) - set(fields))
        if unknown:
            msg = f"Message.replace() got unknown field(s) {unknown}; fields are {list(fields)}"
            raise TypeError(msg)
        fields.update(changes)
        return Message(fields.pop("value"), **fields)

    @property
    def where(self) -> str:
        """Where the message is: source, partition and position, as in error messages."""
        return f"{self.source or '?'}[{self.partition}]@{self.position}"

    def _fields(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "key": self.key,
            "headers": self.headers,
            "timestamp": self.timestamp,
            "source": self.source,
            "partition": self.partition,
            "position": self.position,
        }

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message) or isinstance(other, UndecodableMessage):
            return NotImplemented
        return self._fields() == other._fields()

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value

    def __repr__(self) -> str:
        extra = "".join(
            f", {name}={_short.repr(value)}"
            for name, value in (("key", self.key), ("headers", self.headers))
            if value
        )
        stamp = f", timestamp={self.timestamp.isoformat()}" if self.timestamp else ""
        return (
            f"Message({_short.repr(self.value)}{extra}{stamp}, "
            f"source={self.source!r}, partition={self.partition}, position={self.position!r})"
        )


class UndecodableMessage(Message):
    """A message whose payload its codec refused: reading ``value`` raises
    ``DecodeError``; ``raw`` holds the payload as received."""

    __slots__ = ("_error",)

    def __init__(
        self,
        raw: bytes,
        error: DecodeError,
        *,
        key: Any = None,
        headers: dict[str, Any] | None = None,
        timestamp: datetime | None = None,
        source: str = "",
        partition: int = 0,
        position: Any = None,
    ) -> None:
        # ``value`` is the property below; the other fields are set as usual.
        self.key = key
        self.headers = {} if headers is None else headers
        self.timestamp = timestamp
        self.source = source
        self.partition = partition
        self.position = position
        self.raw = raw
        self._error = error

    @property
    def value(self) -> NoReturn:
        """Raises the ``DecodeError`` the codec gave."""
        raise self._error

    def replace(self, **changes: Any) -> Message:
        """A decodable copy, given a new ``value``.

        Raises:
            DecodeError: without a new ``value``.
        """
        if "value" not in changes:
            raise self._error
        fields = self._fields()
        fields.update(changes)
        return Message(fields.pop("value"), **fields)

    def _fields(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "headers": self.headers,
            "timestamp": self.timestamp,
            "source": self.source,
            "partition": self.partition,
            "position": self.position,
        }

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, UndecodableMessage):
            return NotImplemented
        return self.raw == other.raw and self._fields() == other._fields()

    def __repr__(self) -> str:
        return (
            f"UndecodableMessage(raw={_short.repr(self.raw)}, codec={self._error.codec!r}, "
            f"source={self.source!r}, partition={self.partition}, position={self.position!r})"
        )
