"""Workers reading a Redis stream are killed with SIGKILL again and again: no order is lost.

100,000 orders are preloaded; 20 workers in one consumer group are each killed
at a random moment once they have written something; a last worker takes over
what the dead ones left pending (``claim_idle`` 0.2 s) and runs to the end.
Every order over 10 must then have its result in the output stream (a result
may be there twice: at-least-once) and the hash of results by order id must
equal the one an uninterrupted run writes.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
import redis.asyncio

from brokers import RedisStream, unique_name
from crash import crash_trials, run_worker

pytestmark = pytest.mark.timeout(120)

N = 100_000
TRIALS = 20
CLAIM_IDLE = "0.2"


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[Any]:
    c = redis.asyncio.Redis.from_url(redis_url)
    yield c
    await c.aclose()


@pytest.fixture
async def keys(client: Any) -> AsyncIterator[dict[str, str]]:
    """Unique output streams and hashes, deleted afterwards."""
    names = {kind: unique_name(kind) for kind in ("out", "hash", "out-ref", "hash-ref")}
    names["group-ref"] = unique_name("group")
    yield names
    await client.delete(*[v for k, v in names.items() if not k.startswith("group")])


async def preload(client: Any, key: str) -> None:
    for start in range(0, N, 10_000):
        pipe = client.pipeline(transaction=False)
        for i in range(start, start + 10_000):
            order = {"id": i, "user": f"u{i % 1000}", "amount": i % 97}
            pipe.xadd(key, {"value": orjson.dumps(order)})
        await pipe.execute()


async def output_ids(client: Any, key: str) -> Counter[int]:
    ids: Counter[int] = Counter()
    start = "-"
    while page := await client.xrange(key, min=start, count=20_000):
        ids.update(orjson.loads(fields[b"value"])["id"] for _, fields in page)
        start = "(" + page[-1][0].decode()
    return ids


async def test_sigkilled_workers_lose_nothing(
    redis_url: str, redis_stream: RedisStream, client: Any, keys: dict[str, str]
) -> None:
    stream, group = redis_stream.key, redis_stream.group
    await preload(client, stream)
    args = [redis_url, stream, group, keys["out"], keys["hash"], CLAIM_IDLE]

    async def progress() -> int:
        return int(await client.xlen(keys["out"]))

    ref = [redis_url, stream, keys["group-ref"], keys["out-ref"], keys["hash-ref"], CLAIM_IDLE]
    # The uninterrupted run reads the same input in a group of its own, meanwhile.
    report, _ = await asyncio.gather(
        crash_trials("redis_worker.py", args, trials=TRIALS, progress=progress, max_delay=0.05),
        run_worker("redis_worker.py", *ref),
    )
    await run_worker("redis_worker.py", *args)
    expected = {i for i in range(N) if i % 97 > 10}
    got = await output_ids(client, keys["out"])
    duplicates = sum(got.values()) - len(got)
    print(
        f"\n{TRIALS} kills at outputs {report.progress_at_kill}; "
        f"{report.finished_early} finished early; {duplicates} duplicate results"
    )
    assert expected == set(got)
    assert Counter({i: 1 for i in expected}) == await output_ids(client, keys["out-ref"])
    assert await client.hgetall(keys["hash-ref"]) == await client.hgetall(keys["hash"])
    assert 0 == (await client.xpending(stream, group))["pending"]
    assert len(report.progress_at_kill) + report.finished_early == TRIALS
