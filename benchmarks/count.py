"""Instructions and first-level data cache misses per item, by cachegrind.

Wall-clock rates on a shared machine move by 10 % or more between rounds; the
work an implementation does per item does not. For each implementation named
(by its key in sections 1, 3 and 4 of ``make bench``), this runs it once under
``valgrind --tool=cachegrind`` over a small and a large input, and divides the
difference in instructions and in D1 misses by the difference in items: what
start-up, imports and the input's construction cost drops out.

    .venv/bin/python benchmarks/count.py agen-appends pf-batch-asrc
    .venv/bin/python benchmarks/count.py --small 50000 --large 150000 agen-dict pf-window

Instruction counts are stable from run to run. Cache misses depend on where
things happen to lie in memory (what else the process imported and allocated):
compare them between implementations of one invocation, and read them beside
wall-clock medians. It needs valgrind on the PATH; it takes about half a minute
per implementation.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import bench_batches
import bench_pipelines
import bench_windows

__all__ = ["instructions_per_item", "main"]


def _ints(m: int) -> list[int]:
    return list(range(m))


def _unchecked(run: Callable[[list[int], bool], Awaitable[Any]], data: list[int]) -> Awaitable[Any]:
    """Section 1's ``run(data, check)`` without the check (as timed)."""
    return run(data, False)


def _find(key: str) -> tuple[Callable[[Any], Awaitable[Any]], Callable[[int], Any]]:
    """A one-argument runner of the implementation ``key``, and its input builder."""
    for impl in bench_pipelines.IMPLEMENTATIONS:
        if impl.key == key:
            return partial(_unchecked, impl.run), _ints
    for impl_w in bench_windows.IMPLEMENTATIONS:
        if impl_w.key == key:
            return impl_w.run, bench_windows.events
    for impl_b in bench_batches.IMPLEMENTATIONS:
        if impl_b.key == key:
            return impl_b.run, _ints
    sys.exit(f"no implementation has the key {key!r} (see the tables of make bench)")


async def _once(run: Callable[[Any], Awaitable[Any]], data: Any) -> None:
    await run(data)


def _child(key: str, m: int) -> None:
    """Run ``key`` once over ``m`` items (inside valgrind).

    As ``make bench`` does before each timed run, a collection first: otherwise
    the first collection the run's own allocations set off traverses the input,
    just built and still young, and its cost, which grows with the input, would
    be counted as a cost per item.
    """
    run, build = _find(key)
    data = build(m)
    gc.collect()
    asyncio.run(_once(run, data))


_REFS = re.compile(r"I\s+refs:\s+([\d,]+)")
_D1 = re.compile(r"D1\s+misses:\s+([\d,]+)")


def _measure(key: str, m: int) -> tuple[int, int]:
    """Instructions and D1 misses of one run of ``key`` over ``m`` items."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            "valgrind",
            "--tool=cachegrind",
            "--cache-sim=yes",
            f"--cachegrind-out-file={os.path.join(tmp, 'out')}",
            sys.executable,
            __file__,
            "--child",
            key,
            str(m),
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    refs, d1 = _REFS.search(done.stderr), _D1.search(done.stderr)
    if done.returncode != 0 or refs is None or d1 is None:
        sys.exit(f"{key} over {m} items failed under cachegrind:\n{done.stderr[-2000:]}")
    return int(refs.group(1).replace(",", "")), int(d1.group(1).replace(",", ""))


def instructions_per_item(keys: Sequence[str], small: int, large: int) -> dict[str, float]:
    """Each implementation's instructions per item (``{}`` without valgrind)."""
    if shutil.which("valgrind") is None:
        return {}
    runs = [(key, m) for key in keys for m in (small, large)]
    # Instructions do not depend on what else runs: the runs go side by side.
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        counted = dict(zip(runs, pool.map(lambda run: _measure(*run)[0], runs), strict=True))
    return {key: (counted[key, large] - counted[key, small]) / (large - small) for key in keys}


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Instructions and D1 misses per item of make bench's implementations."
    )
    parser.add_argument("keys", nargs="+", help="implementation keys, as in make bench's tables")
    parser.add_argument("--small", type=int, default=100_000, help="items in the small run")
    parser.add_argument("--large", type=int, default=300_000, help="items in the large run")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.keys[0], int(args.keys[1]))
        return
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not on the PATH: install it to count instructions")
    if not 0 < args.small < args.large:
        sys.exit(f"--small must be > 0 and below --large, got {args.small} and {args.large}")
    for key in args.keys:
        _find(key)  # fail early on a wrong key
    span = args.large - args.small
    print(f"per item, from runs over {args.small:_} and {args.large:_} items")
    print(f"{'key':<22} {'instructions':>12} {'D1 misses':>10}")
    for key in args.keys:
        small, large = _measure(key, args.small), _measure(key, args.large)
        ir, d1 = (large[0] - small[0]) / span, (large[1] - small[1]) / span
        print(f"{key:<22} {ir:>12,.0f} {d1:>10.2f}")


if __name__ == "__main__":
    main()
