"""``BackpressureConfig``: how much a pipe may hold and how fast it may go."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

__all__ = ["BackpressureConfig", "Overflow"]

Overflow = Literal["block", "drop_oldest", "drop_newest", "fail"]
_OVERFLOWS: tuple[str, ...] = ("block", "drop_oldest", "drop_newest", "fail")


@dataclass(frozen=True, slots=True, kw_only=True)
class BackpressureConfig:
    """Bounds and pacing for one pipe's input.

    Giving a pipe a config puts a bounded buffer in front of it: its upstream runs
    in a task of its own and fills the buffer, the pipe drains it. Without one, a
    pipe runs fused with its upstream and holds only the chunk it is working on.

    Attributes:
        max_buffer_size: the most items held between the pipe and its upstream.
        throttle_threshold: in (0, 1]. Once the buffer is fuller than this
            fraction (or full) the pipe is in backpressure: intake pauses until
            the buffer drains below it, and a source that can pause is told.
        min_processing_time: seconds; the least time one item occupies a worker,
            so the pipe never exceeds ``concurrency / min_processing_time`` items/s.
        overflow: what a full buffer does with more input: ``"block"`` (wait,
            the default), ``"drop_oldest"``, ``"drop_newest"`` or ``"fail"``
            (raise ``BufferOverflowError``). Every drop is counted in the
            ``dropped`` metric of the pipe that owns the buffer.

    Raises:
        ValueError: for an invalid field, naming it, what was expected and what came.
    """

    max_buffer_size: int = 1000
    throttle_threshold: float = 0.8
    min_processing_time: float = 0.0
    overflow: Overflow = "block"

    def __post_init__(self) -> None:
        size = self.max_buffer_size
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
            msg = f"max_buffer_size must be a positive int (items), got {size!r}"
            raise ValueError(msg)
        t = self.throttle_threshold
        if isinstance(t, bool) or not isinstance(t, int | float) or not 0 < t <= 1:
            msg = f"throttle_threshold must be a fraction in (0, 1], got {t!r}"
            raise ValueError(msg)
        m = self.min_processing_time
        if isinstance(m, bool) or not isinstance(m, int | float) or not math.isfinite(m) or m < 0:
            msg = f"min_processing_time must be a finite number of seconds >= 0, got {m!r}"
            raise ValueError(msg)
        if self.overflow not in _OVERFLOWS:
            msg = (
                f"overflow must be one of {', '.join(map(repr, _OVERFLOWS))}, got {self.overflow!r}"
            )
            raise ValueError(msg)

    @property
    def high_watermark(self) -> int:
        """The fill level above which the buffer is in backpressure:
        ``max(1, floor(throttle_threshold * max_buffer_size))``; a full buffer is too."""
        return max(1, math.floor(self.throttle_threshold * self.max_buffer_size))
