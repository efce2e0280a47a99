"""Redis Streams: a sink that appends every result to a stream (``XADD``).

``RedisStreamSink`` sends all of a write's results in one pipelined round
trip. The client is redis-py's ``redis.asyncio`` (the ``redis`` extra, with the
hiredis reply parser).
"""

from __future__ import annotations

from typing import Any

from .._core._errors import EncodeError
from .._core._policies import Retry
from ._checks import check_bool, check_count, check_text
from ._codecs import CodecLike, codec_for, codec_name, encode_result
from ._extras import require
from ._message import Message
from ._reconnect import DEFAULT_RECONNECT, check_reconnect, reconnecting
from ._redis_common import redis_errors

__all__ = ["RedisStreamSink"]


class RedisStreamSink:
    """Appends results to a Redis stream (``XADD``), for ``pipe.run()``.

    Each result becomes one entry whose ``field`` holds the result encoded by
    ``codec`` (a ``Message`` by its ``value``; its ``headers`` become further
    fields of the entry). A write sends all its entries in one pipelined round
    trip and returns once Redis has answered for every one of them; if any was
    refused, the write raises (and the run tries it again as its
    ``write_retry`` says, so an entry may be appended twice: at-least-once).

    Args:
        url: the Redis URL (``redis://localhost:6379/0``).
        stream: the stream key.
        maxlen: trim the stream to about this many entries as it grows
            (``XADD ... MAXLEN ~ maxlen``); ``None`` (the default) keeps every entry.
        approximate: trim with ``~`` (cheaper; the stream may stay a little
            longer than ``maxlen``); ``False`` trims exactly.
        field: the field holding the payload.
        codec: ``"json"``, ``"text"``, ``"raw"`` or a ``Codec``.
        reconnect: how writes that lose the connection are tried again.
    """

    def __init__(
        self,
        url: str,
        stream: str,
        *,
        maxlen: int | None = None,
        approximate: bool = True,
        field: str = "value",
        codec: CodecLike = "json",
        reconnect: Retry = DEFAULT_RECONNECT,
    ) -> None:
        self._url = check_text(url, "url")
        self._stream = check_text(stream, "stream")
        if maxlen is not None:
            check_count(maxlen, "maxlen")
        check_bool(approximate, "approximate")
        self._field_name = check_text(field, "field")
        self._codec = codec_for(codec)
        self._reconnect = check_reconnect(reconnect)
        redis = require("redis.asyncio", "redis", "RedisStreamSink")
        exceptions = require("redis.exceptions", "redis", "RedisStreamSink")
        self._lost = redis_errors(exceptions)
        self._response_error: type[Exception] = exceptions.ResponseError
        self._pack = require("hiredis", "redis", "RedisStreamSink").pack_command
        self._client = redis.Redis.from_url(url)
        head: list[Any] = ["XADD", stream]
        if maxlen is not None:
            head += ["MAXLEN", "~" if approximate else "=", maxlen]
        self._head = (*head, "*")
        self._closed = False
        #: Entries appended so far.
        self.written = 0

    def __repr__(self) -> str:
        return f"RedisStreamSink({self._stream!r})"

    async def write(self, items: list[Any]) -> None:
        """Append one entry per result, in one round trip; return once Redis has answered.

        Raises:
            EncodeError: if the codec cannot encode a result (not retried).
            redis.exceptions.ResponseError: if Redis refused an entry.
        """
        if not items:
            return
        data = self._commands(items)
        count = len(items)
        pool = self._client.connection_pool
        refused = self._response_error

        async def send() -> list[Any]:
            conn = await pool.get_connection()
            try:
                await conn.send_packed_command(data)
                replies: list[Any] = []
                for _ in range(count):
                    try:
                        replies.append(await conn.read_response())
                    except refused as exc:
                        replies.append(exc)
            except BaseException:
                # Replies may be left unread: the connection is no longer of use.
                await conn.disconnect()
                raise
            finally:
                await pool.release(conn)
            return replies

        replies = await reconnecting(
            send, retry=self._reconnect, lost=self._lost, what=f"writing to {self._stream}"
        )
        for reply in replies:
            if isinstance(reply, Exception):
                failed = sum(isinstance(r, Exception) for r in replies)
                reply.add_note(
                    f"pipeflow: {failed} of {len(replies)} entries were refused by "
                    f"{self._stream}; the others were appended"
                )
                raise reply
        self.written += len(replies)

    def _commands(self, items: list[Any]) -> bytes:
        """The ``XADD`` commands for ``items``, packed for the wire by hiredis."""
        pack, encode = self._pack, self._codec.encode
        head = (*self._head, self._field_name)
        parts: list[bytes] = []
        append = parts.append
        item: Any = None
        try:
            for item in items:
                if isinstance(item, Message):
                    if item.headers:
                        append(self._with_headers(item))
                        continue
                    payload = (
                        encode(item.value)
                        if type(item) is Message
                        else encode_result(self._codec, item)
                    )
                else:
                    payload = encode(item)
                append(pack((*head, payload)))
        except EncodeError:
            raise
        except Exception:
            encode_result(self._codec, item)  # raises the EncodeError that says why
            raise
        return b"".join(parts)

    def _with_headers(self, message: Message) -> bytes:
        """The ``XADD`` command for a message with headers: each one a field of the entry."""
        payload = encode_result(self._codec, message)
        field = self._field_name
        args: list[Any] = [*self._head]
        for name, value in message.headers.items():
            if name != field:
                args += (name, value)
        try:
            return self._pack((*args, field, payload))  # type: ignore[no-any-return]
        except TypeError as exc:
            raise EncodeError(message, codec_name(self._codec), exc) from exc

    async def aclose(self) -> None:
        """Close the connection pool."""
        if self._closed:
            return
        self._closed = True
        await self._client.aclose()
