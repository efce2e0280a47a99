"""Per-broker setup for one run: a fresh input and output, the watch, and the checks.

A lane prepares a run (``prepare``: a fresh, loaded input, an empty output, the
names the client needs), counts the output while the client runs (``count``,
polled by the driver, so it must be cheap), and afterwards reads the whole output
back (``outputs``) and checks the input was fully acknowledged (``acked``).
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from .services import nats_url, redis_url, tansu
from .workload import FIELD, input_values

__all__ = ["KafkaLane", "Lane", "NatsLane", "RedisLane"]

PRELOAD_CHUNK = 10_000
#: How long the driver waits, after the output is complete, for the input to be acked.
ACK_WAIT = 8.0


def _token() -> str:
    return uuid.uuid4().hex[:10]


class Lane:
    """One broker's side of a run; subclasses fill in every method."""

    async def open(self) -> None:
        """Connect; called once per run before ``prepare``."""

    async def prepare(self) -> dict[str, Any]:
        raise NotImplementedError

    async def count(self) -> int:
        raise NotImplementedError

    async def outputs(self) -> list[bytes]:
        raise NotImplementedError

    async def acked(self) -> str | None:
        """``None`` once the input is fully acknowledged, else what is still missing."""
        raise NotImplementedError

    async def close(self) -> None:
        """Delete what the run made and disconnect."""


class RedisLane(Lane):
    """Redis streams: the input is a copy (``COPY``) of a stream loaded once per section."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.template = f"pipeflow-bench-template-{_token()}"
        self.loaded = False
        self.client: Any = None

    async def open(self) -> None:
        import redis.asyncio

        self.client = redis.asyncio.Redis.from_url(redis_url())
        if not self.loaded:
            await self._load()
            self.loaded = True

    async def _load(self) -> None:
        """XADD every input to the template, written as raw RESP for speed."""
        host, port = _host_port(redis_url())
        reader, writer = await asyncio.open_connection(host, port)
        try:
            head = _resp_bulk(b"XADD") + _resp_bulk(self.template.encode()) + _resp_bulk(b"*")
            head += _resp_bulk(FIELD)
            for chunk in _chunks(input_values(self.n), PRELOAD_CHUNK):
                writer.write(b"".join(b"*5\r\n" + head + _resp_bulk(data) for data in chunk))
                replies = b""  # each reply is $<len>\r\n<id>\r\n: two lines
                while replies.count(b"\n") < 2 * len(chunk):
                    replies += await reader.read(1 << 16)
                if b"-" in replies[:1] or b"\n-" in replies:
                    raise SystemExit(f"Redis preload: {replies[:200]!r}")
        finally:
            writer.close()
            await writer.wait_closed()

    async def prepare(self) -> dict[str, Any]:
        token = _token()
        self.input = f"pipeflow-bench-in-{token}"
        self.output = f"pipeflow-bench-out-{token}"
        self.group = f"pipeflow-bench-group-{token}"
        await self.client.copy(self.template, self.input)
        await self.client.xgroup_create(self.input, self.group, id="0")
        return {
            "url": redis_url(),
            "input": self.input,
            "output": self.output,
            "group": self.group,
            "n": self.n,
        }

    async def count(self) -> int:
        return int(await self.client.xlen(self.output))

    async def outputs(self) -> list[bytes]:
        payloads: list[bytes] = []
        start = "-"
        while True:
            entries = await self.client.xrange(self.output, min=start, count=PRELOAD_CHUNK)
            for _, fields in entries:
                payloads.extend(fields.values())
            if len(entries) < PRELOAD_CHUNK:
                return payloads
            start = "(" + entries[-1][0].decode()

    async def acked(self) -> str | None:
        pending = await self.client.xpending(self.input, self.group)
        groups = await self.client.xinfo_groups(self.input)
        read = next(g["entries-read"] for g in groups if g["name"].decode() == self.group)
        if pending["pending"] == 0 and read == self.n:
            return None
        return f"XPENDING {pending['pending']}, entries-read {read} of {self.n}"

    async def close(self) -> None:
        await self.client.delete(self.input, self.output)
        await self.client.aclose()

    async def drop_template(self) -> None:
        import redis.asyncio

        client = redis.asyncio.Redis.from_url(redis_url())
        await client.delete(self.template)
        await client.aclose()


class NatsLane(Lane):
    """NATS JetStream: fresh memory-storage input and output streams per run."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.client: Any = None

    async def open(self) -> None:
        import nats

        self.client = await nats.connect(nats_url())
        self.js = self.client.jetstream()

    async def prepare(self) -> dict[str, Any]:
        from nats.js.api import StorageType

        token = _token()
        self.stream = f"pipeflow-bench-in-{token}"
        self.subject = f"pipeflow.bench.in.{token}"
        self.out_stream = f"pipeflow-bench-out-{token}"
        self.out_subject = f"pipeflow.bench.out.{token}"
        self.durable = f"pipeflow-bench-durable-{token}"
        for name, subject in ((self.stream, self.subject), (self.out_stream, self.out_subject)):
            await self.js.add_stream(name=name, subjects=[subject], storage=StorageType.MEMORY)
        for i, data in enumerate(input_values(self.n)):
            await self.client.publish(self.subject, data)
            if i % PRELOAD_CHUNK == 0:
                await self.client.flush()
        await self.client.flush()
        while (await self.js.stream_info(self.stream)).state.messages < self.n:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        return {
            "url": nats_url(),
            "stream": self.stream,
            "subject": self.subject,
            "output_stream": self.out_stream,
            "output_subject": self.out_subject,
            "durable": self.durable,
            "n": self.n,
        }

    async def create_consumer(self) -> None:
        """The durable pull consumer the hand-written loop binds to."""
        from nats.js.api import AckPolicy, ConsumerConfig

        config = ConsumerConfig(
            durable_name=self.durable, ack_policy=AckPolicy.EXPLICIT, ack_wait=30
        )
        await self.js.add_consumer(self.stream, config)

    async def count(self) -> int:
        return int((await self.js.stream_info(self.out_stream)).state.messages)

    async def outputs(self) -> list[bytes]:
        from nats.errors import TimeoutError as NatsTimeout
        from nats.js.api import AckPolicy, ConsumerConfig

        total = await self.count()
        sub = await self.js.pull_subscribe(
            self.out_subject,
            stream=self.out_stream,
            config=ConsumerConfig(ack_policy=AckPolicy.NONE),
        )
        payloads: list[bytes] = []
        with contextlib.suppress(NatsTimeout):
            while len(payloads) < total:
                payloads.extend(m.data for m in await sub.fetch(PRELOAD_CHUNK, timeout=2))
        await sub.unsubscribe()
        return payloads

    async def acked(self) -> str | None:
        from nats.js.errors import NotFoundError

        try:
            info = await self.js.consumer_info(self.stream, self.durable)
        except NotFoundError:
            return f"the durable consumer {self.durable} is gone"
        floor = info.ack_floor.stream_seq if info.ack_floor else 0
        if info.num_ack_pending == 0 and floor == self.n:
            return None
        return f"num_ack_pending {info.num_ack_pending}, ack floor {floor} of {self.n}"

    async def close(self) -> None:
        from nats.js.errors import NotFoundError

        for name in (self.stream, self.out_stream):
            with contextlib.suppress(NotFoundError):
                await self.js.delete_stream(name)
        await self.client.close()


class KafkaLane(Lane):
    """Kafka API: a fresh Tansu broker per run, single-partition input and output topics.

    The output is counted by a confluent-kafka consumer reading it from offset 0
    (never ListOffsets LATEST, which Tansu gets wrong), keeping the payloads.
    """

    def __init__(self, n: int, session_timeout_ms: int) -> None:
        self.n = n
        self.session_timeout_ms = session_timeout_ms
        self.stack = contextlib.ExitStack()
        self.seen: list[bytes] = []
        #: Whether the client commits to a group (checked), whether it needs a recovery store.
        self.grouped = True
        self.recovery_store = False

    async def open(self) -> None:
        self.bootstrap, self.broker_pid = self.stack.enter_context(tansu())

    async def prepare(self) -> dict[str, Any]:
        from confluent_kafka import Consumer, Producer, TopicPartition
        from confluent_kafka.admin import AdminClient, NewTopic

        token = _token()
        self.input = f"pipeflow-bench-in-{token}"
        self.output = f"pipeflow-bench-out-{token}"
        self.group = f"pipeflow-bench-group-{token}"
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        futures = admin.create_topics([NewTopic(t, 1, 1) for t in (self.input, self.output)])
        for future in futures.values():
            future.result(10)
        producer = Producer(
            {"bootstrap.servers": self.bootstrap, "linger.ms": 20, "batch.num.messages": 10000}
        )
        for data in input_values(self.n):
            while True:
                try:
                    producer.produce(self.input, data, partition=0)
                    break
                except BufferError:
                    producer.poll(0.01)
        if producer.flush(30):
            raise SystemExit("Kafka preload: messages left unsent")
        self.watcher = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": f"pipeflow-bench-watch-{token}",
                "enable.auto.commit": False,
            }
        )
        self.watcher.assign([TopicPartition(self.output, 0, 0)])
        self.recovery = self.stack.enter_context(tempfile.TemporaryDirectory())
        if self.recovery_store:
            subprocess.run(  # noqa: ASYNC221 (set-up, before the run)
                [sys.executable, "-m", "bytewax.recovery", self.recovery, "1"],
                check=True,
                capture_output=True,
            )
        return {
            "bootstrap": self.bootstrap,
            "input": self.input,
            "output": self.output,
            "group": self.group,
            "session_timeout_ms": self.session_timeout_ms,
            "recovery_dir": self.recovery,
            "n": self.n,
        }

    async def count(self) -> int:
        for m in self.watcher.consume(num_messages=10_000, timeout=0.01):
            if m.error() is None:
                self.seen.append(m.value())
        return len(self.seen)

    async def outputs(self) -> list[bytes]:
        deadline = time.monotonic() + 0.5  # anything past the expected count (duplicates)
        while time.monotonic() < deadline:
            await self.count()
        return self.seen

    async def acked(self) -> str | None:
        if not self.grouped:
            return None
        from confluent_kafka import Consumer, TopicPartition

        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": self.group,
                "enable.auto.commit": False,
            }
        )
        try:
            [tp] = consumer.committed([TopicPartition(self.input, 0)], timeout=5)
        finally:
            consumer.close()
        if tp.offset == self.n:
            return None
        return f"committed offset {tp.offset} of {self.n}"

    async def close(self) -> None:
        self.watcher.close()
        self.stack.close()


def _resp_bulk(data: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(data), data)


def _host_port(url: str) -> tuple[str, int]:
    parsed = urlsplit(url)
    return parsed.hostname or "127.0.0.1", parsed.port or 6379


def _chunks(items: Iterator[bytes], size: int) -> Iterator[list[bytes]]:
    chunk: list[bytes] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
