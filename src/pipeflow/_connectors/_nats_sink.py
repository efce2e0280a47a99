"""NATS JetStream: publishes, confirmed by the stream, as a sink.

``NatsSink`` publishes each result to JetStream and waits for the stream's
acknowledgements (PubAcks) of a whole write at once, with up to
``max_in_flight`` of them outstanding.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from .._core._errors import EncodeError
from .._core._policies import Retry
from ._checks import check_count, check_text
from ._codecs import CodecLike, codec_for, codec_name, encode_result
from ._extras import require
from ._message import Message
from ._nats_client import STATUS, NatsClient
from ._reconnect import DEFAULT_RECONNECT, check_reconnect, reconnecting

__all__ = ["NatsSink"]

#: How long a write waits for its PubAcks before it counts as failed.
PUBLISH_TIMEOUT = 10.0


def _headers(result: Any) -> dict[str, str] | None:
    """The NATS headers to publish a result with: a ``Message``'s, as text."""
    if isinstance(result, Message) and result.headers:
        return {k: str(v) for k, v in result.headers.items()}
    return None


class NatsSink:
    """Publishes each result to a JetStream subject and waits for the stream to store it.

    ``write(items)`` publishes every result with a reply subject of its own,
    up to ``max_in_flight`` unconfirmed at a time, and returns once the stream
    has acknowledged each one (a PubAck). A ``Message`` result is written by its
    ``value`` and keeps its ``headers``. Publishes lost to a dropped connection
    are sent again once the client has reconnected (only those not yet
    acknowledged, as ``reconnect`` allows); a publish the server refuses (no
    stream captures the subject, a stream limit) fails the write, which the run
    tries again as its ``write_retry`` says.

    Args:
        url: the NATS server, ``nats://host:port``.
        subject: the subject to publish to; a JetStream stream must capture it.
        codec: how results are encoded (``"json"``, ``"text"``, ``"raw"`` or a ``Codec``).
        max_in_flight: the most publishes awaiting their PubAck at once.
        reconnect: how the connection is retried, as for ``NatsSource``.

    Raises:
        ImportError: without the ``nats`` extra.
        ValueError, TypeError: for a bad argument, naming it.
    """

    def __init__(
        self,
        url: str,
        subject: str,
        *,
        codec: CodecLike = "json",
        max_in_flight: int = 1000,
        reconnect: Retry = DEFAULT_RECONNECT,
    ) -> None:
        nats = require("nats", "nats", "NatsSink")
        self._url = check_text(url, "url")
        self._subject = check_text(subject, "subject")
        if any(c in subject for c in "*> \t"):
            msg = f"subject must be a subject to publish to, without wildcards; got {subject!r}"
            raise ValueError(msg)
        self._codec = codec_for(codec)
        self._max_in_flight = check_count(max_in_flight, "max_in_flight")
        self._client = NatsClient(
            nats, self._url, check_reconnect(reconnect), f"NatsSink({subject})"
        )
        self._client.reconnected = self._connection_changed
        self._inbox = ""
        self._writes = 0
        #: This attempt's reply-token prefix and the publishes awaiting their PubAck, by token.
        self._prefix = ""
        self._outstanding: dict[str, int] = {}
        self._unconfirmed: dict[int, Any] = {}
        self._waiter: asyncio.Future[None] | None = None
        self._failure: Exception | None = None

    def __repr__(self) -> str:
        return f"NatsSink({self._url!r}, {self._subject!r})"

    async def write(self, items: list[Any]) -> None:
        """Publish ``items``; return once JetStream has stored every one.

        Raises:
            EncodeError: for a result the codec cannot encode, or whose payload is
                over the server's ``max_payload`` (nothing is published).
            ConnectionError: if the client gave up reconnecting.
            RuntimeError: if JetStream refused a publish.
        """
        if not items:
            return
        codec = self._codec
        payloads = [encode_result(codec, r) for r in items]
        headers = [_headers(r) for r in items]
        nc = self._client.nc
        if nc is None:
            nc = await self._client.connect()
            self._inbox = nc.new_inbox()
            await nc.subscribe(f"{self._inbox}.>", cb=self._on_ack)
        limit = nc.max_payload
        for result, payload in zip(items, payloads, strict=True):
            if len(payload) > limit:  # the server would refuse it, every time
                cause = ValueError(
                    f"{len(payload)} bytes is over the server's max_payload of {limit} bytes"
                )
                raise EncodeError(result, codec_name(codec), cause)
        self._unconfirmed = dict(enumerate(zip(payloads, headers, strict=True)))
        client = self._client
        await reconnecting(
            lambda: self._publish(nc),
            retry=client.reconnect,
            lost=client.lost(),
            what=f"{client.what}: publishing {len(items)} results",
        )

    async def _publish(self, nc: Any) -> None:
        """Publish what is unconfirmed, and wait for the PubAcks."""
        loop = asyncio.get_running_loop()
        self._client.check_open()
        self._writes += 1
        prefix = self._prefix = f"{self._inbox}.{self._writes}."
        outstanding = self._outstanding = {}
        self._failure = None
        publish, subject, limit = nc.publish, self._subject, self._max_in_flight
        try:
            for i, (payload, headers) in list(self._unconfirmed.items()):
                while len(outstanding) >= limit:
                    await self._wait(loop)
                token = str(i)
                outstanding[token] = i
                await publish(subject, payload, reply=prefix + token, headers=headers)
            while outstanding:
                await self._wait(loop)
        finally:
            self._prefix = ""

    async def _wait(self, loop: asyncio.AbstractEventLoop) -> None:
        waiter = self._waiter = loop.create_future()
        try:
            async with asyncio.timeout(PUBLISH_TIMEOUT):
                await waiter
        except TimeoutError:
            msg = f"no PubAck for {len(self._outstanding)} publishes within {PUBLISH_TIMEOUT} s"
            raise TimeoutError(msg) from None
        finally:
            self._waiter = None
        if self._failure is not None:
            raise self._failure
        self._client.check_open()

    async def _on_ack(self, msg: Any) -> None:
        prefix = self._prefix
        if not prefix or not msg.subject.startswith(prefix):
            return  # the answer to an earlier attempt
        i = self._outstanding.pop(msg.subject[len(prefix) :], None)
        if i is None:
            return
        headers = msg.headers
        if headers and headers.get(STATUS) == "503":
            self._failure = LookupError(
                f"NatsSink: no JetStream stream captures subject {self._subject!r} on "
                f"{self._url} (or JetStream is not ready yet)"
            )
        else:
            try:
                reply = orjson.loads(msg.data)
            except orjson.JSONDecodeError:
                reply = {"error": {"description": f"unexpected reply {msg.data[:80]!r} {headers}"}}
            error = reply.get("error") if isinstance(reply, dict) else None
            if error is None:
                del self._unconfirmed[i]
            else:
                self._failure = RuntimeError(
                    f"NatsSink: JetStream refused a message for {self._subject!r}: "
                    f"{error.get('description')} (code {error.get('err_code')})"
                )
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _connection_changed(self) -> None:
        """After a reconnection the PubAcks awaited are lost: fail the attempt, to publish again."""
        waiter = self._waiter
        if waiter is not None and not waiter.done() and self._outstanding:
            waiter.set_exception(ConnectionResetError("NATS connection was re-established"))

    async def aclose(self) -> None:
        """Close the connection."""
        await self._client.aclose()
