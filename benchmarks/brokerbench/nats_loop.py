"""Hand-written NATS JetStream loop: nats-py pull consumer.

``fetch(500)``, the outputs published concurrently (each publish awaits its
PubAck), then every input acked (at-least-once).
"""

from __future__ import annotations

import asyncio
from typing import Any

import nats
from nats.errors import TimeoutError as NatsTimeout

from .workload import transform

BATCH = 500


async def _run(config: dict[str, Any]) -> None:
    n = config["n"]
    client = await nats.connect(config["url"])
    try:
        js = client.jetstream()
        sub = await js.pull_subscribe(
            config["subject"], durable=config["durable"], stream=config["stream"]
        )
        out = config["output_subject"]
        done = 0
        while done < n:
            try:
                msgs = await sub.fetch(BATCH, timeout=1)
            except NatsTimeout:
                continue
            outputs = [data for m in msgs if (data := transform(m.data)) is not None]
            await asyncio.gather(*[js.publish(out, data) for data in outputs])
            for m in msgs:
                await m.ack()
            done += len(msgs)
        await client.flush()
    finally:
        await client.close()


def run(key: str, config: dict[str, Any]) -> None:
    asyncio.run(_run(config))
