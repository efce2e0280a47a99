"""Orders from one Redis stream, checked and priced, to another stream.

Each entry of the input stream holds one order as JSON in its ``value`` field,
``{"id": 7, "user": "u7", "amount": 12}``. The pipeline sets malformed orders
aside (counted and printed), keeps those over ``MIN_AMOUNT``, adds the price
in cents and the tax, and appends the results to the output stream. An input
entry is acknowledged only once its result is in the output stream, so a
worker that is stopped or crashes loses nothing: run it again (or run several
side by side: they share the work through the consumer group).

Usage::

    python examples/redis_orders.py [--url URL] [--input STREAM] [--output STREAM]
                                    [--group GROUP] [--seed N] [--follow]

The options default to the environment variables ``REDIS_URL``,
``ORDERS_INPUT``, ``ORDERS_OUTPUT`` and ``ORDERS_GROUP``, and then to the local
Redis and the streams ``orders`` and ``orders-priced``. ``--seed N`` first
appends N sample orders (one in ten malformed); without ``--follow`` the
program ends once it has processed the orders that were there when it started.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio

from pipeflow import streams as ps
from pipeflow.connectors import Message, RedisStreamSink, RedisStreamSource

MIN_AMOUNT = 10
TAX_RATE = 0.2


@dataclass(frozen=True)
class Settings:
    """Where the orders come from and go to."""

    url: str = "redis://127.0.0.1:6379"
    input: str = "orders"
    output: str = "orders-priced"
    group: str = "pricing"
    seed: int = 0
    follow: bool = False


@dataclass(frozen=True)
class Report:
    """What one run did."""

    read: int
    written: int
    small: int
    malformed: list[ps.StreamError]
    acked: int


def parse_args(argv: Sequence[str] | None = None) -> Settings:
    """The settings from ``argv`` (the command line by default) and the environment."""
    env = os.environ
    defaults = Settings()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=env.get("REDIS_URL", defaults.url))
    parser.add_argument("--input", default=env.get("ORDERS_INPUT", defaults.input))
    parser.add_argument("--output", default=env.get("ORDERS_OUTPUT", defaults.output))
    parser.add_argument("--group", default=env.get("ORDERS_GROUP", defaults.group))
    parser.add_argument("--seed", type=int, default=0, help="append N sample orders first")
    parser.add_argument("--follow", action="store_true", help="wait for new orders; Ctrl-C ends")
    args = parser.parse_args(argv)
    return Settings(args.url, args.input, args.output, args.group, args.seed, args.follow)


def checked(msg: Message) -> dict[str, Any]:
    """The order in ``msg``; raises ``ValueError`` for a malformed one."""
    order = msg.value
    if not isinstance(order, dict) or not isinstance(order.get("amount"), int):
        raise ValueError(f"not an order: {order!r}")
    return order


def priced(order: dict[str, Any]) -> dict[str, Any]:
    cents = order["amount"] * 100
    return {**order, "cents": cents, "tax_cents": round(cents * TAX_RATE)}


async def seed_orders(settings: Settings) -> None:
    """Append ``settings.seed`` sample orders to the input stream, one in ten malformed."""
    rng = random.Random(0)
    client = redis.asyncio.Redis.from_url(settings.url)
    try:
        pipe = client.pipeline(transaction=False)
        for i in range(settings.seed):
            if i % 10 == 9:
                pipe.xadd(settings.input, {"value": b'{"id": %d, "amount": "lots"}' % i})
            else:
                order = {"id": i, "user": f"u{i % 7}", "amount": rng.randrange(50)}
                pipe.xadd(settings.input, {"value": orjson.dumps(order)})
        await pipe.execute()
    finally:
        await client.aclose()


async def process(settings: Settings) -> Report:
    """Read the input stream, price its orders and append them to the output stream."""
    if settings.seed:
        await seed_orders(settings)
    malformed: list[ps.StreamError] = []
    pipeline = (
        ps.map(checked, on_error=ps.DeadLetter(malformed), name="check")
        | ps.filter(lambda order: order["amount"] > MIN_AMOUNT, name="over-minimum")
        | ps.map(priced, name="price")
    )
    source = RedisStreamSource(
        settings.url, settings.input, group=settings.group, stop_at_end=not settings.follow
    )
    summary = await pipeline.run(source, RedisStreamSink(settings.url, settings.output))
    small = summary.items_in - summary.items_out - summary.dead_lettered
    return Report(summary.items_in, summary.items_out, small, malformed, source.statistics().acked)


def main(argv: Sequence[str] | None = None) -> None:
    settings = parse_args(argv)
    try:
        report = asyncio.run(process(settings))
    except KeyboardInterrupt:
        print("stopped; what was not acknowledged is read again next time")
        return
    print(
        f"{settings.input} -> {settings.output}: read {report.read}, wrote {report.written}, "
        f"{report.small} at or under {MIN_AMOUNT}, {len(report.malformed)} malformed, "
        f"acknowledged {report.acked}"
    )
    for error in report.malformed[:3]:
        print(f"  malformed at {error.item.where}: {error.__cause__}")


if __name__ == "__main__":
    main()
