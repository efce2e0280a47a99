"""``WindowedStreamPipe``: group a stream into time, session or count windows.

Processing time by default: an item belongs to the window of the moment it
arrives, and a window fires when the clock passes its end (a timer fires it,
not the next item). With ``timestamp=`` the pipe works in event time: the
watermark is the largest event time seen minus ``allowed_lateness``, and it also
moves with the clock while the source itself is quiet (``idle_advance``), so
windows close even when no more items come.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Hashable
from datetime import datetime, timedelta
from functools import partial
from itertools import islice
from math import isfinite
from operator import countOf
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

if sys.version_info >= (3, 13):
    from typing import TypeVar
else:  # TypeVar defaults (PEP 696)
    from typing_extensions import TypeVar

from .._core._errors import LateItemError, StreamError
from .._core._pipe import Pipeable, StreamPipe
from .._core._policies import SKIP, ErrorPolicy, is_pipe
from .._core._stages import call_each
from .._core._time import duration_us, seconds_to_us, us_to_seconds
from .._core._timed import Step, TimedStage
from ._logic import (
    CountWindows,
    OpenedWindows,
    SessionWindows,
    SlidingWindows,
    TumblingWindows,
    WindowLogic,
)
from ._time import MAX_US, MIN_US, from_us, to_us
from ._window import Window

if TYPE_CHECKING:
    from .._core._buffer import Chunk, ChunkBuffer
    from .._core._config import BackpressureConfig
    from .._core._stages import StageContext

__all__ = ["Window", "WindowedStreamPipe"]

T = TypeVar("T")
In = TypeVar("In", default=Any)
Out = TypeVar("Out", default=Any)

_NO_TIME = -(2**62)
_NEVER = 2**62


#: What ``on_late=`` takes: drop or raise, or a sink receiving ``LateItemError``
#: records (a list, a function, sync or async, or a pipe).
LatePolicy: TypeAlias = (
    Literal["drop", "raise"]
    | list[Any]
    | Callable[[LateItemError], Any]
    | Pipeable[LateItemError, Any]
)


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
        offset: shift window boundaries from the Unix epoch (time windows
            only); taken modulo the size, so it may be negative.
        timestamp: ``fn(item)`` giving the item's event time (an aware datetime
            or epoch seconds); event time instead of processing time.
        key: ``fn(item)`` giving a hashable key; each key has windows of its own.
        allowed_lateness: how far behind the newest event time an item may be
            and still land in its window (event time only).
        idle_advance: while the pipe waits for input and the source has
            nothing to hand over, let the watermark move with the clock (from
            the newest event time on), so windows fire while the source is
            quiet. Time spent blocked on a slow consumer, or waiting for a stage
            upstream busy with an item, does not count; a sync source is never
            quiet. A bool; ``False`` needs event time.
        on_late: an item behind the watermark, whose windows have all fired:
            ``"drop"`` (count it: the default), ``"raise"`` (``LateItemError``),
            or a sink (a list, a callable or a pipe) receiving ``LateItemError``
            records. Always counted in the ``late`` metric. Event time only.
        config: as for ``StreamPipe``.
        on_error: as for ``StreamPipe``; it covers ``process_window`` and the
            ``timestamp``/``key`` functions (each called once per item).
        name: as for ``StreamPipe``.
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
        # Taken modulo the window size (or slide), so it may be negative: as in
        # Flink, offset=-8h starts daily windows at midnight in UTC+8.
        self._offset = duration_us(offset, "offset", allow_negative=True)
        self._lateness = duration_us(allowed_lateness, "allowed_lateness", allow_zero=True)
        self._logic_factory = self._choose_logic(window_size, slide, session_gap, count)
        for fn_name, fn in (("timestamp", timestamp), ("key", key)):
            if fn is not None and not callable(fn):
                msg = f"{fn_name}= must be a function of the item, got {fn!r:.60}"
                raise TypeError(msg)
        if not isinstance(idle_advance, bool):
            msg = f"idle_advance must be True or False, got {idle_advance!r:.60}"
            raise TypeError(msg)
        _check_late_policy(on_late)
        if timestamp is None:
            # In processing time no item is ever late and there is no watermark to advance.
            unused = [
                name
                for name, given in (
                    ("allowed_lateness", self._lateness != 0),
                    ("idle_advance=False", not idle_advance),
                    ("on_late", not (isinstance(on_late, str) and on_late == "drop")),
                )
                if given
            ]
            if unused:
                msg = (
                    f"{' and '.join(unused)} need{'s' if len(unused) == 1 else ''} timestamp=: "
                    "in processing time no item is late and the watermark is the clock"
                )
                raise ValueError(msg)
        self.timestamp = timestamp
        self.key = key
        self.idle_advance = idle_advance
        self.on_late = on_late

    def _choose_logic(
        self,
        window_size: timedelta | float | None,
        slide: timedelta | float | None,
        session_gap: timedelta | float | None,
        count: int | None,
    ) -> Callable[[], WindowLogic]:
        """The factory of the run's window logic. Sets ``_reach``: how far an item's
        windows may reach from its event time (microseconds), and what sets that."""
        if count is not None or session_gap is not None:
            kind = "count" if count is not None else "session"
            for name, given in (("slide", slide is not None), ("offset", self._offset != 0)):
                if given:
                    msg = f"{name}= applies to time windows, not to {kind} windows"
                    raise ValueError(msg)
        if count is not None:
            if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                msg = f"count must be an int >= 1, got {count!r}"
                raise ValueError(msg)
            self._reach = (0, "")
            return lambda: CountWindows(count)
        if session_gap is not None:
            gap = duration_us(session_gap, "session_gap")
            self._reach = (gap, "session gap")
            return lambda: SessionWindows(gap)
        assert window_size is not None
        size = duration_us(window_size, "window_size")
        self._reach = (size, "window size")
        offset = self._offset
        if slide is None:
            return lambda: TumblingWindows(size, offset)
        step = duration_us(slide, "slide")
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
    def _wants_buffer(self) -> bool:
        # A timer must be able to fire a window while no input arrives.
        return True

    def _process_stream_fn(self) -> None:
        return None  # windows run their own loop

    @property
    def _takes_slices(self) -> bool:
        return True  # items go into windows, a chunk at a time

    def _open(self, up: AsyncIterator[Chunk], ctx: StageContext) -> AsyncGenerator[Chunk, None]:
        return _WindowRun(self, ctx).run()


class _WindowRun(TimedStage):
    """The state of one windowed pipe in one run."""

    # Open windows are state: at a stop their items are delivered again, not fired early.
    keeps_on_stop = True

    def __init__(self, pipe: WindowedStreamPipe[Any, Any], ctx: StageContext) -> None:
        super().__init__(ctx)
        self.pipe = pipe
        self.logic = pipe._logic_factory()
        # Event-time tumbling windows: in-order runs take the fast path.
        self.tumbling = (
            self.logic
            if type(self.logic) is TumblingWindows and pipe.timestamp is not None
            else None
        )
        if ctx.acking:  # acks need the oldest window still open, chunk after chunk
            self.logic.opened = OpenedWindows()
        self.event_time = pipe.timestamp is not None
        self.max_ts = _NO_TIME
        # The idle advance of the watermark: seconds, since the newest event time
        # arrived, in which the pipe waited for input and the source had nothing
        # either (see ``wait_input``).
        self.advance = 0.0
        self.watermark = _NO_TIME
        self.mark = 0  # source position reached by the input so far
        self.acked = 0
        # The event times whose windows a datetime can hold, in microseconds.
        reach = pipe._reach[0]
        self.lowest, self.highest = MIN_US + reach, MAX_US - reach
        ctx.stats.held = self.held
        ctx.stats.held_in = "in open windows"

    def held(self) -> int:
        """Items in open windows (an item in several sliding windows counts in each)."""
        return self.logic.held_items()

    def current_watermark(self) -> int:
        """The watermark now: processing time, or event time (with idle advance)."""
        if not self.event_time:
            return to_us(self.ctx.clock.now())
        if self.max_ts == _NO_TIME:
            return self.watermark
        wm = self.max_ts - self.pipe._lateness
        if self.pipe.idle_advance:
            wm += seconds_to_us(self.advance)
        return max(wm, self.watermark)

    def next_delay(self) -> float | None:
        """Seconds on the clock until the next window fires, if time alone fires it.

        Reckoned from ``self.watermark``, the watermark the due windows were just
        fired at: every open window ends after it, so the delay is never zero
        (a zero delay would return at once, and the run would spin).
        """
        end = self.logic.next_end()
        if end is None or (self.event_time and not self.pipe.idle_advance):
            return None
        if self.event_time and self.max_ts == _NO_TIME:
            return None
        return us_to_seconds(end - self.watermark)

    def ack_mark(self, undelivered: list[Window[Any]]) -> int:
        """The source position whose input neither an open window nor ``undelivered`` holds."""
        opened = self.logic.opened
        if opened is None:
            return self.mark  # nobody listens: no windows were tracked
        oldest = opened.oldest_since()
        held = min((w._since for w in undelivered), default=self.mark if oldest is None else oldest)
        if oldest is not None:
            held = min(held, oldest)
        return max(self.acked, held)

    async def on_chunk(self, items: list[Any], mark: int) -> Step:
        self.ctx.stats.items_in += len(items)
        self.logic.position = self.mark
        # Windows the clock (or idle advance) has passed close before new items.
        self.watermark = self.current_watermark()
        fired = self.logic.fire(self.watermark)
        error = await self.add_items(items, fired)
        if error is None:
            self.mark = mark  # a failed chunk is read again: acks stop before it
            self.watermark = self.current_watermark()
        # After a failure too: what was complete before the failed item goes out
        # (count windows fill as items come; time windows fired as the watermark moved).
        fired += self.logic.fire(self.watermark)
        return await self.deliver(fired, error)

    async def on_timer(self) -> Step | None:
        self.watermark = self.current_watermark()
        fired = self.logic.fire(self.watermark)
        return await self.deliver(fired, None) if fired else None

    async def on_end(self) -> tuple[list[Any], int, BaseException | None]:
        out, error, undelivered = await self.emit(self.logic.flush())
        return out, self.mark if error is None else self.ack_mark(undelivered), error

    async def deliver(self, fired: list[Window[Any]], error: BaseException | None) -> Step:
        """Emit ``fired``; hand on the results and the new ack mark, if either is new."""
        out, failed, undelivered = await self.emit(fired)
        acked = self.ack_mark(undelivered)
        if out or acked != self.acked:
            self.acked = acked
            return out, acked, failed or error
        return out, None, failed or error

    async def wait_input(self, buffer: ChunkBuffer) -> None:
        """Wait for input, or until the next window is due on the clock.

        The time the source kept its reader waiting meanwhile goes to the idle
        advance: time in which a stage upstream was busy with an item (a slow
        lookup, say) is not idle time, and moving the watermark on through it
        would make that item late.
        """
        idle = self.ctx.source_idle
        quiet = idle.seconds() if idle is not None else 0.0
        await super().wait_input(buffer)
        if idle is not None:
            self.advance += idle.seconds() - quiet

    async def add_items(self, items: list[Any], fired: list[Window[Any]]) -> BaseException | None:
        """Assign a chunk's items to windows (at ``self.watermark``, where the due ones
        have fired); windows the watermark passes on the way go to ``fired``.

        The ``timestamp`` and ``key`` functions are called once per item, over the
        whole chunk at a time. Items whose calls failed go to the error policy in
        their turn; the items between them go to their windows in runs.

        Returns the error that must end the stream (after ``fired`` is emitted).
        An empty chunk (everything upstream filtered out, or only the source
        position moved on) adds nothing.
        """
        if not items:
            return None
        tsfn, keyfn = self.pipe.timestamp, self.pipe.key
        failed: dict[int, Exception] = {}
        raws = call_each(tsfn, items, failed) if tsfn is not None else None
        keys = call_each(keyfn, items, failed) if keyfn is not None else None
        tumbling = self.tumbling
        in_order = tumbling is not None and not failed and raws is not None
        if in_order and tumbling is not None and raws is not None:
            # The usual case, with no coroutine: a run in order. It hashes the keys
            # itself, and stops at one that cannot be: the rest goes on below.
            done = self._add_in_order(tumbling, items, raws, keys, fired, self.watermark)
            if done == len(items):
                self.ctx.stats.windows_open = self.logic.open_count
                return None
            if done:
                items, raws = items[done:], raws[done:]
                keys = keys[done:] if keys is not None else None
        if keys is not None:
            _check_keys(keys, failed)
        add = self._add_event_time if self.event_time else self._add_processing_time
        try:
            if not failed:
                if in_order:  # just tried
                    await self._add_event_time(items, raws, keys, fired, in_order=False)
                else:
                    await add(items, raws, keys, fired)
                return None
            pos = 0
            for i in sorted(failed):
                if pos < i:
                    await add(items[pos:i], _part(raws, pos, i), _part(keys, pos, i), fired)
                pos = i + 1
                x = items[i]
                got = await self.resolve(
                    x, failed[i], partial(_ts_key, tsfn, keyfn, self.event_us, x)
                )
                if got is not SKIP:
                    raw, k = got
                    await add([x], [raw], [k], fired)
            if pos < len(items):
                end = len(items)
                await add(items[pos:], _part(raws, pos, end), _part(keys, pos, end), fired)
        except (StreamError, LateItemError) as exc:
            return exc
        finally:
            self.ctx.stats.windows_open = self.logic.open_count
        return None

    async def _add_processing_time(
        self,
        items: list[Any],
        raws: list[Any] | None,
        keys: list[Any] | None,
        fired: list[Window[Any]],
    ) -> None:
        """Every item's time is now: the watermark. No window fires, none is late."""
        add, now = self.logic.add, self.watermark
        for x, k in zip(items, keys or [None] * len(items), strict=True):
            add(x, k, now, now)

    async def _add_event_time(
        self,
        items: list[Any],
        raws: list[Any] | None,
        keys: list[Any] | None,
        fired: list[Window[Any]],
        *,
        in_order: bool = True,
    ) -> None:
        """Add items one by one, after trying a tumbling window's fast path for a
        run in order (unless ``in_order`` is false: it was just tried)."""
        # The per-item loop of the whole library's heaviest stage: keep it flat.
        assert raws is not None
        tumbling = self.tumbling
        if tumbling is not None and in_order:
            done = self._add_in_order(tumbling, items, raws, keys, fired, self.watermark)
            if done == len(items):
                return
            if done:  # (not with keys checked beforehand, as they are here)
                items, raws = items[done:], raws[done:]
                keys = keys[done:] if keys is not None else None
        logic, tsfn, wm = self.logic, self.pipe.timestamp, self.watermark
        add = logic.add
        # Tumbling windows: an item whose window is open takes one call, no more.
        add_to_open = tumbling.adder_to_open() if tumbling is not None else None
        lateness = self.pipe._lateness
        max_ts = start_max = self.max_ts
        lowest, highest = self.lowest, self.highest
        due = _due(logic)
        try:
            for x, raw, k in zip(items, raws, keys or [None] * len(items), strict=True):
                try:
                    # A float converts inline, as seconds_to_us would.
                    ts = round(raw * 1e6) if type(raw) is float else to_us(raw)
                    if not lowest <= ts <= highest:
                        ts = self.event_us(raw)  # raises the error that says why
                except Exception as exc:
                    retry = partial(_ts_key, tsfn, None, self.event_us, x)
                    got = await self.resolve(x, _time_error(raw, exc), retry)
                    if got is SKIP:
                        continue
                    ts = self.event_us(got[0])
                if ts > max_ts:
                    max_ts = ts
                    if ts - lateness > wm:
                        wm = ts - lateness
                        if wm >= due:
                            fired += logic.fire(wm)
                            due = _due(logic)
                if add_to_open is not None and add_to_open(x, k, ts):
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
                self.advance = 0.0

    def _add_in_order(
        self,
        logic: TumblingWindows,
        items: list[Any],
        raws: list[Any],
        keys: list[Any] | None,
        fired: list[Window[Any]],
        wm: int,
    ) -> int:
        """Tumbling windows, a run of numeric event times in order: the windows take
        it in slices (``TumblingWindows.add_in_order``), then fire as the run moved
        the watermark.

        Returns how many items went in: all, or none (having changed nothing)
        if the run does not qualify, or those before the first key that cannot
        be hashed. The item loop then handles the rest, with the same ``raws``
        and ``keys`` (the user's functions are not called again).
        """
        if not _numbers_in_order(raws):
            return 0
        try:
            first, last = seconds_to_us(raws[0]), seconds_to_us(raws[-1])
        except (ValueError, OverflowError):
            return 0  # a huge int: the item loop fails the item
        if not (self.lowest <= first and last <= self.highest):
            return 0  # beyond what a datetime can hold: the item loop fails the item
        done = logic.add_in_order(raws, keys, items, wm)
        if not done:
            return 0
        if done < len(items):
            last = seconds_to_us(raws[done - 1])
        if last > self.max_ts:
            self.max_ts = last
            self.advance = 0.0
            if last - self.pipe._lateness > wm:
                self.watermark = last - self.pipe._lateness
                fired += logic.fire(self.watermark)
        return done

    def event_us(self, raw: Any) -> int:
        """An event time as microseconds (see ``to_us``), checked: its windows must
        start and end within the range of a datetime."""
        ts = to_us(raw)
        if not self.lowest <= ts <= self.highest:
            reach, what = self.pipe._reach
            edge = "end" if ts > self.highest else "start"
            given = raw.isoformat() if isinstance(raw, datetime) else f"{raw!r:.60}"
            msg = (
                "an event time must leave room for its windows within datetime's range "
                f"(years 1 to 9999), got {given}, closer to the {edge} of that range "
                f"than the {what} ({timedelta(microseconds=reach)})"
            )
            raise ValueError(msg)
        return ts

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
        # Idle advance may take the watermark past the last instant a datetime holds.
        error = LateItemError(item, self.pipe.name, from_us(ts), from_us(min(wm, MAX_US)))
        if policy == "raise":
            raise error
        await self.ctx.errors.deliver(policy, error)

    async def emit(
        self, fired: list[Window[Any]]
    ) -> tuple[list[Any], StreamError | None, list[Window[Any]]]:
        """Process fired windows in order; stop at a failure the policy raises.

        Returns the results, that failure, and the windows not delivered because
        of it (the failed one and those after it), which hold acks back.
        """
        stats = self.ctx.stats
        stats.windows_open = self.logic.open_count
        out: list[Any] = []
        if not fired:
            return out, None, []
        process = self.pipe.process_window
        # The default process_window only calls aggregate_window: skip the coroutine,
        # and call it over the windows at C speed until one fails.
        aggregate = (
            self.pipe.aggregate_window
            if type(self.pipe).process_window is WindowedStreamPipe.process_window
            else None
        )
        error: StreamError | None = None
        undelivered: list[Window[Any]] = []
        started = self.ctx.clock.monotonic() if stats.timed else 0.0
        i, n = 0, len(fired)
        while i < n:
            window = fired[i]
            exc: Exception | None = None
            if aggregate is not None:
                before = len(out)
                try:
                    out.extend(map(aggregate, islice(fired, i, None)))
                except Exception as raised:
                    exc = raised
                i += len(out) - before
                if i == n:
                    break
                window = fired[i]
                if exc is None:
                    exc = StopIteration()  # aggregate_window raised it: map() just stopped
            else:
                try:
                    out.append(await process(window))
                    i += 1
                    continue
                except Exception as raised:
                    exc = raised
            try:
                result = await self.ctx.errors.handle(window, exc, partial(process, window))
            except StreamError as failed:
                error, undelivered = failed, fired[i:]
                break
            i += 1
            if result is not SKIP:
                out.append(result)
        # Fired: closed and dealt with (emitted, or left to the error policy); a
        # window a "raise" stopped before is not.
        done = n - len(undelivered)
        stats.windows_fired += done
        stats.items_out += len(out)
        if stats.timed:
            # Latency here is the time to process one window.
            stats.record_chunk(len(out), started, self.ctx.clock.monotonic(), done)
        return out, error, undelivered


def _check_late_policy(on_late: object) -> None:
    """``ValueError`` unless ``on_late`` is a ``LatePolicy``, saying what came instead."""
    expected = "'drop', 'raise', or a sink for LateItemError records: a list, a callable or a pipe"
    if isinstance(on_late, str):
        if on_late in ("drop", "raise"):
            return
        got = f"the string {on_late!r:.60}"
    elif isinstance(on_late, type):
        name = on_late.__name__
        got = f"the class {name} (a sink is an instance: {name}())"
    elif isinstance(on_late, list) or callable(on_late) or is_pipe(on_late):
        return
    else:
        got = f"{type(on_late).__name__}: {on_late!r:.60}"
    msg = f"on_late must be {expected}, got {got}"
    raise ValueError(msg)


_NUMBERS = frozenset((float, int))


def _numbers_in_order(raws: list[Any]) -> bool:
    """Whether the event times (at least one) are all ints or floats (not bools, nor
    any other subclass), finite, and in order (none before the one ahead of it)."""
    kind = type(raws[0])
    if countOf(map(type, raws), kind) == len(raws):
        if kind not in _NUMBERS:
            return False
    elif not _NUMBERS.issuperset(map(type, raws)):
        return False
    try:
        # A NaN or an infinity makes the sum one too (so may huge times: then the
        # item loop takes the run, as it would anyway).
        if not isfinite(sum(raws)):
            return False
    except OverflowError:
        return False
    # Sorting is stable, and these numbers are totally ordered: the sorted list
    # equals the list exactly when it was in order.
    return raws == sorted(raws)


def _due(logic: WindowLogic) -> int:
    """When the next window fires, as a watermark (never, if none is open)."""
    end = logic.next_end()
    return _NEVER if end is None else end


def _check_keys(keys: list[Any], failed: dict[int, Exception]) -> None:
    """Fail the items whose key cannot be a dict key (one hashing pass when all can)."""
    try:
        set(keys)
    except Exception:
        for i, k in enumerate(keys):
            error = _unhashable(k)
            if error is not None:
                failed.setdefault(i, error)


def _unhashable(key: Any) -> TypeError | None:
    """The error for a ``key=`` result that cannot be a dict key; ``None`` if it can."""
    try:
        hash(key)
    except Exception:
        msg = f"key= must return a hashable value, got {type(key).__name__}: {key!r:.60}"
        return TypeError(msg)
    return None


def _time_error(raw: Any, exc: Exception) -> Exception:
    """What to report for an event time the item loop could not convert: the error
    of ``to_us``, which says what is wrong with it (NaN, a naive datetime, a string)."""
    try:
        to_us(raw)
    except Exception as error:
        return error
    return exc


def _part(values: list[Any] | None, start: int, stop: int) -> list[Any] | None:
    return values[start:stop] if values is not None else None


def _ts_key(
    tsfn: Callable[[Any], Any] | None,
    keyfn: Callable[[Any], Hashable] | None,
    check: Callable[[Any], int],
    item: Any,
) -> tuple[Any, Hashable]:
    """One item's event time (checked by ``check``, given as it came) and key
    (checked): a retry's call."""
    raw = None
    if tsfn is not None:
        raw = tsfn(item)
        check(raw)  # fails as the item loop would
    k = keyfn(item) if keyfn is not None else None
    if keyfn is not None and (error := _unhashable(k)) is not None:
        raise error
    return raw, k
