"""pipeflow's benchmark suite, run by `make bench`.

1. Throughput of map -> filter -> map, and of a chain of three process_stream
   subclasses, against hand-written asyncio and aiostream.
2. Memory and throughput behind a slow consumer, against queues and generators.
3. Keyed event-time tumbling count against a dict loop, an async generator and bytewax.
4. Batches of 100, summed, against a loop, async generators, aiostream and bytewax.
5. Broker pipelines end to end (Redis, NATS JetStream, Kafka): pipeflow's connectors
   against hand-written client loops, bytewax and quixstreams; then memory behind a
   slow sink.

Sections 1, 3 and 4 run each comparison over a list source and over an async
generator source, both sides reading the same one. Prints a report with each
target marked PASS or MISS, as a ratio measured in the same run.
"""

from __future__ import annotations

import argparse
import io
import sys
import time

from bench_batches import run_batches
from bench_brokers import run_brokers
from bench_env import print_header
from bench_memory import run_memory
from bench_pipelines import IMPLEMENTATIONS
from bench_report import Target, print_targets
from bench_throughput import measure, report
from bench_windows import run_windows

#: The unbounded queue buffers every event; past this many it gets slow and large.
UNBOUNDED_MAX = 1_000_000


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="items per run")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved throughput rounds")
    parser.add_argument("--only", help="run only implementations whose key or name contains this")
    parser.add_argument(
        "--skip-throughput", action="store_true", help="skip the map -> filter -> map part"
    )
    parser.add_argument("--skip-memory", action="store_true", help="skip the slow-consumer part")
    parser.add_argument("--skip-windows", action="store_true", help="skip the windowed count part")
    parser.add_argument("--skip-batches", action="store_true", help="skip the batches part")
    parser.add_argument("--skip-brokers", action="store_true", help="skip the broker part")
    parser.add_argument(
        "--no-count",
        action="store_true",
        help="skip counting the instructions of the targets with a floor (cachegrind)",
    )
    parser.add_argument("--broker-n", type=int, default=200_000, help="messages per broker run")
    parser.add_argument(
        "--broker-rounds", type=int, default=3, help="interleaved rounds of broker runs"
    )
    parser.add_argument(
        "--broker-memory-n",
        type=int,
        default=1_000_000,
        help="messages in the broker memory run (0 skips it)",
    )
    args = parser.parse_args(argv)
    if args.n < 2 or args.rounds < 1:
        parser.error("--n must be >= 2 and --rounds >= 1")
    if args.broker_n < 100 or args.broker_rounds < 1 or not args.broker_memory_n >= 0:
        parser.error("--broker-n must be >= 100, --broker-rounds >= 1, --broker-memory-n >= 0")
    return args


def _argv(args: argparse.Namespace) -> list[str]:
    """The options spelled out in full, defaults included."""
    argv = ["--n", str(args.n), "--rounds", str(args.rounds)]
    argv += ["--broker-n", str(args.broker_n), "--broker-rounds", str(args.broker_rounds)]
    argv += ["--broker-memory-n", str(args.broker_memory_n)]
    if args.only:
        argv += ["--only", args.only]
    if args.no_count:
        argv.append("--no-count")
    for part in ("throughput", "memory", "windows", "batches", "brokers"):
        if getattr(args, f"skip_{part}"):
            argv.append(f"--skip-{part}")
    return argv


def _section(title: str) -> None:
    print(f"\n== {title} " + "=" * max(0, 74 - len(title)))


def main(argv: list[str]) -> None:
    args = _parse(argv)
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)  # keep the report and progress in order
    started = time.perf_counter()
    print_header(_argv(args))
    targets: list[Target] = []
    impls = [i for i in IMPLEMENTATIONS if not args.only or args.only in i.key + " " + i.label]
    if impls and not args.skip_throughput:
        _section("1. throughput: map -> filter -> map; process_stream chains")
        results = measure(impls, args.n, args.rounds)
        targets += report(results, impls, args.rounds, not args.no_count)
    if not args.skip_memory:
        _section("2. slow consumer: memory and throughput")
        targets += run_memory(args.n, min(args.n, UNBOUNDED_MAX), args.only)
    if not args.skip_windows:
        _section("3. keyed event-time tumbling count")
        targets += run_windows(args.n, args.rounds, args.only)
    if not args.skip_batches:
        _section("4. batches of 100, summed")
        targets += run_batches(args.n, args.rounds, args.only, not args.no_count)
    if not args.skip_brokers:
        _section("5. brokers: consume, transform, produce, ack")
        targets += run_brokers(args.broker_n, args.broker_rounds, args.only, args.broker_memory_n)
    if targets:
        _section("summary of targets")
        print_targets(targets)
    print(f"\ntotal time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
