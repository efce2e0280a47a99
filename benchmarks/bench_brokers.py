"""Section 5: broker pipelines end to end, pipeflow's connectors against hand-written loops.

The workload (``brokerbench.workload``): ``n`` JSON messages pre-loaded into a
fresh single-partition input; parse, keep ``amount > 10``, add ``cents``, write
JSON to a fresh output, acknowledging the input as it goes (at-least-once).
Each run starts one implementation in a fresh process; rounds interleave the
implementations of a broker (A B C A B C ...), and figures are medians over the
rounds. The driver polls the output's length (~every 10 ms): t1 is when it holds
every expected message. After t1, and outside the timed region, it checks the
whole output (every id once, every field exact) and that the input is fully
acknowledged (Redis: XPENDING 0 and entries-read n; NATS: no ack pending and ack
floor n; Kafka: committed offset n). A run that fails a check stops the report.

Then a memory run: ``memory_n`` messages from Redis through pipeflow into a sink
slowed down on purpose, the client sampling its own RSS.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import psutil
from bench_report import Target, median, print_table, rate
from brokerbench.lanes import ACK_WAIT, KafkaLane, Lane, NatsLane, RedisLane
from brokerbench.services import nats_url, redis_url
from brokerbench.workload import check_outputs, expected_count

__all__ = ["BrokerImpl", "run_brokers"]

_HERE = Path(__file__).resolve().parent
_MB = 1024 * 1024
#: A client that has not completed its output after this many seconds has failed.
RUN_TIMEOUT = 180.0
POLL = 0.01
#: Seconds the output may take to show complete after a client exited successfully.
EXITED_GRACE = 5.0
#: Grouped Kafka clients join with this session timeout: Tansu delays the first
#: JoinGroup by half of it, and 6 s is the smallest Kafka allows by default.
SESSION_TIMEOUT_MS = 6000
#: Peak RSS every pipeflow client process must stay under, in MB.
RSS_LIMIT_MB = 60.0
#: The memory run's sink sleeps this long per item written (a sink slower than the source).
SLOW_SINK_DELAY = 20e-6
#: How far RSS may grow, in MB, from 10 % of the memory run's output to its peak.
FLAT_LIMIT_MB = 5.0


@dataclass(frozen=True)
class BrokerImpl:
    """One implementation: a client process key (``brokerbench.client.IMPLS``), its broker.

    ``until_stopped`` implementations never end on their own: the driver stops them
    with SIGTERM once their input is acknowledged (bytewax: once an epoch passed).
    """

    key: str
    broker: str
    label: str
    until_stopped: bool = False
    grouped: bool = True


IMPLS = [
    BrokerImpl("redis_hiredis", "redis", "hand-written redis.asyncio + hiredis loop"),
    BrokerImpl("pipeflow_redis", "redis", "pipeflow RedisStreamSource -> RedisStreamSink"),
    BrokerImpl("nats_loop", "nats", "hand-written nats-py JetStream pull loop"),
    BrokerImpl("pipeflow_nats", "nats", "pipeflow NatsSource -> NatsSink"),
    BrokerImpl("aiokafka_batch", "kafka", "hand-written aiokafka loop, create_batch/send_batch"),
    BrokerImpl("pipeflow_kafka", "kafka", "pipeflow KafkaSource -> KafkaSink"),
    BrokerImpl(
        "bytewax_rec",
        "kafka",
        "bytewax KafkaSource -> KafkaSink, SQLite recovery, 1 s epochs",
        until_stopped=True,
        grouped=False,
    ),
    BrokerImpl(
        "quix", "kafka", "quixstreams Application, filter/apply/to_topic", until_stopped=True
    ),
]
MEMORY_IMPL = BrokerImpl(
    "pipeflow_redis_slow", "redis", "pipeflow RedisStreamSource -> slowed RedisStreamSink"
)


@dataclass
class RunRecord:
    """What one run measured; times are seconds on the monotonic clock."""

    key: str
    n: int
    t0: float
    t_first: float
    t10: float
    t1: float
    cpu: float
    peak_rss: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def e2e(self) -> float:
        return self.n / (self.t1 - self.t0)

    @property
    def steady(self) -> float:
        # Never less than one poll: a small run can be done by the first poll that sees 10 %.
        return 0.9 * self.n / max(self.t1 - self.t10, POLL)

    @property
    def startup(self) -> float:
        return self.t_first - self.t0


def _proc_cpu(proc: psutil.Process) -> float | None:
    try:
        t = proc.cpu_times()
    except psutil.Error:
        return None
    return float(t.user + t.system)


def _proc_hwm(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _records(out: IO[bytes]) -> list[dict[str, Any]]:
    out.seek(0)
    return [json.loads(line) for line in out.read().splitlines() if line.startswith(b"{")]


def _fail(impl: BrokerImpl, why: str, err: IO[bytes] | None = None) -> None:
    tail = ""
    if err is not None:
        err.seek(0)
        tail = "\n" + err.read().decode(errors="replace")[-3000:]
    sys.exit(f"broker run {impl.key}: {why}{tail}")


async def _wait_acked(lane: Lane, impl: BrokerImpl) -> str | None:
    deadline = time.monotonic() + ACK_WAIT
    # Polling the broker: there is nothing to wait on.
    while (missing := await lane.acked()) is not None and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.1)
    return missing


async def _run_one(
    impl: BrokerImpl, lane: Lane, n: int, extra: dict[str, Any] | None = None
) -> RunRecord:
    started = time.perf_counter()
    if isinstance(lane, KafkaLane):
        lane.grouped = impl.grouped
        lane.recovery_store = impl.key == "bytewax_rec"
    await lane.open()
    try:
        config = await lane.prepare()
        print(
            f"  {impl.key}: input ready in {time.perf_counter() - started:.1f} s", file=sys.stderr
        )
        config.update(extra or {})
        if impl.key == "nats_loop" and isinstance(lane, NatsLane):
            await lane.create_consumer()
        return await _watch(impl, lane, n, config)
    finally:
        await lane.close()


async def _watch(impl: BrokerImpl, lane: Lane, n: int, config: dict[str, Any]) -> RunRecord:
    expected = expected_count(n)
    env = dict(os.environ, PYTHONPATH=str(_HERE))
    argv = [sys.executable, "-m", "brokerbench.client", impl.key, json.dumps(config)]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        # The driver does nothing else meanwhile; a blocking start is fine.
        proc = subprocess.Popen(argv, cwd=_HERE, env=env, stdout=out, stderr=err)  # noqa: ASYNC220
        try:
            ps = psutil.Process(proc.pid)
            t_first = t10 = None
            timeout = RUN_TIMEOUT
            deadline = time.monotonic() + timeout
            while True:
                count = await lane.count()
                now = time.monotonic()
                if count and t_first is None:
                    t_first = now
                if t10 is None and count >= expected / 10:
                    t10 = now
                if count >= expected:
                    break
                if proc.poll() is not None:
                    # It may have exited with the last outputs still on their way to the watcher.
                    if proc.returncode != 0:
                        _fail(impl, f"exited with {proc.returncode} at {count} outputs", err)
                    if time.monotonic() + EXITED_GRACE < deadline:
                        timeout, deadline = EXITED_GRACE, time.monotonic() + EXITED_GRACE
                if now > deadline:
                    why = "after" if proc.poll() is None else "after it exited, and"
                    _fail(impl, f"{count} of {expected} outputs {why} {timeout:.0f} s", err)
                await asyncio.sleep(POLL)
            t1 = now
            cpu_t1, hwm = _proc_cpu(ps), _proc_hwm(proc.pid)
            if impl.until_stopped:
                missing = await _wait_acked(lane, impl)
                hwm = _proc_hwm(proc.pid) or hwm
                proc.send_signal(signal.SIGTERM)
                proc.wait(30)
            else:
                proc.wait(60)
                if proc.returncode != 0:
                    _fail(impl, f"exited with {proc.returncode}", err)
                missing = await _wait_acked(lane, impl)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        records = _records(out)
        if not records or "t0" not in records[0]:
            _fail(impl, "printed no start mark", err)
        start, end = records[0], (records[-1] if len(records) > 1 else {})
        if cpu_t1 is None:
            cpu_t1 = end.get("cpu")
        peak = end.get("peak_rss") or hwm
        if cpu_t1 is None or peak is None:
            _fail(impl, "ended before its CPU and RSS could be read", err)
        if missing is not None:
            _fail(impl, f"input not fully acknowledged {ACK_WAIT:.0f} s after the end: {missing}")
        if (wrong := check_outputs(await lane.outputs(), n)) is not None:
            _fail(impl, f"wrong output: {wrong}")
        assert t_first is not None
        assert t10 is not None
        assert cpu_t1 is not None
        assert peak
        return RunRecord(
            impl.key, n, start["t0"], t_first, t10, t1, cpu_t1 - start["cpu0"], peak, end
        )


def _select(only: str | None) -> list[BrokerImpl]:
    return [i for i in IMPLS if not only or only in f"{i.broker} {i.key} {i.label}"]


def _ratio(
    runs: dict[str, list[RunRecord]], key: str, base: str, steady: bool = False
) -> float | None:
    a, b = runs.get(key), runs.get(base)
    if not a or not b:
        return None
    if steady:
        return median([x.steady / y.steady for x, y in zip(a, b, strict=True)])
    return median([x.e2e / y.e2e for x, y in zip(a, b, strict=True)])


def _table(impls: Sequence[BrokerImpl], runs: dict[str, list[RunRecord]]) -> None:
    rows = []
    for impl in impls:
        rs = runs[impl.key]
        e2e = [r.e2e for r in rs]
        cpu = median([r.cpu for r in rs])
        span = median([r.t1 - r.t0 for r in rs])
        rows.append(
            [
                impl.label,
                f"{rate(median(e2e))} ({rate(min(e2e))}..{rate(max(e2e))})",
                rate(median([r.steady for r in rs])),
                f"{median([r.startup for r in rs]):.2f}",
                f"{cpu:.2f} ({cpu / rs[0].n * 1e6:.1f})",
                f"{100 * cpu / span:.0f}",
                f"{max(r.peak_rss for r in rs) / _MB:.0f}",
            ]
        )
    headers = ["implementation", "e2e msg/s (min..max)", "steady msg/s", "startup s"]
    headers += ["client CPU s (us/msg)", "CPU %", "peak RSS MB"]
    print_table(headers, rows)


def _memory(n: int) -> list[Target]:
    lane = RedisLane(n)
    extra = {"delay_per_item": SLOW_SINK_DELAY}
    try:
        record = asyncio.run(_run_one(MEMORY_IMPL, lane, n, extra))
    finally:
        asyncio.run(lane.drop_template())
    samples: list[list[float]] = record.extra["rss_samples"]
    rss = [s[1] for s in samples]
    at10 = next((s[1] for s in samples if s[0] >= record.t10), rss[-1])
    after10 = [s[1] for s in samples if s[0] >= record.t10] or rss
    print(f"{n:_} messages from Redis through pipeflow into a RedisStreamSink that first sleeps")
    print(f"{SLOW_SINK_DELAY * 1e6:.0f} us per item written; the client samples its RSS every")
    print(f"{record.extra['sample_interval'] * 1000:.0f} ms ({len(samples)} samples); the run made")
    print(f"{record.extra['writes']:_} writes in {record.t1 - record.t0:.1f} s.\n")
    rows = [
        [
            MEMORY_IMPL.label,
            rate(record.e2e),
            f"{rss[0] / _MB:.1f}",
            f"{at10 / _MB:.1f}",
            f"{max(rss) / _MB:.1f}",
            f"{rss[-1] / _MB:.1f}",
            f"{record.peak_rss / _MB:.1f}",
        ]
    ]
    headers = ["implementation", "msg/s", "RSS start MB", "at 10 %", "peak", "end", "VmHWM MB"]
    print_table(headers, rows)
    return [
        Target(
            "pipeflow Redis, slow sink: RSS growth after 10 % of the output",
            (max(after10) - at10) / _MB,
            FLAT_LIMIT_MB,
            unit="MB",
            higher_is_better=False,
        ),
        Target(
            "pipeflow Redis, slow sink: peak RSS",
            record.peak_rss / _MB,
            RSS_LIMIT_MB,
            unit="MB",
            higher_is_better=False,
        ),
    ]


async def _servers() -> str:
    import nats
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(redis_url())
    try:
        info = await client.info("server")
    finally:
        await client.aclose()
    nc = await nats.connect(nats_url())
    try:
        v = nc.connected_server_version
        version = f"{v.major}.{v.minor}.{v.patch}"
    finally:
        await nc.close()
    return f"Redis {info['redis_version']} at {redis_url()}, nats-server {version} at {nats_url()}"


def run_brokers(n: int, rounds: int, only: str | None, memory_n: int) -> list[Target]:
    """Run the broker section: print its tables and return its targets."""
    impls = _select(only)
    brokers = [b for b in ("redis", "nats", "kafka") if any(i.broker == b for i in impls)]
    targets: list[Target] = []
    print(f"Brokers: {asyncio.run(_servers())}; a fresh Tansu per Kafka run.\n")
    if impls:
        targets += _throughput(impls, brokers, n, rounds)
    if memory_n and (not only or only in f"memory {MEMORY_IMPL.key} {MEMORY_IMPL.label}"):
        print("\nMemory behind a slow sink\n")
        targets += _memory(memory_n)
    return targets


def _throughput(impls: list[BrokerImpl], brokers: list[str], n: int, rounds: int) -> list[Target]:
    redis_lane = RedisLane(n)
    runs: dict[str, list[RunRecord]] = {i.key: [] for i in impls}
    try:
        for r in range(rounds):
            started = time.perf_counter()
            for impl in impls:
                lane: Lane
                if impl.broker == "redis":
                    lane = redis_lane
                elif impl.broker == "nats":
                    lane = NatsLane(n)
                else:
                    lane = KafkaLane(n, SESSION_TIMEOUT_MS)
                record = asyncio.run(_run_one(impl, lane, n))
                runs[impl.key].append(record)
                print(f"  {impl.key}: {rate(record.e2e)} msg/s", file=sys.stderr)
            print(
                f"  round {r + 1}/{rounds}: {time.perf_counter() - started:.0f} s", file=sys.stderr
            )
    finally:
        if redis_lane.loaded:
            asyncio.run(redis_lane.drop_template())
    print(f"{n:_} JSON messages pre-loaded into a fresh single-partition input; parse, keep")
    print(f"amount > 10 ({expected_count(n):_} outputs), add cents, write JSON, ack as it goes.")
    print(f"Median of {rounds} interleaved rounds, each run a fresh client process, all outputs")
    print("and acks checked. e2e = n / (t1 - t0): t0 when the client, its imports done, starts;")
    print("t1 when the output is complete. steady = 0.9 n / (t1 - t(10 % of the output)).")
    print("Client CPU is over [t0, t1]; peak RSS is the client's VmHWM, imports included.\n")
    for broker in brokers:
        print(f"-- {broker}")
        _table([i for i in impls if i.broker == broker], runs)
        print()
    targets = [
        Target(
            "Redis: pipeflow vs hand-written hiredis loop (e2e)",
            _ratio(runs, "pipeflow_redis", "redis_hiredis"),
            0.8,
        ),
        Target(
            "NATS: pipeflow vs hand-written nats-py loop (e2e)",
            _ratio(runs, "pipeflow_nats", "nats_loop"),
            1.0,
        ),
        Target(
            "Kafka: pipeflow vs hand-written aiokafka loop (steady)",
            _ratio(runs, "pipeflow_kafka", "aiokafka_batch", steady=True),
            0.8,
        ),
        Target(
            "Kafka: pipeflow vs bytewax with recovery (steady)",
            _ratio(runs, "pipeflow_kafka", "bytewax_rec", steady=True),
            1.0,
        ),
        Target(
            "Kafka: pipeflow vs quixstreams (steady)",
            _ratio(runs, "pipeflow_kafka", "quix", steady=True),
            1.0,
        ),
    ]
    pipeflow_rss = [r.peak_rss for k, rs in runs.items() if k.startswith("pipeflow") for r in rs]
    targets.append(
        Target(
            "pipeflow broker clients: peak RSS",
            max(pipeflow_rss) / _MB if pipeflow_rss else None,
            RSS_LIMIT_MB,
            unit="MB",
            higher_is_better=False,
        )
    )
    return [t for t in targets if t.measured is not None]
