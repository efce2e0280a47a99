"""The workload every broker implementation runs, and the check of what it wrote.

Input message ``i`` is ``{"id": i, "user": "u{i % 1000}", "amount": i % 97}``; the
pipeline keeps ``amount > 10`` and adds ``"cents": amount * 100``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import orjson

__all__ = [
    "FIELD",
    "add_cents",
    "check_outputs",
    "expected_count",
    "input_values",
    "keep",
    "transform",
]

#: The field a Redis stream entry holds its payload in (input and output).
FIELD = b"value"


def input_values(n: int) -> Iterator[bytes]:
    """The ``n`` input messages, JSON-encoded."""
    for i in range(n):
        yield orjson.dumps({"id": i, "user": f"u{i % 1000}", "amount": i % 97})


def keep(value: dict[str, Any]) -> bool:
    return bool(value["amount"] > 10)


def add_cents(value: dict[str, Any]) -> dict[str, Any]:
    value["cents"] = value["amount"] * 100
    return value


def transform(data: bytes) -> bytes | None:
    """The whole step for hand-written loops: parse, filter, add cents, encode."""
    value = orjson.loads(data)
    if value["amount"] > 10:
        value["cents"] = value["amount"] * 100
        return orjson.dumps(value)
    return None


def expected_ids(n: int) -> set[int]:
    return {i for i in range(n) if i % 97 > 10}


def expected_count(n: int) -> int:
    full, rest = divmod(n, 97)
    return full * 86 + max(0, rest - 11)


def check_outputs(payloads: Iterable[bytes], n: int) -> str | None:
    """``None`` if ``payloads`` are exactly the outputs for ``n`` inputs, else what is wrong."""
    ids: list[int] = []
    for data in payloads:
        value = orjson.loads(data)
        i = value.get("id")
        if not isinstance(i, int):
            return f"an output without an integer id: {data!r}"
        amount = i % 97
        want = {"id": i, "user": f"u{i % 1000}", "amount": amount, "cents": amount * 100}
        if value != want:
            return f"output {data!r}, expected {want}"
        ids.append(i)
    got = set(ids)
    if len(got) != len(ids):
        return f"{len(ids) - len(got)} duplicate outputs"
    want_ids = expected_ids(n)
    if got != want_ids:
        missing, extra = sorted(want_ids - got), sorted(got - want_ids)
        return f"{len(missing)} outputs missing (e.g. {missing[:3]}), {len(extra)} unexpected"
    return None
