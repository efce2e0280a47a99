"""NatsSource and NatsSink against a real NATS JetStream server.

Each test makes its own stream capturing ``<subject>.>``: the source reads
``<subject>.in`` and the sink writes ``<subject>.out``, so one stream, deleted
by the fixture, holds both.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, ExitStack
from dataclasses import dataclass
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

import pytest

from brokers import HOST, NatsStream, free_port, nats_jetstream_answers, server_process
from pipeflow import streams as ps
from pipeflow.connectors import Message, NatsSink, NatsSource, UndecodableMessage
from pipeflow.streams import DeadLetter, Retry, StreamError

pytestmark = pytest.mark.timeout(60)

FAST_RECONNECT = Retry(attempts=60, backoff=0.1, max_backoff=0.2, jitter=0.05)


@dataclass
class Names:
    stream: str
    inp: str
    out: str
    durable: str


@pytest.fixture
async def js(nats_url: str) -> AsyncIterator[Any]:
    import nats

    nc = await nats.connect(nats_url)
    yield nc.jetstream()
    await nc.close()


@pytest.fixture
async def names(js: Any, nats_stream: NatsStream) -> Names:
    from nats.js.api import StorageType

    await js.add_stream(
        name=nats_stream.name, subjects=[f"{nats_stream.subject}.>"], storage=StorageType.MEMORY
    )
    return Names(
        nats_stream.name,
        f"{nats_stream.subject}.in",
        f"{nats_stream.subject}.out",
        nats_stream.durable,
    )


async def publish(js: Any, subject: str, payloads: list[bytes], headers: Any = None) -> None:
    for start in range(0, len(payloads), 500):
        futures = [
            await js.publish_async(subject, p, headers=headers)
            for p in payloads[start : start + 500]
        ]
        await asyncio.gather(*futures)


async def read_all(js: Any, stream: str, subject: str) -> list[Any]:
    """Every message stored on ``subject``, in order."""
    from nats.js.api import AckPolicy, ConsumerConfig

    info = await js.stream_info(stream, subjects_filter=subject)
    count = (info.state.subjects or {}).get(subject, 0)
    got: list[Any] = []
    if count == 0:
        return got
    sub = await js.pull_subscribe(
        subject, stream=stream, config=ConsumerConfig(ack_policy=AckPolicy.NONE)
    )
    try:
        while len(got) < count:
            got += await sub.fetch(min(count - len(got), 1000), timeout=5)
    finally:
        await sub.unsubscribe()
    return got


def values(msgs: list[Any]) -> list[Any]:
    import orjson

    return [orjson.loads(m.data) for m in msgs]


def source(url: str, n: Names, **options: Any) -> NatsSource:
    options.setdefault("stop_at_end", True)
    options.setdefault("fetch_timeout", 0.3)
    return NatsSource(url, n.inp, stream=n.stream, durable=n.durable, **options)


def numbered(count: int) -> list[bytes]:
    return [b'{"id": %d}' % i for i in range(count)]


async def test_round_trip_is_exact(nats_url: str, js: Any, names: Names) -> None:
    await publish(js, names.inp, numbered(700), headers={"kind": "order"})
    seen: list[Message] = []

    def step(m: Message) -> Message:
        seen.append(m)
        return m.replace(value={"id": m.value["id"], "double": 2 * m.value["id"]})

    summary = await ps.map(step).run(
        source(nats_url, names, batch_size=64), NatsSink(nats_url, names.out)
    )

    assert (700, 700) == (summary.items_in, summary.items_out)
    out = await read_all(js, names.stream, names.out)
    assert [{"id": i, "double": 2 * i} for i in range(700)] == values(out)
    assert all(m.headers == {"kind": "order"} for m in out)
    assert list(range(1, 701)) == [m.position for m in seen]
    first = seen[0]
    assert (names.inp, 0, {"kind": "order"}) == (first.source, first.partition, first.headers)
    assert first.timestamp is not None
    assert first.timestamp.tzinfo is UTC
    info = await js.consumer_info(names.stream, names.durable)
    # Every delivery acknowledged; the stream's own count runs on past them (the output).
    assert (700, 0, 0) == (info.ack_floor.consumer_seq, info.num_ack_pending, info.num_pending)


async def test_acknowledges_only_what_the_sink_wrote(nats_url: str, js: Any, names: Names) -> None:
    await publish(js, names.inp, numbered(300))
    written: list[int] = []
    checks: list[tuple[int, int, int]] = []

    class SlowSink:
        async def write(self, items: list[Any]) -> None:
            info = await js.consumer_info(names.stream, names.durable)
            # Nothing beyond what was written is acknowledged; these items are pending.
            assert info.ack_floor.stream_seq <= len(written)
            assert info.num_ack_pending >= len(items)
            checks.append((len(written), info.ack_floor.stream_seq, info.num_ack_pending))
            await asyncio.sleep(0.02)
            written.extend(m.value["id"] for m in items)

        async def aclose(self) -> None:
            pass

    await ps.map(lambda m: m).run(source(nats_url, names, batch_size=40), SlowSink())

    assert list(range(300)) == written
    assert len(checks) > 3
    assert any(floor > 0 for _, floor, _ in checks)  # acks went out during the run
    info = await js.consumer_info(names.stream, names.durable)
    assert (300, 0) == (info.ack_floor.stream_seq, info.num_ack_pending)


@pytest.mark.parametrize("policy", ["skip", "dead_letter"])
async def test_undecodable_payloads_are_counted_and_acknowledged(
    nats_url: str, js: Any, names: Names, policy: str
) -> None:
    payloads = [b"not json" if i % 10 == 3 else b'{"id": %d}' % i for i in range(100)]
    await publish(js, names.inp, payloads)
    letters: list[Any] = []
    on_error: Any = "skip" if policy == "skip" else DeadLetter(letters)
    got: list[int] = []

    summary = await ps.map(lambda m: m.value["id"], on_error=on_error).run(
        source(nats_url, names), got
    )

    assert [i for i in range(100) if i % 10 != 3] == got
    assert 10 == (summary.skipped if policy == "skip" else summary.dead_lettered)
    if policy == "dead_letter":
        assert all(isinstance(e.item, UndecodableMessage) for e in letters)
        assert [b"not json"] * 10 == [e.item.raw for e in letters]
    info = await js.consumer_info(names.stream, names.durable)
    assert (100, 0) == (info.ack_floor.stream_seq, info.num_ack_pending)


async def test_two_workers_share_a_durable(nats_url: str, js: Any, names: Names) -> None:
    await publish(js, names.inp, numbered(2000))
    outs: list[list[int]] = [[], []]

    async def worker(got: list[int]) -> None:
        async def slow(m: Message) -> int:
            await asyncio.sleep(0)
            return int(m.value["id"])

        await ps.map(slow).run(source(nats_url, names, batch_size=50), got)

    await asyncio.gather(worker(outs[0]), worker(outs[1]))

    assert all(outs), "both workers got messages"
    assert list(range(2000)) == sorted(outs[0] + outs[1])
    info = await js.consumer_info(names.stream, names.durable)
    assert (2000, 0) == (info.ack_floor.stream_seq, info.num_ack_pending)


async def test_unacknowledged_messages_come_back_after_ack_wait(
    nats_url: str, js: Any, names: Names
) -> None:
    await publish(js, names.inp, numbered(20))
    dead = source(nats_url, names, batch_size=10, ack_wait=1.0, stop_at_end=False)
    taken = []
    async for m in dead:  # a worker that dies holding ten messages, none acknowledged
        taken.append(m.position)
        if len(taken) == 10:
            break
    await dead.aclose()

    got: list[Message] = []
    await ps.map(lambda m: m).run(source(nats_url, names, batch_size=10), got)

    assert list(range(1, 11)) == taken
    assert list(range(1, 21)) == sorted(m.position for m in got)
    info = await js.consumer_info(names.stream, names.durable)
    assert (20, 0) == (info.ack_floor.stream_seq, info.num_ack_pending)
    assert info.num_redelivered >= 0


async def test_stop_at_end_ends_after_what_was_there(nats_url: str, js: Any, names: Names) -> None:
    await publish(js, names.inp, numbered(30))
    got: list[int] = []

    async def step(m: Message) -> int:
        if m.value["id"] == 0:  # published while the run is going: left for the next run
            await publish(js, names.inp, [b'{"id": %d}' % i for i in range(30, 40)])
        return int(m.value["id"])

    await ps.map(step).run(source(nats_url, names, batch_size=8), got)
    assert list(range(30)) == got

    more: list[int] = []
    await ps.map(lambda m: m.value["id"]).run(source(nats_url, names), more)
    assert list(range(30, 40)) == more

    empty: list[int] = []
    summary = await ps.map(lambda m: m).run(source(nats_url, names), empty)
    assert (0, []) == (summary.items_in, empty)


async def test_pause_stops_fetching_until_resume(nats_url: str, js: Any, names: Names) -> None:
    await publish(js, names.inp, numbered(50))
    src = source(nats_url, names, batch_size=10, stop_at_end=False)
    it = aiter(src)
    try:
        first = await anext(it)
        src.pause()
        batch = [first] + [await anext(it) for _ in range(9)]
        await asyncio.sleep(0.3)
        info = await js.consumer_info(names.stream, names.durable)
        assert (10, 0) == (info.delivered.stream_seq, info.num_waiting)
        src.resume()
        after = await anext(it)
    finally:
        await src.aclose()
    assert list(range(1, 12)) == [m.position for m in [*batch, after]]


async def test_a_sink_that_fails_then_recovers(nats_url: str, js: Any, names: Names) -> None:
    from nats.js.api import StorageType

    await publish(js, names.inp, numbered(100))
    target = names.out.replace(
        "pipeflow.test", "pipeflow.elsewhere"
    )  # no stream captures it until the sink has failed twice
    other = f"{names.stream}-elsewhere"
    failures: list[BaseException] = []

    class Flaky:
        def __init__(self) -> None:
            self.sink = NatsSink(nats_url, target)

        async def write(self, items: list[Any]) -> None:
            try:
                await self.sink.write(items)
            except LookupError as exc:
                failures.append(exc)
                if len(failures) == 2:
                    await js.add_stream(name=other, subjects=[target], storage=StorageType.MEMORY)
                raise

        async def aclose(self) -> None:
            await self.sink.aclose()

    try:
        summary = await ps.map(lambda m: m).run(
            source(nats_url, names),
            Flaky(),
            write_retry=Retry(attempts=4, backoff=0.01, jitter=0),
        )
        assert 2 == summary.write_retries == len(failures)
        assert "no JetStream stream captures subject" in str(failures[0])
        assert [{"id": i} for i in range(100)] == values(await read_all(js, other, target))
    finally:
        await js.delete_stream(other)


async def test_a_publish_refused_fails_the_run(nats_url: str, js: Any, names: Names) -> None:
    await publish(js, names.inp, numbered(5))
    with pytest.raises(LookupError, match="no JetStream stream captures"):
        await ps.map(lambda m: m).run(
            source(nats_url, names),
            NatsSink(nats_url, names.out.replace("pipeflow.test", "pipeflow.nowhere")),
            write_retry=Retry(attempts=2, backoff=0.01),
        )
    info = await js.consumer_info(names.stream, names.durable)
    assert (0, 5) == (info.ack_floor.stream_seq, info.num_ack_pending)


async def test_the_run_survives_the_server_going_away(tmp_path: Path) -> None:
    import nats
    from nats.js.api import StorageType

    port = free_port()
    url = f"nats://{HOST}:{port}"
    argv = ["nats-server", "-a", HOST, "-p", str(port), "-js", "-sd", str(tmp_path / "store")]

    def start() -> ExitStack:
        stack = ExitStack()
        stack.enter_context(
            server_process(
                "nats-server", argv, lambda: nats_jetstream_answers(port), tmp_path / "log"
            )
        )
        return stack

    server = start()
    try:
        nc = await nats.connect(url)
        js = nc.jetstream()
        await js.add_stream(name="restart", subjects=["restart.>"], storage=StorageType.FILE)
        await publish(js, "restart.in", numbered(3000))
        await nc.close()
        names = Names("restart", "restart.in", "restart.out", "worker")
        halfway = asyncio.Event()
        written: list[int] = []

        class Watch:
            def __init__(self) -> None:
                self.sink = NatsSink(url, names.out, reconnect=FAST_RECONNECT)

            async def write(self, items: list[Any]) -> None:
                await self.sink.write(items)
                written.extend(items)
                if len(written) >= 1000:
                    halfway.set()

            async def aclose(self) -> None:
                await self.sink.aclose()

        async def slow(m: Message) -> int:
            await asyncio.sleep(0.0005)
            return int(m.value["id"])

        run = asyncio.create_task(
            ps.map(slow).run(
                source(url, names, batch_size=100, ack_wait=2.0, reconnect=FAST_RECONNECT),
                Watch(),
                write_retry=Retry(attempts=20, backoff=0.1, max_backoff=0.5),
            )
        )
        await asyncio.wait_for(halfway.wait(), 20)
        await asyncio.to_thread(server.close)
        assert not run.done()
        await asyncio.sleep(0.5)
        server = start()
        summary = await asyncio.wait_for(run, 40)

        assert summary.items_in >= 3000
        nc = await nats.connect(url)
        js = nc.jetstream()
        out = values(await read_all(js, "restart", "restart.out"))
        assert set(range(3000)) == set(out)  # duplicates allowed, no loss
        info = await js.consumer_info("restart", "worker")
        assert (0, 0) == (info.num_pending, info.num_ack_pending)
        assert info.ack_floor.stream_seq >= 3000  # past the inputs (and outputs among them)
        await nc.close()
    finally:
        await asyncio.to_thread(server.close)


def test_missing_extra_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "nats", None)
    with pytest.raises(ImportError, match=r"NatsSource needs the 'nats' extra.*\[nats\]'"):
        NatsSource("nats://x", "s", stream="s", durable="d")
    with pytest.raises(ImportError, match=r"NatsSink needs the 'nats' extra.*\[nats\]'"):
        NatsSink("nats://x", "s")


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"batch_size": 0}, ValueError, "batch_size must be an int >= 1, got 0"),
        ({"batch_size": 1.5}, TypeError, "batch_size must be an int >= 1, got float: 1.5"),
        ({"fetch_timeout": -1}, ValueError, "fetch_timeout"),
        ({"ack_wait": "30"}, TypeError, "ack_wait"),
        ({"stop_at_end": "yes"}, TypeError, "stop_at_end must be True or False, got str"),
        ({"codec": "xml"}, ValueError, "codec must be one of"),
        ({"reconnect": 3}, TypeError, "reconnect must be a Retry, got int"),
        ({"reconnect": Retry(then="skip")}, ValueError, "then='raise'"),
        ({"durable": "a.b"}, ValueError, "durable must be a name without"),
        ({"stream": ""}, ValueError, "stream must be a non-empty str, got ''"),
    ],
)
def test_source_arguments_are_checked(options: dict[str, Any], error: type, match: str) -> None:
    args: dict[str, Any] = {"stream": "s", "durable": "d"} | options
    with pytest.raises(error, match=match):
        NatsSource("nats://127.0.0.1:4222", "s.in", **args)


@pytest.mark.parametrize(
    ("args", "options", "error", "match"),
    [
        (("", "s"), {}, ValueError, "url must be a non-empty str"),
        (("nats://h", "s.*"), {}, ValueError, "without wildcards"),
        (("nats://h", "s"), {"max_in_flight": 0}, ValueError, "max_in_flight must be an int >= 1"),
        (("nats://h", "s"), {"codec": 7}, TypeError, "codec must be"),
    ],
)
def test_sink_arguments_are_checked(
    args: tuple[str, str], options: dict[str, Any], error: type, match: str
) -> None:
    with pytest.raises(error, match=match):
        NatsSink(*args, **options)


def test_durations_take_timedeltas() -> None:
    src = NatsSource(
        "nats://h", "s", stream="s", durable="d", ack_wait=timedelta(seconds=2), fetch_timeout=0.5
    )
    assert "durable='d'" in repr(src)


async def test_a_missing_stream_is_named(nats_url: str, names: Names) -> None:
    src = NatsSource(nats_url, names.inp, stream=f"{names.stream}-missing", durable="d")
    with pytest.raises(LookupError, match=f"stream '{names.stream}-missing' does not exist"):
        await ps.map(lambda m: m).run(src, [])


async def test_a_consumer_of_another_kind_is_refused(nats_url: str, js: Any, names: Names) -> None:
    from nats.js.api import AckPolicy, ConsumerConfig

    await js.add_consumer(
        names.stream,
        ConsumerConfig(
            durable_name=names.durable, ack_policy=AckPolicy.ALL, filter_subject=names.inp
        ),
    )
    with pytest.raises(ValueError, match="acknowledge explicitly; it has ack_policy='all'"):
        await ps.map(lambda m: m).run(source(nats_url, names), [])


async def open_tasks() -> set[asyncio.Task[Any]]:
    await asyncio.sleep(0.05)
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}


async def test_nothing_is_left_open_after_break(nats_url: str, js: Any, names: Names) -> None:
    await publish(js, names.inp, numbered(50))
    before = await open_tasks()
    src = source(nats_url, names, stop_at_end=False)
    sink = NatsSink(nats_url, names.out)
    async with AsyncExitStack() as stack:
        stream = await stack.enter_async_context(ps.map(lambda m: m).stream(src))
        async for item in stream:
            await sink.write([item])
            break
    await sink.aclose()
    assert before == await open_tasks()
    assert src._client.nc is None
    assert sink._client.nc is None


async def test_nothing_is_left_open_after_an_error(nats_url: str, js: Any, names: Names) -> None:
    await publish(js, names.inp, numbered(50))
    before = await open_tasks()

    def fail(m: Message) -> None:
        raise RuntimeError("boom")

    src = source(nats_url, names, stop_at_end=False)
    sink = NatsSink(nats_url, names.out)
    with pytest.raises(StreamError, match="boom"):
        await ps.map(fail).run(src, sink)
    assert before == await open_tasks()
    assert src._client.nc is None
    assert sink._client.nc is None
    info = await js.consumer_info(names.stream, names.durable)
    assert 0 == info.ack_floor.stream_seq


async def test_nothing_is_left_open_after_cancellation(
    nats_url: str, js: Any, names: Names
) -> None:
    await publish(js, names.inp, numbered(50))
    before = await open_tasks()
    src = source(nats_url, names, stop_at_end=False)  # waits for more at the end
    all_written = asyncio.Event()

    class Sink(NatsSink):
        async def write(self, items: list[Any]) -> None:
            await super().write(items)
            self.count = getattr(self, "count", 0) + len(items)
            if self.count == 50:
                all_written.set()

    sink = Sink(nats_url, names.out)
    run = asyncio.create_task(ps.map(lambda m: m).run(src, sink))
    await all_written.wait()
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert before == await open_tasks()
    assert src._client.nc is None
    assert sink._client.nc is None


async def test_a_consumer_deleted_under_the_source_fails_the_run(
    nats_url: str, js: Any, names: Names
) -> None:
    await publish(js, names.inp, numbered(10))

    async def delete_consumer(m: Message) -> Message:
        if m.value["id"] == 9:
            await js.delete_consumer(names.stream, names.durable)
        return m

    with pytest.raises(LookupError, match=f"consumer '{names.durable}'"):
        await ps.map(delete_consumer).run(source(nats_url, names, stop_at_end=False), [])


async def test_no_server_is_a_clear_error() -> None:
    url = f"nats://{HOST}:{free_port()}"
    retry = Retry(attempts=2, backoff=0.05, jitter=0)
    src = NatsSource(url, "s.in", stream="s", durable="d", reconnect=retry)
    with pytest.raises(ConnectionError, match=r"could not connect to nats://.* in 2 attempts"):
        await ps.map(lambda m: m).run(src, [])
    with pytest.raises(ConnectionError, match=r"NatsSink\(s.out\): could not connect"):
        await NatsSink(url, "s.out", reconnect=retry).write([1])


async def test_a_server_gone_for_good_fails_the_run(tmp_path: Path) -> None:
    import nats
    from nats.js.api import StorageType

    port = free_port()
    url = f"nats://{HOST}:{port}"
    argv = ["nats-server", "-a", HOST, "-p", str(port), "-js", "-sd", str(tmp_path / "store")]
    server = ExitStack()
    ready = lambda: nats_jetstream_answers(port)  # noqa: E731
    server.enter_context(server_process("nats-server", argv, ready, tmp_path / "log"))
    try:
        nc = await nats.connect(url)
        js = nc.jetstream()
        await js.add_stream(name="gone", subjects=["gone.>"], storage=StorageType.MEMORY)
        await publish(js, "gone.in", numbered(10))
        await nc.close()
        names = Names("gone", "gone.in", "gone.out", "worker")
        src = source(url, names, stop_at_end=False, reconnect=Retry(attempts=2, backoff=0.05))
        got: list[Message] = []
        all_read = asyncio.Event()

        def keep(m: Message) -> None:
            got.append(m)
            if len(got) == 10:
                all_read.set()

        run = asyncio.create_task(ps.map(lambda m: m).run(src, keep))
        sink = NatsSink(url, "gone.out", reconnect=Retry(attempts=2, backoff=0.05))
        await sink.write([1])
        await all_read.wait()
        await asyncio.to_thread(server.close)
        with pytest.raises(ConnectionError, match="2 reconnect attempts failed"):
            await asyncio.wait_for(run, 20)
        with pytest.raises(ConnectionError, match=r"NatsSink\(gone.out\): the connection"):
            await asyncio.wait_for(sink.write([2]), 20)
        await sink.aclose()
    finally:
        await asyncio.to_thread(server.close)


async def test_ack_returns_once_the_server_has_the_acks(
    nats_url: str, js: Any, names: Names
) -> None:
    await publish(js, names.inp, numbered(8))
    src = source(nats_url, names, stop_at_end=False)
    it = aiter(src)
    try:
        got = [await anext(it) for _ in range(8)]
        await src.ack(3)
        info = await js.consumer_info(names.stream, names.durable)
        assert (3, 5) == (info.ack_floor.stream_seq, info.num_ack_pending)
        await src.ack(3)  # nothing new
        await src.ack(8)
        info = await js.consumer_info(names.stream, names.durable)
        assert (8, 0) == (info.ack_floor.stream_seq, info.num_ack_pending)
        with pytest.raises(ValueError, match="acknowledged 9 items, but only 8"):
            await src.ack(9)
    finally:
        await src.aclose()
    assert list(range(1, 9)) == [m.position for m in got]


async def test_sink_keeps_order_with_few_publishes_in_flight(
    nats_url: str, js: Any, names: Names
) -> None:
    sink = NatsSink(nats_url, names.out, codec="text", max_in_flight=3)
    try:
        await sink.write([f"line {i}" for i in range(50)])
        await sink.write([Message("last", headers={"n": 50})])
        await sink.write([])
    finally:
        await sink.aclose()
    out = await read_all(js, names.stream, names.out)
    assert [f"line {i}" for i in range(50)] + ["last"] == [m.data.decode() for m in out]
    assert {"n": "50"} == out[-1].headers


async def test_a_consumer_of_another_subject_is_refused(
    nats_url: str, js: Any, names: Names
) -> None:
    from nats.js.api import AckPolicy, ConsumerConfig

    await js.add_consumer(
        names.stream, ConsumerConfig(durable_name=names.durable, ack_policy=AckPolicy.EXPLICIT)
    )
    with pytest.raises(ValueError, match="filters 'all \\(no filter\\)'"):
        await ps.map(lambda m: m).run(source(nats_url, names), [])


async def test_an_existing_consumer_keeps_its_ack_wait(
    nats_url: str, js: Any, names: Names, caplog: pytest.LogCaptureFixture
) -> None:
    await publish(js, names.inp, numbered(3))
    await ps.map(lambda m: m).run(source(nats_url, names, ack_wait=5), [])
    await publish(js, names.inp, numbered(2))
    got: list[Message] = []
    await ps.map(lambda m: m).run(source(nats_url, names, ack_wait=7), got)
    assert [4, 5] == [m.position for m in got]
    assert "has ack_wait=5.0s; keeping it (the source was given 7.0s)" in caplog.text
    info = await js.consumer_info(names.stream, names.durable)
    assert 5.0 == info.config.ack_wait
