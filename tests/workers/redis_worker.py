"""A crash-test worker: orders from one Redis stream, through a small pipeline, to another.

Each result is written twice by one sink: appended to the output stream
(``RedisStreamSink``) and stored in a hash under its order id, which a rerun
overwrites with the same value, so the hash of a run killed again and again
equals the hash of an uninterrupted one.

Usage: redis_worker.py URL INPUT GROUP OUTPUT HASH CLAIM_IDLE
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import orjson
import redis.asyncio

from pipeflow import streams as ps
from pipeflow.connectors import Message, RedisStreamSink, RedisStreamSource


class StreamAndHash:
    """Appends results to a stream, then stores each in a hash by its id."""

    def __init__(self, url: str, stream: str, hash_key: str) -> None:
        self.stream = RedisStreamSink(url, stream)
        self.client = redis.asyncio.Redis.from_url(url)
        self.hash_key = hash_key

    async def write(self, items: list[dict[str, Any]]) -> None:
        await self.stream.write(items)
        mapping = {item["id"]: orjson.dumps(item) for item in items}
        await self.client.hset(self.hash_key, mapping=mapping)

    async def aclose(self) -> None:
        try:
            await self.stream.aclose()
        finally:
            await self.client.aclose()


def priced(msg: Message) -> dict[str, Any]:
    order: dict[str, Any] = msg.value
    return {**order, "cents": order["amount"] * 100}


async def main(url: str, stream: str, group: str, output: str, hash_key: str, idle: str) -> None:
    source = RedisStreamSource(url, stream, group=group, claim_idle=float(idle), stop_at_end=True)
    pipeline = ps.filter(lambda m: m.value["amount"] > 10) | ps.map(priced)
    await pipeline.run(source, StreamAndHash(url, output, hash_key))


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:7]))
