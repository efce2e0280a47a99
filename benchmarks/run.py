"""pipeflow's benchmark suite, run by `make bench`.

1. Throughput of map -> filter -> map against hand-written asyncio and aiostream.
2. Memory and throughput behind a slow consumer, against queues and generators.

Prints a report with each of the issue's targets marked PASS or MISS.
"""

from __future__ import annotations

import argparse
import io
import sys
import time

from bench_env import print_header
from bench_memory import run_memory
from bench_pipelines import IMPLEMENTATIONS
from bench_report import Target, print_targets
from bench_throughput import measure, report

#: The unbounded queue buffers every event; past this many it gets slow and large.
UNBOUNDED_MAX = 1_000_000


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="items per run")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved throughput rounds")
    parser.add_argument("--only", help="run only implementations whose key or name contains this")
    parser.add_argument("--skip-memory", action="store_true", help="skip the slow-consumer part")
    args = parser.parse_args(argv)
    if args.n < 2 or args.rounds < 1:
        parser.error("--n must be >= 2 and --rounds >= 1")
    return args


def _argv(args: argparse.Namespace) -> list[str]:
    """The options spelled out in full, defaults included."""
    argv = ["--n", str(args.n), "--rounds", str(args.rounds)]
    if args.only:
        argv += ["--only", args.only]
    if args.skip_memory:
        argv.append("--skip-memory")
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
    if impls:
        _section("1. throughput: map -> filter -> map")
        results = measure(impls, args.n, args.rounds)
        targets += report(results, impls, args.rounds)
    if not args.skip_memory:
        _section("2. slow consumer: memory and throughput")
        targets += run_memory(args.n, min(args.n, UNBOUNDED_MAX), args.only)
    if targets:
        _section("summary of targets")
        print_targets(targets)
    print(f"\ntotal time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
