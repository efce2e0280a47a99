"""Codecs: how connectors turn payload bytes into values and results into bytes.

``codec=`` on a source or sink takes ``"json"`` (the default; orjson),
``"text"`` (UTF-8), ``"raw"`` (bytes as they are), or any object with
``encode(value) -> bytes`` and ``decode(data: bytes) -> value``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol, runtime_checkable

import orjson

from .._core._errors import DecodeError, EncodeError
from ._message import Message, UndecodableMessage

__all__ = [
    "Codec",
    "CodecLike",
    "JsonCodec",
    "RawCodec",
    "TextCodec",
    "codec_for",
    "codec_name",
    "decode_message",
    "encode_result",
]


@runtime_checkable
class Codec(Protocol):
    """Turns values into payload bytes and back."""

    def encode(self, value: Any) -> bytes:
        """The payload for ``value``; raises (any exception) if it has none."""
        ...

    def decode(self, data: bytes) -> Any:
        """The value of payload ``data``; raises (any exception) if it is malformed."""
        ...


class JsonCodec:
    """JSON with orjson: UTF-8 bytes, compact; datetimes as RFC 3339 text,
    dataclasses as objects, dict keys that are not strings as their text."""

    __slots__ = ()
    name = "json"

    def encode(self, value: Any) -> bytes:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)

    def decode(self, data: bytes) -> Any:
        return orjson.loads(data)

    def __repr__(self) -> str:
        return "JsonCodec()"


class TextCodec:
    """UTF-8 text: ``decode`` gives a ``str``; ``encode`` takes a ``str``."""

    __slots__ = ()
    name = "text"

    def encode(self, value: Any) -> bytes:
        if not isinstance(value, str):
            msg = f"the text codec encodes str, got {type(value).__name__}"
            raise TypeError(msg)
        return value.encode()

    def decode(self, data: bytes) -> Any:
        return data.decode()

    def __repr__(self) -> str:
        return "TextCodec()"


class RawCodec:
    """Bytes as they are: ``decode`` gives ``bytes``; ``encode`` takes bytes-like values."""

    __slots__ = ()
    name = "raw"

    def encode(self, value: Any) -> bytes:
        if isinstance(value, bytes):
            return value
        if isinstance(value, bytearray | memoryview):
            return bytes(value)
        msg = f"the raw codec encodes bytes, got {type(value).__name__}"
        raise TypeError(msg)

    def decode(self, data: bytes) -> Any:
        return bytes(data)

    def __repr__(self) -> str:
        return "RawCodec()"


CodecLike = str | Codec
"""What ``codec=`` takes: ``"json"``, ``"text"``, ``"raw"`` or a ``Codec``."""

_BUILTIN: dict[str, Codec] = {"json": JsonCodec(), "text": TextCodec(), "raw": RawCodec()}


def codec_for(codec: object, option: str = "codec") -> Codec:
    """The codec ``codec`` names, or ``codec`` itself if it encodes and decodes.

    Raises:
        ValueError: for an unknown name.
        TypeError: for anything else.
    """
    if isinstance(codec, str):
        try:
            return _BUILTIN[codec]
        except KeyError:
            msg = f"{option} must be one of {sorted(_BUILTIN)} or a Codec, got {codec!r}"
            raise ValueError(msg) from None
    if isinstance(codec, type):
        msg = f"{option} takes a codec instance, not the class {codec.__name__}"
        raise TypeError(msg)
    if not (callable(getattr(codec, "encode", None)) and callable(getattr(codec, "decode", None))):
        msg = (
            f"{option} must be 'json', 'text', 'raw' or an object with encode(value) -> bytes "
            f"and decode(data) -> value; got {type(codec).__name__}"
        )
        raise TypeError(msg)
    return codec  # type: ignore[return-value]


def codec_name(codec: Codec) -> str:
    """The name errors give ``codec``: its ``name``, or its type's."""
    name = getattr(codec, "name", None)
    return name if isinstance(name, str) else type(codec).__name__


def decode_message(
    codec: Codec,
    data: bytes,
    *,
    key: Any = None,
    headers: dict[str, Any] | None = None,
    timestamp: datetime | None = None,
    source: str = "",
    partition: int = 0,
    position: Any = None,
) -> Message:
    """A ``Message`` of ``data`` decoded, or an ``UndecodableMessage`` if the codec refuses it."""
    try:
        value = codec.decode(data)
    except Exception as exc:
        where = f"{source or '?'}[{partition}]@{position}"
        error = DecodeError(bytes(data), codec_name(codec), where, exc)
        return UndecodableMessage(
            bytes(data),
            error,
            key=key,
            headers=headers,
            timestamp=timestamp,
            source=source,
            partition=partition,
            position=position,
        )
    return Message(
        value,
        key=key,
        headers=headers,
        timestamp=timestamp,
        source=source,
        partition=partition,
        position=position,
    )


def encode_result(codec: Codec, result: Any) -> bytes:
    """The payload for a result: a ``Message``'s ``value``, or the result itself, encoded.

    An ``UndecodableMessage`` that reaches a sink is written as its raw payload.

    Raises:
        EncodeError: if the codec refuses it.
    """
    if isinstance(result, Message):
        if isinstance(result, UndecodableMessage):
            assert result.raw is not None
            return result.raw
        value = result.value
    else:
        value = result
    try:
        return codec.encode(value)
    except Exception as exc:
        raise EncodeError(result, codec_name(codec), exc) from exc
