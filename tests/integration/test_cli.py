"""``pipeflow run``: loading MODULE:ATTR, option and URL errors, help, the run with its
signals, summary, status line and exit codes, and end-to-end runs of the command.

The run itself (``execute``) is tested in-process with plain sources and sinks;
the command is tested with click's runner for its errors and in a subprocess,
as users run it, for the end-to-end runs.
"""

from __future__ import annotations

import asyncio
import io
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from rich.console import Console

from pipeflow import streams as ps
from pipeflow._cli._load import LoadError, load_pipeline
from pipeflow._cli._run import cli, execute, summary_line
from pipeflow._cli._status import Rates, StatusLine, status_text
from pipeflow.monitoring import StageMetrics, StreamMetrics, StreamMonitor
from pipeflow.streams import RunSummary

ROOT = Path(__file__).resolve().parents[2]
PYTHON = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv").is_dir() else sys.executable


# MODULE:ATTR


@pytest.fixture
def modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleMaker]:
    """Write modules into a fresh current directory; forget them afterwards."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", os.getcwd())])
    maker = ModuleMaker(tmp_path)
    yield maker
    for name in maker.names:
        sys.modules.pop(name, None)


class ModuleMaker:
    def __init__(self, where: Path) -> None:
        self.where = where
        self.names: list[str] = []

    def __call__(self, code: str) -> str:
        """A new module holding ``code``; its name."""
        name = f"job_{uuid.uuid4().hex[:8]}"
        (self.where / f"{name}.py").write_text(code, encoding="utf-8")
        self.names.append(name)
        return name


PIPELINE = """
from pipeflow import streams as ps

pipeline = ps.map(lambda x: x, name="same")
number = 3

def make():
    return ps.map(str, name="made")

def needs(x):
    return pipeline

def not_one():
    return 42

def broken():
    raise RuntimeError("no config")

class Holder:
    inner = ps.map(str, name="inner")
"""


def test_a_pipeline_is_found_in_a_module_of_the_current_directory(modules: ModuleMaker) -> None:
    """MODULE is imported from the current directory, as python -m would."""
    name = modules(PIPELINE)
    assert "same" == load_pipeline(f"{name}:pipeline").name


def test_a_function_of_no_arguments_is_called_for_the_pipeline(modules: ModuleMaker) -> None:
    """ATTR may be a factory."""
    name = modules(PIPELINE)
    assert "made" == load_pipeline(f"{name}:make").name


def test_a_dotted_attribute(modules: ModuleMaker) -> None:
    """ATTR may reach into an object."""
    name = modules(PIPELINE)
    assert "inner" == load_pipeline(f"{name}:Holder.inner").name


LOAD_ERRORS = [
    ("{m}", "expected MODULE:ATTR (for example jobs.orders:pipeline), got '{m}'"),
    ("{m}:", "expected MODULE:ATTR"),
    (":pipeline", "expected MODULE:ATTR"),
    ("nosuchmodule_x:pipeline", "no module named 'nosuchmodule_x' (looked in the current"),
    ("{m}:missing", "{m} has no attribute 'missing'; its pipelines: pipeline"),
    ("{m}:Holder.missing", "{m}:Holder has no attribute 'missing'; its pipelines: inner"),
    ("{m}:number", "{m}:number is an int (3), not a pipeline: expected a pipe or pipeline"),
    ("{m}:needs", "{m}:needs is a function that takes arguments"),
    ("{m}:not_one", "{m}:not_one() returned an int (42), not a pipeline"),
    ("{m}:broken", "calling {m}:broken() failed: RuntimeError: no config"),
]


@pytest.mark.parametrize(("target", "message"), LOAD_ERRORS)
def test_load_errors(modules: ModuleMaker, target: str, message: str) -> None:
    """Each way MODULE:ATTR can miss says what it found and what was expected."""
    name = modules(PIPELINE)
    with pytest.raises(LoadError) as caught:
        load_pipeline(target.format(m=name))
    assert message.format(m=name) in str(caught.value)


def test_a_module_that_fails_to_import(modules: ModuleMaker) -> None:
    """An error inside the module (its own missing import too) is reported as such."""
    bad = modules("import nosuchdependency_y\n")
    with pytest.raises(LoadError, match=r"importing module '.*' failed: ModuleNotFoundError"):
        load_pipeline(f"{bad}:pipeline")
    worse = modules("1 / 0\n")
    with pytest.raises(LoadError, match=r"failed: ZeroDivisionError: division by zero"):
        load_pipeline(f"{worse}:pipeline")


# The command's errors and help


def invoke(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(cli, list(args), env=env, prog_name="pipeflow")


def test_help_explains_each_option_with_an_example() -> None:
    """`pipeflow run --help` covers every option, its environment variable, the URL forms
    and the signals."""
    result = invoke("run", "--help")
    assert 0 == result.exit_code
    text = result.output
    for option, envvar in [
        ("--source URL", "PIPEFLOW_SOURCE"),
        ("--sink URL", "PIPEFLOW_SINK"),
        ("--stop-at-end", "PIPEFLOW_STOP_AT_END"),
        ("--status / --no-status", "PIPEFLOW_STATUS"),
        ("--log-level", "PIPEFLOW_LOG_LEVEL"),
    ]:
        assert option in text
        assert envvar in text
    assert 5 <= text.count("Example:")
    for form in ("redis://HOST:PORT/DB?stream=S&group=G", "nats://", "kafka://", "file:PATH"):
        assert form in text
    assert "SIGTERM drains the run" in text
    assert "exit 130" in text


def test_a_bad_source_url_is_a_usage_error_naming_the_option(modules: ModuleMaker) -> None:
    """Exit code 2; the message names --source, the URL, the problem and the form."""
    name = modules(PIPELINE)
    result = invoke("run", f"{name}:pipeline", "--source", "redis://h:1/0?stream=s", "--sink", "-")
    assert 2 == result.exit_code
    assert (
        "Invalid value for '--source': 'redis://h:1/0?stream=s': missing group=; "
        "expected redis://HOST:PORT/DB?stream=STREAM&group=GROUP"
    ) in " ".join(result.stderr.split())


def test_a_bad_sink_url_is_a_usage_error(modules: ModuleMaker) -> None:
    """The sink is checked against a sink's parameters."""
    name = modules(PIPELINE)
    result = invoke("run", f"{name}:pipeline", "--source", "-", "--sink", "kafka://k:1/t?group=g")
    assert 2 == result.exit_code
    assert "Invalid value for '--sink'" in result.stderr
    assert (
        "unknown query parameter 'group' for a kafka sink (known: codec, timeout)" in result.stderr
    )


def test_a_missing_module_is_a_usage_error() -> None:
    """Exit code 2 with the loader's message."""
    result = invoke("run", "nosuchmodule_z:pipeline", "--source", "-", "--sink", "-")
    assert 2 == result.exit_code
    assert "Invalid value for 'MODULE:ATTR': no module named 'nosuchmodule_z'" in result.stderr


def test_not_a_pipeline_is_a_usage_error(modules: ModuleMaker) -> None:
    """Exit code 2 naming what was found."""
    name = modules(PIPELINE)
    result = invoke("run", f"{name}:number", "--source", "-", "--sink", "-")
    assert 2 == result.exit_code
    assert f"{name}:number is an int (3), not a pipeline" in result.stderr


def test_source_and_sink_are_required() -> None:
    """Without --source (or PIPEFLOW_SOURCE) the command says which is missing."""
    result = invoke("run", "x:y", "--sink", "-", env={"PIPEFLOW_SOURCE": ""})
    assert 2 == result.exit_code
    assert "Missing option '--source'" in result.stderr


def test_options_come_from_the_environment(modules: ModuleMaker) -> None:
    """PIPEFLOW_SOURCE and PIPEFLOW_SINK stand for the options (checked as they are)."""
    name = modules(PIPELINE)
    env = {"PIPEFLOW_SOURCE": "redis://h:1/0?stream=s", "PIPEFLOW_SINK": "-"}
    result = invoke("run", f"{name}:pipeline", env=env)
    assert 2 == result.exit_code
    assert "Invalid value for '--source': 'redis://h:1/0?stream=s': missing group=" in (
        " ".join(result.stderr.split())
    )
    env = {"PIPEFLOW_SOURCE": "file:in.jsonl?follow=true", "PIPEFLOW_STOP_AT_END": "true"}
    result = invoke("run", f"{name}:pipeline", "--sink", "-", env=env)
    assert 2 == result.exit_code
    assert "--stop-at-end is for broker sources" in result.stderr
    env = {"PIPEFLOW_SOURCE": "-", "PIPEFLOW_SINK": "-", "PIPEFLOW_LOG_LEVEL": "loud"}
    result = invoke("run", f"{name}:pipeline", env=env)
    assert 2 == result.exit_code
    assert "Invalid value for '--log-level'" in result.stderr


def test_without_the_extra_the_command_names_what_to_install() -> None:
    """With click missing, `pipeflow` prints one line and exits 1."""
    code = "import sys; sys.modules['click'] = None; from pipeflow._cli import main; main()"
    done = run_python("-c", code)
    assert 1 == done.returncode
    assert (
        "pipeflow: the command needs click, which is not installed: "
        "pip install 'pipeflow-streams[cli]'\n"
    ) == done.stderr


def test_the_console_script_is_declared() -> None:
    """The distribution installs `pipeflow`, calling pipeflow._cli:main."""
    from importlib.metadata import entry_points

    (script,) = entry_points(group="console_scripts", name="pipeflow")
    assert "pipeflow._cli:main" == script.value


def test_version() -> None:
    """`pipeflow --version` names the package's version."""
    import pipeflow

    result = invoke("--version")
    assert 0 == result.exit_code
    assert f"pipeflow, version {pipeflow.__version__}\n" == result.output


# The run: summary, failure, signals


async def counting(stop_after: int | None = None, *, signals: int = 1) -> AsyncIterator[int]:
    """0, 1, 2, ... forever, sending this process SIGTERM after ``stop_after`` items."""
    n = 0
    while True:
        if n == stop_after:
            for _ in range(signals):
                os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.sleep(0)
        yield n
        n += 1


async def test_a_run_that_ends_prints_its_summary(capsys: pytest.CaptureFixture[str]) -> None:
    """Exit code 0 and one line of counts on standard error; nothing on standard output."""
    written: list[int] = []
    pipeline = ps.filter(lambda x: x % 2 == 0, name="even")
    code = await execute(pipeline, range(10), written, console=None)
    assert 0 == code
    assert [0, 2, 4, 6, 8] == written
    out, err = capsys.readouterr()
    assert "" == out
    assert err.startswith("pipeflow: done: 10 in, 5 out, 0 skipped, 0 dead-lettered, 0 late in ")


async def test_sigterm_drains_the_run(capsys: pytest.CaptureFixture[str]) -> None:
    """The first signal stops reading; what was read is written; exit code 0."""
    written: list[int] = []
    code = await execute(ps.map(lambda x: x, name="same"), counting(50), written, console=None)
    assert 0 == code
    assert {asyncio.current_task()} == asyncio.all_tasks()
    assert 50 <= len(written)
    assert list(range(len(written))) == written
    err = capsys.readouterr().err
    assert "pipeflow: stopping: draining the run (SIGTERM); send it again to stop at once\n" in err
    assert f"pipeflow: stopped: {len(written)} in, {len(written)} out, " in err
    assert "0 left unacknowledged for redelivery" in err


class StuckSink:
    """A sink whose first write signals this process ``count`` times, then never returns."""

    def __init__(self, signum: int, count: int) -> None:
        self.signum = signum
        self.count = count
        self.closed = False

    async def write(self, items: list[Any]) -> None:
        for _ in range(self.count):
            os.kill(os.getpid(), self.signum)
        await asyncio.Event().wait()

    async def aclose(self) -> None:
        self.closed = True


@pytest.mark.parametrize(("signum", "expected"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
async def test_a_second_signal_stops_at_once(
    capsys: pytest.CaptureFixture[str], signum: signal.Signals, expected: int
) -> None:
    """A run that cannot drain is cancelled by the second signal: exit 130 after SIGINT,
    143 after SIGTERM; the sink is closed all the same."""
    sink = StuckSink(signum, 2)
    code = await execute(ps.map(str), counting(), sink, console=None)
    assert expected == code
    assert sink.closed
    assert {asyncio.current_task()} == asyncio.all_tasks()  # nothing left running
    err = capsys.readouterr().err
    assert f"pipeflow: stopping: draining the run ({signum.name})" in err
    assert f"pipeflow: stopping at once ({signum.name}): what the run holds" in err
    assert "pipeflow: cancelled after " in err


def fail_on_3(x: int) -> int:
    if x == 3:
        raise ValueError("three is not allowed")
    return x


async def test_a_failed_run_exits_1_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """The error in one line, no traceback unless asked for."""
    code = await execute(ps.map(fail_on_3, name="check"), range(10), [], console=None)
    assert 1 == code
    assert {asyncio.current_task()} == asyncio.all_tasks()
    err = capsys.readouterr().err
    assert 1 == len(err.splitlines())
    assert err.startswith("pipeflow: run failed after ")
    assert "ValueError: three is not allowed (--log-level debug shows the traceback)" in err


async def test_a_failed_run_with_debug_prints_the_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--log-level debug adds the traceback."""
    code = await execute(ps.map(fail_on_3), range(10), [], console=None, debug=True)
    assert 1 == code
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err
    assert "in fail_on_3" in err


async def test_the_pipelines_own_monitor_is_kept() -> None:
    """A pipeline whose module set a StreamMonitor keeps it (for its exporters); the
    status line reads it."""
    monitor = StreamMonitor()
    pipeline = ps.map(str, name="own")
    pipeline.set_monitor(monitor)
    assert 0 == await execute(pipeline, range(5), [], console=None)
    assert 5 == monitor.get_metrics().items_in


def test_logging_is_set_for_the_run_only(modules: ModuleMaker) -> None:
    """The command's log handler and level are undone when it returns."""
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    name = modules(PIPELINE)
    invoke(
        "run", f"{name}:pipeline", "--source", "-", "--sink", "nats://h:1", "--log-level", "debug"
    )
    assert (handlers, level) == (root.handlers, root.level)


def test_summary_line_says_what_a_stop_left_unacknowledged() -> None:
    """After a stop, the summary says how many items a broker will deliver again."""
    summary = RunSummary(
        items_in=1200,
        items_out=1100,
        skipped=3,
        dead_lettered=2,
        late=1,
        dropped=0,
        writes=12,
        write_retries=0,
        duration=2.25,
        stopped=True,
        in_flight_at_stop=40,
        unacknowledged=95,
    )
    assert (
        "stopped: 1,200 in, 1,100 out, 3 skipped, 2 dead-lettered, 1 late in 2.2 s; "
        "95 left unacknowledged for redelivery"
    ) == summary_line(summary)


# The status line


def stage(name: str, backpressure: float) -> StageMetrics:
    return StageMetrics(name=name, backpressure=backpressure)


def test_status_text_shows_rates_the_busiest_stage_and_the_counts() -> None:
    """One line: time, counts and rates in and out, the stage with the most
    backpressure, errors, skipped and dead-lettered."""
    metrics = StreamMetrics(
        items_in=12345,
        items_out=12000,
        errors=7,
        skipped=5,
        dead_lettered=2,
        stages=(stage("parse", 0.1), stage("enrich", 0.73), stage("write", 0.0)),
    )
    assert (
        "12 s | in 12,345 (1,500/s) | out 12,000 (4.5/s) | backpressure 73% (enrich) "
        "| errors 7, skipped 5, dead-lettered 2"
    ) == status_text(metrics, (1500.0, 4.5), 12.4)


def test_status_text_without_errors_is_short() -> None:
    """Before any error the counts take two words."""
    metrics = StreamMetrics(items_in=1_000_000, items_out=999_000, stages=(stage("parse", 0.5),))
    assert (
        "3600 s | in 1,000,000 (25,000/s) | out 999,000 (24,990/s) | backpressure 50% (parse) "
        "| no errors"
    ) == status_text(metrics, (25_000.0, 24_990.0), 3600.0)


def test_rates_are_taken_over_the_last_seconds() -> None:
    """Items per second over a sliding window of about three seconds."""
    rates = Rates(window=3.0)
    assert (0.0, 0.0) == rates.add(0.0, 0, 0)
    assert (100.0, 50.0) == rates.add(1.0, 100, 50)
    assert (100.0, 50.0) == rates.add(2.0, 200, 100)
    assert (100.0, 50.0) == rates.add(3.0, 300, 150)
    # The sample at 0 s leaves: the rates are over 1 s to 4 s.
    assert (400.0, 50.0) == rates.add(4.0, 1300, 200)


async def test_status_line_is_drawn_on_a_terminal() -> None:
    """On a terminal the line appears; it is removed at the end."""
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=200)
    monitor = StreamMonitor()
    pipeline = ps.map(str, name="stringify")
    pipeline.set_monitor(monitor)
    async with StatusLine(monitor, console, refresh=0.01):
        await pipeline.run(range(100), [])
        await asyncio.sleep(0.05)
    text = out.getvalue()
    assert "in 100 (" in text
    assert "| backpressure " in text


async def test_status_line_is_not_drawn_elsewhere() -> None:
    """On a file or a pipe nothing is drawn."""
    out = io.StringIO()
    console = Console(file=out, force_terminal=False)
    monitor = StreamMonitor()
    async with StatusLine(monitor, console, refresh=0.01):
        await asyncio.sleep(0.05)
    assert "" == out.getvalue()


# End to end, as users run it


def run_python(*args: str, **kwargs: Any) -> Any:
    import subprocess

    return subprocess.run(
        [PYTHON, *args], capture_output=True, text=True, timeout=60, check=False, **kwargs
    )


JOB = """
from typing import Any

from pipeflow import streams as ps


def double(message: Any) -> dict[str, int]:
    return {"n": message.value["n"] * 2}


pipeline = ps.map(double, name="double") | ps.filter(lambda r: r["n"] % 4 == 0, name="fours")
"""


def records(count: int, start: int = 0) -> str:
    """``count`` JSON Lines records ``{"n": i}``."""
    return "".join(f'{{"n": {i}}}\n' for i in range(start, start + count))


def results(text: str) -> list[int]:
    """The ``n`` of each JSON Lines result."""
    import json

    return [json.loads(line)["n"] for line in text.splitlines()]


def expected(count: int) -> list[int]:
    """What JOB makes of ``records(count)``."""
    return [2 * i for i in range(count) if (2 * i) % 4 == 0]


@pytest.fixture
def job(tmp_path: Path) -> Path:
    """A directory holding the module ``job`` with a pipeline, to run the command in."""
    (tmp_path / "job.py").write_text(JOB, encoding="utf-8")
    return tmp_path


def pipeflow_run(where: Path, *args: str, env: dict[str, str] | None = None, **kwargs: Any) -> Any:
    """``python -m pipeflow._cli run`` in ``where``, its output captured."""
    return run_python("-m", "pipeflow._cli", "run", *args, cwd=where, env=clean_env(env), **kwargs)


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment without PIPEFLOW_ options or settings that force a terminal."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PIPEFLOW_") and k not in ("FORCE_COLOR", "TTY_COMPATIBLE")
    }
    return {**env, **(extra or {})}


def test_file_to_file(job: Path) -> None:
    """A JSON Lines file through the pipeline into another; the summary on standard
    error, and no status line since standard error is not a terminal."""
    (job / "in.jsonl").write_text(records(100), encoding="utf-8")
    done = pipeflow_run(
        job, "job:pipeline", "--source", "file:in.jsonl", "--sink", "file:out.jsonl"
    )
    assert 0 == done.returncode, done.stderr
    assert expected(100) == results((job / "out.jsonl").read_text(encoding="utf-8"))
    assert "" == done.stdout
    [line] = done.stderr.splitlines()
    assert line.startswith("pipeflow: done: 100 in, 50 out, 0 skipped, 0 dead-lettered, 0 late in ")
    assert " | in " not in done.stderr
    assert "\x1b" not in done.stderr  # no terminal control sequences either


def test_options_from_environment_variables(job: Path) -> None:
    """PIPEFLOW_SOURCE and PIPEFLOW_SINK stand for --source and --sink; absolute file URLs."""
    (job / "in.jsonl").write_text(records(10), encoding="utf-8")
    env = {
        "PIPEFLOW_SOURCE": f"file://{job / 'in.jsonl'}",
        "PIPEFLOW_SINK": f"file://{job / 'out.jsonl'}",
        "PIPEFLOW_STATUS": "false",
    }
    done = pipeflow_run(job, "job:pipeline", env=env)
    assert 0 == done.returncode, done.stderr
    assert expected(10) == results((job / "out.jsonl").read_text(encoding="utf-8"))


def test_stdin_to_stdout_with_the_console_script(job: Path) -> None:
    """`-` reads standard input and writes standard output; messages stay on standard error."""
    script = Path(PYTHON).parent / "pipeflow"
    if not script.exists():
        pytest.skip("the pipeflow console script is not installed in this environment")
    import subprocess

    done = subprocess.run(
        [str(script), "run", "job:pipeline", "--source", "-", "--sink", "-"],
        input=records(40),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=job,
        env=clean_env(),
        check=False,
    )
    assert 0 == done.returncode, done.stderr
    assert expected(40) == results(done.stdout)
    assert "pipeflow: done: 40 in, 20 out" in done.stderr


def test_a_failing_pipeline_exits_1(job: Path) -> None:
    """A run that fails prints its error in one line and exits 1."""
    (job / "bad.jsonl").write_text('{"n": 1}\n{"x": 2}\n', encoding="utf-8")
    done = pipeflow_run(job, "job:pipeline", "--source", "file:bad.jsonl", "--sink", "-")
    assert 1 == done.returncode
    [line] = done.stderr.splitlines()
    assert line.startswith("pipeflow: run failed after ")
    assert "KeyError: 'n'" in line


def test_csv_to_json_lines(job: Path) -> None:
    """A .csv file is read as CSV: each row a dict of strings."""
    (job / "conv.py").write_text(
        "from pipeflow import streams as ps\n"
        "pipeline = ps.map(lambda m: {'n': int(m.value['n']) * 2})\n",
        encoding="utf-8",
    )
    (job / "in.csv").write_text("n\n1\n2\n3\n", encoding="utf-8")
    done = pipeflow_run(job, "conv:pipeline", "--source", "file:in.csv", "--sink", "-")
    assert 0 == done.returncode, done.stderr
    assert [2, 4, 6] == results(done.stdout)


def wait_for(condition: Any, what: str, timeout: float = 20.0) -> None:
    """Poll ``condition`` until it holds, or fail naming ``what``."""
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_sigterm_drains_a_followed_file(job: Path) -> None:
    """With follow=true the run waits for more lines; SIGTERM drains it: exit 0, every
    line read was written whole, and the summary says it stopped."""
    import subprocess

    source = job / "in.jsonl"
    out = job / "out.jsonl"
    source.write_text(records(100), encoding="utf-8")
    args = [
        "run",
        "job:pipeline",
        "--source",
        "file:in.jsonl?follow=true",
        "--sink",
        "file:out.jsonl",
    ]
    with subprocess.Popen(
        [PYTHON, "-m", "pipeflow._cli", *args],
        cwd=job,
        env=clean_env(),
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        try:

            def written() -> int:
                return len(out.read_text().splitlines()) if out.exists() else 0

            wait_for(lambda: written() == 50, "the first 50 results")
            with source.open("a", encoding="utf-8") as f:
                f.write(records(100, start=100))
            wait_for(lambda: written() == 100, "the results of the lines added")
            process.send_signal(signal.SIGTERM)
            _, err = process.communicate(timeout=20)
        finally:
            if process.poll() is None:
                process.kill()
    assert 0 == process.returncode, err
    assert expected(200) == results(out.read_text(encoding="utf-8"))
    assert "pipeflow: stopping: draining the run (SIGTERM)" in err
    assert "pipeflow: stopped: 200 in, 100 out, " in err


def test_the_status_line_on_a_terminal(job: Path) -> None:
    """With standard error on a terminal the status line is drawn while the run goes on;
    messages print above it and the summary replaces it."""
    import pty
    import subprocess
    import threading

    (job / "in.jsonl").write_text(records(10), encoding="utf-8")
    master, slave = pty.openpty()
    shown = bytearray()

    def read() -> None:
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the terminal's other side is closed
                return
            if not chunk:
                return
            shown.extend(chunk)

    args = ["run", "job:pipeline", "--source", "file:in.jsonl?follow=true", "--sink", "-"]
    with subprocess.Popen(
        [PYTHON, "-m", "pipeflow._cli", *args],
        cwd=job,
        env=clean_env({"COLUMNS": "200", "TERM": "xterm"}),
        stdout=subprocess.PIPE,
        stderr=slave,
    ) as process:
        os.close(slave)
        reader = threading.Thread(target=read)
        reader.start()
        try:
            wait_for(lambda: b"| in 10 (" in shown, "the status line with the items read")
            process.send_signal(signal.SIGTERM)
            out, _ = process.communicate(timeout=20)
        finally:
            if process.poll() is None:
                process.kill()
            reader.join(timeout=10)
            os.close(master)
    assert 0 == process.returncode
    assert expected(10) == results(out.decode())
    text = shown.decode()
    assert "| out 5 (" in text
    assert "| no errors" in text
    assert "pipeflow: stopping: draining the run (SIGTERM)" in text
    assert text.rstrip().endswith("left unacknowledged for redelivery")


async def add_records(redis_url: str, key: str, count: int) -> None:
    """``records(count)`` as entries of the Redis stream ``key``, in the field ``value``."""
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        async with client.pipeline(transaction=False) as pipe:
            for i in range(count):
                pipe.xadd(key, {"value": f'{{"n": {i}}}'})
            await pipe.execute()
    finally:
        await client.aclose()


async def pending(redis_url: str, key: str, group: str) -> int:
    """How many entries ``group`` has read from ``key`` and not acknowledged."""
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        summary = await client.xpending(key, group)
        return int(summary["pending"])
    finally:
        await client.aclose()


async def start_command(where: Path, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        PYTHON,
        "-m",
        "pipeflow._cli",
        "run",
        *args,
        cwd=where,
        env=clean_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def test_redis_to_file_to_the_end(job: Path, redis_url: str, redis_stream: Any) -> None:
    """--stop-at-end: the command works through what the stream holds, acknowledges it
    all and exits 0."""
    await add_records(redis_url, redis_stream.key, 300)
    source = f"{redis_url}/0?stream={redis_stream.key}&group={redis_stream.group}&batch_size=50"
    process = await start_command(
        job, "job:pipeline", "--source", source, "--sink", "file:out.jsonl", "--stop-at-end"
    )
    _, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert 0 == process.returncode, err
    assert expected(300) == results((job / "out.jsonl").read_text(encoding="utf-8"))
    assert "pipeflow: done: 300 in, 150 out, " in err.decode()
    assert 0 == await pending(redis_url, redis_stream.key, redis_stream.group)


async def test_sigterm_drains_a_redis_source(job: Path, redis_url: str, redis_stream: Any) -> None:
    """A run waiting on a Redis stream drains on SIGTERM: every entry read is written and
    acknowledged (none pending in the group), and the command exits 0."""
    await add_records(redis_url, redis_stream.key, 200)
    source = f"{redis_url}/0?stream={redis_stream.key}&group={redis_stream.group}"
    out = job / "out.jsonl"
    process = await start_command(
        job, "job:pipeline", "--source", source, "--sink", "file:out.jsonl"
    )
    try:

        def written() -> int:
            return len(out.read_text().splitlines()) if out.exists() else 0

        for _ in range(1000):  # until the results of the 200 entries are written
            if written() == 100:
                break
            await asyncio.sleep(0.02)
        assert 100 == written()
        process.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(process.communicate(), timeout=30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert 0 == process.returncode, err
    assert expected(200) == results(out.read_text(encoding="utf-8"))
    text = err.decode()
    assert "pipeflow: stopped: 200 in, 100 out, " in text
    assert "0 left unacknowledged for redelivery" in text
    assert 0 == await pending(redis_url, redis_stream.key, redis_stream.group)


async def test_nats_to_file_to_the_end(job: Path, nats_url: str, nats_stream: Any) -> None:
    """--stop-at-end on a JetStream durable: what the stream holds is processed and
    acknowledged, and the command exits 0."""
    import nats

    client = await nats.connect(nats_url)
    try:
        js = client.jetstream()
        await js.add_stream(name=nats_stream.name, subjects=[nats_stream.subject])
        for i in range(100):
            await js.publish(nats_stream.subject, f'{{"n": {i}}}'.encode())
        source = (
            f"{nats_url}?subject={nats_stream.subject}&stream={nats_stream.name}"
            f"&durable={nats_stream.durable}"
        )
        process = await start_command(
            job, "job:pipeline", "--source", source, "--sink", "file:out.jsonl", "--stop-at-end"
        )
        _, err = await asyncio.wait_for(process.communicate(), timeout=60)
        assert 0 == process.returncode, err
        assert expected(100) == results((job / "out.jsonl").read_text(encoding="utf-8"))
        assert "pipeflow: done: 100 in, 50 out, " in err.decode()
        info = await js.consumer_info(nats_stream.name, nats_stream.durable)
        assert (0, 0) == (info.num_ack_pending, info.num_pending)
    finally:
        await client.close()


async def test_file_to_kafka_and_back(job: Path, kafka_bootstrap: str, kafka_topic: Any) -> None:
    """Records written to a Kafka topic by one command are read back by another, to the
    end of the topic with --stop-at-end."""
    (job / "in.jsonl").write_text(records(60), encoding="utf-8")
    topic = f"kafka://{kafka_bootstrap}/{kafka_topic.name}"
    process = await start_command(job, "job:pipeline", "--source", "file:in.jsonl", "--sink", topic)
    _, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert 0 == process.returncode, err
    (job / "same.py").write_text(
        "from pipeflow import streams as ps\npipeline = ps.map(lambda m: m.value)\n",
        encoding="utf-8",
    )
    process = await start_command(
        job,
        "same:pipeline",
        "--source",
        f"{topic}?group={kafka_topic.group}",
        "--sink",
        "file:back.jsonl",
        "--stop-at-end",
    )
    _, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert 0 == process.returncode, err
    assert expected(60) == sorted(results((job / "back.jsonl").read_text(encoding="utf-8")))
    assert "pipeflow: done: 30 in, 30 out, " in err.decode()


async def stream_values(redis_url: str, key: str) -> list[int]:
    """The ``n`` of each JSON value in the Redis stream ``key``."""
    import json

    import redis.asyncio

    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        entries: list[Any] = await client.xrange(key) or []
        return [json.loads(fields[b"value"])["n"] for _, fields in entries]
    finally:
        await client.aclose()


async def test_sigterm_drains_redis_to_redis(job: Path, redis_url: str, redis_stream: Any) -> None:
    """From one Redis stream to another: SIGTERM while the source waits for more drains
    the run; every result is in the output stream once, nothing is left pending."""
    await add_records(redis_url, redis_stream.key, 200)
    source = f"{redis_url}/0?stream={redis_stream.key}&group={redis_stream.group}&batch_size=64"
    target = f"{redis_stream.key}-out"
    sink = f"{redis_url}/0?stream={target}&maxlen=1000000&approximate=false"
    process = await start_command(job, "job:pipeline", "--source", source, "--sink", sink)
    try:
        for _ in range(1000):  # until the results of the 200 entries are written
            if len(await stream_values(redis_url, target)) == 100:
                break
            await asyncio.sleep(0.02)
        process.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(process.communicate(), timeout=30)
        assert 0 == process.returncode, err
        assert expected(200) == await stream_values(redis_url, target)
        assert "pipeflow: stopped: 200 in, 100 out, " in err.decode()
        assert 0 == await pending(redis_url, redis_stream.key, redis_stream.group)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await delete_key(redis_url, target)


async def delete_key(redis_url: str, key: str) -> None:
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        await client.delete(key)
    finally:
        await client.aclose()


def test_a_missing_broker_extra_is_named(job: Path) -> None:
    """A URL whose connector needs a client that is not installed: one line naming the
    extra to install, exit code 1."""
    code = (
        "import sys; sys.modules['redis'] = None; "
        "sys.argv = ['pipeflow', 'run', 'job:pipeline', '--source', "
        "'redis://127.0.0.1:1/0?stream=s&group=g', '--sink', '-']; "
        "from pipeflow._cli import main; main()"
    )
    done = run_python("-c", code, cwd=job, env=clean_env())
    assert 1 == done.returncode
    assert (
        "Error: RedisStreamSource needs the 'redis' extra, which is not installed: "
        "pip install 'pipeflow-streams[redis]'\n"
    ) == done.stderr
