"""Kafka records as ``Message`` objects, for ``KafkaSource``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from .._core._errors import DecodeError
from ._codecs import Codec, JsonCodec, codec_name, decode_message
from ._message import Message, UndecodableMessage


class RecordDecoder:
    """Turns the records of one topic into messages, decoding their values and keys.

    Args:
        topic: the topic the records come from (each message's ``source``).
        codec: decodes values; a value it refuses makes an ``UndecodableMessage``.
        key_codec: decodes keys; ``None`` keeps the bytes.
    """

    def __init__(self, topic: str, codec: Codec, key_codec: Codec | None) -> None:
        self._topic = topic
        self._codec = codec
        self._key_codec = key_codec

    def decode(self, partition: int, records: list[Any]) -> list[Message]:
        """The messages of one partition's records."""
        topic = self._topic
        codec = self._codec
        # The built-in JSON codec's decode is orjson.loads: called directly, a call less.
        decode = orjson.loads if type(codec) is JsonCodec else codec.decode
        keyed = self._key_codec
        messages: list[Message] = []
        append = messages.append
        # Records of one batch mostly share their millisecond: one datetime each.
        last_ts: int | None = None
        stamp: datetime | None = None
        for r in records:
            ts = r.timestamp
            if ts != last_ts:
                last_ts = ts
                stamp = _stamp(ts)
            headers = r.headers
            key = r.key
            try:
                if keyed is not None and key is not None:
                    key = keyed.decode(key)
                value = decode(r.value)
            except Exception:
                append(self._undecodable(r))
                continue
            append(
                Message(
                    value,
                    key=key,
                    headers=dict(headers) if headers else None,
                    timestamp=stamp,
                    source=topic,
                    partition=partition,
                    position=r.offset,
                )
            )
        return messages

    def _undecodable(self, r: Any) -> Message:
        fields: dict[str, Any] = {
            "headers": dict(r.headers) if r.headers else None,
            "timestamp": _stamp(r.timestamp),
            "source": self._topic,
            "partition": r.partition,
            "position": r.offset,
        }
        keyed = self._key_codec
        if keyed is not None and r.key is not None:
            try:
                key = keyed.decode(r.key)
            except Exception as exc:
                where = f"{self._topic}[{r.partition}]@{r.offset} (its key)"
                error = DecodeError(bytes(r.key), codec_name(keyed), where, exc)
                return UndecodableMessage(bytes(r.value or b""), error, key=r.key, **fields)
        else:
            key = r.key
        return decode_message(self._codec, r.value or b"", key=key, **fields)


def _stamp(ms: int | None) -> datetime | None:
    """A record's timestamp (milliseconds since the epoch) as a UTC datetime; None if unset."""
    if ms is None or ms < 0:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC)
