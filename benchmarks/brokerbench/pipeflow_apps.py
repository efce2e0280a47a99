"""pipeflow: ``map -> filter -> map`` between a broker source and sink, ``pipe.run()``.

The source decodes JSON (its default codec); the pipeline takes each message's
value, keeps ``amount > 10`` and adds ``cents``; the sink encodes JSON. The run
acknowledges the input as the sink's writes return (at-least-once), and ends
after the messages that were there when it started (``stop_at_end=True``).

``pipeflow_redis_slow`` is the Redis run with a sink that sleeps before each
write, ``delay_per_item`` seconds per item, while a task samples the process's
RSS every ``SAMPLE_INTERVAL`` seconds.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from pipeflow import streams as ps
from pipeflow.connectors import (
    KafkaSink,
    KafkaSource,
    Message,
    NatsSink,
    NatsSource,
    RedisStreamSink,
    RedisStreamSource,
)

from .workload import add_cents, keep

SAMPLE_INTERVAL = 0.05
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _value(message: Message) -> Any:
    return message.value


def _pipeline() -> ps.Pipeline[Message, dict[str, Any]]:
    return ps.map(_value) | ps.filter(keep) | ps.map(add_cents)


class SlowSink:
    """A sink that sleeps ``delay`` seconds per item before writing to ``inner``."""

    def __init__(self, inner: RedisStreamSink, delay: float) -> None:
        self.inner = inner
        self.delay = delay

    async def write(self, items: list[Any]) -> None:
        await asyncio.sleep(self.delay * len(items))
        await self.inner.write(items)

    async def aclose(self) -> None:
        await self.inner.aclose()


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE


async def _sample(samples: list[list[float]]) -> None:
    while True:
        samples.append([time.monotonic(), _rss()])
        await asyncio.sleep(SAMPLE_INTERVAL)


async def _run(key: str, config: dict[str, Any]) -> dict[str, Any] | None:
    if key.startswith("pipeflow_redis"):
        url = config["url"]
        source: Any = RedisStreamSource(
            url, config["input"], group=config["group"], stop_at_end=True
        )
        sink: Any = RedisStreamSink(url, config["output"])
    elif key == "pipeflow_nats":
        url = config["url"]
        source = NatsSource(
            url,
            config["subject"],
            stream=config["stream"],
            durable=config["durable"],
            stop_at_end=True,
        )
        sink = NatsSink(url, config["output_subject"])
    elif key == "pipeflow_kafka":
        bootstrap = config["bootstrap"]
        source = KafkaSource(
            bootstrap,
            config["input"],
            group=config["group"],
            stop_at_end=True,
            session_timeout=config["session_timeout_ms"] / 1000,
        )
        sink = KafkaSink(bootstrap, config["output"])
    else:
        raise ValueError(f"unknown implementation {key!r}")
    if key != "pipeflow_redis_slow":
        await _pipeline().run(source, sink)
        return None
    samples: list[list[float]] = []
    sampler = asyncio.create_task(_sample(samples))
    try:
        summary = await _pipeline().run(source, SlowSink(sink, config["delay_per_item"]))
    finally:
        sampler.cancel()
    samples.append([time.monotonic(), _rss()])
    return {"rss_samples": samples, "sample_interval": SAMPLE_INTERVAL, "writes": summary.writes}


def run(key: str, config: dict[str, Any]) -> dict[str, Any] | None:
    return asyncio.run(_run(key, config))
