"""Fusion: adjacent ``map``/``filter`` operators with sync functions run as one loop.

Separate passes cost a list and a generator step per operator and chunk, and a
C-level ``map()`` calls a Python function no faster than the interpreter does.
So a run of fusable operators is compiled into one Python function whose loop
calls each function in turn, as a hand-written loop would::

    for v0 in it:
        v1 = f0(v0)
        if not f1(v1): continue
        c1.append(None)  # counts what passes
        v2 = f2(v1)
        ap(v2)

When the operators end the pipeline and nothing times them, the loop is compiled
into the async generator the consumer iterates, and ``ap(v2)`` becomes
``yield v2``: every result goes straight to the consumer, with no list in between
(:func:`direct_consumer`). When they are the whole pipeline and the source is an
async iterable that takes no acknowledgements, that generator reads the source
with ``async for`` itself, keeping the counters up to date item by item.

The line a failure comes from tells which operator failed; the failure goes,
with that operator's input, to that operator's error policy, and the loop
resumes after the item.
Metrics stay per operator: items in and out are derived from the chunk size,
the filters' pass counters and the skips.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from operator import length_hint
from typing import TYPE_CHECKING, Any, Literal, Protocol

from ._errors import StreamError
from ._lifecycle import ClosingRun, consuming
from ._policies import SKIP
from ._stages import Kind, StageContext, call_once

if TYPE_CHECKING:
    from ._buffer import Chunk

__all__ = ["DirectRun", "FusedOps", "Reads", "direct_consumer", "fused_stage"]

# run(it, ap, fns, passes) -> None, or (operator index, exception, its input)
Runner = Callable[[Any, Any, tuple[Any, ...], list[int]], tuple[int, Exception, Any] | None]

_runners: dict[tuple[Kind, ...], Runner] = {}
_consumers: dict[tuple[tuple[Kind, ...], Reads], Callable[..., AsyncGenerator[Any, None]]] = {}


_RUNNER = """\
def run(it, ap, fns, passes):
    {fns}, = fns
    {values} = None
    {counters}
    try:
        for v0 in it:
            {steps}
            ap({result})
    except Exception as e:
        s = stage_of_line[e.__traceback__.tb_lineno]
        return s, e, {failed_input}
    finally:
        {add_counters}
    return None
"""


def _consumer(opening: str, body: str) -> str:
    """The template of a direct consumer: ``body`` in the frame every consumer
    generator runs in (``_lifecycle.consuming``), after ``opening``.

    The generated ``run(run, tail)`` binds ``run`` (a :class:`DirectRun`) and
    ``tail`` (the first fused stage). ``opening`` must bind ``ops`` (the
    ``FusedOps``) and what ``body`` reads from; the frame then binds the
    operators' functions ``f0``, ``f1``, ... and the values ``v0``, ``v1``, ...
    ``body`` (indented 8 spaces) may use those, the names of :func:`_generate`'s
    namespace and its placeholders; it yields the results and must not return.
    """
    return (
        """\
async def run(run, tail):
    {values} = None
    if run.started:
        return
    async with consuming(run):
"""
        + f"        {opening}\n"
        + "        {fns}, = ops.fns\n"
        + body
    )


# Over chunks (sequences) of a source's items. The result is stored before it is
# yielded, so that an exception thrown in at the ``yield`` is not taken for a
# failure of the last operator.
_CONSUMER = _consumer(
    "up, ops = run.open(tail)",
    """\
        recover, count, delivered = ops.recover, ops.count, run.delivered
        async for items, mark in up:
            passes = [0] * {n}
            skips = [0] * {n}
            it = run.delivering = iter(items)
            {counters}
            try:
                while True:
                    try:
                        for v0 in it:
                            {steps}
                            yield {result}
                        break
                    except Exception as e:
                        s = stage_of_line.get(e.__traceback__.tb_lineno)
                        if s is None:  # thrown in at a yield: not an operator's
                            raise
                        pending = await recover(s, e, {failed_input}, passes, skips)
                    for x in pending:
                        yield x
            finally:
                {add_counters}
                count(len(items) - length_hint(it), passes, skips)
            delivered(mark)
""",
)

# The loop body of both consumers that read item by item: an item an operator
# fails on is counted there, and what ``recover`` makes of it is yielded.
_ITEM_STEPS = """\
            try:
                {steps}
            except Exception as e:
                s = stage_of_line[e.__traceback__.tb_lineno]
                failed[s] += 1
                for x in await recover(s, e, {failed_input}, passes, skips):
                    yield x
                continue
"""

# Reading an async source item by item, keeping the counters up to date as it
# goes: there are no chunks to count by. Each item is counted once, where it ends
# on the main path: yielded (``out``), dropped by filter k (``d{k}``) or failed
# at operator s (``failed[s]``, then ``recover`` counts what it does with the
# item in ``passes`` and ``skips``); ``FusedOps.flush`` derives the rest. The two
# kinds of count every item meets are floats, exact up to 2**53: adding to a
# float takes one from the interpreter's free list, where an int past 256 is a
# new object each time. ``ops.live`` reads them (closure cells) at any time.
_ASYNC_CONSUMER = _consumer(
    "it, ops = run.open(tail, items=True)",
    """\
        recover, failed, passes, skips = ops.recover, ops.failed, ops.passes, ops.skips
        out = {drops_zero}0.0
        ops.live = lambda: (out + {drops_sum}sum(failed), ({drops}))
        async for v0 in it:
"""
    + _ITEM_STEPS
    + """\
            out += 1.0
            yield {result}
""",
)

# The same over a list or tuple, read with ``for``: iterating the sequence
# itself touches each item once, where slices of it are copies, touched again as
# they are made and freed. The items read need no counter: the iterator's position
# says how many (``length_hint`` counts what is left of the sequence as it is now;
# once it is used up, its length at that moment is kept).
_SEQUENCE_CONSUMER = _consumer(
    "it, ops = run.open(tail, items=True)",
    """\
        recover, failed, passes, skips = ops.recover, ops.failed, ops.passes, ops.skips
        seq, read = run.source, -1
        {drops_zero}0.0
        ops.live = lambda: (len(seq) - length_hint(it) if read < 0 else read, ({drops}))
        for v0 in it:
"""
    + _ITEM_STEPS
    + """\
            yield {result}
        read = len(seq)
""",
)

#: What a direct consumer reads: chunks, or the source item by item.
Reads = Literal["chunks", "async", "sequence"]
_TEMPLATES: dict[Reads, str] = {
    "chunks": _CONSUMER,
    "async": _ASYNC_CONSUMER,
    "sequence": _SEQUENCE_CONSUMER,
}


def _generate(template: str, kinds: tuple[Kind, ...], *, live: bool = False) -> Any:
    """Compile ``template`` for operators of these kinds; return its ``run``.

    ``{steps}`` becomes the operators' calls on ``v0``, leaving the result in
    ``{result}``; a filter that drops the item ``continue``s. Each call sits on a
    line of its own: the traceback's line number says which operator failed
    (``stage_of_line``), so the loop needs no bookkeeping per item. A filter
    counts what passes in a local ``c{k}`` (a float, see the comment below), or when
    the counts are ``live`` what it drops, in ``d{k}`` (see ``_ASYNC_CONSUMER``).
    """
    n = len(kinds)
    filters = [k for k, kind in enumerate(kinds) if kind is Kind.FILTER]
    steps: list[str] = []
    stage_of_step: dict[int, int] = {}
    inputs = []
    cur = 0
    for k, kind in enumerate(kinds):
        inputs.append(cur)
        stage_of_step[len(steps)] = k
        if kind is Kind.MAP:
            steps.append(f"v{k + 1} = f{k}(v{cur})")
            cur = k + 1
        elif live:
            steps.append(f"if not f{k}(v{cur}): d{k} += 1.0; continue")
        else:
            steps.append(f"if not f{k}(v{cur}): continue")
            # A float: adding to an int makes a new object once past 256, and
            # appending to a list grows it, touching memory the loop needs.
            steps.append(f"c{k} += 1.0")
    blocks = {
        "steps": steps,
        "counters": [f"c{k} = 0.0" for k in filters] or ["pass"],
        "add_counters": [f"passes[{k}] += int(c{k})" for k in filters] or ["pass"],
    }
    words = {
        "n": str(n),
        "fns": ", ".join(f"f{k}" for k in range(n)),
        "values": " = ".join(f"v{k}" for k in range(n + 1)),
        "result": f"v{cur}",
        "failed_input": f"({', '.join(f'v{i}' for i in inputs)},)[s]",
        "drops_zero": "".join(f"d{k} = " for k in filters),
        "drops": "".join(f"d{k}, " for k in filters),
        "drops_sum": "".join(f"d{k} + " for k in filters),
    }
    lines: list[str] = []
    stage_of_line: dict[int, int] = {}
    for line in template.splitlines():
        name = line.strip()[1:-1]
        if name in blocks:
            indent = line[: len(line) - len(line.lstrip())]
            if name == "steps":  # line numbers count from 1
                stage_of_line = {len(lines) + 1 + i: k for i, k in stage_of_step.items()}
            lines += [indent + b for b in blocks[name]]
        else:
            lines.append(line.format(**words))
    namespace: dict[str, Any] = {
        "stage_of_line": stage_of_line,
        "length_hint": length_hint,
        "consuming": consuming,
    }
    name = f"<pipeflow fused {'/'.join(k.value for k in kinds)}>"
    exec(compile("\n".join(lines), name, "exec"), namespace)
    return namespace["run"]


def compile_runner(kinds: tuple[Kind, ...]) -> Runner:
    """The fused loop for a run of operators of these kinds (cached by shape).

    It appends each result with ``ap`` and stops at the first failure, returning
    ``(operator index, exception, that operator's input)``.
    """
    runner = _runners.get(kinds)
    if runner is None:
        runner = _runners[kinds] = _generate(_RUNNER, kinds)
    return runner


class FusedOps:
    """A run of fused operators in one run of a pipeline: their functions, contexts
    and compiled loops, and how a failure or a chunk is accounted for."""

    __slots__ = (
        "_counted",
        "ctxs",
        "failed",
        "fn_tails",
        "fns",
        "kinds",
        "live",
        "passes",
        "runners",
        "skips",
    )

    def __init__(
        self, fns: list[Callable[[Any], Any]], kinds: list[Kind], ctxs: list[StageContext]
    ) -> None:
        n = len(fns)
        self.fns = fns
        self.kinds = kinds
        self.ctxs = ctxs
        self.runners = [compile_runner(tuple(kinds[k:])) for k in range(n)]
        self.fn_tails = [tuple(fns[k:]) for k in range(n)]
        #: Live counters, for a consumer that reads its source item by item
        #: (``_ASYNC_CONSUMER``, ``_SEQUENCE_CONSUMER``): ``live()`` gives the
        #: items read and, per filter, those dropped on the loop's main path; per
        #: operator, the items that failed there (``failed``), and of those, the
        #: ones a filter passed and the ones that did not come out (``passes``,
        #: ``skips``). ``flush`` counts what is new.
        self.live: Callable[[], tuple[float, tuple[float, ...]]] | None = None
        self.failed = [0] * n
        self.passes = [0] * n
        self.skips = [0] * n
        self._counted = (0, [0] * n, [0] * n)

    async def settle(
        self,
        s: int,
        exc: Exception,
        value: Any,
        ap: Any,
        passes: list[int],
        skips: list[int],
    ) -> None:
        """Resolve a failure of operator ``s`` on ``value``, and carry the result
        through the operators after it, appending what comes out with ``ap``.

        A ``StreamError`` (the policy gave up) propagates; the item then counts
        as not having come out of operator ``s``.
        """
        kinds, fns, n = self.kinds, self.fns, len(self.fns)
        while True:
            try:
                result = await self.ctxs[s].errors.handle(value, exc, call_once(fns[s], value))
            except StreamError:
                skips[s] += 1
                raise
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
            again = self.runners[s + 1](iter((value,)), ap, self.fn_tails[s + 1], tail_passes)
            for k, c in enumerate(tail_passes):
                passes[s + 1 + k] += c
            if again is None:
                return
            base = s + 1
            s, exc, value = again
            s += base

    async def recover(
        self, s: int, exc: Exception, value: Any, passes: list[int], skips: list[int]
    ) -> list[Any]:
        """:meth:`settle` for the direct consumer: what comes out, as a list."""
        out: list[Any] = []
        await self.settle(s, exc, value, out.append, passes, skips)
        return out

    def flush(self) -> None:
        """Add what the live counters gained since the last flush to the metrics."""
        if self.live is None:
            return
        seen, passes = self._live_counts()
        before = self._counted
        if seen == before[0] and passes == before[1] and self.skips == before[2]:
            return
        self.count(
            seen - before[0],
            [a - b for a, b in zip(passes, before[1], strict=True)],
            [a - b for a, b in zip(self.skips, before[2], strict=True)],
        )
        self._counted = (seen, passes, self.skips.copy())

    def _live_counts(self) -> tuple[int, list[int]]:
        """Items read, and per filter the items it passed, from the live counters.

        Every item read ends on the loop's main path in one way: yielded, dropped
        by a filter, or failed at an operator. Of the items that reach operator
        k there, a filter passes all but those it drops and those that fail; the
        items ``recover`` passes come on top.
        """
        assert self.live is not None
        read, drops = self.live()
        filters = [k for k, kind in enumerate(self.kinds) if kind is Kind.FILTER]
        dropped = [0] * len(self.kinds)
        for k, d in zip(filters, drops, strict=True):
            dropped[k] = int(d)
        seen = int(read)
        passes = self.passes.copy()
        reaching = seen
        for k, kind in enumerate(self.kinds):
            if kind is Kind.FILTER:
                passes[k] += reaching - dropped[k] - self.failed[k]
            reaching -= dropped[k] + self.failed[k]
        return seen, passes

    def count(self, n_in: int, passes: list[int], skips: list[int]) -> None:
        """Items in and out of each operator for one chunk (or the part of it read)."""
        kinds = self.kinds
        for k, ctx in enumerate(self.ctxs):
            stats = ctx.stats
            n_k = n_in - skips[k] if kinds[k] is Kind.MAP else passes[k]
            stats.items_in += n_in
            stats.items_out += n_k
            if stats.timed:
                stats.record_out(n_k, ctx.clock.monotonic())
            n_in = n_k


async def fused_stage(ops: FusedOps, up: AsyncIterator[Chunk]) -> AsyncGenerator[Chunk, None]:
    """Run fused operators over each chunk, passing on a chunk of results for each."""
    n = len(ops.fns)
    ctxs = ops.ctxs
    run, fns = ops.runners[0], ops.fn_tails[0]
    timed = ctxs[0].stats.timed
    now = ctxs[0].clock.monotonic
    last_mark = 0
    async for items, mark in up:
        started = now() if timed else 0.0
        out: list[Any] = []
        ap = out.append
        passes = [0] * n
        skips = [0] * n
        it = iter(items)
        try:
            failure = run(it, ap, fns, passes)
            while failure is not None:
                await ops.settle(*failure, ap, passes, skips)
                failure = run(it, ap, fns, passes)
        except StreamError:
            ops.count(len(items) - length_hint(it), passes, skips)
            if out:
                yield out, last_mark
            raise
        ops.count(len(items), passes, skips)
        if timed and items:
            # Fused operators share the chunk's time evenly.
            per_item = (now() - started) / n / len(items)
            for ctx in ctxs:
                ctx.stats.record_latency(per_item)
        last_mark = mark
        yield out, mark


class DirectRun(ClosingRun, Protocol):
    """What a direct consumer needs from its run (``_run.Run``), besides its frame."""

    delivering: Iterator[Any] | None

    def open(self, tail: int, *, items: bool = False) -> tuple[AsyncIterator[Any], FusedOps | None]:
        """Start everything before stage ``tail``; return what comes out of it
        (chunks, or with ``items`` the source's own async iterator) and the
        operators from ``tail`` on."""

    def delivered(self, mark: int) -> None:
        """Every result of the source's items up to ``mark`` has been taken."""


def direct_consumer(
    kinds: tuple[Kind, ...], *, reads: Reads = "chunks"
) -> Callable[[DirectRun, int], AsyncGenerator[Any, None]]:
    """The async generator a consumer iterates when fused operators of these kinds
    end the pipeline: it runs the operators and yields each result as it comes.

    Called as ``consumer(run, tail)``, where ``tail`` is the index of the first
    fused stage. It opens the run on its first step and closes it however it
    ends, in the frame of ``_lifecycle.consuming`` as every consumer generator.
    It reads what ``run.open`` hands it: the chunks of the stages before
    (``"chunks"``); or, when the operators are the whole pipeline, the source
    itself, item by item, with ``async for`` (``"async"``) or, a list or tuple,
    with ``for`` (``"sequence"``), keeping the operators' counters up to date as
    it goes (``FusedOps.flush`` adds them to the metrics).
    """
    key = (kinds, reads)
    consumer = _consumers.get(key)
    if consumer is None:
        template = _TEMPLATES[reads]
        consumer = _consumers[key] = _generate(template, kinds, live=reads != "chunks")
    return consumer
