"""Kafka workers killed with SIGKILL again and again lose nothing.

100,000 messages in four partitions; twenty workers of one consumer group, each
killed at a random moment once it has written something; then one last worker reads
to the end. Every input has its result in the output topic (duplicates allowed, and
counted), the results by id equal an uninterrupted run's, and the group has
committed every offset.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from brokers import KafkaTopic, unique_name
from crash import crash_trials, run_worker

pytestmark = pytest.mark.timeout(120)

N = 100_000
PARTITIONS = 4
TRIALS = 20
log = logging.getLogger(__name__)


async def preload(bootstrap: str, topic: str) -> None:
    """``N`` orders, round robin over the partitions, in large batches."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    finally:
        await admin.close()
    async with AIOKafkaProducer(bootstrap_servers=bootstrap, max_batch_size=1 << 20) as producer:
        futures = []
        for p in range(PARTITIONS):
            batch = producer.create_batch()
            for i in range(p, N, PARTITIONS):
                value = orjson.dumps({"id": i, "amount": i % 97})
                if batch.append(key=None, value=value, timestamp=None) is None:
                    futures.append(await producer.send_batch(batch, topic, partition=p))
                    batch = producer.create_batch()
                    batch.append(key=None, value=value, timestamp=None)
            futures.append(await producer.send_batch(batch, topic, partition=p))
        await asyncio.gather(*futures)


class OutputReader:
    """Reads an output topic from its start as it grows; counts what it has read."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        from aiokafka import AIOKafkaConsumer

        self.consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", fetch_max_wait_ms=20
        )
        self.ids: list[int] = []

    async def count(self) -> int:
        for records in (await self.consumer.getmany(timeout_ms=0)).values():
            self.ids += [orjson.loads(r.value)["id"] for r in records]
        return len(self.ids)

    async def read_until(self, n: int, limit: float = 20.0) -> None:
        deadline = asyncio.get_running_loop().time() + limit
        while await self.count() < n:
            if asyncio.get_running_loop().time() > deadline:
                return  # the caller's checks say what is missing
            await asyncio.sleep(0.02)


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[Any]:
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def hashes(redis_client: Any) -> AsyncIterator[tuple[str, str]]:
    """Two unique Redis hash keys (the crashed run's, the clean run's), deleted afterwards."""
    keys = unique_name("kafka-crash-hash"), unique_name("kafka-clean-hash")
    yield keys
    await redis_client.delete(*keys)


async def delete_topics(bootstrap: str, *topics: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics(list(topics))
    finally:
        await admin.close()


async def committed(bootstrap: str, group: str, topic: str) -> dict[int, int | None]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
    async with consumer:
        return {p: await consumer.committed(TopicPartition(topic, p)) for p in range(PARTITIONS)}


async def test_sigkilled_workers_lose_nothing(
    kafka_bootstrap: str,
    kafka_topic: KafkaTopic,
    redis_url: str,
    redis_client: Any,
    hashes: tuple[str, str],
) -> None:
    out, clean_out = unique_name("out"), unique_name("clean-out")
    crash_hash, clean_hash = hashes
    await preload(kafka_bootstrap, kafka_topic.name)
    reader = OutputReader(kafka_bootstrap, out)
    await reader.consumer.start()
    try:
        args = [kafka_bootstrap, kafka_topic.name, out, kafka_topic.group, redis_url, crash_hash]
        report = await crash_trials(
            "kafka_worker.py", [*args, "0", "0.01"], trials=TRIALS, progress=reader.count
        )
        assert TRIALS == len(report.progress_at_kill) + report.finished_early
        assert 0 == report.finished_early
        assert len(report.progress_at_kill) == TRIALS
        assert report.progress_at_kill[-1] < N, "the kills should land before the end"
        await run_worker("kafka_worker.py", *args, "1", "0")
        await reader.read_until(N)
        await reader.count()
    finally:
        await reader.consumer.stop()

    seen = Counter(reader.ids)
    assert set(range(N)) == set(seen), "every input has its result in the output"
    duplicates = sum(seen.values()) - N
    log.info("kafka crash test: %d duplicates over %d kills", duplicates, TRIALS)
    assert {p: N // PARTITIONS for p in range(PARTITIONS)} == await committed(
        kafka_bootstrap, kafka_topic.group, kafka_topic.name
    )

    # The same input, read once without interruption, by a group of its own.
    clean_group = unique_name("group")
    clean_args = [kafka_bootstrap, kafka_topic.name, clean_out, clean_group, redis_url, clean_hash]
    await run_worker("kafka_worker.py", *clean_args, "1", "0")
    crashed = await redis_client.hgetall(crash_hash)
    clean = await redis_client.hgetall(clean_hash)
    assert N == len(clean)
    assert clean == crashed
    await delete_topics(kafka_bootstrap, out, clean_out)
