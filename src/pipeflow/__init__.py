"""pipeflow: stream processing on asyncio.

The package is layered; each layer imports only the ones below it:

- ``pipeflow._core``: the engine. Pipes, composition, bounded buffers, the clock,
  error policies and the per-stage statistics records. Imports nothing above it.
- ``pipeflow._windows``: window maths as plain synchronous code (``_logic``) and
  ``WindowedStreamPipe``, which drives it with a clock; ``pipeflow._batching``:
  ``BatchStreamPipe``. Both are ``TimedStage`` loops, built on the core's
  public-to-the-package names.
- ``pipeflow._monitoring``: ``StreamMonitor``, which reads the statistics records;
  the Prometheus exporter and the console reporter, which read the monitor.
- ``pipeflow._testing``: a virtual clock and scripted sources for deterministic tests.
- ``pipeflow._connectors``: ``Message``, codecs, and the sources and sinks for
  files, Redis Streams, NATS JetStream and Kafka; each broker's client is an
  extra, imported only by its own modules.
- ``pipeflow._cli``: the ``pipeflow run`` command (the ``cli`` extra), built on
  the connectors.

Inside ``_core``, from what users write down to what runs:

- ``_pipe``, ``_operators``: ``StreamPipe``, ``Pipeline``, ``map``/``filter``/
  ``flat_map``: descriptions, composed with ``|``; ``stream()`` starts a run.
- ``_stage``: the ``Stage`` protocol, the contract between the engine and a stage
  (the hooks a pipe implements), and ``Composition``, what a run reads of a pipe.
- ``_stream``: ``Stream``, one run as the user holds it; ``_sinks``: ``Sink``
  and ``run(source, sink)``, a run written into a sink before it is acknowledged.
- ``_plan``: where the buffers go and which stages run together.
- ``_run``: ``Run``, the plan's loops and feeder tasks built, with what a run
  tracks while it delivers; ``_shutdown``: how a run stops.
- ``_consumers``, ``_lifecycle``: the generators the consumer iterates, and the
  one frame that ends and closes a run, for all of them.
- ``_fusion``: adjacent sync operators compiled into one loop (and into the
  consumer's generator); ``_stages``: the other per-item stage loops, with
  ``_concurrent`` (calls in flight) and ``_flat`` (``flat_map``);
  ``_stream_stage``: chains of ``process_stream`` overrides; ``_timed``: the
  loop of stages that hold items and act on timers (windows, batches).
- ``_sources``, ``_ready``, ``_idle``, ``_acks``: reading sources in chunks, and
  their acknowledgements, pauses and idle time; ``_stop``: reading until a
  ``stop=`` event, for a graceful end.
- ``_buffer``: ``ChunkBuffer``, the bounded buffer at each boundary;
  ``_dead_letters``: dead-letter pipes as side streams.
- ``_config``, ``_clock``, ``_time``, ``_errors``, ``_policies``, ``_stats``:
  flow-control settings, the clock, durations in microseconds, the errors,
  error policies, and the statistics records.

Users import from the public concept modules, which only re-export:

- ``pipeflow.streams``: ``StreamPipe``, operators, windows, batches,
  ``BackpressureConfig``, errors.
- ``pipeflow.monitoring``: ``StreamMonitor``, its metrics records, the Prometheus
  collector and the console reporter.
- ``pipeflow.testing``: ``VirtualClock`` and test sources.
- ``pipeflow.connectors``: ``Message``, codecs, sources and sinks.
"""

__version__ = "0.1.0"
