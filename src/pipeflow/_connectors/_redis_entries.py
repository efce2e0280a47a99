"""Redis stream entries, as redis-py hands them over raw, turned into ``Message`` objects."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from .._core._errors import DecodeError
from ._codecs import Codec, codec_name, decode_message
from ._message import Message, UndecodableMessage

__all__ = ["Entry", "EntryDecoder", "raw_reply"]

#: An entry as Redis sends it: its id and its fields as a flat list (``None`` once deleted).
Entry = list[Any]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_new_message = Message.__new__


def raw_reply(response: Any, **options: Any) -> Any:
    """A reply as Redis sent it (the source parses stream entries itself)."""
    return response


class EntryDecoder:
    """Makes the ``Message`` objects of a stream's entries.

    Args:
        stream: the stream key, the messages' ``source``.
        field: the field holding the payload.
        codec: decodes the payload.
    """

    __slots__ = ("_codec", "_field", "_field_name", "_stream", "_ts", "_ts_ms")

    def __init__(self, stream: str, field: str, codec: Codec) -> None:
        self._stream = stream
        self._field_name = field
        self._field = field.encode()
        self._codec = codec
        # The last timestamp made, by the start of the id it came from ("<ms>-").
        self._ts_ms = b"-"
        self._ts: datetime | None = None

    def messages(
        self, entries: list[Entry], positions: list[str], gone: list[str]
    ) -> list[Message]:
        """Messages of ``entries``; their ids go to ``positions``, deleted ones' to ``gone``."""
        messages: list[Message] = []
        append = messages.append
        record = positions.append
        field = self._field
        decode = self._codec.decode
        stream = self._stream
        new = _new_message
        ts_ms, ts = self._ts_ms, self._ts
        for entry_id, fields in entries:
            position = entry_id.decode()
            if not fields:
                gone.append(position)
                continue
            if not entry_id.startswith(ts_ms):
                ts_ms = entry_id[: entry_id.index(b"-") + 1]
                ts = _EPOCH + timedelta(milliseconds=int(ts_ms[:-1]))
            if len(fields) == 2 and fields[0] == field:
                try:
                    value = decode(fields[1])
                except Exception:
                    message = self._slow_message(fields, position, ts)
                else:
                    message = new(Message)
                    message.value = value
                    message.key = None
                    message.headers = {}
                    message.timestamp = ts
                    message.source = stream
                    message.partition = 0
                    message.position = position
                    message.raw = None
            else:
                message = self._slow_message(fields, position, ts)
            append(message)
            record(position)
        self._ts_ms, self._ts = ts_ms, ts
        return messages

    def _slow_message(self, fields: list[Any], position: str, ts: datetime | None) -> Message:
        """A message of an entry with other fields than the payload, or an undecodable one."""
        it = iter(fields)
        pairs = dict(zip(it, it, strict=True))
        data = pairs.pop(self._field, None)
        headers = {
            (k.decode(errors="replace") if isinstance(k, bytes) else str(k)): (
                v.decode(errors="replace") if isinstance(v, bytes) else str(v)
            )
            for k, v in pairs.items()
        }
        if data is None:
            where = f"{self._stream}[0]@{position}"
            cause = LookupError(
                f"the entry has no {self._field_name!r} field; its fields are {sorted(headers)}"
            )
            error = DecodeError(b"", codec_name(self._codec), where, cause)
            return UndecodableMessage(
                b"",
                error,
                headers=headers,
                timestamp=ts,
                source=self._stream,
                position=position,
            )
        return decode_message(
            self._codec,
            data,
            headers=headers,
            timestamp=ts,
            source=self._stream,
            position=position,
        )
