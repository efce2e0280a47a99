"""Streaming pipes, their composition, flow control and errors.

>>> from pipeflow import streams as ps
>>> pipeline = ps.map(lambda x: x + 1) | ps.filter(lambda x: x % 2 == 0)
"""

from ._batching import BatchStreamPipe as BatchStreamPipe
from ._core._buffer import MAX_CHUNK as MAX_CHUNK
from ._core._clock import Clock as Clock
from ._core._clock import SystemClock as SystemClock
from ._core._config import BackpressureConfig as BackpressureConfig
from ._core._errors import BufferOverflowError as BufferOverflowError
from ._core._errors import LateItemError as LateItemError
from ._core._errors import PipeflowError as PipeflowError
from ._core._errors import StreamError as StreamError
from ._core._operators import FunctionPipe as FunctionPipe
from ._core._operators import filter as filter
from ._core._operators import flat_map as flat_map
from ._core._operators import map as map
from ._core._pipe import Pipeable as Pipeable
from ._core._pipe import Pipeline as Pipeline
from ._core._pipe import StreamPipe as StreamPipe
from ._core._policies import DeadLetter as DeadLetter
from ._core._policies import ErrorPolicy as ErrorPolicy
from ._core._policies import Retry as Retry
from ._core._sinks import RunSummary as RunSummary
from ._core._sinks import Sink as Sink
from ._core._sources import Acknowledging as Acknowledging
from ._core._sources import Pausable as Pausable
from ._core._stream import Stream as Stream
from ._windows._pipe import WindowedStreamPipe as WindowedStreamPipe
from ._windows._window import Window as Window

__all__ = [
    "MAX_CHUNK",
    "Acknowledging",
    "BackpressureConfig",
    "BatchStreamPipe",
    "BufferOverflowError",
    "Clock",
    "DeadLetter",
    "ErrorPolicy",
    "FunctionPipe",
    "LateItemError",
    "Pausable",
    "Pipeable",
    "PipeflowError",
    "Pipeline",
    "Retry",
    "RunSummary",
    "Sink",
    "Stream",
    "StreamError",
    "StreamPipe",
    "SystemClock",
    "Window",
    "WindowedStreamPipe",
    "filter",
    "flat_map",
    "map",
]
