"""Kafka: a producer sink, on aiokafka.

``KafkaSink`` produces results to a topic and returns from a write once the
broker has acknowledged every message of it (``acks="all"``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from functools import partial
from typing import Any

import orjson

from .._core._errors import EncodeError
from .._core._policies import Retry
from .._core._time import duration_seconds
from ._checks import check_text
from ._codecs import CodecLike, JsonCodec, codec_for, codec_name, encode_result
from ._extras import require
from ._kafka_common import (
    PRODUCER_OWN,
    check_client_options,
    check_servers,
    lost_errors,
    start_client,
)
from ._message import Message
from ._reconnect import DEFAULT_RECONNECT, check_reconnect, reconnecting

__all__ = ["KafkaSink"]

#: Largest batch of messages the sink sends to a partition in one request.
_MAX_BATCH_BYTES = 1 << 20


class KafkaSink:
    """Writes results to a Kafka topic; a write returns once the broker has them all.

    Each result is one message, its payload encoded by ``codec`` (a
    ``Message`` result by its ``value``). A ``Message`` result keeps its
    ``key`` and ``headers``; ``key=`` picks the key of every result instead.
    Messages with a key go to the partition Kafka's default partitioner gives
    that key (murmur2, as the Java client), so one key keeps one partition and
    its order; messages without one go to one partition per write, taking
    the partitions in turn.

    A write sends its messages in batches, all partitions at once, and waits
    until the broker acknowledges every one (``acks="all"``). Batches that
    fail for a lost connection are sent again (``reconnect``), the others not;
    the producer is not idempotent, so a message whose acknowledgement was
    lost can be written twice (at-least-once). The producer starts at the
    first write and stops in ``aclose()``.

    Args:
        bootstrap_servers: ``"host:port"`` of a broker, or a list of them.
        topic: the topic to write to.
        key: a function of the result giving its key (``bytes``, ``str``,
            encoded as UTF-8, or ``None``).
        codec: encodes payloads (see ``codec_for``).
        timeout: how long connecting, or the broker's acknowledgement of a
            batch, may take before it counts as a lost connection (a
            ``timedelta`` or seconds).
        reconnect: how a lost connection is retried (a ``Retry`` with
            ``then="raise"``).
        producer_options: further ``AIOKafkaProducer`` options (security,
            ``client_id``, ``compression_type``, ``max_batch_size``, ...),
            checked against its signature.

    Raises:
        ImportError: if the ``kafka`` extra is not installed.
        ValueError: for a bad option value.
        TypeError: for an option of the wrong type.
    """

    def __init__(
        self,
        bootstrap_servers: str | Sequence[str],
        topic: str,
        *,
        key: Callable[[Any], bytes | str | None] | None = None,
        codec: CodecLike = "json",
        timeout: float | timedelta = 30.0,
        reconnect: Retry = DEFAULT_RECONNECT,
        producer_options: Mapping[str, Any] | None = None,
    ) -> None:
        aiokafka = require("aiokafka", "kafka", "KafkaSink")
        self._aiokafka = aiokafka
        self._servers = check_servers(bootstrap_servers)
        self._topic = check_text(topic, "topic")
        if key is not None and not callable(key):
            msg = f"key must be a function of the result giving its key, got {key!r:.80}"
            raise TypeError(msg)
        self._key = key
        self._codec = codec_for(codec)
        self._timeout = duration_seconds(timeout, "timeout")
        self._reconnect = check_reconnect(reconnect)
        options = {"max_batch_size": _MAX_BATCH_BYTES, "linger_ms": 0}
        options.update(
            check_client_options(
                producer_options, aiokafka.AIOKafkaProducer, PRODUCER_OWN, "producer_options"
            )
        )
        self._options = options
        self._lost = lost_errors(aiokafka.errors)
        self._producer: Any = None
        self._closed = False
        #: The partition the next write's messages without a key go to (an index).
        self._turn = 0

    def __repr__(self) -> str:
        return f"KafkaSink({self._topic!r})"

    async def write(self, items: list[Any]) -> None:
        """Produce ``items``; return once the broker has acknowledged every message.

        Raises:
            EncodeError: for a result, key or header that cannot be encoded.
        """
        if self._closed:
            msg = f"{self!r} is closed"
            raise RuntimeError(msg)
        if not items:
            return
        producer = self._producer or await self._start()
        partitions = sorted(await producer.partitions_for(self._topic))
        chunks = self._chunks(items, partitions)
        await reconnecting(
            lambda: self._send(producer, chunks),
            retry=self._reconnect,
            lost=self._lost,
            what=f"writing {len(items)} messages to {self._topic!r}",
        )

    def _chunks(self, items: list[Any], partitions: list[int]) -> list[list[Any]]:
        """The messages of ``items`` by partition, in order: ``[partition, [(key, value,
        headers), ...]]``."""
        n = len(partitions)
        turn = partitions[self._turn % n]
        self._turn += 1
        unkeyed: list[Any] = []
        groups: dict[int, list[Any]] = {turn: unkeyed}
        known: dict[bytes, int] = {}
        murmur2 = self._aiokafka.partitioner.murmur2
        codec = self._codec
        encode = _json_dumps if type(codec) is JsonCodec else codec.encode
        pick = self._key
        for result in items:
            headers = None
            if isinstance(result, Message):
                value = encode_result(codec, result)
                key = _key_bytes(result, result.key if pick is None else pick(result))
                if result.headers:
                    headers = [(k, _header(result, k, v)) for k, v in result.headers.items()]
            else:
                try:
                    value = encode(result)
                except Exception as exc:
                    raise EncodeError(result, codec_name(codec), exc) from exc
                key = None if pick is None else _key_bytes(result, pick(result))
            if key is None:
                unkeyed.append((None, value, headers))
                continue
            p = known.get(key, -1)
            if p < 0:
                p = known[key] = partitions[(murmur2(key) & 0x7FFFFFFF) % n]
            group = groups.get(p)
            if group is None:
                groups[p] = [(key, value, headers)]
            else:
                group.append((key, value, headers))
        return [[p, group] for p, group in groups.items() if group]

    async def _send(self, producer: Any, chunks: list[Any]) -> None:
        """Send every chunk, wait for all; keep in ``chunks`` only the ones that failed."""
        sent: list[tuple[Any, int, list[Any]]] = []
        topic = self._topic
        for p, records in chunks:
            start = 0
            batch = producer.create_batch()
            for i, (key, value, headers) in enumerate(records):
                if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
                    if i == start:
                        cause = ValueError(f"{len(value)} bytes is too large for one batch")
                        raise EncodeError(value, "kafka", cause)
                    sent.append(
                        (await producer.send_batch(batch, topic, partition=p), p, records[start:i])
                    )
                    start = i
                    batch = producer.create_batch()
                    batch.append(key=key, value=value, timestamp=None, headers=headers)
            sent.append((await producer.send_batch(batch, topic, partition=p), p, records[start:]))
        results = await asyncio.gather(*(f for f, _, _ in sent), return_exceptions=True)
        failed = [
            (exc, p, records)
            for exc, (_, p, records) in zip(results, sent, strict=True)
            if isinstance(exc, BaseException)
        ]
        chunks[:] = [[p, records] for _, p, records in failed]
        if failed:
            raise failed[0][0]

    async def _start(self) -> Any:
        producer = await start_client(
            partial(
                self._aiokafka.AIOKafkaProducer,
                bootstrap_servers=self._servers,
                acks="all",
                request_timeout_ms=round(self._timeout * 1000),
                **self._options,
            ),
            within=self._timeout,
            retry=self._reconnect,
            lost=self._lost,
            what=f"connecting to Kafka at {self._servers} to write {self._topic!r}",
        )
        self._producer = producer
        return producer

    async def aclose(self) -> None:
        """Stop the producer. Closing twice does no harm."""
        if self._closed:
            return
        self._closed = True
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()


def _json_dumps(value: Any) -> bytes:
    """What ``JsonCodec().encode`` gives, without the method call."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)


def _key_bytes(result: Any, key: Any) -> bytes | None:
    if key is None or type(key) is bytes:
        return key
    if isinstance(key, str):
        return key.encode()
    if isinstance(key, bytearray | memoryview):
        return bytes(key)
    cause = TypeError(f"a message key must be bytes, str or None, got {type(key).__name__}")
    raise EncodeError(result, "key", cause)


def _header(result: Message, name: Any, value: Any) -> bytes:
    if type(value) is bytes:
        return value
    if isinstance(value, str):
        return value.encode()
    cause = TypeError(f"header {name!r} must be bytes or str, got {type(value).__name__}")
    raise EncodeError(result, "headers", cause)
