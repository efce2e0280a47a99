"""``WindowedStreamPipe``: group a stream into time, session or count windows.

Processing time by default: an item belongs to the window of the moment it
arrives, and a window fires when the clock passes its end (a timer fires it,
not the next item). With ``timestamp=`` the pipe works in event time: the
watermark is the largest event time seen minus ``allowed_lateness``, and it also
moves with the clock while the source is quiet (``idle_advance``), so windows
close even when no more items come.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import AsyncIterator, Callable, Hashable
from datetime import datetime, timedelta
from functools import partial
from itertools import islice
from operator import le
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from .._core._buffer import wait_input
from .._core._errors import LateItemError, StreamError
from .._core._pipe import StreamPipe
from .._core._policies import SKIP, ErrorPolicy, _is_pipe
from ._logic import (
    CountWindows,
    OpenWindow,
    SessionWindows,
    SlidingWindows,
    TumblingWindows,
    WindowLogic,
)
from ._time import from_us, seconds_to_us, to_us
from ._window import Window

if TYPE_CHECKING:
    from .._core._buffer import Chunk
    from .._core._config import BackpressureConfig
    from .._core._stages import StageContext

__all__ = ["Window", "WindowedStreamPipe"]

T = TypeVar("T")
In = TypeVar("In")
Out = TypeVar("Out")

_NO_TIME = -(2**62)
_NEVER = 2**62


LatePolicy = Literal["drop", "raise"] | list[Any] | Callable[[LateItemError], Any] | Any


class WindowedStreamPipe(StreamPipe[In, Out]):
    """Collect items into windows and emit one result per window.

    Override ``process_window`` (async) or ``aggregate_window`` (sync); the
    default emits each window's items as a ``Window`` list.

    Args:
        window_size: the window length, a ``timedelta`` or seconds. Tumbling
            windows unless ``slide`` is given.
        slide: start a window every ``slide`` (sliding, overlapping windows).
        session_gap: session windows instead: a key's window closes after this
            much time without items (leave ``window_size`` out).
        count: count windows instead: every ``count`` items per key (leave
            ``window_size`` out).
        offset: shift window boundaries from the Unix epoch.
        timestamp: ``fn(item)`` giving the item's event time (an aware datetime
            or epoch seconds); event time instead of processing time.
        key: ``fn(item)`` giving a key; each key has windows of its own.
        allowed_lateness: how far behind the newest event time an item may be
            and still land in its window (event time).
        idle_advance: while the pipe waits for input, let the watermark move
            with the clock (from the newest event time on), so windows fire
            while the source is quiet. Time spent blocked on a slow consumer
            does not count.
        on_late: an item behind the watermark, whose windows have all fired:
            ``"drop"`` (count it: the default), ``"raise"`` (``LateItemError``),
            or a sink (a list, a callable or a pipe) receiving ``LateItemError``
            records. Always counted in the ``late`` metric.
        config, on_error, name: as for ``StreamPipe``; ``on_error`` covers
            ``process_window`` and the ``timestamp``/``key`` functions.
    """

    def __init__(
        self,
        window_size: timedelta | float | None = None,
        *,
        slide: timedelta | float | None = None,
        session_gap: timedelta | float | None = None,
        count: int | None = None,
        offset: timedelta | float = timedelta(0),
        timestamp: Callable[[In], datetime | float] | None = None,
        key: Callable[[In], Hashable] | None = None,
        allowed_lateness: timedelta | float = timedelta(0),
        idle_advance: bool = True,
        on_late: LatePolicy = "drop",
        config: BackpressureConfig | None = None,
        on_error: ErrorPolicy = "raise",
        name: str | None = None,
    ) -> None:
        super().__init__(config=config, on_error=on_error, name=name)
        modes = [
            n
            for n, v in (
                ("window_size", window_size),
                ("session_gap", session_gap),
                ("count", count),
            )
            if v is not None
        ]
        if len(modes) != 1:
            msg = (
                "WindowedStreamPipe needs exactly one of window_size, session_gap or count, "
                f"got {' and '.join(modes) or 'none'}"
            )
            raise ValueError(msg)
        self._offset = seconds_to_us(offset, "offset", allow_zero=True)
        self._lateness = seconds_to_us(allowed_lateness, "allowed_lateness", allow_zero=True)
        self._logic_factory = self._choose_logic(window_size, slide, session_gap, count)
        for fn_name, fn in (("timestamp", timestamp), ("key", key)):
            if fn is not None and not callable(fn):
                msg = f"{fn_name}= must be a function of the item, got {fn!r:.60}"
                raise TypeError(msg)
        if not (
            on_late in ("drop", "raise")
            or isinstance(on_late, list)
            or callable(on_late)
            or _is_pipe(on_late)
        ):
            msg = f"on_late must be 'drop', 'raise', a list, a callable or a pipe, got {on_late!r}"
            raise ValueError(msg)
        self.timestamp = timestamp
        self.key = key
        self.idle_advance = bool(idle_advance)
        self.on_late = on_late

    def _choose_logic(
        self,
        window_size: timedelta | float | None,
        slide: timedelta | float | None,
        session_gap: timedelta | float | None,
        count: int | None,
    ) -> Callable[[], WindowLogic]:
        if count is not None:
            if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                msg = f"count must be an int >= 1, got {count!r}"
                raise ValueError(msg)
            if slide is not None:
                msg = "slide= applies to time windows, not to count windows"
                raise ValueError(msg)
            return lambda: CountWindows(count)
        if session_gap is not None:
            gap = seconds_to_us(session_gap, "session_gap")
            if slide is not None:
                msg = "slide= applies to time windows, not to session windows"
                raise ValueError(msg)
            return lambda: SessionWindows(gap)
        assert window_size is not None
        size = seconds_to_us(window_size, "window_size")
        offset = self._offset
        if slide is None:
            return lambda: TumblingWindows(size, offset)
        step = seconds_to_us(slide, "slide")
        if step > size:
            msg = f"slide must not exceed window_size ({window_size!r}), got {slide!r}"
            raise ValueError(msg)
        return lambda: SlidingWindows(size, step, offset)

    async def process_window(self, window: Window[In]) -> Out:
        """Turn one window into the result emitted for it. Default: ``aggregate_window``."""
        result: Out = self.aggregate_window(window)
        return result

    def aggregate_window(self, window: Window[In]) -> Any:
        """Synchronous aggregation of a window. Default: its items as a ``Window`` list."""
        return window

    @property
    def _needs_buffer(self) -> bool:
        # A timer must be able to fire a window while no input arrives.
        return True

    def _open(self, up: AsyncIterator[Chunk], ctx: StageContext) -> AsyncIterator[Chunk]:
        return _WindowRun(self, ctx).run()


class _WindowRun:
    """The state of one windowed pipe in one run."""

    def __init__(self, pipe: WindowedStreamPipe[Any, Any], ctx: StageContext) -> None:
        self.pipe = pipe
        self.ctx = ctx
        self.logic = pipe._logic_factory()
        self.event_time = pipe.timestamp is not None
        self.max_ts = _NO_TIME
        # Seconds spent waiting for input since the newest event time arrived:
        # the idle advance of the watermark (time blocked on output does not count).
        self.idle = 0.0
        self.idle_since: float | None = None
        self.watermark = _NO_TIME
        self.mark = 0  # source position reached by the input so far
        self.acked = 0

    def current_watermark(self) -> int:
        """The watermark now: processing time, or event time (with idle advance)."""
        clock = self.ctx.clock
        if not self.event_time:
            return to_us(clock.now())
        if self.max_ts == _NO_TIME:
            return self.watermark
        wm = self.max_ts - self.pipe._lateness
        if self.pipe.idle_advance:
            idle = self.idle
            if self.idle_since is not None:
                idle += clock.monotonic() - self.idle_since
            wm += round(idle * 1_000_000)
        return max(wm, self.watermark)

    def delay_to_next(self) -> float | None:
        """Seconds on the clock until the next window fires, if time alone fires it."""
        end = self.logic.next_end()
        if end is None or (self.event_time and not self.pipe.idle_advance):
            return None
        if self.event_time and self.max_ts == _NO_TIME:
            return None
        return max(0.0, (end - self.current_watermark()) / 1_000_000)

    def ack_mark(self) -> int:
        """The source position whose input no open window holds any more."""
        if not self.ctx.acking:
            return self.mark  # nobody listens: skip the walk over open windows
        held = min((w.since for w in self.logic.open_windows()), default=self.mark)
        return max(self.acked, held)

    async def run(self) -> AsyncIterator[Chunk]:
        buf = self.ctx.buffer
        assert buf is not None
        stats = self.ctx.stats
        while True:
            try:
                chunk = buf.get_nowait()
            except StopAsyncIteration:
                break
            fired: list[OpenWindow] = []
            error: BaseException | None = None
            if chunk is not None:
                items, mark = chunk
                stats.items_in += len(items)
                self.logic.position = self.mark
                error = await self.add_items(items, fired)
                self.mark = mark
            if error is None:
                self.watermark = self.current_watermark()
                fired += self.logic.fire(self.watermark)
            if fired or chunk is not None:
                out, failed = await self.emit(fired)
                error = error or failed
                acked = self.ack_mark()
                if out or acked != self.acked:
                    self.acked = acked
                    yield out, acked
                if error is not None:
                    raise error
                continue
            clock = self.ctx.clock
            delay = self.delay_to_next()
            self.idle_since = clock.monotonic()
            try:
                await wait_input(buf, clock, delay)
            finally:
                self.idle += clock.monotonic() - self.idle_since
                self.idle_since = None
        out, error = await self.emit(self.logic.flush())
        yield out, self.mark
        if error is not None:
            raise error

    async def add_items(self, items: list[Any], fired: list[OpenWindow]) -> BaseException | None:
        """Assign a chunk's items to windows; windows the watermark passes go to ``fired``.

        Returns the error that must end the stream (after ``fired`` is emitted).
        """
        try:
            if self.event_time:
                await self._add_event_time(items, fired)
            else:
                await self._add_processing_time(items, fired)
        except (StreamError, LateItemError) as exc:
            return exc
        finally:
            self.ctx.stats.windows_open = self.logic.open_count
        return None

    async def _add_processing_time(self, items: list[Any], fired: list[OpenWindow]) -> None:
        logic, keyfn = self.logic, self.pipe.key
        now = to_us(self.ctx.clock.now())
        fired += logic.fire(now)
        self.watermark = now
        for x in items:
            k = None
            if keyfn is not None:
                try:
                    k = keyfn(x)
                except Exception as exc:
                    k = await self.resolve(x, exc, partial(keyfn, x))
                    if k is SKIP:
                        continue
            logic.add(x, k, now, now)

    async def _add_event_time(self, items: list[Any], fired: list[OpenWindow]) -> None:
        # The per-item loop of the whole library's heaviest stage: keep it flat.
        logic, keyfn, tsfn = self.logic, self.pipe.key, self.pipe.timestamp
        assert tsfn is not None
        add = logic.add
        self.watermark = wm = self.current_watermark()
        # The watermark may have moved with the clock: windows due now close first.
        fired += logic.fire(wm)
        lateness = self.pipe._lateness
        max_ts = start_max = self.max_ts
        due = _due(logic)
        # Tumbling windows: find an open window by arithmetic and one dict lookup.
        tumbling = logic if type(logic) is TumblingWindows else None
        appends = tumbling.appends if tumbling is not None else None
        size, offset = (tumbling.size, tumbling.offset) if tumbling is not None else (1, 0)
        if tumbling is not None and self._add_in_order(tumbling, items, fired, wm):
            return
        try:
            for x in items:
                try:
                    raw = tsfn(x)
                    ts = round(raw * 1e6) if type(raw) is float else to_us(raw)
                    k = keyfn(x) if keyfn is not None else None
                except Exception as exc:
                    got = await self.resolve(x, exc, partial(_ts_key, tsfn, keyfn, x))
                    if got is SKIP:
                        continue
                    ts, k = got
                if ts > max_ts:
                    max_ts = ts
                    if ts - lateness > wm:
                        wm = ts - lateness
                        if wm >= due:
                            fired += logic.fire(wm)
                            due = _due(logic)
                if appends is not None:
                    group = appends.get(ts - (ts - offset) % size)
                    append = group.get(k) if group is not None else None
                    if append is not None:
                        append(x)
                        continue
                if add(x, k, ts, wm):
                    due = _due(logic)
                else:
                    self.watermark = wm
                    await self.late(x, ts, wm)
        finally:
            self.watermark = wm
            if max_ts != start_max:
                self.max_ts = max_ts
                self.idle = 0.0

    def _add_in_order(
        self, logic: TumblingWindows, items: list[Any], fired: list[OpenWindow], wm: int
    ) -> bool:
        """Tumbling windows, a chunk of numeric event times in order: slices, not items.

        In such a chunk no item is late once its first one is not, and no window
        fires between its items that a later item would belong to, so firing at
        the end of the chunk gives exactly what item-by-item processing gives.
        The chunk is cut where window boundaries fall (by bisection) and each
        slice goes to its windows. Returns ``False``, having changed nothing, if
        the chunk does not qualify or a ``timestamp``/``key`` function fails:
        the item loop then handles the chunk.
        """
        tsfn, keyfn = self.pipe.timestamp, self.pipe.key
        assert tsfn is not None
        try:
            raws: list[Any] = list(map(tsfn, items))
            if not _NUMBERS.issuperset(map(type, raws)):
                return False
            if not all(map(le, raws, islice(raws, 1, None))):
                return False
            first, last = _seconds_to_us(raws[0]), _seconds_to_us(raws[-1])
            keys = list(map(keyfn, items)) if keyfn is not None else None
        except Exception:
            return False  # datetimes, NaN, a failing function: the item loop decides
        size, offset = logic.size, logic.offset
        start = first - (first - offset) % size
        if start + size <= wm:
            return False  # the first item may be late: let the item loop decide
        appends, add = logic.appends, logic.add
        lo, n = 0, len(items)
        while lo < n:
            hi = bisect_left(raws, start + size, lo, n, key=_seconds_to_us)
            group = appends.get(start)
            if keys is None:
                append = group.get(None) if group is not None else None
                if append is None:
                    add(items[lo], None, start, wm)
                    lo += 1
                    continue
                logic.extend(start, None, items[lo:hi])
            else:
                get = group.get if group is not None else _nothing
                for x, k in zip(items[lo:hi], keys[lo:hi], strict=True):
                    append = get(k)
                    if append is None:
                        add(x, k, start, wm)
                        group = appends[start]
                        get = group.get
                    else:
                        append(x)
            lo = hi
            if lo < n:
                t = _seconds_to_us(raws[lo])
                start = t - (t - offset) % size
        if last > self.max_ts:
            self.max_ts = last
            self.idle = 0.0
            if last - self.pipe._lateness > wm:
                self.watermark = last - self.pipe._lateness
                fired += logic.fire(self.watermark)
        return True

    async def resolve(self, item: Any, exc: Exception, fn: Callable[[], Any]) -> Any:
        """Apply the error policy to a failed key or timestamp function."""

        async def call() -> Any:
            return fn()

        return await self.ctx.errors.handle(item, exc, call)

    async def late(self, item: Any, ts: int, wm: int) -> None:
        self.ctx.stats.late += 1
        policy = self.pipe.on_late
        if policy == "drop":
            return
        error = LateItemError(item, self.pipe.name, from_us(ts), from_us(wm))
        if policy == "raise":
            raise error
        await self.ctx.errors.deliver(policy, error)

    async def emit(self, fired: list[OpenWindow]) -> tuple[list[Any], StreamError | None]:
        """Process fired windows in order; stop at a failure the policy raises."""
        stats = self.ctx.stats
        stats.windows_fired += len(fired)
        stats.windows_open = self.logic.open_count
        process = self.pipe.process_window
        aggregate = (
            self.pipe.aggregate_window
            if type(self.pipe).process_window is WindowedStreamPipe.process_window
            else None
        )
        out: list[Any] = []
        error: StreamError | None = None
        if not fired:
            return out, error
        started = self.ctx.clock.monotonic() if stats.timed else 0.0
        for w in fired:
            window = w.window()
            try:
                # The default process_window only calls aggregate_window: skip the coroutine.
                result = aggregate(window) if aggregate is not None else await process(window)
            except Exception as exc:
                try:
                    result = await self.ctx.errors.handle(window, exc, partial(process, window))
                except StreamError as failed:
                    error = failed
                    break
                if result is SKIP:
                    continue
            out.append(result)
        stats.items_out += len(out)
        if stats.timed:
            # Latency here is the time to process one window.
            stats.record_chunk(len(out), started, self.ctx.clock.monotonic(), len(fired))
        return out, error


_NUMBERS = frozenset((float, int))


def _seconds_to_us(seconds: float) -> int:
    """Epoch seconds (a float or an int) as whole microseconds, as ``to_us`` rounds them."""
    return round(seconds * 1e6)


def _nothing(_: Hashable) -> None:
    return None


def _due(logic: WindowLogic) -> int:
    """When the next window fires, as a watermark (never, if none is open)."""
    end = logic.next_end()
    return _NEVER if end is None else end


def _ts_key(
    tsfn: Callable[[Any], Any], keyfn: Callable[[Any], Hashable] | None, item: Any
) -> tuple[int, Hashable]:
    return to_us(tsfn(item)), keyfn(item) if keyfn is not None else None
