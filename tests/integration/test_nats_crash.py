"""NatsSource and NatsSink under SIGKILL: workers sharing a durable are killed at random
points, one last worker drains what is left, and nothing is lost.

Every input must have its result in the output subject (duplicates allowed, and
counted), and the Redis hash the workers write by message id must equal what an
uninterrupted run gives.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from brokers import NatsStream, unique_name
from crash import crash_trials, run_worker
from pipeflow import streams as ps
from pipeflow.connectors import NatsSink, NatsSource
from workers.nats_worker import transform

pytestmark = pytest.mark.timeout(120)

INPUTS = 100_000
TRIALS = 20


@pytest.fixture
async def hash_key(redis_url: str) -> AsyncIterator[str]:
    import redis.asyncio

    key = unique_name("hash")
    yield key
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        await client.delete(key)
    finally:
        await client.aclose()


async def preload(nats_url: str, subject: str) -> None:
    sink = NatsSink(nats_url, subject)
    try:
        for start in range(0, INPUTS, 10_000):
            await sink.write([{"id": i, "amount": i % 97} for i in range(start, start + 10_000)])
    finally:
        await sink.aclose()


async def output_ids(nats_url: str, stream: str, subject: str) -> list[int]:
    """The ids of every result in the output subject, duplicates included."""
    results: list[Any] = []
    reader = NatsSource(nats_url, subject, stream=stream, durable="verify", stop_at_end=True)
    await ps.map(lambda m: m.value["id"]).run(reader, results)
    return results


async def test_sigkilled_workers_lose_nothing(
    nats_url: str, redis_url: str, nats_stream: NatsStream, hash_key: str
) -> None:
    import nats
    import redis.asyncio
    from nats.js.api import StorageType

    nc = await nats.connect(nats_url)
    rc = redis.asyncio.Redis.from_url(redis_url)
    try:
        js = nc.jetstream()
        name, inp, out = nats_stream.name, f"{nats_stream.subject}.in", f"{nats_stream.subject}.out"
        await js.add_stream(
            name=name, subjects=[f"{nats_stream.subject}.>"], storage=StorageType.MEMORY
        )
        await preload(nats_url, inp)

        async def progress() -> int:
            return int((await js.stream_info(name)).state.messages) - INPUTS

        args = [nats_url, name, inp, out, nats_stream.durable, redis_url, hash_key]
        report = await crash_trials(
            "nats_worker.py", [*args, "0"], trials=TRIALS, progress=progress, max_delay=0.2
        )
        await run_worker("nats_worker.py", *args, "1", limit=60)

        counts = Counter(await output_ids(nats_url, name, out))
        assert set(range(INPUTS)) == set(counts)  # every input has its result
        duplicates = sum(counts.values()) - INPUTS
        print(f"{TRIALS} kills at outputs {report.progress_at_kill}; {duplicates} duplicates")
        info = await js.consumer_info(name, nats_stream.durable)
        assert (0, 0) == (info.num_pending, info.num_ack_pending)

        # What an uninterrupted run gives, read from the same input by a durable of its own.
        expected: list[dict[str, Any]] = []
        clean = NatsSource(nats_url, inp, stream=name, durable="uninterrupted", stop_at_end=True)
        await ps.map(transform).run(clean, expected)
        by_id = {r["id"]: r for r in expected}
        stored = await rc.hgetall(hash_key)
        assert by_id == {int(k): orjson.loads(v) for k, v in stored.items()}
    finally:
        await rc.aclose()
        await nc.close()
