"""Redis Streams: a source that reads a stream as a consumer of a consumer group.

``RedisStreamSource`` reads a stream as one consumer of a consumer group
(``XREADGROUP``), hands each entry over as a ``Message`` and acknowledges it
(``XACK``) once the run says its results are written: at-least-once delivery.
Entries another consumer of the group left pending for longer than
``claim_idle`` (it crashed, or was stopped) are taken over with ``XAUTOCLAIM``.

The client is redis-py's ``redis.asyncio`` (the ``redis`` extra, with the
hiredis reply parser).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from .._core._policies import Retry
from .._core._time import duration_seconds
from ._checks import check_bool, check_count, check_text, check_unread
from ._codecs import CodecLike, codec_for
from ._extras import require
from ._message import Message
from ._positions import Positions
from ._reconnect import DEFAULT_RECONNECT, check_reconnect, reconnecting
from ._redis_common import id_key, redis_errors
from ._redis_entries import Entry, EntryDecoder, raw_reply

__all__ = ["RedisSourceStatistics", "RedisStreamSource"]

log = logging.getLogger("pipeflow.connectors")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RedisSourceStatistics:
    """What a ``RedisStreamSource`` has done so far, from ``statistics()``.

    Attributes:
        delivered: entries handed over to the run (claimed ones included).
        claimed: entries taken over from other consumers of the group
            (``XAUTOCLAIM``), or from this consumer's own earlier run.
        acked: entries acknowledged (``XACK``) after the run was done with them.
        deleted: entries found pending but no longer in the stream (trimmed or
            deleted): nothing to hand over, so they are acknowledged at once.
        group_recreated: times the group was created again because the stream
            or the group had disappeared while the source was reading.
    """

    delivered: int
    claimed: int
    acked: int
    deleted: int
    group_recreated: int


def _default_consumer() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"


class RedisStreamSource:
    """Reads a Redis stream as a consumer of a consumer group, for ``pipe.run()``.

    Entries are read ``batch_size`` at a time (``XREADGROUP ... COUNT
    batch_size BLOCK block``) and handed over as ``Message`` objects: ``value``
    is the ``field`` field decoded by ``codec``, ``headers`` are the entry's
    other fields (as ``str``), ``timestamp`` is the time in the entry id (UTC),
    ``source`` is the stream, ``partition`` is 0 and ``position`` is the entry
    id (a ``str``). An entry without ``field`` is an ``UndecodableMessage``:
    reading its value raises ``DecodeError``, which goes to the first pipe's
    error policy. Entries are acknowledged (``XACK``, one call per
    acknowledgement) only once the run is done with them.

    The group is created if it does not exist (and the stream with it), at id
    ``0``: a new group reads the stream from its start. If the stream or the
    group disappears while the source runs, the group is created again the same
    way, with a warning, and reading goes on from the new stream's start.

    Given a ``consumer`` name, the source first reads again the entries that
    consumer was handed and never acknowledged (its earlier run stopped or
    crashed), then new ones. Without one it takes a unique name
    (host-pid-random). At the start and then every ``claim_idle / 2`` it takes
    over (``XAUTOCLAIM``) the entries that any consumer of the group has left
    pending for longer than ``claim_idle``, so a crashed consumer's entries are
    not stranded; ``statistics().claimed`` counts them.

    Args:
        url: the Redis URL (``redis://localhost:6379/0``).
        stream: the stream key.
        group: the consumer group.
        consumer: this consumer's name in the group; a unique one by default.
        batch_size: entries per read.
        block: how long a read waits for new entries (``timedelta`` or seconds).
        claim_idle: how long an entry stays pending with another consumer
            before this one takes it over (``timedelta`` or seconds).
        stop_at_end: end after the entries that were in the stream when the
            source started (those already pending with any consumer included:
            it waits for them to be acknowledged, or takes them over once idle
            for ``claim_idle``), instead of waiting for new ones. The batch
            that reaches the last of them may carry a few newer entries; they
            are handed over too.
        field: the field holding the payload.
        codec: ``"json"``, ``"text"``, ``"raw"`` or a ``Codec``.
        reconnect: how calls that lose the connection are tried again.
    """

    def __init__(
        self,
        url: str,
        stream: str,
        *,
        group: str,
        consumer: str | None = None,
        batch_size: int = 500,
        block: float | timedelta = 1.0,
        claim_idle: float | timedelta = 30.0,
        stop_at_end: bool = False,
        field: str = "value",
        codec: CodecLike = "json",
        reconnect: Retry = DEFAULT_RECONNECT,
    ) -> None:
        self._url = check_text(url, "url")
        self._stream = check_text(stream, "stream")
        self._group = check_text(group, "group")
        self._given_consumer = consumer is not None
        self._consumer = (
            _default_consumer() if consumer is None else check_text(consumer, "consumer")
        )
        self._batch_size = check_count(batch_size, "batch_size")
        self._block_ms = max(1, round(duration_seconds(block, "block") * 1000))
        self._claim_idle = duration_seconds(claim_idle, "claim_idle")
        self._stop_at_end = check_bool(stop_at_end, "stop_at_end")
        self._decoder = EntryDecoder(self._stream, check_text(field, "field"), codec_for(codec))
        self._reconnect = check_reconnect(reconnect)
        redis = require("redis.asyncio", "redis", "RedisStreamSource")
        exceptions = require("redis.exceptions", "redis", "RedisStreamSource")
        self._lost = redis_errors(exceptions)
        self._response_error: type[Exception] = exceptions.ResponseError
        self._client = redis.Redis.from_url(url)
        self._client.set_response_callback("XREADGROUP", raw_reply)
        self._client.set_response_callback("XAUTOCLAIM", raw_reply)
        self._positions: Positions[str] = Positions()
        self._running = asyncio.Event()
        self._running.set()
        self._started = False
        self._closed = False
        self._delivered = self._claimed = self._acked = self._deleted = self._recreated = 0
        #: Entries found pending but deleted from the stream, to acknowledge.
        self._gone: list[str] = []
        #: Whether a call was tried again since this consumer's pending entries were read.
        self._reread = False

    @property
    def consumer(self) -> str:
        """This consumer's name in the group."""
        return self._consumer

    @property
    def claimed(self) -> int:
        """Entries taken over from other consumers (or an earlier run) so far."""
        return self._claimed

    def statistics(self) -> RedisSourceStatistics:
        """What the source has done so far."""
        return RedisSourceStatistics(
            delivered=self._delivered,
            claimed=self._claimed,
            acked=self._acked,
            deleted=self._deleted,
            group_recreated=self._recreated,
        )

    def __repr__(self) -> str:
        return (
            f"RedisStreamSource({self._stream!r}, group={self._group!r}, "
            f"consumer={self._consumer!r})"
        )

    # -- the protocols a run uses ---------------------------------------------------

    def __aiter__(self) -> AsyncIterator[Message]:
        check_unread(self, read=self._started, closed=self._closed)
        self._started = True
        return self._messages()

    async def ack(self, count: int) -> None:
        """Acknowledge (``XACK``, in one call) the entries the first ``count`` items newly cover."""
        ids = self._positions.take(count)
        if not ids:
            return
        stream, group, client = self._stream, self._group, self._client
        await self._call(lambda: client.xack(stream, group, *ids), f"acknowledging {stream}")
        self._acked += len(ids)

    def pause(self) -> None:
        """Stop fetching until ``resume()``."""
        self._running.clear()

    def resume(self) -> None:
        """Fetch again."""
        self._running.set()

    async def aclose(self) -> None:
        """Close the connection pool."""
        if self._closed:
            return
        self._closed = True
        await self._client.aclose()

    # -- reading --------------------------------------------------------------------

    async def _messages(self) -> AsyncIterator[Message]:
        loop = asyncio.get_running_loop()
        await self._create_group()
        end = await self._end_id() if self._stop_at_end else None
        if self._given_consumer:
            async for message in self._own_pending():
                yield message
        claim_every = self._claim_idle / 2
        next_claim = loop.time()
        new_done = False  # stop_at_end: everything up to ``end`` has been read by the group
        running = self._running
        while True:
            if not running.is_set():
                await running.wait()
            if loop.time() >= next_claim:
                async for message in self._claim():
                    yield message
                next_claim = loop.time() + claim_every
            if self._reread:
                self._reread = False
                async for message in self._own_pending():
                    yield message
            if not new_done:
                entries = await self._read(">", block=not self._stop_at_end)
                if entries:
                    for message in await self._handed(entries):
                        yield message
                if self._stop_at_end and (
                    not entries or end is None or id_key(entries[-1][0]) >= end
                ):
                    new_done = True
                continue
            if not await self._unfinished(end):
                return
            await asyncio.sleep(min(claim_every, 0.05))
            if loop.time() >= next_claim - claim_every / 2:
                # Waiting at the end: look for abandoned entries twice as often.
                next_claim = loop.time()

    async def _call(self, call: Callable[[], Awaitable[T]], what: str) -> T:
        return await reconnecting(
            call, retry=self._reconnect, lost=self._lost, what=what, before_retry=self._lost_once
        )

    async def _lost_once(self) -> None:
        # A read whose reply was lost with the connection left its entries
        # pending with this consumer: read them again once reconnected.
        self._reread = True

    async def _create_group(self) -> bool:
        """Create the group (and the stream) if missing; whether it was created."""
        client, stream, group = self._client, self._stream, self._group

        async def create() -> bool:
            try:
                await client.xgroup_create(stream, group, id="0", mkstream=True)
            except self._response_error as exc:
                if "BUSYGROUP" in str(exc):
                    return False
                raise
            return True

        return await self._call(create, f"creating group {group} on {stream}")

    async def _nogroup(self, call: Callable[[], Awaitable[T]], what: str) -> T:
        """``call()``, through a dropped connection and a vanished group."""
        while True:
            try:
                return await self._call(call, what)
            except self._response_error as exc:
                if not str(exc).startswith("NOGROUP"):
                    raise
            if await self._create_group():
                self._recreated += 1
                log.warning(
                    "pipeflow: the stream %s or its group %s disappeared; "
                    "created the group again, reading from the stream's start",
                    self._stream,
                    self._group,
                )

    async def _end_id(self) -> tuple[int, int] | None:
        """The id of the stream's last entry now, or None if it is empty."""
        client, stream = self._client, self._stream
        last = await self._call(
            lambda: client.xrevrange(stream, count=1), f"reading the end of {stream}"
        )
        return id_key(last[0][0]) if last else None

    async def _read(self, start: str, *, block: bool) -> list[Entry]:
        """One ``XREADGROUP`` from ``start`` (``">"``: new entries)."""
        client = self._client
        args: list[Any] = ["XREADGROUP", "GROUP", self._group, self._consumer]
        args += ["COUNT", self._batch_size]
        if block:
            args += ["BLOCK", self._block_ms]
        args += ["STREAMS", self._stream, start]
        reply = await self._nogroup(
            lambda: client.execute_command(*args), f"reading {self._stream}"
        )
        if not reply:
            return []
        # RESP3 (redis-py's default) sends {stream: entries}; RESP2 [[stream, entries]].
        entries: list[Entry] = (
            next(iter(reply.values())) if isinstance(reply, dict) else reply[0][1]
        )
        return entries

    async def _own_pending(self) -> AsyncIterator[Message]:
        """The entries handed to this consumer before and never acknowledged."""
        start = "0"
        while entries := await self._read(start, block=False):
            start = entries[-1][0].decode()
            fresh = self._fresh(entries)
            self._claimed += len(fresh)
            for message in await self._handed(fresh):
                yield message

    async def _claim(self) -> AsyncIterator[Message]:
        """Take over the entries left pending longer than ``claim_idle``, a page at a time."""
        client, stream, group = self._client, self._stream, self._group
        idle_ms = str(max(0, round(self._claim_idle * 1000)))
        start = "0-0"
        while True:
            args = ["XAUTOCLAIM", stream, group, self._consumer, idle_ms, start]
            args += ["COUNT", str(self._batch_size)]
            reply = await self._nogroup(
                lambda args=args: client.execute_command(*args),  # type: ignore[misc]
                f"claiming pending entries of {stream}",
            )
            start = reply[0].decode()
            if len(reply) > 2:  # Redis 7: pending entries no longer in the stream, let go
                self._deleted += len(reply[2])
            entries = self._fresh(reply[1])
            self._claimed += len(entries)
            for message in await self._handed(entries):
                yield message
            if start == "0-0":
                return

    def _fresh(self, entries: list[Entry]) -> list[Entry]:
        """``entries`` without those handed over and not yet acknowledged."""
        if not entries or not len(self._positions):
            return entries
        handed = set(self._positions.pending())
        return [entry for entry in entries if entry[0].decode() not in handed]

    async def _unfinished(self, end: tuple[int, int] | None) -> bool:
        """Whether entries up to ``end`` are still pending, other than those handed over."""
        if end is None:
            return False
        client, stream, group = self._client, self._stream, self._group
        last = f"{end[0]}-{end[1]}"
        handed: set[str] | None = None
        start = "-"
        while True:
            page = await self._nogroup(
                lambda start=start: client.xpending_range(  # type: ignore[misc]
                    stream, group, min=start, max=last, count=self._batch_size
                ),
                f"checking the pending entries of {stream}",
            )
            if not page:
                return False
            for entry in page:
                entry_id = entry["message_id"].decode()
                if entry["consumer"].decode() != self._consumer:
                    return True
                if handed is None:
                    handed = set(self._positions.pending())
                if entry_id not in handed:
                    return True
            start = "(" + page[-1]["message_id"].decode()

    def _to_messages(self, entries: list[Entry]) -> list[Message]:
        """Messages of ``entries``, their positions recorded; deleted ones go to ``_gone``."""
        positions: list[str] = []
        gone: list[str] = []
        messages = self._decoder.messages(entries, positions, gone)
        if gone:
            self._gone += gone
        self._positions.extend(positions)
        self._delivered += len(messages)
        return messages

    async def _handed(self, entries: list[Entry]) -> list[Message]:
        """``_to_messages(entries)``, and the deleted ones among them acknowledged."""
        messages = self._to_messages(entries)
        if self._gone:
            gone, self._gone = self._gone, []
            log.warning(
                "pipeflow: %d pending entries of %s were deleted from the stream; "
                "acknowledging them",
                len(gone),
                self._stream,
            )
            client, stream, group = self._client, self._stream, self._group
            await self._call(lambda: client.xack(stream, group, *gone), f"acknowledging {stream}")
            self._deleted += len(gone)
        return messages
