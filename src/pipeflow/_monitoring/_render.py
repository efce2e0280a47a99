"""The ``rich`` renderables of the console reporter: the per-stage table and the lines
around it. Imported only once ``rich`` is known to be installed."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rich import box
from rich.console import Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from .._core._stats import StageMetrics
from ._bottleneck import Bottleneck, verdict
from ._monitor import StreamMetrics

__all__ = ["bottleneck_line", "live_view", "stage_table"]

#: Counts shown only when some stage has one: (header, how to read it). A failed
#: item is skipped, dead-lettered, or raised out of the stream: its own column
#: says which.
_OPTIONAL: tuple[tuple[str, Callable[[StageMetrics], int]], ...] = (
    ("raised", lambda s: s.errors - s.skipped - s.dead_lettered),
    ("retries", lambda s: s.retries),
    ("skipped", lambda s: s.skipped),
    ("dead\nletters", lambda s: s.dead_lettered),
    ("dropped", lambda s: s.dropped),
    ("late", lambda s: s.late),
    ("aban-\ndoned", lambda s: s.abandoned),
)


def stage_table(metrics: StreamMetrics, *, title: str, buffers: bool) -> Table:
    """One row per stage: counts, recent rate and backpressure, latency, and the
    counts of errors and the like that some stage has (all-zero ones are left out).

    ``buffers`` adds how full each stage's input buffer is (a run that has ended
    holds none).
    """
    stages = metrics.stages
    optional = [(h, get) for h, get in _OPTIONAL if any(get(s) for s in stages)]
    table = Table(
        title=title,
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        padding=(0, 1),
    )
    table.add_column("stage", no_wrap=True)
    headers = ["in", "out", "out/s", "back-\npressure", "latency\np50/p99"]
    headers += [h for h, _ in optional]
    if buffers:
        headers.append("buffer\nfill")
    for header in headers:
        table.add_column(header, justify="right", no_wrap=True)
    for s in stages:
        row = [
            s.name,
            f"{s.items_in:,}",
            f"{s.items_out:,}",
            _rate(s.throughput),
            f"{s.backpressure:.0%}",
            _latency(s.latency_p50, s.latency_p99),
        ]
        row += [f"{get(s):,}" for _, get in optional]
        if buffers:
            row.append(_buffer(s))
        table.add_row(*row)
    return table


def bottleneck_line(
    bottleneck: Bottleneck | None, stages: Sequence[StageMetrics], *, when: str | None = None
) -> Text:
    """The bottleneck's sentence (see :func:`describe`), the verdict in bold."""
    head, evidence = verdict(bottleneck, stages, when=when)
    if not evidence:
        return Text(head)
    return Text.assemble((head, "bold"), ": ", evidence)


def live_view(
    metrics: StreamMetrics,
    bottleneck: Bottleneck | None,
    *,
    title: str,
    elapsed: float,
    total: int | None,
) -> RenderableType:
    """What the live display shows: a progress line, the table with buffers, and
    the bottleneck now."""
    done = f"{metrics.items_in:,}" + (f"/{total:,}" if total is not None else "")
    head = Text(f"{elapsed:.1f} s  {done} in, {metrics.items_out:,} out")
    if total is not None:
        bar = Table.grid(padding=(0, 1), expand=True)
        bar.add_column(ratio=1)
        bar.add_column(no_wrap=True)
        bar.add_row(ProgressBar(total=max(total, 1), completed=metrics.items_in), head)
        top: RenderableType = bar
    else:
        top = head
    table = stage_table(metrics, title=title, buffers=True)
    return Group(top, table, bottleneck_line(bottleneck, metrics.stages))


def _rate(per_second: float) -> str:
    return f"{per_second:,.0f}" if per_second >= 10 else f"{per_second:.1f}"


def _latency(p50: float | None, p99: float | None) -> str:
    """Two latencies in the unit that suits the larger: ``"4/15µs"``, ``"9.2/26.6ms"``."""
    if p50 is None or p99 is None:
        return "-"
    if p99 >= 1:
        return f"{p50:.2f}/{p99:.2f}s"
    if p99 >= 0.001:
        return f"{p50 * 1e3:.1f}/{p99 * 1e3:.1f}ms"
    return f"{p50 * 1e6:.0f}/{p99 * 1e6:.0f}µs"


def _buffer(s: StageMetrics) -> str:
    if not s.buffer_capacity:
        return "-"
    return f"{s.buffer_size / s.buffer_capacity:.0%}"
