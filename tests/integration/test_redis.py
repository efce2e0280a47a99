"""RedisStreamSource and RedisStreamSink against a real Redis server."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis.asyncio

from brokers import HOST, RedisStream, free_port, redis_answers, server_process, unique_name
from pipeflow import streams as ps
from pipeflow.connectors import (
    DecodeError,
    EncodeError,
    Message,
    RedisStreamSink,
    RedisStreamSource,
    UndecodableMessage,
)

pytestmark = pytest.mark.timeout(30)

#: redis-py's client, typed loosely: its replies here are bytes, which its annotations leave open.
Client = Any

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
sys.path.insert(0, str(EXAMPLES))

import redis_orders  # noqa: E402

FAST_RETRY = ps.Retry(attempts=5, backoff=0.01, max_backoff=0.05, jitter=0.0)


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[Client]:
    c = redis.asyncio.Redis.from_url(redis_url)
    yield c
    await c.aclose()


@pytest.fixture
async def out_stream(client: Client) -> AsyncIterator[str]:
    """A unique output stream, deleted afterwards."""
    key = unique_name("out")
    yield key
    await client.delete(key)


async def preload(client: Client, key: str, values: list[Any]) -> list[str]:
    pipe = client.pipeline(transaction=False)
    for value in values:
        pipe.xadd(key, {"value": orjson.dumps(value)})
    return [entry_id.decode() for entry_id in await pipe.execute()]


async def read_values(client: Client, key: str) -> list[Any]:
    return [orjson.loads(fields[b"value"]) for _, fields in await client.xrange(key)]


async def pending(client: Client, key: str, group: str) -> int:
    count: int = (await client.xpending(key, group))["pending"]
    return count


async def until(condition: Callable[[], Awaitable[bool]]) -> None:
    """Wait until ``condition()`` holds, checking every few milliseconds (10 s at most)."""
    async with asyncio.timeout(10):
        while True:
            if await condition():
                return
            await asyncio.sleep(0.005)


async def output_reached(client: Client, key: str, n: int) -> bool:
    return bool(await client.xlen(key) >= n)


async def all_read(client: Client, key: str, n: int) -> bool:
    return [n] == [g["entries-read"] for g in await client.xinfo_groups(key)]


def orders(n: int) -> list[dict[str, Any]]:
    return [{"id": i, "amount": i % 7} for i in range(n)]


def enrich(msg: Message) -> dict[str, Any]:
    return {**msg.value, "cents": msg.value["amount"] * 100}


# -- round trips ---------------------------------------------------------------------


async def test_round_trip_through_a_pipeline(
    redis_url: str, redis_stream: RedisStream, out_stream: str, client: Client
) -> None:
    ids = await preload(client, redis_stream.key, orders(120))
    source = RedisStreamSource(
        redis_url, redis_stream.key, group=redis_stream.group, batch_size=50, stop_at_end=True
    )
    pipeline = ps.filter(lambda m: m.value["amount"] > 2) | ps.map(enrich)

    summary = await pipeline.run(source, RedisStreamSink(redis_url, out_stream))

    expected = [{**o, "cents": o["amount"] * 100} for o in orders(120) if o["amount"] > 2]
    assert expected == await read_values(client, out_stream)
    assert (120, len(expected)) == (summary.items_in, summary.items_out)
    assert 0 == await pending(client, redis_stream.key, redis_stream.group)
    stats = source.statistics()
    assert (120, 120, 0) == (stats.delivered, stats.acked, stats.claimed)
    groups = await client.xinfo_groups(redis_stream.key)
    assert [120] == [g["entries-read"] for g in groups]
    assert len(ids) == 120


async def test_messages_carry_id_time_headers_and_source(
    redis_url: str, redis_stream: RedisStream, client: Client
) -> None:
    first = (await client.xadd(redis_stream.key, {"value": b'{"n": 1}'})).decode()
    second = (
        await client.xadd(redis_stream.key, {"kind": "order", "value": b"[2]", "trace": b"t-9"})
    ).decode()
    source = RedisStreamSource(redis_url, redis_stream.key, group=redis_stream.group)
    got: list[Message] = []
    async for message in _closing(source):
        got.append(message)
        if len(got) == 2:
            break

    ms = int(first.split("-")[0])
    assert (
        Message(
            {"n": 1},
            timestamp=datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms),
            source=redis_stream.key,
            position=first,
        )
        == got[0]
    )
    assert [2] == got[1].value
    assert {"kind": "order", "trace": "t-9"} == got[1].headers
    assert second == got[1].position
    assert got[1].timestamp is not None
    assert got[1].timestamp.tzinfo is not None


def test_messages_are_built_with_every_field_of_message() -> None:
    # The source sets each slot of Message itself, for speed: a new one must be set there too.
    assert {
        "headers",
        "key",
        "partition",
        "position",
        "raw",
        "source",
        "timestamp",
        "value",
    } == set(Message.__slots__)


async def test_pending_entries_deleted_from_the_stream_are_counted(
    redis_url: str, redis_stream: RedisStream, client: Client
) -> None:
    key, group = redis_stream.key, redis_stream.group
    ids = await preload(client, key, orders(6))
    await client.xgroup_create(key, group, id="0")
    await client.xreadgroup(group, "me", {key: ">"}, count=2)
    await client.xreadgroup(group, "dead", {key: ">"}, count=2)
    await client.xdel(key, ids[0], ids[2])
    await asyncio.sleep(0.15)

    source = RedisStreamSource(
        redis_url, key, group=group, consumer="me", claim_idle=0.1, stop_at_end=True
    )
    got: list[int] = []
    await ps.map(lambda m: m.value["id"]).run(source, got)

    assert [1, 3, 4, 5] == sorted(got)
    assert 2 == source.statistics().deleted
    assert 0 == await pending(client, key, group)


async def test_sink_keeps_message_headers_and_trims(
    redis_url: str, out_stream: str, client: Client
) -> None:
    sink = RedisStreamSink(redis_url, out_stream, maxlen=5, approximate=False, codec="text")
    try:
        await sink.write([Message("a", headers={"trace": "x"}), "b"])
        await sink.write([str(n) for n in range(10)])
    finally:
        await sink.aclose()

    entries = await client.xrange(out_stream)
    assert [{b"value": str(n).encode()} for n in range(5, 10)] == [f for _, f in entries]
    assert 12 == sink.written


async def test_sink_writes_headers_as_fields(
    redis_url: str, out_stream: str, client: Client
) -> None:
    sink = RedisStreamSink(redis_url, out_stream, field="body")
    try:
        await sink.write(
            [Message({"a": 1}, headers={"n": 3, "x": 0.5, "raw": b"\x00", "body": "dropped"})]
        )
    finally:
        await sink.aclose()
    [(_, fields)] = await client.xrange(out_stream)
    assert {b"n": b"3", b"x": b"0.5", b"raw": b"\x00", b"body": b'{"a":1}'} == fields


async def test_sink_refuses_what_it_cannot_encode(redis_url: str, out_stream: str) -> None:
    sink = RedisStreamSink(redis_url, out_stream)
    try:
        with pytest.raises(EncodeError, match="json"):
            await sink.write([{"ok": 1}, {"bad": object()}])
        with pytest.raises(EncodeError, match="must be str, int, float or bytes"):
            await sink.write([Message(1, headers={"meta": {"nested": True}})])
    finally:
        await sink.aclose()


async def test_sink_raises_when_redis_refuses_an_entry(
    redis_url: str, out_stream: str, client: Client
) -> None:
    await client.set(out_stream, "not a stream")
    sink = RedisStreamSink(redis_url, out_stream)
    try:
        with pytest.raises(redis.exceptions.ResponseError, match="WRONGTYPE") as info:
            await sink.write([1, 2])
    finally:
        await sink.aclose()
    assert any("2 of 2 entries were refused" in note for note in info.value.__notes__)


# -- acknowledgement -----------------------------------------------------------------


class GatedSink:
    """A RedisStreamSink whose writes wait for ``open`` to be set."""

    def __init__(self, url: str, stream: str) -> None:
        self.inner = RedisStreamSink(url, stream)
        self.called = asyncio.Event()
        self.open = asyncio.Event()

    async def write(self, items: list[Any]) -> None:
        self.called.set()
        await self.open.wait()
        await self.inner.write(items)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_entries_are_acked_only_after_the_sink_wrote(
    redis_url: str, redis_stream: RedisStream, out_stream: str, client: Client
) -> None:
    await preload(client, redis_stream.key, orders(30))
    source = RedisStreamSource(
        redis_url, redis_stream.key, group=redis_stream.group, stop_at_end=True
    )
    sink = GatedSink(redis_url, out_stream)
    run = asyncio.create_task(ps.map(enrich).run(source, sink))

    await sink.called.wait()
    await asyncio.sleep(0.05)  # time for a wrong early ack to reach Redis
    assert 30 == await pending(client, redis_stream.key, redis_stream.group)
    assert 0 == await client.xlen(out_stream)
    sink.open.set()
    summary = await run

    assert 30 == summary.items_out
    assert 0 == await pending(client, redis_stream.key, redis_stream.group)


async def test_undecodable_entries_are_skipped_or_dead_lettered_and_acked(
    redis_url: str, redis_stream: RedisStream, client: Client
) -> None:
    key = redis_stream.key
    await client.xadd(key, {"value": b"[1]"})
    bad_json = (await client.xadd(key, {"value": b"{not json"})).decode()
    no_field = (await client.xadd(key, {"other": b"x", "more": b"y"})).decode()
    await client.xadd(key, {"value": b"[4]"})

    skipping = RedisStreamSource(redis_url, key, group=redis_stream.group, stop_at_end=True)
    got: list[Any] = []
    summary = await ps.map(lambda m: m.value, on_error="skip").run(skipping, got)
    assert ([[1], [4]], 2) == (got, summary.skipped)
    assert 0 == await pending(client, key, redis_stream.group)

    errors: list[ps.StreamError] = []
    dead = RedisStreamSource(redis_url, key, group=unique_name("group"), stop_at_end=True)
    summary = await ps.map(lambda m: m.value, on_error=ps.DeadLetter(errors)).run(dead, [])
    assert 2 == summary.dead_lettered
    assert [bad_json, no_field] == [e.item.position for e in errors]
    assert all(isinstance(e.item, UndecodableMessage) for e in errors)
    cause = errors[1].__cause__
    assert isinstance(cause, DecodeError)
    assert "no 'value' field" in str(cause)
    assert "['more', 'other']" in str(cause)
    assert {"other": "x", "more": "y"} == errors[1].item.headers
    assert 4 == dead.statistics().acked


# -- the consumer group ------------------------------------------------------------


async def test_two_consumers_split_the_work_without_overlap(
    redis_url: str, redis_stream: RedisStream, client: Client
) -> None:
    await preload(client, redis_stream.key, orders(400))

    async def consume(name: str) -> list[int]:
        source = RedisStreamSource(
            redis_url,
            redis_stream.key,
            group=redis_stream.group,
            consumer=name,
            batch_size=20,
            stop_at_end=True,
        )

        async def slowly(m: Message) -> int:
            await asyncio.sleep(0)
            return int(m.value["id"])

        got: list[int] = []
        await ps.map(slowly).run(source, got)
        return got

    a, b = await asyncio.gather(consume("a"), consume("b"))

    assert a
    assert b
    assert not set(a) & set(b)
    assert list(range(400)) == sorted(a + b)
    assert 0 == await pending(client, redis_stream.key, redis_stream.group)


async def test_a_dead_consumers_pending_entries_are_claimed(
    redis_url: str, redis_stream: RedisStream, client: Client
) -> None:
    key, group = redis_stream.key, redis_stream.group
    await preload(client, key, orders(30))
    await client.xgroup_create(key, group, id="0")
    await client.xreadgroup(group, "dead", {key: ">"}, count=10)  # never acked
    await asyncio.sleep(0.15)

    source = RedisStreamSource(redis_url, key, group=group, claim_idle=0.1, stop_at_end=True)
    got: list[int] = []
    await ps.map(lambda m: m.value["id"]).run(source, got)

    assert list(range(30)) == sorted(got)
    assert 10 == source.claimed == source.statistics().claimed
    assert 0 == await pending(client, key, group)


async def test_replies_in_resp2_are_read_too(
    redis_url: str, redis_stream: RedisStream, out_stream: str, client: Client
) -> None:
    key, group = redis_stream.key, redis_stream.group
    await preload(client, key, orders(20))
    await client.xgroup_create(key, group, id="0")
    await client.xreadgroup(group, "dead", {key: ">"}, count=5)
    await asyncio.sleep(0.15)
    url = f"{redis_url}/0?protocol=2"

    source = RedisStreamSource(url, key, group=group, claim_idle=0.1, stop_at_end=True)
    await ps.map(enrich).run(source, RedisStreamSink(url, out_stream))

    assert list(range(20)) == sorted(v["id"] for v in await read_values(client, out_stream))
    assert 5 == source.claimed


async def test_a_named_consumer_reads_its_own_pending_entries_first(
    redis_url: str, redis_stream: RedisStream, client: Client
) -> None:
    key, group = redis_stream.key, redis_stream.group
    await preload(client, key, orders(10))
    await client.xgroup_create(key, group, id="0")
    await client.xreadgroup(group, "me", {key: ">"}, count=4)  # a run that crashed

    source = RedisStreamSource(redis_url, key, group=group, consumer="me", stop_at_end=True)
    got: list[int] = []
    await ps.map(lambda m: m.value["id"]).run(source, got)

    assert list(range(10)) == got
    assert 0 == await pending(client, key, group)


async def test_stop_at_end_ends_at_the_entries_there_at_the_start(
    redis_url: str, redis_stream: RedisStream, client: Client
) -> None:
    key = redis_stream.key
    empty = RedisStreamSource(redis_url, key, group=redis_stream.group, stop_at_end=True)
    assert [] == [m async for m in _closing(empty)]

    await preload(client, key, orders(25))
    source = RedisStreamSource(
        redis_url, key, group=unique_name("group"), batch_size=10, stop_at_end=True
    )
    got: list[int] = []

    async def read_and_add() -> None:
        async for message in _closing(source):
            got.append(message.value["id"])
            if len(got) == 10:  # after the first batch, more entries come
                await preload(client, key, [{"id": 100 + n} for n in range(50)])

    await asyncio.wait_for(read_and_add(), 5)
    assert list(range(25)) == got[:25]
    assert len(got) < 35  # the last batch may carry a few newer entries, no more


async def _closing(source: RedisStreamSource) -> AsyncIterator[Message]:
    try:
        async for message in source:
            yield message
    finally:
        await source.aclose()


async def test_pause_stops_fetching_until_resume(
    redis_url: str, redis_stream: RedisStream, client: Client
) -> None:
    key, group = redis_stream.key, redis_stream.group
    await preload(client, key, orders(20))
    source = RedisStreamSource(redis_url, key, group=group, batch_size=5, block=0.05)
    it = aiter(source)
    try:
        first = [await anext(it) for _ in range(5)]
        source.pause()
        later = asyncio.ensure_future(anext(it))
        await asyncio.sleep(0.2)
        assert not later.done()
        assert [5] == [g["entries-read"] for g in await client.xinfo_groups(key)]
        source.resume()
        sixth = await asyncio.wait_for(later, 5)
    finally:
        await it.aclose()  # type: ignore[attr-defined]
        await source.aclose()
    assert [0, 1, 2, 3, 4, 5] == [m.value["id"] for m in [*first, sixth]]


# -- failures ----------------------------------------------------------------------


class FlakySink:
    """A RedisStreamSink whose first ``failures`` writes fail."""

    def __init__(self, url: str, stream: str, failures: int) -> None:
        self.inner = RedisStreamSink(url, stream)
        self.failures = failures

    async def write(self, items: list[Any]) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("the sink's service is down")
        await self.inner.write(items)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_a_sink_that_fails_then_recovers(
    redis_url: str, redis_stream: RedisStream, out_stream: str, client: Client
) -> None:
    await preload(client, redis_stream.key, orders(50))
    source = RedisStreamSource(
        redis_url, redis_stream.key, group=redis_stream.group, stop_at_end=True
    )
    summary = await ps.map(enrich).run(
        source, FlakySink(redis_url, out_stream, failures=3), write_retry=FAST_RETRY
    )

    assert 3 == summary.write_retries
    assert [{**o, "cents": o["amount"] * 100} for o in orders(50)] == await read_values(
        client, out_stream
    )
    assert 0 == await pending(client, redis_stream.key, redis_stream.group)


async def test_a_failed_run_leaves_its_entries_pending(
    redis_url: str, redis_stream: RedisStream, client: Client
) -> None:
    await preload(client, redis_stream.key, orders(10))
    source = RedisStreamSource(
        redis_url, redis_stream.key, group=redis_stream.group, stop_at_end=True
    )

    def boom(m: Message) -> int:
        if m.value["id"] == 5:
            raise RuntimeError("boom")
        return int(m.value["id"])

    with pytest.raises(ps.StreamError, match="boom"):
        await ps.map(boom).run(source, [])
    assert await pending(client, redis_stream.key, redis_stream.group) >= 5


async def test_a_deleted_stream_gets_its_group_again(
    redis_url: str, redis_stream: RedisStream, client: Client
) -> None:
    key = redis_stream.key
    await preload(client, key, orders(3))
    source = RedisStreamSource(redis_url, key, group=redis_stream.group, block=0.05)
    it = aiter(source)
    try:
        assert [0, 1, 2] == [(await anext(it)).value["id"] for _ in range(3)]
        await client.delete(key)
        await asyncio.sleep(0.1)
        await preload(client, key, [{"id": 7}])
        assert 7 == (await asyncio.wait_for(anext(it), 5)).value["id"]
    finally:
        await it.aclose()  # type: ignore[attr-defined]
        await source.aclose()
    assert 1 <= source.statistics().group_recreated


@contextlib.contextmanager
def private_redis(tmp: Path, port: int) -> Iterator[None]:
    """A Redis server of our own on ``port`` that keeps its data across a restart."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("no redis-server binary")
    argv = [binary, "--port", str(port), "--bind", HOST, "--save", "", "--dir", str(tmp)]
    argv += ["--appendonly", "yes", "--appendfsync", "always"]
    with server_process("redis-server", argv, lambda: redis_answers(port), tmp / "redis.log"):
        yield


async def test_the_run_survives_a_redis_restart(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    url = f"redis://{HOST}:{port}"
    key, out, group = unique_name("stream"), unique_name("out"), unique_name("group")
    with contextlib.ExitStack() as servers:
        servers.enter_context(private_redis(tmp_path, port))
        c = redis.asyncio.Redis.from_url(url)
        await preload(c, key, orders(300))
        await c.aclose()

        async def slowly(m: Message) -> dict[str, Any]:
            await asyncio.sleep(0.002)
            return enrich(m)

        reconnect = ps.Retry(attempts=30, backoff=0.05, max_backoff=0.2, jitter=0.0)
        source = RedisStreamSource(
            url, key, group=group, batch_size=20, stop_at_end=True, reconnect=reconnect
        )
        sink = RedisStreamSink(url, out, reconnect=reconnect)
        run = asyncio.create_task(ps.map(slowly).run(source, sink))
        while True:
            c = redis.asyncio.Redis.from_url(url)
            try:
                if await c.xlen(out) >= 60:
                    break
            finally:
                await c.aclose()
            await asyncio.sleep(0.01)
        servers.close()  # SIGTERM: Redis writes its data out and stops
        await asyncio.sleep(0.2)
        servers.enter_context(private_redis(tmp_path, port))
        summary = await asyncio.wait_for(run, 20)

        c = redis.asyncio.Redis.from_url(url)
        try:
            got = [v["id"] for v in await read_values(c, out)]
            assert set(range(300)) == set(got)
            assert 0 == await pending(c, key, group)
        finally:
            await c.aclose()
    assert summary.items_in >= 300
    assert any("trying again" in r.getMessage() for r in caplog.records)


async def test_killed_connections_are_reopened(tmp_path: Path) -> None:
    port = free_port()
    url = f"redis://{HOST}:{port}"
    key, out, group = unique_name("stream"), unique_name("out"), unique_name("group")
    with private_redis(tmp_path, port):
        admin: Client = redis.asyncio.Redis.from_url(url)
        try:
            await preload(admin, key, orders(200))

            async def slowly(m: Message) -> dict[str, Any]:
                await asyncio.sleep(0.002)
                return enrich(m)

            source = RedisStreamSource(url, key, group=group, batch_size=20, stop_at_end=True)
            run = asyncio.create_task(ps.map(slowly).run(source, RedisStreamSink(url, out)))
            for written in (40, 80, 120):
                await until(functools.partial(output_reached, admin, out, written))
                await admin.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
                await asyncio.sleep(0.05)
            await asyncio.wait_for(run, 20)

            got = [v["id"] for v in await read_values(admin, out)]
            assert set(range(200)) == set(got)
            assert 0 == await pending(admin, key, group)
        finally:
            await admin.aclose()


async def test_an_unreachable_redis_fails_the_run_after_the_reconnect_attempts() -> None:
    url = f"redis://{HOST}:{free_port()}"  # nothing listens there
    retry = ps.Retry(attempts=3, backoff=0.01, max_backoff=0.01, jitter=0.0)
    source = RedisStreamSource(url, "s", group="g", reconnect=retry)
    with pytest.raises(redis.exceptions.ConnectionError) as info:
        await ps.map(enrich).run(source, [])
    assert any("failed after 3 attempts" in note for note in info.value.__notes__)

    sink = RedisStreamSink(url, "s", reconnect=retry)
    with pytest.raises(redis.exceptions.ConnectionError) as info:
        await sink.write([1])
    await sink.aclose()
    assert any("writing to s failed after 3 attempts" in n for n in info.value.__notes__)


# -- arguments, extras, closing ---------------------------------------------------


def test_a_missing_extra_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis.asyncio", None)
    with pytest.raises(ImportError, match=r"pip install 'pipeflow-streams\[redis\]'"):
        RedisStreamSource("redis://localhost", "s", group="g")
    with pytest.raises(ImportError, match=r"RedisStreamSink needs the 'redis' extra"):
        RedisStreamSink("redis://localhost", "s")


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"stream": ""}, ValueError, "stream must be a non-empty str"),
        ({"group": 3}, TypeError, "group must be a non-empty str, got int: 3"),
        ({"consumer": ""}, ValueError, "consumer must be"),
        ({"batch_size": 0}, ValueError, "batch_size must be an int >= 1, got 0"),
        ({"batch_size": 2.5}, TypeError, "batch_size must be an int >= 1, got float"),
        ({"block": 0}, ValueError, "block must be > 0, got 0"),
        ({"block": "1s"}, TypeError, "block"),
        ({"claim_idle": timedelta(seconds=-1)}, ValueError, "claim_idle must be > 0"),
        ({"stop_at_end": 1}, TypeError, "stop_at_end must be True or False, got int"),
        ({"codec": "yaml"}, ValueError, "codec must be one of"),
        ({"reconnect": 3}, TypeError, "reconnect must be a Retry, got int"),
    ],
)
def test_source_arguments_are_checked(
    kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    args: dict[str, Any] = {"url": "redis://localhost", "stream": "s", "group": "g"}
    with pytest.raises(error, match=match):
        RedisStreamSource(**{**args, **kwargs})


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"url": None}, TypeError, "url must be a non-empty str, got None"),
        ({"maxlen": 0}, ValueError, "maxlen must be an int >= 1, got 0"),
        ({"approximate": "yes"}, TypeError, "approximate must be True or False, got str"),
        ({"field": ""}, ValueError, "field must be a non-empty str"),
        ({"codec": object()}, TypeError, "codec must be"),
    ],
)
def test_sink_arguments_are_checked(
    kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    args: dict[str, Any] = {"url": "redis://localhost", "stream": "s"}
    with pytest.raises(error, match=match):
        RedisStreamSink(**{**args, **kwargs})


async def client_count(admin: Client) -> int:
    return len(await admin.client_list())


@pytest.mark.parametrize("ending", ["break", "error", "cancel"])
async def test_nothing_is_left_open(ending: str, tmp_path: Path) -> None:
    port = free_port()
    url = f"redis://{HOST}:{port}"
    key, group = unique_name("stream"), unique_name("group")
    with private_redis(tmp_path, port):
        admin: Client = redis.asyncio.Redis.from_url(url)
        try:
            await preload(admin, key, orders(50))
            before = set(asyncio.all_tasks())
            source = RedisStreamSource(url, key, group=group, batch_size=10, block=5.0)
            sink = RedisStreamSink(url, unique_name("out"))
            if ending == "break":
                async with ps.map(enrich).stream(source) as results:
                    async for _ in results:
                        break
            elif ending == "error":

                def boom(m: Message) -> None:
                    raise RuntimeError("boom")

                with pytest.raises(ps.StreamError):
                    await ps.map(boom).run(source, sink)
            else:
                run = asyncio.create_task(ps.map(enrich).run(source, sink))
                await until(lambda: all_read(admin, key, 50))
                await asyncio.sleep(0.05)  # the source now waits in a blocking read
                run.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await run
                await sink.aclose()
            await asyncio.sleep(0.05)
            assert before == set(asyncio.all_tasks())
            assert 1 == await client_count(admin)
        finally:
            await admin.aclose()


# -- the example program -------------------------------------------------------------


async def test_the_orders_example_prices_the_orders_in_a_stream(
    redis_url: str, redis_stream: RedisStream, out_stream: str, client: Client
) -> None:
    settings = redis_orders.Settings(
        redis_url, redis_stream.key, out_stream, redis_stream.group, seed=200
    )
    report = await redis_orders.process(settings)

    entries = [
        orjson.loads(v) for _, f in await client.xrange(redis_stream.key) for v in [f[b"value"]]
    ]
    good = [e for e in entries if isinstance(e["amount"], int)]
    expected = [redis_orders.priced(e) for e in good if e["amount"] > redis_orders.MIN_AMOUNT]
    assert expected == await read_values(client, out_stream)
    assert all(o["tax_cents"] == round(o["cents"] * 0.2) for o in expected)
    assert (200, len(expected), 20) == (report.read, report.written, len(report.malformed))
    assert 200 == report.written + report.small + len(report.malformed) == report.acked
    assert 0 == await pending(client, redis_stream.key, redis_stream.group)


def test_the_orders_example_runs_from_the_command_line(
    redis_url: str, redis_stream: RedisStream, out_stream: str
) -> None:
    env = {"REDIS_URL": redis_url, "ORDERS_INPUT": redis_stream.key, "ORDERS_OUTPUT": out_stream}
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "redis_orders.py"), "--seed", "30"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    )
    assert f"{redis_stream.key} -> {out_stream}: read 30, wrote " in done.stdout
    assert "3 malformed, acknowledged 30" in done.stdout
    assert "malformed at " in done.stdout
