"""Property tests: every way of running a map gives the reference model's results.

Items are ``(index, value)`` pairs so each one is unique; the function maps
``(i, v)`` to ``(i, 2 * v)`` and fails on chosen indices (or, under ``Retry``,
fails chosen items their first k times).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from hypothesis import example, given, settings
from hypothesis import strategies as st

import pipeflow.streams as ps
from helpers import without_deadlock
from pipeflow.streams import (
    BackpressureConfig,
    DeadLetter,
    ErrorPolicy,
    Pipeable,
    Retry,
    StreamError,
)
from pipeflow.testing import TestSource, VirtualClock

Item = tuple[int, int]
T = TypeVar("T")

POLICIES = ("raise", "skip", "dead_letter", "retry")
SOURCES = ("list", "test_source", "async_groups", "list_groups")


@dataclass
class Case:
    values: list[int]
    #: index -> how many times the item fails before succeeding (huge = always).
    failures: dict[int, int]
    policy: str
    attempts: int
    concurrency: int
    ordered: bool
    sync_fn: bool
    source: str
    groups: list[int]
    buffer: int | None
    upstream_buffer: int | None

    @property
    def items(self) -> list[Item]:
        return list(enumerate(self.values))

    def fails_for_good(self, index: int) -> bool:
        k = self.failures.get(index, 0)
        if self.policy == "retry":
            return k >= self.attempts
        return k > 0


@dataclass
class Outcome:
    results: list[Item]
    error: StreamError | None
    skipped: int
    retries: int
    dead: list[StreamError] = field(default_factory=list)
    acked: int | None = None


@st.composite
def cases(draw: st.DrawFn) -> Case:
    values = draw(st.lists(st.integers(-1000, 1000), max_size=40))
    n = len(values)
    policy = draw(st.sampled_from(POLICIES))
    bad = draw(st.sets(st.integers(0, n - 1), max_size=n)) if n else set()
    if policy == "retry":
        failures = {i: draw(st.integers(1, 4)) for i in sorted(bad)}
    else:
        failures = dict.fromkeys(bad, 10**9)
    source = draw(st.sampled_from(SOURCES))
    groups: list[int] = []
    if source.endswith("groups"):
        left = n
        while left:
            size = draw(st.integers(1, left))
            groups.append(size)
            left -= size
    concurrency = draw(st.integers(1, 8))
    return Case(
        values=values,
        failures=failures,
        policy=policy,
        attempts=draw(st.integers(2, 4)),
        concurrency=concurrency,
        ordered=draw(st.booleans()),
        # A sync function takes no concurrency: its calls could only run one at a time.
        sync_fn=concurrency == 1 and draw(st.booleans()),
        source=source,
        groups=groups,
        buffer=draw(st.none() | st.integers(1, 5)),
        upstream_buffer=draw(st.none() | st.integers(1, 5)),
    )


def make_op(case: Case, clock: VirtualClock) -> Callable[[Item], Any]:
    calls: Counter[int] = Counter()

    def compute(item: Item) -> Item:
        i, v = item
        calls[i] += 1
        if calls[i] <= case.failures.get(i, 0):
            raise ValueError(f"item {i} fails (call {calls[i]})")
        return (i, 2 * v)

    if case.sync_fn:
        return compute

    async def compute_async(item: Item) -> Item:
        # Vary completion order under concurrency without real time.
        await clock.sleep((item[0] * 7 % 5) * 0.01)
        return compute(item)

    return compute_async


def make_policy(case: Case, dead: list[StreamError]) -> ErrorPolicy:
    if case.policy == "raise":
        return "raise"
    if case.policy == "skip":
        return "skip"
    if case.policy == "dead_letter":
        return DeadLetter(dead)
    return Retry(attempts=case.attempts, backoff=1, max_backoff=10, jitter=0, then="skip")


def make_source(case: Case) -> tuple[Iterable[Any] | TestSource[Any], bool]:
    """The source, and whether it is read as groups that need flattening."""
    items = case.items
    grouped: list[list[Item]] = []
    start = 0
    for size in case.groups:
        grouped.append(items[start : start + size])
        start += size
    if case.source == "list":
        return items, False
    if case.source == "test_source":
        return TestSource(items), False
    if case.source == "list_groups":
        return grouped, True
    return TestSource(grouped), True


def flatten(group: list[Item]) -> list[Item]:
    return group


async def run_case(case: Case, *, buffered: bool = True) -> Outcome:
    clock = VirtualClock()
    return await without_deadlock(_run_case(case, clock, buffered=buffered), clock)


async def _run_case(case: Case, clock: VirtualClock, *, buffered: bool) -> Outcome:
    dead: list[StreamError] = []
    source, grouped = make_source(case)
    stages: list[Pipeable[Any, Any]] = []
    if grouped:
        stages.append(ps.flat_map(flatten))
    if buffered and case.upstream_buffer is not None:
        config = BackpressureConfig(max_buffer_size=case.upstream_buffer)
        stages.append(ps.map(lambda x: x, config=config))
    stages.append(
        ps.map(
            make_op(case, clock),
            concurrency=case.concurrency,
            ordered=case.ordered,
            on_error=make_policy(case, dead),
            config=(
                BackpressureConfig(max_buffer_size=case.buffer)
                if buffered and case.buffer is not None
                else None
            ),
            name="op",
        )
    )
    pipeline = stages[0]
    for stage in stages[1:]:
        pipeline = pipeline | stage
    results: list[Item] = []
    error: StreamError | None = None
    stream = pipeline.stream(source, clock=clock)
    try:
        async with stream as s:
            async for x in s:
                results.append(x)
    except StreamError as exc:
        error = exc
    stats = stream.statistics()
    return Outcome(
        results=results,
        error=error,
        skipped=sum(s.skipped for s in stats),
        retries=sum(s.retries for s in stats),
        dead=dead,
        acked=source.acked if isinstance(source, TestSource) else None,
    )


def model(case: Case) -> list[Item]:
    """The results the pipeline must deliver, in input order, when nothing is raised."""
    return [(i, 2 * v) for i, v in case.items if not case.fails_for_good(i)]


def first_failure(case: Case) -> int | None:
    bad = [i for i in range(len(case.values)) if case.fails_for_good(i)]
    return bad[0] if bad else None


@settings(max_examples=150, deadline=None)
@given(cases())
@example(  # every item skipped; concurrency 3 behind a buffer of 2
    Case(
        values=list(range(20)),
        failures=dict.fromkeys(range(20), 10**9),
        policy="skip",
        attempts=2,
        concurrency=3,
        ordered=True,
        sync_fn=False,
        source="list",
        groups=[],
        buffer=2,
        upstream_buffer=None,
    )
)
def test_pipeline_agrees_with_the_model(case: Case) -> None:
    """Ordered runs give the model's list, unordered its multiset; nothing is lost."""
    outcome = asyncio.run(run_case(case))
    expected = model(case)
    n = len(case.values)
    first = first_failure(case)

    if case.policy == "raise" and first is not None:
        assert outcome.error is not None
        assert isinstance(outcome.error.__cause__, ValueError)
        assert case.fails_for_good(outcome.error.item[0])
        before = [r for r in expected if r[0] < first]
        if case.ordered or case.concurrency == 1:
            assert first == outcome.error.item[0]
            assert before == outcome.results
        else:
            assert not Counter(outcome.results) - Counter(expected)
        return

    assert outcome.error is None
    if case.ordered or case.concurrency == 1:
        assert expected == outcome.results
    else:
        assert Counter(expected) == Counter(outcome.results)
    # No loss: every item is delivered, skipped or dead-lettered.
    assert n == len(outcome.results) + outcome.skipped + len(outcome.dead)
    if case.policy == "dead_letter":
        assert sorted(i for i in range(n) if case.fails_for_good(i)) == sorted(
            e.item[0] for e in outcome.dead
        )
        assert all(e.item == case.items[e.item[0]] for e in outcome.dead)
    if case.policy == "retry":
        expected_retries = sum(min(k, case.attempts - 1) for k in case.failures.values())
        assert expected_retries == outcome.retries
    if outcome.acked is not None:
        assert len(case.groups if case.source.endswith("groups") else case.values) == (
            outcome.acked
        )


@settings(max_examples=100, deadline=None)
@given(cases())
def test_buffered_pipeline_gives_the_same_results_as_fused(case: Case) -> None:
    """Small buffers in front of stages change nothing in what is delivered."""
    buffered = asyncio.run(run_case(case, buffered=True))
    fused = asyncio.run(run_case(case, buffered=False))
    if case.ordered or case.concurrency == 1:
        assert fused.results == buffered.results
    elif case.policy != "raise":
        assert Counter(fused.results) == Counter(buffered.results)
    assert (fused.error is None) == (buffered.error is None)
    assert fused.skipped == buffered.skipped
    assert len(fused.dead) == len(buffered.dead)


@settings(max_examples=100, deadline=None)
@given(
    values=st.lists(st.integers(), max_size=600),
    chunk_pipes=st.lists(st.sampled_from(["map", "filter", "flat_map"]), min_size=1, max_size=3),
    config=st.none() | st.integers(1, 300),
)
def test_sync_operator_chains_match_the_builtins(
    values: list[int], chunk_pipes: list[str], config: int | None
) -> None:
    """Chains of sync map/filter/flat_map over big sync sources match Python's builtins."""

    def inc(x: int) -> int:
        return x + 1

    def odd(x: int) -> bool:
        return x % 2 == 1

    def twice(x: int) -> list[int]:
        return [x, x]

    expected: list[int] = list(values)
    stages: list[Pipeable[Any, Any]] = []
    for i, kind in enumerate(chunk_pipes):
        cfg = BackpressureConfig(max_buffer_size=config) if config and i == 1 else None
        if kind == "map":
            expected = [inc(x) for x in expected]
            stages.append(ps.map(inc, config=cfg))
        elif kind == "filter":
            expected = [x for x in expected if odd(x)]
            stages.append(ps.filter(odd, config=cfg))
        else:
            expected = [y for x in expected for y in twice(x)]
            stages.append(ps.flat_map(twice, config=cfg))
    pipeline = stages[0]
    for stage in stages[1:]:
        pipeline = pipeline | stage

    async def run() -> list[int]:
        async with pipeline.stream(values) as s:
            return [x async for x in s]

    assert expected == asyncio.run(run())


async def _agen(items: list[int]) -> AsyncIterator[int]:
    for x in items:
        yield x


@settings(max_examples=75, deadline=None)
@given(
    values=st.lists(st.integers(), max_size=50),
    concurrency=st.integers(1, 8),
    ordered=st.booleans(),
    capacity=st.integers(1, 5),
)
def test_async_generator_source_with_async_filter(
    values: list[int], concurrency: int, ordered: bool, capacity: int
) -> None:
    """An async filter over an async generator keeps exactly the passing items."""

    clock = VirtualClock()

    async def positive(x: int) -> bool:
        await clock.sleep(0.01 * (x % 3))
        return x > 0

    pipe = ps.filter(
        positive,
        concurrency=concurrency,
        ordered=ordered,
        config=BackpressureConfig(max_buffer_size=capacity),
    )

    async def run() -> list[int]:
        async with pipe.stream(_agen(values), clock=clock) as s:
            return [x async for x in s]

    got = asyncio.run(without_deadlock(run(), clock))
    expected = [x for x in values if x > 0]
    if ordered or concurrency == 1:
        assert expected == got
    else:
        assert Counter(expected) == Counter(got)
