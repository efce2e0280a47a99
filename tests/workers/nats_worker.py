"""A crash-test worker: reads a JetStream durable, writes each result to an output subject
and, by message id, to a Redis hash; acknowledges only what both hold.

Arguments: nats_url stream in_subject out_subject durable redis_url hash_key stop_at_end
(``1`` to end after the messages there at the start; else it runs until killed).
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import orjson

from pipeflow import streams as ps
from pipeflow.connectors import Message, NatsSink, NatsSource
from pipeflow.streams import Retry

#: The dead workers' messages come back this soon.
ACK_WAIT = 1.0
RECONNECT = Retry(attempts=5, backoff=0.1, max_backoff=0.5)


def transform(msg: Message) -> dict[str, Any]:
    """The result for one input: the same for every run, interrupted or not."""
    value = msg.value
    return {"id": value["id"], "cents": value["amount"] * 100}


class OutputAndHash:
    """Writes results to NATS, then to a Redis hash by id."""

    def __init__(self, nats_url: str, subject: str, redis_url: str, key: str) -> None:
        import redis.asyncio

        self.nats = NatsSink(nats_url, subject, reconnect=RECONNECT)
        self.redis = redis.asyncio.Redis.from_url(redis_url)
        self.key = key

    async def write(self, items: list[dict[str, Any]]) -> None:
        await self.nats.write(items)
        await self.redis.hset(self.key, mapping={r["id"]: orjson.dumps(r) for r in items})

    async def aclose(self) -> None:
        try:
            await self.nats.aclose()
        finally:
            await self.redis.aclose()


async def main(argv: list[str]) -> None:
    nats_url, stream, inp, out, durable, redis_url, key, stop_at_end = argv
    source = NatsSource(
        nats_url,
        inp,
        stream=stream,
        durable=durable,
        ack_wait=ACK_WAIT,
        fetch_timeout=0.5,
        stop_at_end=stop_at_end == "1",
        reconnect=RECONNECT,
    )
    await ps.map(transform).run(source, OutputAndHash(nats_url, out, redis_url, key))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
