"""A crash-test worker: reads a Kafka topic in a consumer group, writes each result to an
output topic and, by message id, to a Redis hash; commits only what both hold.

Arguments: bootstrap in_topic out_topic group redis_url hash_key stop_at_end pause
(``stop_at_end`` ``1`` to end after the messages there at the start, else it runs until
killed; ``pause`` seconds to wait after each write, so that a worker killed soon after
it starts has not read everything yet).
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import orjson

from pipeflow import streams as ps
from pipeflow.connectors import KafkaSink, KafkaSource, Message
from pipeflow.streams import Retry

#: A killed member's partitions go to the next one this soon (seconds).
SESSION_TIMEOUT = 1.0
RECONNECT = Retry(attempts=5, backoff=0.1, max_backoff=0.5)


def transform(msg: Message) -> dict[str, Any]:
    """The result for one input: the same for every run, interrupted or not."""
    value = msg.value
    return {"id": value["id"], "cents": value["amount"] * 100}


class OutputAndHash:
    """Writes results to a Kafka topic, then to a Redis hash by id."""

    def __init__(self, bootstrap: str, topic: str, redis_url: str, key: str, pause: float) -> None:
        import redis.asyncio

        self.kafka = KafkaSink(bootstrap, topic, reconnect=RECONNECT)
        self.redis = redis.asyncio.Redis.from_url(redis_url)
        self.key = key
        self.pause = pause

    async def write(self, items: list[dict[str, Any]]) -> None:
        await self.kafka.write(items)
        await self.redis.hset(self.key, mapping={r["id"]: orjson.dumps(r) for r in items})
        if self.pause:
            await asyncio.sleep(self.pause)

    async def aclose(self) -> None:
        try:
            await self.kafka.aclose()
        finally:
            await self.redis.aclose()


async def main(argv: list[str]) -> None:
    bootstrap, in_topic, out_topic, group, redis_url, key, stop_at_end, pause = argv
    source = KafkaSource(
        bootstrap,
        in_topic,
        group=group,
        session_timeout=SESSION_TIMEOUT,
        # Small fetches, each one write: the kills land while the input lasts.
        batch_size=100,
        stop_at_end=stop_at_end == "1",
        reconnect=RECONNECT,
    )
    sink = OutputAndHash(bootstrap, out_topic, redis_url, key, float(pause))
    await ps.map(transform).run(source, sink)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
