"""Hand-written Kafka loop: aiokafka with ``create_batch``/``send_batch``.

``getmany(max_records=500)``, the outputs appended to producer batches sent to
the output's partition 0, every batch's delivery awaited, then ``commit()``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from .workload import transform

BATCH = 500


async def _run(config: dict[str, Any]) -> None:
    bootstrap, out, n = config["bootstrap"], config["output"], config["n"]
    consumer = AIOKafkaConsumer(
        config["input"],
        bootstrap_servers=bootstrap,
        group_id=config["group"],
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=config["session_timeout_ms"],
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await consumer.start()
    await producer.start()
    try:
        done = 0
        while done < n:
            records = await consumer.getmany(timeout_ms=1000, max_records=BATCH)
            futures = []
            for msgs in records.values():
                batch = producer.create_batch()
                for m in msgs:
                    data = transform(m.value)
                    if data is None:
                        continue
                    if batch.append(key=None, value=data, timestamp=None) is None:
                        futures.append(await producer.send_batch(batch, out, partition=0))
                        batch = producer.create_batch()
                        batch.append(key=None, value=data, timestamp=None)
                if batch.record_count():
                    futures.append(await producer.send_batch(batch, out, partition=0))
                done += len(msgs)
            if futures:
                await asyncio.gather(*futures)
            if records:
                await consumer.commit()
    finally:
        await producer.stop()
        await consumer.stop()


def run(key: str, config: dict[str, Any]) -> None:
    asyncio.run(_run(config))
