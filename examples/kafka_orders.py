"""Orders from Kafka: parse them, keep the large ones, add the amount in cents, and
write them to another topic keyed by customer.

    python examples/kafka_orders.py [BOOTSTRAP] [--in orders] [--out large-orders]
        [--group large-orders] [--sample N] [--follow] [--session-timeout S]

BOOTSTRAP is ``host:port`` of a broker (default: $KAFKA_BOOTSTRAP, else
127.0.0.1:9092). ``--sample N`` first writes N made-up orders (a few of them
malformed) to the input topic. The run reads what the topic holds and ends;
with ``--follow`` it keeps reading until Ctrl-C, then finishes what it read,
commits it and stops. An order that cannot be parsed is set aside (counted and
shown) and its offset committed like the others: one bad message never stops
the stream.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from dataclasses import dataclass
from typing import Any

from pipeflow import streams as ps
from pipeflow.connectors import KafkaSink, KafkaSource, Message

#: Orders above this amount (in whole currency units) are large.
LARGE = 10


@dataclass(frozen=True)
class Order:
    id: int
    customer: str
    amount: int


def parse_order(msg: Message) -> Order:
    """The order a message holds; ``ValueError`` if it is not one."""
    value = msg.value  # raises DecodeError (a ValueError) if it was not JSON
    if not isinstance(value, dict):
        raise ValueError(f"an order is a JSON object, got {value!r:.40}")
    try:
        return Order(int(value["id"]), str(value["customer"]), int(value["amount"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"malformed order {value!r:.60}: {exc!r}") from exc


def to_record(order: Order) -> dict[str, Any]:
    return {
        "id": order.id,
        "customer": order.customer,
        "amount": order.amount,
        "cents": order.amount * 100,
    }


def pipeline(rejected: list[ps.StreamError]) -> ps.Pipeline[Message, dict[str, Any]]:
    return ps.Pipeline(
        ps.map(parse_order, on_error=ps.DeadLetter(rejected), name="parse"),
        ps.filter(lambda order: order.amount > LARGE, name="large"),
        ps.map(to_record, name="record"),
    )


def sample_orders(n: int) -> list[Any]:
    """``n`` made-up orders; every 50th is malformed."""
    return [
        {"id": i, "customer": f"c{i % 13}", "amount": i % 23}
        if i % 50 != 49
        else {"id": i, "amount": "lots"}
        for i in range(n)
    ]


async def run(
    bootstrap: str,
    in_topic: str,
    out_topic: str,
    group: str,
    *,
    follow: bool = False,
    stop: asyncio.Event | None = None,
    session_timeout: float = 10.0,
) -> tuple[ps.RunSummary, list[ps.StreamError]]:
    """Move the large orders of ``in_topic`` to ``out_topic``; the run's summary and
    the orders set aside."""
    rejected: list[ps.StreamError] = []
    source = KafkaSource(
        bootstrap,
        in_topic,
        group=group,
        stop_at_end=not follow,
        session_timeout=session_timeout,
    )
    sink = KafkaSink(bootstrap, out_topic, key=lambda record: record["customer"])
    summary = await pipeline(rejected).run(source, sink, stop=stop)
    return summary, rejected


async def write_sample(bootstrap: str, topic: str, n: int) -> None:
    sink = KafkaSink(bootstrap, topic)
    try:
        await sink.write(sample_orders(n))
    finally:
        await sink.aclose()


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bootstrap", nargs="?", default=os.environ.get("KAFKA_BOOTSTRAP"))
    parser.add_argument("--in", dest="in_topic", default="orders")
    parser.add_argument("--out", dest="out_topic", default="large-orders")
    parser.add_argument("--group", default="large-orders")
    parser.add_argument("--sample", type=int, default=0, metavar="N")
    parser.add_argument("--follow", action="store_true")
    parser.add_argument("--session-timeout", type=float, default=10.0, metavar="S")
    args = parser.parse_args(argv)
    bootstrap = args.bootstrap or "127.0.0.1:9092"
    if args.sample:
        await write_sample(bootstrap, args.in_topic, args.sample)
    stop = asyncio.Event()
    if args.follow:
        asyncio.get_running_loop().add_signal_handler(signal.SIGINT, stop.set)
    summary, rejected = await run(
        bootstrap,
        args.in_topic,
        args.out_topic,
        args.group,
        follow=args.follow,
        stop=stop,
        session_timeout=args.session_timeout,
    )
    large = summary.items_out
    print(
        f"{summary.items_in} orders read from {args.in_topic!r}: {large} large ones written "
        f"to {args.out_topic!r}, {len(rejected)} malformed set aside"
    )
    for error in rejected[:3]:
        print(f"  set aside: {error.item.where}: {error.__cause__}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
