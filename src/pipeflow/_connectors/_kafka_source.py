"""Kafka: a consumer-group source, on aiokafka.

``KafkaSource`` reads a topic as a member of a consumer group and commits, per
partition, the offset after the last message whose results are all written.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import timedelta
from functools import partial
from typing import Any, Literal

from .._core._policies import Retry
from .._core._time import duration_seconds
from ._checks import check_bool, check_count, check_text, check_unread
from ._codecs import Codec, CodecLike, RawCodec, codec_for
from ._extras import require
from ._kafka_commits import KafkaCommits, listener
from ._kafka_common import (
    CONSUMER_OWN,
    check_client_options,
    check_servers,
    lost_errors,
    start_client,
)
from ._kafka_records import RecordDecoder
from ._message import Message
from ._reconnect import DEFAULT_RECONNECT, check_reconnect, reconnecting

__all__ = ["KafkaSource"]

log = logging.getLogger("pipeflow.connectors")

#: How long one wait for messages lasts before the source looks around (stop at end).
_POLL_MS = 500
#: How long fetches may bring nothing before the source checks that the broker answers.
_PROBE_MS = 2000
#: How many batches (of one partition each) the source decodes ahead of the pipeline.
_AHEAD = 2


class KafkaSource(KafkaCommits):
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
        self._servers = check_servers(bootstrap_servers)
        self._topic = check_text(topic, "topic")
        self._group = check_text(group, "group")
        self._stop_at_end = check_bool(stop_at_end, "stop_at_end")
        self._batch_size = check_count(batch_size, "batch_size")
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
        self._decoder = RecordDecoder(self._topic, self._codec, self._key_codec)
        self._timeout = duration_seconds(timeout, "timeout")
        self._reconnect = check_reconnect(reconnect)
        self._options = check_client_options(
            consumer_options, aiokafka.AIOKafkaConsumer, CONSUMER_OWN, "consumer_options"
        )
        self._lost = lost_errors(aiokafka.errors)
        self._consumer: Any = None
        self._iterated = False
        self._closed = False
        self._paused = False
        super().__init__()
        #: Batches fetched and decoded, not yet handed over: (generation, records, messages).
        self._ahead: deque[tuple[int, list[Any], list[Message]]] = deque()
        self._ready = asyncio.Event()  # something in ``_ahead``, or fetching stopped
        self._room = asyncio.Event()  # room in ``_ahead``
        self._fetching: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"KafkaSource({self._topic!r}, group={self._group!r})"

    # -- reading ------------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[Message]:
        check_unread(self, read=self._iterated, closed=self._closed)
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
        decode = self._decoder.decode
        poll_ms = _POLL_MS if stop_at_end else 1000
        idle_ms = 0  # polled with nothing fetched since the broker last answered
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
                    ahead.append((generation, records, decode(tp.partition, records)))
                if batches:
                    idle_ms = 0
                    ready.set()
                elif (idle_ms := idle_ms + poll_ms) >= _PROBE_MS:
                    idle_ms = 0
                    await self._probe(consumer)
        finally:
            ready.set()

    async def _probe(self, consumer: Any) -> None:
        """Make sure the broker still answers (a metadata request), since a fetch
        from a broker that went away just brings nothing: a lost broker is tried
        again as ``reconnect`` says, then fails the run."""
        errors = self._aiokafka.errors
        within = self._timeout

        async def ask() -> None:
            try:
                await asyncio.wait_for(consumer.topics(), within)
            except errors.KafkaError as exc:  # no metadata from any known broker
                raise errors.KafkaConnectionError(str(exc)) from exc

        await reconnecting(
            ask,
            retry=self._reconnect,
            lost=self._lost,
            what=f"reaching Kafka at {self._servers} to read {self._topic!r}",
        )

    async def _stop_fetching(self) -> None:
        fetching, self._fetching = self._fetching, None
        if fetching is not None and not fetching.done():
            fetching.cancel()
            await asyncio.gather(fetching, return_exceptions=True)

    # -- the consumer -------------------------------------------------------------

    async def _start(self) -> Any:
        aiokafka = self._aiokafka
        session_ms = round(self._session_timeout * 1000)
        consumer = await start_client(
            partial(
                aiokafka.AIOKafkaConsumer,
                bootstrap_servers=self._servers,
                group_id=self._group,
                enable_auto_commit=False,
                auto_offset_reset=self._auto_offset_reset,
                session_timeout_ms=session_ms,
                max_poll_records=self._batch_size,
                **{"heartbeat_interval_ms": max(100, session_ms // 3), **self._options},
            ),
            within=self._timeout,
            retry=self._reconnect,
            lost=self._lost,
            what=f"connecting to Kafka at {self._servers} to read {self._topic!r}",
        )
        consumer.subscribe([self._topic], listener=listener(aiokafka, self))
        self._consumer = consumer
        if self._closed:  # closed while connecting
            await consumer.stop()
        return consumer

    # -- acknowledgement ----------------------------------------------------------

    async def ack(self, count: int) -> None:
        """Commit the offsets the first ``count`` messages handed over newly cover.

        One commit for all partitions: per partition, the offset after its
        last message among them. Messages of partitions given up in a
        rebalance are not committed.
        """
        await self._ack(count)

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
                await _stop(consumer)

    async def __aenter__(self) -> KafkaSource:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


async def _stop(consumer: Any) -> None:
    """Stop ``consumer``. With its broker gone, aiokafka may let out the
    cancellation of a fetch task of its own while stopping: that one is not the
    run's, and must not pass for it (it would hide why the run stopped)."""
    task = asyncio.current_task()
    cancelling = task.cancelling() if task is not None else 0
    try:
        await consumer.stop()
    except asyncio.CancelledError:
        if task is None or task.cancelling() > cancelling:
            raise  # this task was cancelled
        log.warning("pipeflow: the Kafka consumer let out a cancellation while stopping")
