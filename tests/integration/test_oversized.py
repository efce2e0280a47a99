"""Oversized values: carried whole where the system takes them, refused clearly where it
does not, and then never acknowledged."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from brokers import KafkaTopic, NatsStream, RedisStream
from pipeflow import streams as ps
from pipeflow.connectors import (
    EncodeError,
    JsonLinesSink,
    JsonLinesSource,
    KafkaSink,
    KafkaSource,
    Message,
    NatsSink,
    NatsSource,
    RedisStreamSink,
    RedisStreamSource,
)

pytestmark = pytest.mark.timeout(60)

BIG = 4 * 1024 * 1024  # bytes of text in one value


def big_value(i: int) -> dict[str, Any]:
    return {"id": i, "blob": "x" * BIG}


def ids(messages: list[Message]) -> list[int]:
    return [m.value["id"] for m in messages]


async def test_a_long_line_is_one_line(tmp_path: Path) -> None:
    path, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    sink = JsonLinesSink(path)
    await sink.write([big_value(0), {"id": 1}, big_value(2)])
    await sink.aclose()
    got: list[Message] = []
    await ps.map(lambda m: m).run(JsonLinesSource(path), got)
    assert [0, 1, 2] == ids(got)
    assert BIG == len(got[2].value["blob"])
    await ps.map(lambda m: m).run(JsonLinesSource(path), JsonLinesSink(out))
    assert path.read_bytes() == out.read_bytes()


async def test_redis_carries_big_entries_whole(redis_url: str, redis_stream: RedisStream) -> None:
    out = redis_stream.key + "-out"
    writer = RedisStreamSink(redis_url, redis_stream.key)
    await writer.write([big_value(0), {"id": 1}, big_value(2)])
    await writer.aclose()
    source = RedisStreamSource(
        redis_url, redis_stream.key, group=redis_stream.group, stop_at_end=True
    )
    try:
        summary = await ps.map(lambda m: m).run(source, RedisStreamSink(redis_url, out))
        got: list[Message] = []
        check = RedisStreamSource(redis_url, out, group="check", stop_at_end=True)
        await ps.map(lambda m: m).run(check, got)
    finally:
        import redis.asyncio

        client = redis.asyncio.Redis.from_url(redis_url)
        await client.delete(out)
        await client.aclose()
    assert (3, 3) == (summary.items_in, summary.items_out)
    assert [0, 1, 2] == ids(got)
    assert BIG == len(got[0].value["blob"])


@pytest.fixture
async def js(nats_url: str) -> Any:
    import nats

    nc = await nats.connect(nats_url)
    yield nc.jetstream()
    await nc.close()


async def test_nats_refuses_a_result_over_max_payload_and_acknowledges_nothing(
    nats_url: str, js: Any, nats_stream: NatsStream
) -> None:
    from nats.js.api import StorageType

    await js.add_stream(
        name=nats_stream.name, subjects=[f"{nats_stream.subject}.>"], storage=StorageType.MEMORY
    )
    inp, out = f"{nats_stream.subject}.in", f"{nats_stream.subject}.out"
    for i in range(3):
        await js.publish(inp, b'{"id": %d}' % i)
    source = NatsSource(
        nats_url, inp, stream=nats_stream.name, durable=nats_stream.durable, stop_at_end=True
    )
    pipeline = ps.map(lambda m: big_value(m.value["id"]))
    with pytest.raises(EncodeError, match="max_payload") as info:
        await pipeline.run(source, NatsSink(nats_url, out))
    assert "1048576" in str(info.value)
    consumer = await js.consumer_info(nats_stream.name, nats_stream.durable)
    assert 0 == consumer.ack_floor.stream_seq


async def test_kafka_carries_big_values_whole(
    kafka_bootstrap: str, kafka_topic: KafkaTopic
) -> None:
    inp, out = kafka_topic.name, kafka_topic.name + "-out"
    writer = KafkaSink(kafka_bootstrap, inp)
    await writer.write([{"id": i} for i in range(3)])
    await writer.aclose()
    source = KafkaSource(
        kafka_bootstrap, inp, group=kafka_topic.group, stop_at_end=True, session_timeout=2
    )
    summary = await ps.map(lambda m: big_value(m.value["id"])).run(
        source, KafkaSink(kafka_bootstrap, out)
    )
    assert (3, 3) == (summary.items_in, summary.items_out)
    got: list[Message] = []
    check = KafkaSource(
        kafka_bootstrap,
        out,
        group=kafka_topic.group + "-check",
        stop_at_end=True,
        session_timeout=2,
    )
    await ps.map(lambda m: m).run(check, got)
    assert [0, 1, 2] == sorted(ids(got))
    assert all(BIG == len(m.value["blob"]) for m in got)
