"""Kafka: a consumer-group source and a producer sink, on aiokafka.

``KafkaSource`` reads a topic as a member of a consumer group and commits, per
partition, the offset after the last message whose results are all written.
``KafkaSink`` produces results to a topic and returns from a write once the
broker has acknowledged every message of it (``acks="all"``).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any, Literal

import orjson

from .._core._errors import DecodeError, EncodeError
from .._core._policies import Retry
from .._core._time import duration_seconds
from ._codecs import (
    Codec,
    CodecLike,
    JsonCodec,
    RawCodec,
    codec_for,
    codec_name,
    decode_message,
    encode_result,
)
from ._extras import require
from ._message import Message, UndecodableMessage
from ._positions import Positions
from ._reconnect import DEFAULT_RECONNECT, check_reconnect, reconnecting

__all__ = ["KafkaSink", "KafkaSource"]

log = logging.getLogger("pipeflow.connectors")

#: Options of the aiokafka clients that the source and the sink set themselves.
_CONSUMER_OWN = frozenset(
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
_PRODUCER_OWN = frozenset(
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
#: How long one wait for messages lasts before the source looks around (stop at end).
_POLL_MS = 500
#: How many batches (of one partition each) the source decodes ahead of the pipeline.
_AHEAD = 2
#: Largest batch of messages the sink sends to a partition in one request.
_MAX_BATCH_BYTES = 1 << 20


def _servers(value: object) -> str | list[str]:
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


def _name(value: object, option: str) -> str:
    if not isinstance(value, str) or not value:
        msg = f"{option} must be a non-empty str, got {value!r:.80}"
        raise ValueError(msg)
    return value


def _client_options(
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


def _lost_errors(errors: ModuleType) -> tuple[type[BaseException], ...]:
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


class KafkaSource:
    """Messages from a Kafka topic, read as a member of a consumer group.

    Each message becomes a ``Message``: ``value`` decoded by ``codec``, ``key``
    (the raw bytes, or ``None``; decoded if ``key_codec`` is given), ``headers``
    (a dict of str to bytes; the last of repeated names wins), ``timestamp``
    (the record's time, UTC), ``source`` (the topic), ``partition`` and
    ``position`` (the offset).

    Offsets are committed only by the run's acknowledgements: for each
    partition, the offset after the last message whose results are all
    written (or filtered, skipped, dead-lettered), at most once every
    ``commit_interval``. Auto-commit is off. Messages are fetched
    ``batch_size`` at a time, and decoded a couple of batches ahead of the
    pipeline in a task of the source's own. When the group rebalances, what is
    acknowledged of the partitions given up is committed first; messages of
    those partitions still on their way through the pipeline are never
    committed by this member, and the partition's new owner reads them again
    (at-least-once: a rebalance can deliver a message twice, never lose one).

    ``stop_at_end=True`` ends the source after the messages that were in its
    partitions when it started: for each partition, up to the high watermark
    of the broker's first fetch response (not the ListOffsets end offset,
    which some Kafka-compatible brokers report wrongly). A partition first
    assigned later, in a rebalance, ends at the watermark of its first fetch
    after that.

    Use it with ``pipe.run(source, sink)``, which acknowledges, pauses and
    closes it. Iterated by hand, acknowledge with ``await source.ack(count)``
    and close it with ``await source.aclose()`` (or ``async with source``).

    Args:
        bootstrap_servers: ``"host:port"`` of a broker, or a list of them.
        topic: the topic to read.
        group: the consumer group; members of one group share its partitions.
        stop_at_end: end after the messages there when the source started;
            by default, wait for new ones forever.
        batch_size: at most this many messages per fetch.
        session_timeout: how long the group waits for a silent member before
            handing its partitions to others (a ``timedelta`` or seconds).
        auto_offset_reset: where a group with no committed offset starts:
            ``"earliest"`` (all messages) or ``"latest"`` (new ones only).
        commit_interval: the least time between two commits (a ``timedelta``
            or seconds; 0 commits at every acknowledgement). What is
            acknowledged meanwhile is committed when it is over, before
            partitions are given up, and when the source closes; a crash
            delivers it again.
        codec: decodes payloads (see ``codec_for``); a payload it refuses
            becomes an ``UndecodableMessage``.
        key_codec: decodes keys; ``"raw"`` (the default) keeps the bytes.
        timeout: how long connecting or committing may take before it counts
            as a lost connection (a ``timedelta`` or seconds).
        reconnect: how a lost connection is retried (a ``Retry`` with
            ``then="raise"``); each retry is logged, and the failure goes out
            once the attempts are spent.
        consumer_options: further ``AIOKafkaConsumer`` options (security,
            ``client_id``, fetch sizes, ...), checked against its signature.

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
        group: str,
        stop_at_end: bool = False,
        batch_size: int = 500,
        session_timeout: float | timedelta = 10.0,
        auto_offset_reset: Literal["earliest", "latest"] = "earliest",
        commit_interval: float | timedelta = 0.5,
        codec: CodecLike = "json",
        key_codec: CodecLike = "raw",
        timeout: float | timedelta = 30.0,
        reconnect: Retry = DEFAULT_RECONNECT,
        consumer_options: Mapping[str, Any] | None = None,
    ) -> None:
        aiokafka = require("aiokafka", "kafka", "KafkaSource")
        self._aiokafka = aiokafka
        self._servers = _servers(bootstrap_servers)
        self._topic = _name(topic, "topic")
        self._group = _name(group, "group")
        if not isinstance(stop_at_end, bool):
            msg = f"stop_at_end must be True or False, got {stop_at_end!r:.60}"
            raise TypeError(msg)
        self._stop_at_end = stop_at_end
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            msg = f"batch_size must be an int >= 1, got {batch_size!r:.60}"
            raise ValueError(msg)
        self._batch_size = batch_size
        self._session_timeout = duration_seconds(session_timeout, "session_timeout")
        if auto_offset_reset not in ("earliest", "latest"):
            msg = f"auto_offset_reset must be 'earliest' or 'latest', got {auto_offset_reset!r:.60}"
            raise ValueError(msg)
        self._auto_offset_reset = auto_offset_reset
        self._commit_interval = duration_seconds(
            commit_interval, "commit_interval", allow_zero=True
        )
        self._codec = codec_for(codec)
        key = codec_for(key_codec, "key_codec")
        self._key_codec: Codec | None = None if isinstance(key, RawCodec) else key
        self._timeout = duration_seconds(timeout, "timeout")
        self._reconnect = check_reconnect(reconnect)
        self._options = _client_options(
            consumer_options, aiokafka.AIOKafkaConsumer, _CONSUMER_OWN, "consumer_options"
        )
        self._lost = _lost_errors(aiokafka.errors)
        self._consumer: Any = None
        self._iterated = False
        self._closed = False
        self._paused = False
        #: The records handed over and not acknowledged, in order.
        self._positions: Positions[Any] = Positions()
        #: Partitions owned now, and whether the group has assigned any yet.
        self._owned: set[int] = set()
        self._joined = False
        #: Bumped when partitions are revoked: a batch being handed over stops.
        self._generation = 0
        #: (records handed over at a revocation, partitions revoked): records
        #: handed over before it, of those partitions, are never committed.
        self._revocations: deque[tuple[int, frozenset[int]]] = deque()
        #: Per partition, the offset to commit that is acknowledged and not yet committed.
        self._uncommitted: dict[int, int] = {}
        self._lock = asyncio.Lock()
        #: When offsets were last committed (event loop time), and the task that
        #: commits what is acknowledged meanwhile once ``commit_interval`` is over.
        self._last_commit = float("-inf")
        self._flusher: asyncio.Task[None] | None = None
        self._failure: Exception | None = None
        #: stop_at_end: per partition, the offset it ends at.
        self._ends: dict[int, int] = {}
        #: Batches fetched and decoded, not yet handed over: (generation, records, messages).
        self._ahead: deque[tuple[int, list[Any], list[Message]]] = deque()
        self._ready = asyncio.Event()  # something in ``_ahead``, or fetching stopped
        self._room = asyncio.Event()  # room in ``_ahead``
        self._fetching: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"KafkaSource({self._topic!r}, group={self._group!r})"

    # -- reading ------------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[Message]:
        if self._iterated:
            msg = f"{self!r} can be iterated once; make a new KafkaSource to read again"
            raise RuntimeError(msg)
        if self._closed:
            msg = f"{self!r} is closed"
            raise RuntimeError(msg)
        self._iterated = True
        return self._messages()

    async def _messages(self) -> AsyncIterator[Message]:
        """Hand over the batches the fetching task has ready, recording their records."""
        consumer = self._consumer or await self._start()
        ahead = self._ahead
        ready, room = self._ready, self._room
        fetching = self._fetching = asyncio.get_running_loop().create_task(
            self._fetch(consumer), name=f"pipeflow: fetching {self._topic!r}"
        )
        positions = self._positions
        try:
            while True:
                while not ahead:
                    if fetching.done():
                        fetching.result()  # raises what stopped it
                        return  # stop_at_end: all there was is handed over
                    ready.clear()
                    await ready.wait()
                generation, records, messages = ahead.popleft()
                room.set()
                if generation != self._generation:
                    continue  # fetched before a revocation: the partitions' new owners read it
                # Recorded all at once; those handed over after a revocation are
                # never committed (see ``_revoked``).
                positions.extend(records)
                for message in messages:
                    yield message
        finally:
            await self._stop_fetching()

    async def _fetch(self, consumer: Any) -> None:
        """Fetch batches and decode them, a few batches ahead of what is handed over.

        Decoding here, in a task of its own, lets it go on while the pipeline
        waits for its sink.
        """
        ahead, ready, room = self._ahead, self._ready, self._room
        batch_size = self._batch_size
        stop_at_end = self._stop_at_end
        poll_ms = _POLL_MS if stop_at_end else 1000
        try:
            while True:
                if len(ahead) >= _AHEAD:
                    room.clear()
                    await room.wait()
                    continue
                if stop_at_end and await self._at_end(consumer):
                    return
                batches = await consumer.getmany(timeout_ms=poll_ms, max_records=batch_size)
                generation = self._generation
                for tp, records in batches.items():
                    ahead.append((generation, records, self._decode(tp.partition, records)))
                if batches:
                    ready.set()
        finally:
            ready.set()

    async def _stop_fetching(self) -> None:
        fetching, self._fetching = self._fetching, None
        if fetching is not None and not fetching.done():
            fetching.cancel()
            await asyncio.gather(fetching, return_exceptions=True)

    def _decode(self, partition: int, records: list[Any]) -> list[Message]:
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

    async def _at_end(self, consumer: Any) -> bool:
        """Whether every partition owned has been read up to where it ends."""
        if not self._joined:
            return False
        tp_of = self._aiokafka.TopicPartition
        for partition in self._owned:
            tp = tp_of(self._topic, partition)
            end = self._ends.get(partition)
            if end is None:
                end = consumer.highwater(tp)
                if end is None:
                    return False  # no fetch response for it yet
                self._ends[partition] = end
            try:
                if await consumer.position(tp) < end:
                    return False
            except self._aiokafka.errors.IllegalStateError:
                return False  # given up in a rebalance meanwhile
        return True

    # -- the consumer -------------------------------------------------------------

    async def _start(self) -> Any:
        aiokafka = self._aiokafka
        session_ms = round(self._session_timeout * 1000)

        async def connect() -> Any:
            consumer = aiokafka.AIOKafkaConsumer(
                bootstrap_servers=self._servers,
                group_id=self._group,
                enable_auto_commit=False,
                auto_offset_reset=self._auto_offset_reset,
                session_timeout_ms=session_ms,
                max_poll_records=self._batch_size,
                **{"heartbeat_interval_ms": max(100, session_ms // 3), **self._options},
            )
            try:
                await asyncio.wait_for(consumer.start(), self._timeout)
            except BaseException:
                await consumer.stop()
                raise
            return consumer

        consumer = await reconnecting(
            connect,
            retry=self._reconnect,
            lost=self._lost,
            what=f"connecting to Kafka at {self._servers} to read {self._topic!r}",
        )
        consumer.subscribe([self._topic], listener=_listener(aiokafka, self))
        self._consumer = consumer
        if self._closed:  # closed while connecting
            await consumer.stop()
        return consumer

    def _assigned(self, partitions: set[int]) -> None:
        self._owned = set(partitions)
        self._joined = True
        if self._paused and self._consumer is not None and partitions:
            self._consumer.pause(*self._consumer.assignment())
        if partitions:
            log.info(
                "pipeflow: %r assigned partitions %s", self, ", ".join(map(str, sorted(partitions)))
            )

    async def _revoked(self, partitions: set[int]) -> None:
        """Commit what is acknowledged of ``partitions`` before the group hands them on."""
        gone = frozenset(partitions)
        self._generation += 1
        self._owned -= gone
        self._revocations.append((self._positions.acked + len(self._positions), gone))
        async with self._lock:
            offsets = {p: o for p, o in self._uncommitted.items() if p in gone}
            for p in gone:
                self._uncommitted.pop(p, None)
            if offsets:
                try:
                    await self._commit(offsets)
                except Exception as exc:
                    log.warning(
                        "pipeflow: %r could not commit offsets %s of the partitions it gives up "
                        "(%s: %s); their new owner reads those messages again",
                        self,
                        offsets,
                        type(exc).__name__,
                        exc,
                    )

    # -- acknowledgement ----------------------------------------------------------

    async def ack(self, count: int) -> None:
        """Commit the offsets the first ``count`` messages handed over newly cover.

        One commit for all partitions: per partition, the offset after its
        last message among them. Messages of partitions given up in a
        rebalance are not committed.
        """
        self._check()
        async with self._lock:
            positions = self._positions
            base = positions.acked
            records = positions.take(count)
            if not records:
                return
            revoked = self._revocations
            while revoked and revoked[0][0] <= base:
                revoked.popleft()  # nothing handed over before it is left
            uncommitted = self._uncommitted
            if revoked:
                for index, r in enumerate(records, base):
                    if not any(index < at and r.partition in gone for at, gone in revoked):
                        uncommitted[r.partition] = r.offset + 1
            else:
                # The last record of each partition is the one to commit: looking
                # from the end, stop once every partition owned is seen.
                seen: dict[int, int] = {}
                owned = len(self._owned)
                for r in reversed(records):
                    if r.partition not in seen:
                        seen[r.partition] = r.offset + 1
                        if len(seen) >= owned:
                            break
                uncommitted.update(seen)
            while revoked and revoked[0][0] <= count:
                revoked.popleft()
            if not uncommitted:
                return
            loop = asyncio.get_running_loop()
            wait = self._last_commit + self._commit_interval - loop.time()
            if wait <= 0:
                await self._commit_uncommitted()
            elif self._flusher is None:
                self._flusher = loop.create_task(
                    self._commit_later(wait), name=f"pipeflow: committing {self._topic!r}"
                )

    async def _commit_later(self, wait: float) -> None:
        """Commit what is acknowledged once ``wait`` seconds have passed."""
        await asyncio.sleep(wait)
        async with self._lock:
            self._flusher = None
            try:
                await self._commit_uncommitted()
            except Exception as exc:
                self._failure = exc  # for the next acknowledgement, or closing

    def _check(self) -> None:
        failure, self._failure = self._failure, None
        if failure is not None:
            raise failure

    async def _commit_uncommitted(self) -> None:
        self._last_commit = asyncio.get_running_loop().time()
        owned = self._owned
        offsets = {p: o for p, o in self._uncommitted.items() if p in owned}
        self._uncommitted = {}
        if not offsets:
            return
        errors = self._aiokafka.errors
        try:
            await self._commit(offsets)
        except (errors.CommitFailedError, errors.IllegalStateError) as exc:
            # The group is rebalancing: keep them, for the next acknowledgement
            # or the revocation (which commits what this member gives up).
            log.info("pipeflow: %r will commit %s later (%s)", self, offsets, exc)
            for p, o in offsets.items():
                self._uncommitted.setdefault(p, o)

    async def _commit(self, offsets: dict[int, int]) -> None:
        consumer = self._consumer
        tp_of = self._aiokafka.TopicPartition
        topic = self._topic

        async def commit() -> None:
            await asyncio.wait_for(
                consumer.commit({tp_of(topic, p): o for p, o in offsets.items()}),
                self._timeout,
            )

        await reconnecting(
            commit,
            retry=self._reconnect,
            lost=self._lost,
            what=f"committing offsets of {topic!r} for group {self._group!r}",
        )

    # -- backpressure and closing -------------------------------------------------

    def pause(self) -> None:
        """Stop fetching from the partitions owned, until ``resume()``."""
        self._paused = True
        consumer = self._consumer
        if consumer is not None and not self._closed:
            consumer.pause(*consumer.assignment())

    def resume(self) -> None:
        """Fetch again after ``pause()``."""
        self._paused = False
        consumer = self._consumer
        if consumer is not None and not self._closed:
            consumer.resume(*consumer.assignment())

    @property
    def paused(self) -> bool:
        """Whether fetching is paused."""
        return self._paused

    async def aclose(self) -> None:
        """Leave the group and close the connections. Closing twice does no harm."""
        if self._closed:
            return
        self._closed = True
        await self._stop_fetching()
        self._ahead.clear()
        flusher, self._flusher = self._flusher, None
        if flusher is not None:
            flusher.cancel()
            await asyncio.gather(flusher, return_exceptions=True)
        consumer = self._consumer
        try:
            if consumer is not None and self._uncommitted:
                async with self._lock:
                    await self._commit_uncommitted()
            self._check()
        finally:
            self._consumer = None
            if consumer is not None:
                await consumer.stop()

    async def __aenter__(self) -> KafkaSource:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def _stamp(ms: int | None) -> datetime | None:
    """A record's timestamp (milliseconds since the epoch) as a UTC datetime; None if unset."""
    if ms is None or ms < 0:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC)


class _Listener:
    """Tells the source which partitions it gains and loses in a rebalance.

    aiokafka wants a subclass of its ``ConsumerRebalanceListener``: ``_listener``
    makes one, since aiokafka is imported only when a source is made.
    """

    def __init__(self, source: KafkaSource) -> None:
        self._source = source

    def on_partitions_assigned(self, assigned: Any) -> None:
        self._source._assigned({tp.partition for tp in assigned})

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self._source._revoked({tp.partition for tp in revoked})


def _listener(aiokafka: ModuleType, source: KafkaSource) -> Any:
    cls = type("RebalanceListener", (_Listener, aiokafka.ConsumerRebalanceListener), {})
    return cls(source)


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
        self._servers = _servers(bootstrap_servers)
        self._topic = _name(topic, "topic")
        if key is not None and not callable(key):
            msg = f"key must be a function of the result giving its key, got {key!r:.80}"
            raise TypeError(msg)
        self._key = key
        self._codec = codec_for(codec)
        self._timeout = duration_seconds(timeout, "timeout")
        self._reconnect = check_reconnect(reconnect)
        options = {"max_batch_size": _MAX_BATCH_BYTES, "linger_ms": 0}
        options.update(
            _client_options(
                producer_options, aiokafka.AIOKafkaProducer, _PRODUCER_OWN, "producer_options"
            )
        )
        self._options = options
        self._lost = _lost_errors(aiokafka.errors)
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
        aiokafka = self._aiokafka

        async def connect() -> Any:
            producer = aiokafka.AIOKafkaProducer(
                bootstrap_servers=self._servers,
                acks="all",
                request_timeout_ms=round(self._timeout * 1000),
                **self._options,
            )
            try:
                await asyncio.wait_for(producer.start(), self._timeout)
            except BaseException:
                await producer.stop()
                raise
            return producer

        producer = await reconnecting(
            connect,
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
