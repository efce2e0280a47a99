"""Hand-written Redis loop: redis.asyncio with the hiredis reply parser.

``XREADGROUP COUNT 500``, one non-transactional pipeline of ``XADD``s, then one
``XACK`` of the batch once the pipeline returned (at-least-once).
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio
from redis._parsers import _AsyncHiredisParser

from .workload import FIELD, transform

BATCH = 500


async def _run(config: dict[str, Any]) -> None:
    stream, out, group, n = config["input"], config["output"], config["group"], config["n"]
    client = redis.asyncio.Redis.from_url(config["url"], parser_class=_AsyncHiredisParser)
    try:
        done = 0
        while done < n:
            reply: Any = await client.xreadgroup(
                group, "bench", {stream: ">"}, count=BATCH, block=1000
            )
            if not reply:
                continue
            entries = reply[0][1]
            pipe = client.pipeline(transaction=False)
            for _, fields in entries:
                data = transform(fields[FIELD])
                if data is not None:
                    pipe.xadd(out, {FIELD: data})
            if len(pipe):
                await pipe.execute()
            await client.xack(stream, group, *[entry_id for entry_id, _ in entries])
            done += len(entries)
    finally:
        await client.aclose()


def run(key: str, config: dict[str, Any]) -> None:
    asyncio.run(_run(config))
