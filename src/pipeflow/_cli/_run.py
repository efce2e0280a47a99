"""``pipeflow run MODULE:ATTR --source URL --sink URL``: one pipeline, from a source to a sink.

The command loads the pipeline, builds the connectors the URLs name, and runs
``pipeline.run(source, sink, stop=event)`` under ``asyncio.run``. The first
SIGINT or SIGTERM sets the event: the run drains (reads no more, writes and
acknowledges what it holds) and the command exits 0. A second one cancels the
run at once. Messages go to standard error, which leaves standard output to a
sink writing there (``--sink -``).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from .. import __version__
from .._monitoring._monitor import StreamMonitor
from ._load import LoadError, load_pipeline
from ._status import StatusLine
from ._urls import ConnectorSpec, UrlError, build, parse_sink, parse_source

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["cli", "execute"]

LOG_LEVELS = ("debug", "info", "warning", "error")
#: Exit codes besides 0 (done, or drained after a signal) and 2 (a usage error).
FAILED = 1
#: A second signal cancels the run: the shell's code for death by that signal.
CANCELLED: dict[int, int] = {signal.SIGINT: 130, signal.SIGTERM: 143}

SOURCE_HELP = """Where items come from (URL forms below).
Example: --source 'redis://localhost:6379/0?stream=orders&group=etl'"""

SINK_HELP = """Where results go (URL forms below). Example: --sink file:clean.jsonl"""

STOP_AT_END_HELP = """For a broker source: end once the messages there when the run
started are processed, instead of waiting for more. Example: --stop-at-end to work
through a backlog and exit."""

STATUS_HELP = """Show a live status line (items/s in and out, the stage with the most
backpressure, errors, skipped, dead-lettered) while standard error is a terminal;
never on a file or a pipe. Example: --no-status"""

LOG_LEVEL_HELP = """Logging on standard error; debug also prints the traceback of a
failure. Example: --log-level debug"""

EPILOG = """\b
Source and sink URLs (query parameters in [] are optional):
  redis://HOST:PORT/DB?stream=S&group=G   source [consumer, batch_size, block,
                                          claim_idle (seconds), field, codec]
  redis://HOST:PORT/DB?stream=S           sink [maxlen, approximate, field, codec]
  nats://HOST:PORT?subject=S&stream=N&durable=D
                                          source [batch_size, fetch_timeout, ack_wait,
                                          codec]
  nats://HOST:PORT?subject=S              sink [codec, max_in_flight]
  kafka://HOST:PORT[,HOST:PORT]/TOPIC?group=G
                                          source [batch_size, session_timeout,
                                          auto_offset_reset, commit_interval, codec]
  kafka://HOST:PORT[,HOST:PORT]/TOPIC     sink [codec, timeout]
  file:PATH.jsonl, file:///ABS/PATH.jsonl JSON Lines; source [follow, poll, codec],
                                          sink [codec, fsync]
  file:PATH.csv, file:///ABS/PATH.csv     CSV; source [follow, poll, delimiter],
                                          sink [delimiter]
  -                                       JSON Lines on standard input or output
codec is json (the default), text or raw.

\b
Example:
  pipeflow run jobs.orders:pipeline \\
      --source 'redis://localhost:6379/0?stream=orders&group=etl' \\
      --sink file:clean.jsonl

SIGINT (Ctrl-C) or SIGTERM drains the run: it reads no more, writes and
acknowledges what it holds, prints a summary and exits 0. A second signal stops it
at once (exit 130 after SIGINT, 143 after SIGTERM), leaving what it held
unacknowledged for a broker to deliver again. A failed run exits 1; a bad option,
URL or MODULE:ATTR exits 2."""


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="pipeflow")
def cli() -> None:
    """Run pipeflow pipelines from the command line."""


@cli.command(
    "run",
    epilog=EPILOG,
)
@click.argument("target", metavar="MODULE:ATTR")
@click.option(
    "--source",
    envvar="PIPEFLOW_SOURCE",
    show_envvar=True,
    required=True,
    metavar="URL",
    help=SOURCE_HELP,
)
@click.option(
    "--sink", envvar="PIPEFLOW_SINK", show_envvar=True, required=True, metavar="URL", help=SINK_HELP
)
@click.option(
    "--stop-at-end",
    is_flag=True,
    envvar="PIPEFLOW_STOP_AT_END",
    show_envvar=True,
    help=STOP_AT_END_HELP,
)
@click.option(
    "--status/--no-status",
    default=True,
    envvar="PIPEFLOW_STATUS",
    show_envvar=True,
    show_default=True,
    help=STATUS_HELP,
)
@click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    default="warning",
    envvar="PIPEFLOW_LOG_LEVEL",
    show_envvar=True,
    show_default=True,
    help=LOG_LEVEL_HELP,
)
def run(
    target: str, source: str, sink: str, stop_at_end: bool, status: bool, log_level: str
) -> None:
    """Run the pipeline MODULE:ATTR from --source to --sink.

    MODULE is imported with the current directory on the path, as by python -m;
    ATTR is a pipe or pipeline (for example jobs.orders:pipeline), or a function
    of no arguments that returns one. Every option can also be set by the
    environment variable shown beside it.
    """
    try:
        source_spec = parse_source(source, stop_at_end=stop_at_end)
    except UrlError as exc:
        raise click.BadParameter(str(exc), param_hint="'--source'") from None
    try:
        sink_spec = parse_sink(sink)
    except UrlError as exc:
        raise click.BadParameter(str(exc), param_hint="'--sink'") from None
    debug = log_level == "debug"
    with _logging(log_level):
        try:
            pipeline = load_pipeline(target)
        except LoadError as exc:
            if debug and exc.__cause__ is not None:
                traceback.print_exception(exc.__cause__)
            raise click.BadParameter(str(exc), param_hint="'MODULE:ATTR'") from None
        code = asyncio.run(_connect_and_execute(pipeline, source_spec, sink_spec, status, debug))
    sys.exit(code)


async def _connect_and_execute(
    pipeline: Any, source_spec: ConnectorSpec, sink_spec: ConnectorSpec, status: bool, debug: bool
) -> int:
    """Build the connectors (in the loop, where some may need one) and run."""
    from rich.console import Console

    source = _build(source_spec, "--source")
    try:
        sink = _build(sink_spec, "--sink")
    except BaseException:
        await _close(source)
        raise
    console = Console(stderr=True) if status else None
    return await execute(pipeline, source, sink, console=console, debug=debug)


@dataclass
class _Signals:
    """The signals received while the run goes on."""

    stop: asyncio.Event
    first: int | None = None
    second: int | None = None


async def execute(
    pipeline: Any, source: Any, sink: Any, *, console: Console | None, debug: bool = False
) -> int:
    """Run ``pipeline`` from ``source`` to ``sink`` until it ends, fails or is stopped.

    The first SIGINT or SIGTERM drains the run, a second cancels it. Messages and
    the summary go to standard error.

    Args:
        pipeline: what ``load_pipeline`` returned.
        source, sink: the connectors.
        console: where the live status line goes (drawn only on a terminal), or
            ``None`` for none.
        debug: print the traceback of a failure.

    Returns:
        The exit code: 0 when the run ended or drained, 1 when it failed, 130
        (143) when a second SIGINT (SIGTERM) cancelled it.
    """
    monitor = _monitor_for(pipeline)
    signals = _Signals(asyncio.Event())
    loop = asyncio.get_running_loop()
    task = loop.create_task(pipeline.run(source, sink, stop=signals.stop), name="pipeflow: run")
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, _on_signal, signals, task, signum)
    try:
        if console is not None and monitor is not None:
            async with StatusLine(monitor, console):
                await asyncio.wait([task])
        else:
            await asyncio.wait([task])
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        if not task.done():  # this coroutine itself was cancelled
            task.cancel()
            await asyncio.wait([task])
    return _report(task, signals, monitor, debug=debug)


def _on_signal(signals: _Signals, task: asyncio.Task[Any], signum: int) -> None:
    name = signal.Signals(signum).name
    if signals.first is None:
        signals.first = signum
        signals.stop.set()
        _say(f"stopping: draining the run ({name}); send it again to stop at once")
    elif signals.second is None:
        signals.second = signum
        _say(f"stopping at once ({name}): what the run holds stays unacknowledged")
        task.cancel()


def _monitor_for(pipeline: Any) -> StreamMonitor | None:
    """The monitor to read the status from: the pipeline's own ``StreamMonitor`` if it
    has one, else a new one set on it; ``None`` if it has a monitor of another kind,
    which is left in place."""
    get_monitor = getattr(pipeline, "get_monitor", None)
    own = get_monitor() if callable(get_monitor) else None
    if isinstance(own, StreamMonitor):
        return own
    if own is not None or not callable(getattr(pipeline, "set_monitor", None)):
        return None
    monitor = StreamMonitor()
    pipeline.set_monitor(monitor)
    return monitor


def _so_far(monitor: StreamMonitor | None) -> str:
    """`` after N in, M out`` from the monitor, or nothing without one."""
    if monitor is None:
        return ""
    metrics = monitor.get_metrics()
    return f" after {metrics.items_in:,} in, {metrics.items_out:,} out"


def _report(
    task: asyncio.Task[Any], signals: _Signals, monitor: StreamMonitor | None, *, debug: bool
) -> int:
    if task.cancelled():
        _say(
            f"cancelled{_so_far(monitor)}: "
            "items not yet acknowledged are delivered again by a broker source"
        )
        return CANCELLED.get(signals.second or signal.SIGINT, 130)
    error = task.exception()
    if error is not None:
        if debug:
            traceback.print_exception(error)
        first_line = str(error).splitlines()[0] if str(error) else ""
        _say(
            f"run failed{_so_far(monitor)}: "
            f"{type(error).__name__}: {first_line}"
            + ("" if debug else " (--log-level debug shows the traceback)")
        )
        return FAILED
    _say(summary_line(task.result()))
    return 0


def summary_line(summary: Any) -> str:
    """The closing line: what the run read, wrote, skipped and so on, and how long it took."""
    parts = [
        f"{summary.items_in:,} in",
        f"{summary.items_out:,} out",
        f"{summary.skipped:,} skipped",
        f"{summary.dead_lettered:,} dead-lettered",
        f"{summary.late:,} late",
    ]
    if summary.dropped:
        parts.append(f"{summary.dropped:,} dropped")
    line = "done: " + ", ".join(parts) + f" in {summary.duration:.1f} s"
    if summary.stopped:
        line = (
            "stopped: " + ", ".join(parts) + f" in {summary.duration:.1f} s; "
            f"{summary.unacknowledged:,} left unacknowledged for redelivery"
        )
    return line


def _build(spec: ConnectorSpec, option: str) -> Any:
    try:
        return build(spec)
    except (LookupError, TypeError, ValueError) as exc:
        msg = f"{spec.kind}: {exc}"
        raise click.BadParameter(msg, param_hint=f"'{option}'") from None
    except ImportError as exc:
        raise click.ClickException(str(exc)) from None


async def _close(connector: Any) -> None:
    aclose = getattr(connector, "aclose", None)
    if callable(aclose):
        await aclose()


def _say(line: str) -> None:
    # Through ``sys.stderr`` as it is now: while the status line is drawn, rich
    # has replaced it, to print the message above the line.
    sys.stderr.write(f"pipeflow: {line}\n")
    sys.stderr.flush()


class _StderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is at the time, so that the status line,
    which takes over standard error while it is drawn, keeps log lines above it."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
        except Exception:
            self.handleError(record)


@contextmanager
def _logging(level: str) -> Iterator[None]:
    """Log records of ``level`` and above to standard error while the block runs."""
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    before = root.level
    root.addHandler(handler)
    root.setLevel(level.upper())
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(before)
