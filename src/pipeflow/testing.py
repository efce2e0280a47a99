"""Deterministic testing of pipelines: a virtual clock and scripted sources."""

from ._testing._clock import VirtualClock as VirtualClock
from ._testing._sources import Cue as Cue
from ._testing._sources import TestSource as TestSource

__all__ = ["Cue", "TestSource", "VirtualClock"]
