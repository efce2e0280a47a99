"""Section 2 workloads: a fast source, a slow consumer, and what sits between them.

The source is a sync generator building each event dict on demand. The consumer
serialises and checksums every event and awaits ``asyncio.sleep(0)`` after each
one, like a consumer awaiting I/O, which lets a producer task run in between.

Run as a script, it measures one implementation in this fresh process and
prints one JSON line, so that peak-memory figures do not mix:

    python benchmarks/bench_slow_consumer.py pipeflow 1000000
    python benchmarks/bench_slow_consumer.py calibrate 100000
"""

from __future__ import annotations

import asyncio
import gc
import json
import resource
import sys
import time
import zlib
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

from pipeflow.streams import BackpressureConfig, StreamPipe

__all__ = ["WORKLOADS", "Consumer", "event_bytes", "events"]

Event = dict[str, Any]
_KINDS = ("view", "click", "cart", "buy")
#: The consumer samples buffer occupancy every this many items.
_PROBE_EVERY = 1024


def make_event(i: int) -> Event:
    return {
        "id": i,
        "user": f"user-{i % 100_000:06d}",
        "kind": _KINDS[i & 3],
        "url": f"https://shop.example.com/p/{i % 50_000}?s={i // 40:08x}",
        "ts": 1_764_000_000.0 + i,
        "price": i * 0.01,
    }


def events(n: int) -> Iterator[Event]:
    """The fast source: each event is built when it is asked for."""
    for i in range(n):
        yield make_event(i)


def event_bytes() -> int:
    """Memory held by one event: the dict and the values built for it."""
    e = make_event(123_456)
    return sys.getsizeof(e) + sum(sys.getsizeof(v) for k, v in e.items() if k != "kind")


def work(event: Event) -> int:
    """The consumer's processing: serialise the event and checksum it."""
    return zlib.crc32(json.dumps(event).encode())


class Consumer:
    """Takes events one by one; ``probe()`` says how many wait in a buffer."""

    def __init__(self, probe: Callable[[], int] = lambda: 0) -> None:
        self.count = 0
        self.checksum = 0
        self.max_buffered = 0
        self._probe = probe

    async def take(self, event: Event) -> None:
        self.checksum += work(event)
        self.count += 1
        if not self.count % _PROBE_EVERY:
            self.max_buffered = max(self.max_buffered, self._probe())
        await asyncio.sleep(0)


# -- the implementations -------------------------------------------------------------


async def via_pipeflow(n: int) -> Consumer:
    """``StreamPipe(config=BackpressureConfig())``: a buffer of 1000 items."""
    pipe: StreamPipe[Event, Event] = StreamPipe(config=BackpressureConfig())
    async with pipe.stream(events(n)) as results:
        consumer = Consumer(lambda: results.statistics()[0].buffer_size)
        async for event in results:
            await consumer.take(event)
    return consumer


async def _pull(n: int) -> AsyncIterator[Event]:
    for event in events(n):
        yield event


async def via_async_generator(n: int) -> Consumer:
    """Pull-based: the async generator builds an event when the consumer asks."""
    consumer = Consumer()
    async for event in _pull(n):
        await consumer.take(event)
    return consumer


async def _via_queue(n: int, maxsize: int) -> Consumer:
    queue: asyncio.Queue[Event | None] = asyncio.Queue(maxsize)

    async def produce() -> None:
        for event in events(n):
            await queue.put(event)
        await queue.put(None)

    consumer = Consumer(queue.qsize)
    producer = asyncio.create_task(produce())
    while (event := await queue.get()) is not None:
        await consumer.take(event)
    await producer
    return consumer


async def via_bounded_queue(n: int) -> Consumer:
    """A producer task putting into ``asyncio.Queue(maxsize=1000)``."""
    return await _via_queue(n, 1000)


async def via_unbounded_queue(n: int) -> Consumer:
    """A producer task putting into an unbounded ``asyncio.Queue()``."""
    return await _via_queue(n, 0)


WORKLOADS: dict[str, tuple[str, Callable[[int], Coroutine[Any, Any, Consumer]]]] = {
    "pipeflow": ("pipeflow StreamPipe(config=BackpressureConfig())", via_pipeflow),
    "async-gen": ("pull-based async generator", via_async_generator),
    "queue-1000": ("asyncio.Queue(maxsize=1000) + producer task", via_bounded_queue),
    "queue-unbounded": ("unbounded asyncio.Queue() + producer task", via_unbounded_queue),
}


# -- measuring in this process ---------------------------------------------------------


def _reset_peak_rss() -> str:
    """Restart the peak-RSS count from the current RSS where the OS allows it.

    Returns how peaks are read. ``ru_maxrss`` is a poor fallback: on Linux a child
    process starts with its parent's peak, and the peak imports reached stays.
    """
    try:
        Path("/proc/self/clear_refs").write_text("5")  # Linux: reset VmHWM to VmRSS
        _vm_hwm()
    except (OSError, ValueError):
        return "ru_maxrss"
    return "VmHWM"


def _vm_hwm() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise ValueError("no VmHWM in /proc/self/status")


def _peak_rss(how: str) -> int:
    """The process's peak resident set size so far, in bytes."""
    if how == "VmHWM":
        return _vm_hwm()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def measure(key: str, n: int) -> dict[str, Any]:
    """Run one implementation over ``n`` events; peak RSS growth is measured from
    just before the run (after imports and a first event loop) to its end."""
    run = WORKLOADS[key][1]
    asyncio.run(asyncio.sleep(0))
    gc.collect()
    how = _reset_peak_rss()
    before = _peak_rss(how)
    started = time.perf_counter()
    consumer = asyncio.run(run(n))
    elapsed = time.perf_counter() - started
    return {
        "key": key,
        "n": n,
        "seconds": elapsed,
        "items_per_s": n / elapsed,
        "rss_start": before,
        "peak_growth": _peak_rss(how) - before,
        "peak_from": how,
        "max_buffered": consumer.max_buffered,
        "count": consumer.count,
        "checksum": consumer.checksum,
    }


def calibrate(n: int, tries: int = 3) -> dict[str, Any]:
    """Items/s of the source alone and of the consumer alone (on ready-made events),
    each the best of ``tries`` runs: interference only ever slows a run down."""

    def drain_source() -> None:
        for _ in events(n):
            pass

    async def consume() -> None:
        consumer = Consumer()
        for event in ready:
            await consumer.take(event)

    def best(run: Callable[[], object]) -> float:
        times = []
        for _ in range(tries):
            started = time.perf_counter()
            run()
            times.append(time.perf_counter() - started)
        return n / min(times)

    source = best(drain_source)
    ready = list(events(n))
    return {"source": source, "consumer": best(lambda: asyncio.run(consume()))}


def main(argv: list[str]) -> None:
    key, n = argv[0], int(argv[1])
    result = calibrate(n) if key == "calibrate" else measure(key, n)
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
