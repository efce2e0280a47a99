"""Fusion: adjacent ``map``/``filter`` operators with sync functions run as one loop.

Separate passes cost a list and a generator step per operator and chunk, and a
C-level ``map()`` calls a Python function no faster than the interpreter does.
So a run of fusable operators is compiled into one Python function whose loop
calls each function in turn, as a hand-written loop would::

    for v0 in it:
        v1 = f0(v0)
        if not f1(v1): continue
        c1 += 1
        v2 = f2(v1)
        ap(v2)

The line a failure comes from tells which operator failed; the failure goes,
with that operator's input, to that operator's error policy, and the loop
resumes after the item.
Metrics stay per operator: items in and out are derived from the chunk size,
the filters' pass counters and the skips.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from operator import length_hint
from typing import TYPE_CHECKING, Any

from ._errors import StreamError
from ._policies import SKIP
from ._stages import Kind, StageContext, _call_once

if TYPE_CHECKING:
    from ._buffer import Chunk

__all__ = ["fused_stage"]

# run(it, ap, fns, passes) -> None, or (operator index, exception, its input)
Runner = Callable[[Any, Any, tuple[Any, ...], list[int]], tuple[int, Exception, Any] | None]

_cache: dict[tuple[Kind, ...], Runner] = {}


def compile_runner(kinds: tuple[Kind, ...]) -> Runner:
    """The fused loop for a run of operators of these kinds (cached by shape)."""
    runner = _cache.get(kinds)
    if runner is not None:
        return runner
    n = len(kinds)
    names = ", ".join(f"f{k}" for k in range(n))
    lines = [
        "def run(it, ap, fns, passes):",
        f"    {names}, = fns",
        f"    {' = '.join(f'v{k}' for k in range(n + 1))} = None",
        *(f"    c{k} = 0" for k in range(n) if kinds[k] is Kind.FILTER),
        "    try:",
        "        for v0 in it:",
    ]
    # Each operator's call sits on a line of its own: the traceback's line number
    # says which one failed, so the loop needs no bookkeeping per item.
    stage_of_line: dict[int, int] = {}
    inputs = []
    cur = 0
    for k, kind in enumerate(kinds):
        inputs.append(cur)
        stage_of_line[len(lines) + 1] = k
        if kind is Kind.MAP:
            lines.append(f"            v{k + 1} = f{k}(v{cur})")
            cur = k + 1
        else:
            lines.append(f"            if not f{k}(v{cur}): continue")
            lines.append(f"            c{k} += 1")
    lines.append(f"            ap(v{cur})")
    values = ", ".join(f"v{i}" for i in inputs)
    lines += [
        "    except Exception as e:",
        "        s = stage_of_line[e.__traceback__.tb_lineno]",
        f"        return s, e, ({values},)[s]",
        "    finally:",
        *(f"        passes[{k}] += c{k}" for k in range(n) if kinds[k] is Kind.FILTER),
        "        pass",
        "    return None",
    ]
    namespace: dict[str, Any] = {"stage_of_line": stage_of_line}
    source = "\n".join(lines)
    exec(compile(source, f"<pipeflow fused {'/'.join(k.value for k in kinds)}>", "exec"), namespace)
    runner = namespace["run"]
    _cache[kinds] = runner
    return runner  # type: ignore[no-any-return]


async def fused_stage(
    fns: list[Callable[[Any], Any]],
    kinds: list[Kind],
    ctxs: list[StageContext],
    up: AsyncIterator[Chunk],
) -> AsyncIterator[Chunk]:
    """Run fused operators over each chunk; see the module docstring."""
    n = len(fns)
    runners = [compile_runner(tuple(kinds[k:])) for k in range(n)]
    fn_tails = [tuple(fns[k:]) for k in range(n)]
    timed = ctxs[0].stats.timed
    now = ctxs[0].clock.monotonic
    last_mark = 0

    async def settle(
        start: int,
        failure: tuple[int, Exception, Any],
        ap: Any,
        passes: list[int],
        skips: list[int],
    ) -> None:
        """Resolve a failure at operator ``start + s``; carry on with the rest."""
        s, exc, value = failure
        s += start
        result = await ctxs[s].errors.handle(value, exc, _call_once(fns[s], value))
        if result is SKIP:
            skips[s] += 1
            return
        if kinds[s] is Kind.FILTER:
            if not result:
                return
            passes[s] += 1
        else:
            value = result
        if s + 1 == n:
            ap(value)
            return
        tail_passes = [0] * (n - s - 1)
        again = runners[s + 1](iter((value,)), ap, fn_tails[s + 1], tail_passes)
        for k, c in enumerate(tail_passes):
            passes[s + 1 + k] += c
        if again is not None:
            await settle(s + 1, again, ap, passes, skips)

    async for items, mark in up:
        started = now() if timed else 0.0
        out: list[Any] = []
        ap = out.append
        passes = [0] * n
        skips = [0] * n

        it = iter(items)
        try:
            failure = runners[0](it, ap, fn_tails[0], passes)
            while failure is not None:
                await settle(0, failure, ap, passes, skips)
                failure = runners[0](it, ap, fn_tails[0], passes)
        except StreamError:
            if out:
                _count(ctxs, kinds, len(items) - length_hint(it), passes, skips, len(out))
                yield out, last_mark
            raise
        _count(ctxs, kinds, len(items), passes, skips, len(out))
        if timed and items:
            # Fused operators share the chunk's time evenly.
            per_item = (now() - started) / n / len(items)
            for ctx in ctxs:
                ctx.stats.record_latency(per_item)
        last_mark = mark
        yield out, mark


def _count(
    ctxs: list[StageContext],
    kinds: list[Kind],
    n_in: int,
    passes: list[int],
    skips: list[int],
    n_out: int,
) -> None:
    """Per-operator items in and out for one chunk of a fused run."""
    for k, ctx in enumerate(ctxs):
        stats = ctx.stats
        n_k = n_in - skips[k] if kinds[k] is Kind.MAP else passes[k]
        if k == len(ctxs) - 1:
            n_k = n_out
        stats.items_in += n_in
        stats.items_out += n_k
        if stats.timed:
            stats.record_out(n_k, ctx.clock.monotonic())
        n_in = n_k
