"""pipeflow: stream processing on asyncio.

The package is layered; each layer imports only the ones below it:

- ``pipeflow._core``: the engine. Pipes, composition, bounded buffers, the clock,
  error policies and the per-stage statistics records. Imports nothing above it.
- ``pipeflow._windows``: window maths as plain synchronous code (``_logic``) and
  ``WindowedStreamPipe``, which drives it with a clock; ``pipeflow._batching``:
  ``BatchStreamPipe``. Both are built on the core's public-to-the-package names.
- ``pipeflow._monitoring``: ``StreamMonitor``, which reads the statistics records.
- ``pipeflow._testing``: a virtual clock and scripted sources for deterministic tests.

Users import from the public concept modules, which only re-export:

- ``pipeflow.streams``: ``StreamPipe``, operators, windows, batches,
  ``BackpressureConfig``, errors.
- ``pipeflow.monitoring``: ``StreamMonitor`` and its metrics records.
- ``pipeflow.testing``: ``VirtualClock`` and test sources.
"""

__version__ = "0.1.0"
