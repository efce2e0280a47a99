"""Crash trials: a worker process killed with SIGKILL at random points, again and again.

A crash test starts a worker (a process running ``pipeline.run(source, sink)``
against a real broker), waits until the output shows it has made progress,
lets it run a random while longer and kills it with SIGKILL; then the next
worker starts in the same consumer group. After the trials, the test runs one
last worker to the end and checks the output: every input has its result
(duplicates allowed and counted, never a loss).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["CrashReport", "crash_trials", "run_worker", "start_worker"]

WORKERS = Path(__file__).parent / "workers"


async def start_worker(script: str, *args: str) -> asyncio.subprocess.Process:
    """Start ``tests/workers/<script>`` with this interpreter; its output goes to ours."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return await asyncio.create_subprocess_exec(
        sys.executable, str(WORKERS / script), *args, env=env, stdin=asyncio.subprocess.DEVNULL
    )


async def run_worker(script: str, *args: str, limit: float = 60.0) -> None:
    """Run a worker to its end; fail if it fails or takes longer than ``limit`` seconds."""
    proc = await start_worker(script, *args)
    try:
        code = await asyncio.wait_for(proc.wait(), limit)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"worker {script} {args} did not end within {limit} s") from None
    assert code == 0, f"worker {script} {args} exited with {code}"


@dataclass
class CrashReport:
    """What the trials did."""

    #: Output counts seen just before each kill.
    progress_at_kill: list[int] = field(default_factory=list)
    #: Trials whose worker ended by itself before it was killed (the input ran out).
    finished_early: int = 0


async def crash_trials(
    script: str,
    args: Sequence[str] | Callable[[int], Sequence[str]],
    *,
    trials: int,
    progress: Callable[[], Awaitable[int]],
    max_delay: float = 0.3,
    progress_timeout: float = 30.0,
    seed: int = 0,
) -> CrashReport:
    """Start and SIGKILL a worker ``trials`` times.

    Each worker is killed ``uniform(0, max_delay)`` seconds after ``progress()``
    (the output count) has grown past what it was when the worker started, so
    every kill lands while it reads, processes, writes or acknowledges.

    Args:
        script: the worker script in ``tests/workers``.
        args: its arguments, or a function of the trial number giving them.
        trials: how many workers to kill.
        progress: the number of results in the output so far.
        max_delay: the longest wait after progress before the kill, in seconds.
        progress_timeout: how long a worker may take to show progress.
        seed: the seed of the kill times.
    """
    rng = random.Random(seed)
    report = CrashReport()
    for trial in range(trials):
        before = await progress()
        proc = await start_worker(script, *(args(trial) if callable(args) else args))
        try:
            deadline = asyncio.get_running_loop().time() + progress_timeout
            while await progress() <= before and proc.returncode is None:
                if asyncio.get_running_loop().time() > deadline:
                    raise AssertionError(f"trial {trial}: no progress in {progress_timeout} s")
                await asyncio.sleep(0.005)
            await asyncio.sleep(rng.uniform(0, max_delay))
            if proc.returncode is None:
                report.progress_at_kill.append(await progress())
                proc.send_signal(signal.SIGKILL)
            else:
                report.finished_early += 1
        finally:
            if proc.returncode is None:
                proc.kill()
            await proc.wait()
    return report
