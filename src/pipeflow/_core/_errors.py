"""Exceptions raised by pipeflow.

The tree::

    PipeflowError                  root of everything pipeflow raises itself
    ├── StreamError                an item failed inside a pipe (carries the item)
    ├── LateItemError              an item came after its windows had fired (on_late="raise")
    ├── BufferOverflowError        a buffer with overflow="fail" was full
    ├── DecodeError                a message's payload could not be decoded (also a ValueError)
    └── EncodeError                a sink could not encode a result (also a TypeError)

Invalid settings raise the built-in ``ValueError`` or ``TypeError``, and a failure
of the source or of user code outside ``process_item`` (a ``process_stream``
override, say) propagates unchanged: those are not item errors.
"""

from __future__ import annotations

import reprlib
from datetime import datetime
from typing import Any

__all__ = [
    "BufferOverflowError",
    "DecodeError",
    "EncodeError",
    "LateItemError",
    "PipeflowError",
    "StreamError",
]

_short = reprlib.Repr()
_short.maxstring = 60
_short.maxother = 60


class PipeflowError(Exception):
    """Base class of every exception pipeflow raises on its own account."""


class StreamError(PipeflowError):
    """Processing one item failed, and the pipe's error policy gave up on it.

    Raised out of the stream under ``on_error="raise"`` (the default), after every
    result before the failing item has been delivered. It is also the record a
    dead-letter sink receives and a per-error callable decides on.

    Not raised for a failing source or a bug in an overridden ``process_stream``:
    those propagate unchanged. To handle failures item by item and go on, choose
    the policy ``"skip"``, a ``DeadLetter`` or a callable instead of catching this.

    Attributes:
        item: the input item that failed (for a windowed pipe's ``process_window``,
            the ``Window``; for a batch pipe's ``process_batch``, the batch).
        pipe: the name of the pipe it failed in.
        attempts: how many times processing was tried (more than 1 after retries).
        __cause__: the original exception, from the last attempt.
    """

    def __init__(self, item: Any, pipe: str, attempts: int, cause: BaseException) -> None:
        self.item = item
        self.pipe = pipe
        self.attempts = attempts
        self.__cause__ = cause
        super().__init__(
            f"pipe {pipe!r} failed on item {_short.repr(item)} after {attempts} "
            f"attempt{'s' if attempts != 1 else ''}: {type(cause).__name__}: {cause}"
        )

    def __repr__(self) -> str:
        return (
            f"StreamError(item={_short.repr(self.item)}, pipe={self.pipe!r}, "
            f"attempts={self.attempts}, cause={self.__cause__!r})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.item, self.pipe, self.attempts, self.__cause__))


class BufferOverflowError(PipeflowError):
    """A pipe's input buffer was full and its ``overflow`` strategy is ``"fail"``.

    Raised out of the stream after the items already in the buffer have been
    delivered. Under the other strategies a full buffer waits (``"block"``) or
    drops items, counting them in the pipe's ``dropped`` metric.

    Attributes:
        pipe: the name of the pipe whose buffer overflowed.
        capacity: the buffer's capacity in items.
    """

    def __init__(self, pipe: str, capacity: int) -> None:
        self.pipe = pipe
        self.capacity = capacity
        super().__init__(
            f"the input buffer of pipe {pipe!r} is full ({capacity} items) and its "
            f"overflow strategy is 'fail'"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.pipe, self.capacity))


class LateItemError(PipeflowError):
    """An item arrived after every window it belongs to had fired.

    Raised out of a windowed stream whose ``on_late`` is ``"raise"``; also the
    record a late-data sink receives. Not raised for items within the allowed
    lateness: those still land in their window.

    Attributes:
        item: the late input item.
        pipe: the name of the windowed pipe.
        timestamp: the item's event time (timezone-aware UTC).
        watermark: the watermark it was behind (timezone-aware UTC).
    """

    def __init__(self, item: Any, pipe: str, timestamp: datetime, watermark: datetime) -> None:
        self.item = item
        self.pipe = pipe
        self.timestamp = timestamp
        self.watermark = watermark
        super().__init__(
            f"pipe {pipe!r} got item {_short.repr(item)} with event time "
            f"{timestamp.isoformat()}, behind the watermark {watermark.isoformat()}: "
            f"every window it belongs to has fired"
        )

    def __repr__(self) -> str:
        return (
            f"LateItemError(item={_short.repr(self.item)}, pipe={self.pipe!r}, "
            f"timestamp={self.timestamp.isoformat()}, watermark={self.watermark.isoformat()})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.item, self.pipe, self.timestamp, self.watermark))


class DecodeError(PipeflowError, ValueError):
    """A message's payload could not be decoded by its source's codec.

    Raised when the ``value`` of such a message is read, normally by the first
    pipe, so the failure goes to that pipe's error policy as a ``StreamError``
    whose ``item`` is the message (``skip`` and ``DeadLetter`` then count it and
    let the source acknowledge it). Not raised by the source itself: one bad
    payload never stops a run on its own.

    Attributes:
        raw: the payload as received.
        codec: the name of the codec that refused it.
        where: where the payload came from (``source``, partition and position).
        __cause__: what the codec raised.
    """

    def __init__(self, raw: bytes, codec: str, where: str, cause: BaseException) -> None:
        self.raw = raw
        self.codec = codec
        self.where = where
        self.__cause__ = cause
        super().__init__(
            f"cannot decode the payload of {where} with the {codec!r} codec: "
            f"{type(cause).__name__}: {cause}; payload: {_short.repr(raw)}"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.raw, self.codec, self.where, self.__cause__))


class EncodeError(PipeflowError, TypeError):
    """A sink could not encode a result with its codec.

    Raised out of ``run()``: the pipeline produced a result the sink cannot
    write (an object the JSON codec does not know, text for the ``"raw"``
    codec). It is not retried, and the result's item stays unacknowledged.

    Attributes:
        result: the result that could not be encoded.
        codec: the name of the sink's codec.
        __cause__: what the codec raised.
    """

    def __init__(self, result: Any, codec: str, cause: BaseException) -> None:
        self.result = result
        self.codec = codec
        self.__cause__ = cause
        super().__init__(
            f"the {codec!r} codec cannot encode the result {_short.repr(result)} "
            f"({type(result).__name__}): {type(cause).__name__}: {cause}"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.result, self.codec, self.__cause__))
