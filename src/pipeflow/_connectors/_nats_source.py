"""NATS JetStream: a durable pull consumer as a source.

``NatsSource`` reads a stream through a durable pull consumer with explicit
acknowledgements: it asks for ``batch_size`` messages at a time (one pull
request, answered by a burst of messages into the source's inbox) and asks for
the next batch as soon as one has arrived, so that the server sends it while
the pipeline works on the last. Each message is acknowledged on its own once
the run is done with it, so workers sharing the durable never acknowledge each
other's messages; the acknowledgements of one ``ack()`` go out together and
the last one waits for the server's reply, which comes once the server has
processed all of them (it handles a connection's messages in order).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import orjson

from .._core._policies import Retry
from .._core._time import duration_seconds
from ._checks import check_bool, check_count, check_text, check_unread
from ._codecs import CodecLike, codec_for, decode_message
from ._extras import require
from ._message import Message
from ._nats_client import STATUS, NatsClient
from ._positions import Positions
from ._reconnect import DEFAULT_RECONNECT, check_reconnect, reconnecting

__all__ = ["NatsSource"]

log = logging.getLogger("pipeflow.connectors")

T = TypeVar("T")

#: How long a JetStream API call (stream or consumer info, an acknowledgement's reply) may take.
API_TIMEOUT = 10.0
#: A pull request that got no answer this long after its expiry is given up (the connection
#: dropped meanwhile) and asked again.
FETCH_GRACE = 2.0
#: How many unacknowledged messages a consumer the source creates lets out at once, in batches.
MAX_ACK_PENDING_BATCHES = 20
_ACK = b"+ACK"
_NAK = b"-NAK"
_DESCRIPTION = "Description"


def _metadata(reply: str) -> tuple[int, datetime]:
    """The stream sequence and timestamp of a JetStream message, from its ack subject.

    ``$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<ns>.<pending>``,
    or the newer form with a domain and account hash after ``ACK`` (and a token at the end).
    """
    tokens = reply.split(".")
    i = 5 if len(tokens) == 9 else 7
    stamp = datetime.fromtimestamp(int(tokens[i + 2]) / 1e9, UTC)
    return int(tokens[i]), stamp


class NatsSource:
    """Messages of a JetStream stream, read through a durable pull consumer.

    The consumer ``durable`` on ``stream`` is created if missing, with explicit
    acknowledgements, ``ack_wait``, ``subject`` as its filter, delivery from the
    stream's first message, and up to ``20 * batch_size`` messages out
    unacknowledged. A consumer that exists is used as it is: if it does not
    acknowledge explicitly or does not filter exactly ``subject`` the source
    refuses it (``ValueError``); another ``ack_wait`` is logged and the consumer's own is
    kept (several workers may share it). A missing stream is an error
    (``LookupError``): the source does not create streams, whose storage and
    limits are for their owner to decide.

    Each message is a ``Message``: ``value`` decoded by ``codec``, ``headers``
    the NATS headers, ``timestamp`` the time JetStream stored it (UTC),
    ``source`` its subject, ``partition`` 0, ``position`` its stream sequence.
    A message the server sends again (its acknowledgement did not come within
    ``ack_wait``) is normal at-least-once delivery.

    The run's acknowledgements are sent per message (``+ACK`` to each message's
    reply subject), so several workers can share the durable and split its
    messages; ``ack()`` returns once the server has processed them.

    With ``stop_at_end=True`` the source ends once the messages that were in the
    stream when it started (up to the stream's last sequence then) are all
    handed over: nothing is left undelivered up to that sequence and no message
    awaits an acknowledgement from anyone but this source. Messages a dead
    worker held come back after ``ack_wait`` and are waited for; messages
    stored after the start are given back (``-NAK``) for a later run.

    Args:
        url: the NATS server, ``nats://host:port``.
        subject: the subject to read (the consumer's filter; wildcards allowed).
        stream: the JetStream stream holding the messages.
        durable: the durable consumer's name, shared by the workers of one job.
        batch_size: messages per pull request.
        fetch_timeout: how long a pull request waits for messages, as a
            ``timedelta`` or seconds.
        ack_wait: how long the server waits for an acknowledgement before
            sending a message again, for a consumer the source creates.
        stop_at_end: end after the messages in the stream at the start.
        codec: how payloads are decoded (``"json"``, ``"text"``, ``"raw"`` or a ``Codec``).
        reconnect: how the connection is retried: nats-py makes up to
            ``reconnect.attempts`` attempts, ``reconnect``'s mean backoff apart.

    Raises:
        ImportError: without the ``nats`` extra.
        ValueError, TypeError: for a bad argument, naming it.
    """

    def __init__(
        self,
        url: str,
        subject: str,
        *,
        stream: str,
        durable: str,
        batch_size: int = 500,
        fetch_timeout: timedelta | float = 1.0,
        ack_wait: timedelta | float = 30.0,
        stop_at_end: bool = False,
        codec: CodecLike = "json",
        reconnect: Retry = DEFAULT_RECONNECT,
    ) -> None:
        nats = require("nats", "nats", "NatsSource")
        self._url = check_text(url, "url")
        self._subject = check_text(subject, "subject")
        self._stream = check_text(stream, "stream")
        self._durable = check_text(durable, "durable")
        if "." in durable or "*" in durable or ">" in durable:
            msg = f"durable must be a name without '.', '*' or '>', got {durable!r}"
            raise ValueError(msg)
        self._batch_size = check_count(batch_size, "batch_size")
        self._fetch_timeout = duration_seconds(fetch_timeout, "fetch_timeout")
        self._ack_wait = duration_seconds(ack_wait, "ack_wait")
        self._stop_at_end = check_bool(stop_at_end, "stop_at_end")
        self._codec = codec_for(codec)
        self._client = NatsClient(
            nats, self._url, check_reconnect(reconnect), f"NatsSource({stream})"
        )
        self._client.reconnected = self._request_lost
        self._positions: Positions[str] = Positions()
        self._inbox: deque[Any] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False
        self._iterated = False
        self._gen: AsyncGenerator[Message, None] | None = None
        self._sub: Any = None
        self._js: Any = None
        #: Messages still to come for the open pull request (0: none open).
        self._expected = 0
        self._request_deadline = 0.0
        #: Set when the connection is re-established while an ``ack()`` awaits the server.
        self._reconnected: asyncio.Future[None] | None = None
        #: Clear while an ``ack()`` is under way.
        self._acks_done = asyncio.Event()
        self._acks_done.set()
        self._held: dict[int, str] = {}  # stop_at_end: messages past the end, given back at the end

    def __repr__(self) -> str:
        return (
            f"NatsSource({self._url!r}, {self._subject!r}, "
            f"stream={self._stream!r}, durable={self._durable!r})"
        )

    # -- the run's calls -------------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[Message]:
        check_unread(self, read=self._iterated)
        self._iterated = True
        self._gen = self._messages()
        return self._gen

    async def ack(self, count: int) -> None:
        """Acknowledge the messages the first ``count`` items newly cover, one by one.

        Returns once the server has processed the acknowledgements.
        """
        replies = self._positions.take(count)
        if not replies:
            return
        nc = self._client.nc
        if nc is None:
            msg = f"{self!r}: acknowledged after it was closed"
            raise RuntimeError(msg)
        last = replies.pop()

        async def send() -> None:
            self._client.check_open()
            publish = nc.publish
            for reply in replies:
                await publish(reply, _ACK)
            await self._confirm(nc, last)

        self._acks_done.clear()
        try:
            await reconnecting(
                send,
                retry=self._client.reconnect,
                lost=self._client.lost(),
                what=f"{self._client.what}: acknowledging {len(replies) + 1} messages",
                before_retry=self._consumer_exists,
            )
        finally:
            self._acks_done.set()

    async def _consumer_exists(self) -> None:
        """Raise ``LookupError`` if the consumer is gone (acknowledgements then go nowhere)."""
        try:
            await self._js.consumer_info(self._stream, self._durable)
        except self._client.nats.js.errors.NotFoundError:
            msg = (
                f"NatsSource: consumer {self._durable!r} on stream {self._stream!r} no longer "
                "exists; its messages cannot be acknowledged"
            )
            raise LookupError(msg) from None

    async def _confirm(self, nc: Any, reply: str) -> None:
        """Acknowledge ``reply`` and wait for the server's answer, which comes once it has
        processed everything this connection sent before (a connection is served in order).

        A reconnection meanwhile loses the answer: ``ConnectionResetError``, to send again.
        """
        loop = asyncio.get_running_loop()
        lost = self._reconnected = loop.create_future()
        request = asyncio.ensure_future(nc.request(reply, _ACK, timeout=API_TIMEOUT))
        try:
            await asyncio.wait((request, lost), return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._reconnected = None
            if not request.done():
                request.cancel()
        if not request.done() or request.cancelled():
            msg = "the connection was re-established before the server confirmed the acks"
            raise ConnectionResetError(msg)
        request.result()

    def pause(self) -> None:
        """Ask for no more messages until ``resume()``."""
        self._paused = True

    def resume(self) -> None:
        """Ask for messages again."""
        self._paused = False
        self._wake()

    async def aclose(self) -> None:
        """Give back held messages and close the connection."""
        gen, self._gen = self._gen, None
        if gen is not None:
            with contextlib.suppress(RuntimeError):  # it is running: its reader closes it
                await gen.aclose()
        nc = self._client.nc
        if nc is not None and not nc.is_closed and self._held:
            with contextlib.suppress(Exception):
                for reply in self._held.values():
                    await nc.publish(reply, _NAK)
                await nc.flush(timeout=2)
        self._held.clear()
        await self._client.aclose()

    # -- reading ---------------------------------------------------------------------------

    async def _messages(self) -> AsyncGenerator[Message, None]:
        nc = await self._client.connect()
        js = self._js = nc.jetstream(timeout=API_TIMEOUT)
        await self._api(lambda: self._ensure_consumer(js), "setting up the consumer")
        end = await self._api(lambda: self._end_sequence(js), "reading the stream's end")
        self._sub = await nc.subscribe(nc.new_inbox(), cb=self._on_message)
        next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{self._stream}.{self._durable}"
        inbox = self._inbox
        codec, positions = self._codec, self._positions
        no_wait = end is not None  # stop_at_end: ask for what is there, without waiting
        ended = False
        while True:
            if not inbox:
                if ended:
                    return
                if self._expected == 0 and not self._paused:
                    await self._request(nc, next_subject, no_wait=no_wait)
                await self._wait()
                continue
            msg = inbox.popleft()
            reply = msg.reply
            if not reply:  # a status message: the pull request is over
                if self._request_over(msg.headers or {}):
                    self._expected = 0
                    if end is not None:
                        settled = await self._settled(js, end)
                        ended, no_wait = settled is None, bool(settled)
                continue
            expected = self._expected
            if expected > 0:  # else a straggler of a request given up on
                self._expected = expected - 1
                if expected == 1 and not self._paused:  # the batch is in: ask for the next
                    await self._request(nc, next_subject, no_wait=no_wait)
            seq, stamp = _metadata(reply)
            if end is not None and seq > end:
                self._held[seq] = reply
                continue
            positions.append(reply)
            yield decode_message(
                codec,
                msg.data,
                headers=msg.headers,
                timestamp=stamp,
                source=msg.subject,
                position=seq,
            )

    async def _on_message(self, msg: Any) -> None:
        self._inbox.append(msg)
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _request_lost(self) -> None:
        """After a reconnection the open pull request is gone: ask again; and the answer to
        acknowledgements under way is gone: send them again."""
        self._expected = 0
        self._wake()
        lost = self._reconnected
        if lost is not None and not lost.done():
            lost.set_result(None)

    def _request_over(self, headers: dict[str, str]) -> bool:
        """Whether a status message ends the pull request; raises for a consumer gone wrong."""
        status, description = headers.get(STATUS), headers.get(_DESCRIPTION, "")
        if status == "100":  # a heartbeat
            return False
        if status == "503" or (
            status == "409" and description.startswith(("Consumer", "Exceeded MaxRequest"))
        ):
            msg = (
                f"NatsSource: fetching from consumer {self._durable!r} on stream "
                f"{self._stream!r} failed: {status} {description or 'no responders'}"
            )
            raise LookupError(msg)
        return True

    async def _request(self, nc: Any, subject: str, *, no_wait: bool) -> None:
        expires = self._fetch_timeout
        body: dict[str, Any] = {"batch": self._batch_size}
        if no_wait:
            body["no_wait"] = True
        else:
            body["expires"] = int(expires * 1e9)
        self._client.check_open()
        try:
            await nc.publish(subject, orjson.dumps(body), reply=self._sub.subject)
        except self._client.lost():
            # Buffered requests are refused while reconnecting: try again after it.
            self._expected = 0
            return
        self._expected = self._batch_size
        loop = asyncio.get_running_loop()
        self._request_deadline = loop.time() + expires + FETCH_GRACE

    async def _wait(self) -> None:
        """Wait for a message, a status, a resume or a reconnection."""
        loop = asyncio.get_running_loop()
        self._client.check_open()
        waiter = self._waiter = loop.create_future()
        if self._expected == 0:
            timeout = None if self._paused else FETCH_GRACE
        else:
            timeout = max(self._request_deadline - loop.time(), 0.0)
        try:
            async with asyncio.timeout(timeout):
                await waiter
        except TimeoutError:
            self._expected = 0  # no answer to the pull request: ask again
        finally:
            self._waiter = None
        self._client.check_open()

    # -- setup and the end -----------------------------------------------------------------

    async def _ensure_consumer(self, js: Any) -> None:
        nats = self._client.nats
        api = nats.js.api
        not_found = nats.js.errors.NotFoundError
        try:
            await js.stream_info(self._stream)
        except not_found:
            msg = (
                f"NatsSource: the JetStream stream {self._stream!r} does not exist on "
                f"{self._url}; create it (for example with `nats stream add`) first"
            )
            raise LookupError(msg) from None
        try:
            info = await js.consumer_info(self._stream, self._durable)
        except not_found:
            config = api.ConsumerConfig(
                durable_name=self._durable,
                name=self._durable,
                ack_policy=api.AckPolicy.EXPLICIT,
                ack_wait=self._ack_wait,
                deliver_policy=api.DeliverPolicy.ALL,
                filter_subject=self._subject,
                max_ack_pending=MAX_ACK_PENDING_BATCHES * self._batch_size,
            )
            try:
                await js.add_consumer(self._stream, config=config)
                return
            except nats.js.errors.BadRequestError:
                # Another worker made it meanwhile, with other settings: check them.
                info = await js.consumer_info(self._stream, self._durable)
        self._check_consumer(info.config)

    def _check_consumer(self, config: Any) -> None:
        where = f"consumer {self._durable!r} on stream {self._stream!r}"
        if config.ack_policy != "explicit":
            msg = (
                f"NatsSource needs {where} to acknowledge explicitly; "
                f"it has ack_policy={config.ack_policy!r}"
            )
            raise ValueError(msg)
        if config.filter_subject != self._subject:
            filters = config.filter_subject or config.filter_subjects or "all (no filter)"
            msg = f"NatsSource was given subject={self._subject!r} but {where} filters {filters!r}"
            raise ValueError(msg)
        if config.ack_wait is not None and abs(config.ack_wait - self._ack_wait) > 1e-3:
            log.warning(
                "pipeflow: %s has ack_wait=%ss; keeping it (the source was given %ss)",
                where,
                config.ack_wait,
                self._ack_wait,
            )

    async def _api(self, call: Callable[[], Awaitable[T]], what: str) -> T:
        """``await call()``, a JetStream API call, tried again across a reconnection."""
        client = self._client
        return await reconnecting(
            call, retry=client.reconnect, lost=client.lost(), what=f"{client.what}: {what}"
        )

    async def _end_sequence(self, js: Any) -> int | None:
        """``stop_at_end``: the stream's last sequence now; else ``None``."""
        if not self._stop_at_end:
            return None
        info = await js.stream_info(self._stream)
        return int(info.state.last_seq)

    async def _settled(self, js: Any, end: int) -> bool | None:
        """After a pull came back short: ``None`` if the source is at its end, else
        whether the next pull should be ``no_wait`` (False: wait for redeliveries)."""
        # Acknowledgements under way are not counted as held, so wait until the server has them.
        await self._acks_done.wait()
        info = await self._api(
            lambda: js.consumer_info(self._stream, self._durable), "reading the consumer's state"
        )
        delivered_all = info.num_pending == 0 or info.delivered.stream_seq >= end
        # The messages this source holds, each once (one may have come twice).
        mine = len({_metadata(reply)[0] for reply in self._positions.pending()}) + len(self._held)
        if delivered_all and info.num_ack_pending <= mine:
            return None
        return False
