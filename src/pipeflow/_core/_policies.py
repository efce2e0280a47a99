"""Error policies: what a pipe does when processing an item fails.

A policy is chosen per pipe with ``on_error=``:

- ``"raise"`` (default): deliver the results before the failing item, then raise
  ``StreamError`` out of the stream.
- ``"skip"``: count the failure, log it, go on.
- ``Retry(...)``: try again with exponential backoff and jitter (timed by the
  run's clock); once attempts run out, apply ``Retry.then``.
- ``DeadLetter(sink)``: hand the failure (a ``StreamError`` with the item and
  its cause) to a sink the user gives: a list, a callable, or a pipe.
- a callable ``fn(error) -> policy``: decides per error.

Every policy counts what it does in the stage's statistics; nothing is dropped
unseen. The log gets a stage's first few skipped (or dead-lettered) items in full,
then a summary at most every ``SUMMARY_INTERVAL`` seconds on the run's clock,
and a last summary when the run ends: a feed of junk does not flood it.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeAlias, cast

from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from ._errors import StreamError

if TYPE_CHECKING:
    from ._clock import Clock
    from ._stats import StageStats

__all__ = [
    "LOGGED_IN_FULL",
    "SKIP",
    "SUMMARY_INTERVAL",
    "DeadLetter",
    "ErrorHandler",
    "ErrorPolicy",
    "FailureLog",
    "Retry",
    "check_policy",
    "is_pipe",
    "may_send_to_a_pipe",
    "retry_failed",
]

log = logging.getLogger("pipeflow")

#: How many failures of one kind (skipped, dead-lettered) a stage logs one by one in a run.
LOGGED_IN_FULL = 10
#: After those, the fewest seconds (on the run's clock) between two summary lines.
SUMMARY_INTERVAL = 60.0


class _Skip:
    """The marker a handler returns for an item that yields no result."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "SKIP"


SKIP: Any = _Skip()

_FINAL = ("raise", "skip")


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Send failed items to ``sink`` and go on.

    The sink receives one ``StreamError`` per failed item (``.item`` is the input,
    ``.__cause__`` the exception). Each is counted in the stage's
    ``dead_lettered`` and ``errors`` metrics and logged at INFO (the first few in
    full, then in periodic summaries).

    Attributes:
        sink: a ``list`` (appended to), a callable (called; awaited if it returns
            an awaitable), or a pipe (streamed in a task of its own for the length
            of the run; its results are discarded, and a failure there fails the
            run). A dead letter sent to a pipe holds acknowledgements back until
            that pipe is done with it.

    Raises:
        TypeError: for any other sink, or for a class (``DeadLetter(list)``)
            where an instance belongs.
    """

    sink: Any

    def __post_init__(self) -> None:
        if isinstance(self.sink, type):
            msg = (
                f"DeadLetter sink must be a list, a callable or a pipe, not a class: "
                f"got {self.sink.__name__} (an instance: {self.sink.__name__}())"
            )
            raise TypeError(msg)
        if not (isinstance(self.sink, list) or callable(self.sink) or is_pipe(self.sink)):
            msg = (
                "DeadLetter sink must be a list, a callable or a pipe, "
                f"got {type(self.sink).__name__}"
            )
            raise TypeError(msg)


@dataclass(frozen=True, slots=True, kw_only=True)
class Retry:
    """Try a failed item again, waiting longer each time.

    The waits are exponential backoff with jitter, on the run's clock: ``backoff``
    seconds before the second attempt, doubling up to ``max_backoff``, each plus
    up to ``jitter`` random seconds. Extra attempts are counted in the stage's
    ``retries`` metric. Frozen.

    Attributes:
        attempts: total attempts, the first included (>= 2 to retry at all).
        backoff: seconds before the first retry; doubled for each next one.
        max_backoff: the longest wait between attempts, in seconds.
        jitter: up to this many random seconds added to each wait.
        on: exception types worth retrying; others go to ``then`` at once.
        then: the policy once attempts run out: ``"raise"``, ``"skip"`` or a
            ``DeadLetter``.

    Raises:
        ValueError: for ``attempts`` below 1, a time that is not a finite number
            >= 0, or another ``then``.
        TypeError: for an ``attempts`` that is not an int, or an ``on`` that is not
            a non-empty tuple of exception classes.
    """

    attempts: int = 3
    backoff: float = 0.1
    max_backoff: float = 10.0
    jitter: float = 0.1
    on: tuple[type[BaseException], ...] = (Exception,)
    then: Literal["raise", "skip"] | DeadLetter = field(default="raise")

    def __post_init__(self) -> None:
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int):
            msg = f"Retry.attempts must be an int, got {self.attempts!r}"
            raise TypeError(msg)
        if self.attempts < 1:
            msg = f"Retry.attempts must be >= 1, got {self.attempts}"
            raise ValueError(msg)
        for name in ("backoff", "max_backoff", "jitter"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value < 0
            ):
                msg = f"Retry.{name} must be a finite number of seconds >= 0, got {value!r}"
                raise ValueError(msg)
        on = self.on
        if not (
            isinstance(on, tuple)
            and on
            and all(isinstance(t, type) and issubclass(t, BaseException) for t in on)
        ):
            msg = f"Retry.on must be a non-empty tuple of exception classes, got {on!r}"
            raise TypeError(msg)
        if not (isinstance(self.then, DeadLetter) or self.then in _FINAL):
            msg = f"Retry.then must be 'raise', 'skip' or a DeadLetter, got {self.then!r}"
            raise ValueError(msg)


ErrorPolicy: TypeAlias = (
    Literal["raise", "skip"] | Retry | DeadLetter | Callable[[StreamError], Any]
)
"""What a pipe does with an item whose processing failed: its ``on_error``.

- ``"raise"`` (the default): deliver the results before the failed item, then
  raise ``StreamError`` out of the stream.
- ``"skip"``: the item leaves no result; it is counted in ``skipped`` and
  ``errors`` and logged at WARNING.
- ``Retry(...)``: try again; once the attempts run out, apply ``Retry.then``.
- ``DeadLetter(sink)``: hand the failure to ``sink`` and go on.
- a callable ``fn(error: StreamError)``, sync or async, deciding per error: it
  returns ``"raise"``, ``"skip"``, a ``Retry`` or a ``DeadLetter``.

Anything else raises ``ValueError``; the class ``Retry`` or ``DeadLetter`` itself
raises ``TypeError`` (pass an instance). A stage logs its first 10 skipped (or
dead-lettered) items in full, then a summary at most once a minute on the run's
clock, and a last summary when the run ends.
"""


def is_pipe(obj: object) -> bool:
    """Whether ``obj`` is a pipe a sink may be (it can be streamed and monitored)."""
    return hasattr(obj, "stream") and hasattr(obj, "set_monitor")


def may_send_to_a_pipe(policy: ErrorPolicy) -> bool:
    """Whether failures under ``policy`` may go to a dead-letter pipe (a callable
    policy decides per error, so it may)."""
    if isinstance(policy, Retry):
        policy = policy.then
    if isinstance(policy, DeadLetter):
        return is_pipe(policy.sink)
    return not isinstance(policy, str)


def check_policy(policy: object, *, decided_by: object = None) -> ErrorPolicy:
    """Validate an ``on_error`` value, or the decision of the callable ``decided_by``."""
    if isinstance(policy, type) and policy in (Retry, DeadLetter):
        example = "Retry()" if policy is Retry else "DeadLetter(sink)"
        msg = f"on_error takes a policy, not the class {policy.__name__}: {example}"
        raise TypeError(msg)
    if isinstance(policy, str):
        if policy in _FINAL:
            return cast("ErrorPolicy", policy)
    elif isinstance(policy, Retry | DeadLetter) or (callable(policy) and decided_by is None):
        return policy
    allowed = "'raise', 'skip', a Retry or a DeadLetter"
    if decided_by is not None:
        name = getattr(decided_by, "__name__", None) or type(decided_by).__name__
        msg = f"the on_error callable {name!r} must return {allowed}; it returned {policy!r}"
    else:
        msg = f"on_error must be {allowed}, or a callable deciding per error; got {policy!r}"
    raise ValueError(msg)


class SideStreams(Protocol):
    """Where a handler sends records to a dead-letter pipe (provided by the run)."""

    async def send(self, pipe: Any, record: Any) -> None: ...


class FailureLog:
    """The log lines of one stage's failures of one kind (skipped, dead-lettered) in one run.

    The first ``LOGGED_IN_FULL`` are logged one by one. After that, a failure is
    only counted, and logged in a summary (how many since the last line, how many
    in all, the last one) once ``SUMMARY_INTERVAL`` seconds of the run's clock
    have passed since the last line; ``finish`` sums up what is left when the run ends.
    """

    __slots__ = (
        "_clock",
        "_last",
        "_level",
        "_logged_at",
        "_name",
        "_over",
        "_total",
        "_unlogged",
        "_what",
    )

    def __init__(self, name: str, what: str, level: int, clock: Clock) -> None:
        self._name = name
        #: The verb: "skipped", "dead-lettered".
        self._what = what
        self._level = level
        self._clock = clock
        self._total = self._unlogged = 0
        self._last: StreamError | None = None
        self._logged_at = 0.0
        self._over = False

    def record(self, error: StreamError) -> None:
        """Log ``error``, in full or in a later summary."""
        self._total += 1
        if self._total <= LOGGED_IN_FULL:
            self._logged_at = self._clock.monotonic()
            then = ""
            if self._total == LOGGED_IN_FULL:
                then = (
                    f", the last one logged in full in this run (the next are summed up, "
                    f"at most one line every {SUMMARY_INTERVAL:g} s)"
                )
            log.log(
                self._level, "pipe %r %s a failed item%s: %s", self._name, self._what, then, error
            )
            return
        self._unlogged += 1
        self._last = error
        now = self._clock.monotonic()
        if self._over or now - self._logged_at >= SUMMARY_INTERVAL:
            self._summarize(f"in the last {now - self._logged_at:.1f} s")
            self._logged_at = now

    def finish(self) -> None:
        """The run has ended: sum up the failures not logged yet."""
        self._over = True
        if self._unlogged:
            self._summarize("by the end of the run")

    def _summarize(self, when: str) -> None:
        log.log(
            self._level,
            "pipe %r %s %d more failed item%s %s, %d in all; the last: %s",
            self._name,
            self._what,
            self._unlogged,
            "" if self._unlogged == 1 else "s",
            when,
            self._total,
            self._last,
        )
        self._unlogged = 0


async def retry_failed(
    policy: Retry,
    failure: BaseException,
    call: Callable[[], Awaitable[Any]],
    *,
    sleep: Callable[[float], Awaitable[None]],
    worth_it: Callable[[BaseException], bool],
    on_retry: Callable[[], None] | None = None,
) -> tuple[bool, Any, int]:
    """Call ``call`` again after its first attempt failed with ``failure``, as
    ``policy`` says: backing off with ``sleep`` (the run's clock) before each next
    attempt, while the failures are ``worth_it``. ``on_retry`` is told of each.

    Returns:
        ``(succeeded, the result or the last exception, attempts made)``, the
        first attempt included.
    """
    if policy.attempts < 2 or not worth_it(failure):
        return False, failure, 1
    attempt_no = 1
    first: BaseException | None = failure
    retrying = AsyncRetrying(
        stop=stop_after_attempt(policy.attempts),
        # The cap applies before the jitter, so capped retries still spread out.
        wait=wait_exponential(multiplier=policy.backoff, max=policy.max_backoff)
        + wait_random(0, policy.jitter),
        retry=retry_if_exception(worth_it),
        sleep=sleep,
        reraise=True,
    )
    try:
        async for attempt in retrying:
            with attempt:
                attempt_no = attempt.retry_state.attempt_number
                if first is not None:
                    # Replay the failure already seen, so tenacity backs off before attempt 2.
                    replay, first = first, None
                    raise replay
                if on_retry is not None:
                    on_retry()
                value = await call()
    except Exception as last:
        return False, last, attempt_no
    return True, value, attempt_no


class ErrorHandler:
    """One pipe's policy, bound to one run: its stats, its clock, its side streams.

    It logs what it skips and dead-letters through a ``FailureLog`` each, summed up
    when the run ends (the stage's stats tell it, through ``StageStats.on_finish``).
    """

    __slots__ = ("clock", "dead_letter_log", "name", "policy", "sides", "skip_log", "stats")

    def __init__(
        self,
        policy: ErrorPolicy,
        name: str,
        stats: StageStats,
        clock: Clock,
        sides: SideStreams,
    ) -> None:
        self.policy = policy
        self.name = name
        self.stats = stats
        self.clock = clock
        self.sides = sides
        self.skip_log = FailureLog(name, "skipped", logging.WARNING, clock)
        # The item went where the user asked: worth a record, not a warning.
        self.dead_letter_log = FailureLog(name, "dead-lettered", logging.INFO, clock)
        stats.on_finish = self.finish

    def finish(self) -> None:
        """The run has ended: log the summaries still owed."""
        self.skip_log.finish()
        self.dead_letter_log.finish()

    async def handle(self, item: Any, exc: Exception, call: Callable[[], Awaitable[Any]]) -> Any:
        """Resolve a failed item: return its result (after a retry), or ``SKIP``.

        Raises ``StreamError`` when the policy gives up on the item.
        """
        return await self._apply(self.policy, item, exc, call, 1)

    async def _apply(
        self,
        policy: ErrorPolicy,
        item: Any,
        exc: BaseException,
        call: Callable[[], Awaitable[Any]],
        attempts: int,
    ) -> Any:
        if isinstance(policy, Retry):
            ok, value, attempts = await self._retry(policy, exc, call)
            if ok:
                return value
            exc = value
            policy = policy.then
        elif not isinstance(policy, str | DeadLetter):
            decision = policy(StreamError(item, self.name, attempts, exc))
            if inspect.isawaitable(decision):
                decision = await decision
            return await self._apply(
                check_policy(decision, decided_by=policy), item, exc, call, attempts
            )
        error = StreamError(item, self.name, attempts, exc)
        self.stats.errors += 1
        if policy == "raise":
            raise error
        if policy == "skip":
            self.stats.skipped += 1
            self.skip_log.record(error)
            return SKIP
        assert isinstance(policy, DeadLetter)
        self.stats.dead_lettered += 1
        self.dead_letter_log.record(error)
        await self.deliver(policy.sink, error)
        return SKIP

    async def _retry(
        self, policy: Retry, exc: BaseException, call: Callable[[], Awaitable[Any]]
    ) -> tuple[bool, Any, int]:
        """Retry ``call``; return (succeeded, result or last exception, attempts made)."""

        def worth_it(e: BaseException) -> bool:
            return isinstance(e, policy.on) and not self._settled(e)

        ok, value, attempts = await retry_failed(
            policy, exc, call, sleep=self.clock.sleep, worth_it=worth_it, on_retry=self._retried
        )
        if not ok and self._settled(value):
            raise value
        return ok, value, attempts

    def _retried(self) -> None:
        self.stats.retries += 1

    def _settled(self, exc: BaseException) -> bool:
        """Whether ``exc`` is this pipe's own verdict on an item (a batch's
        ``process_items`` gave up on one): final, not one more failure to handle."""
        return isinstance(exc, StreamError) and exc.pipe == self.name

    async def deliver(self, sink: Any, record: Any) -> None:
        """Hand ``record`` to a user's sink: a list, a callable or a pipe."""
        if isinstance(sink, list):
            sink.append(record)
        elif is_pipe(sink):
            await self.sides.send(sink, record)
        else:
            result = sink(record)
            if inspect.isawaitable(result):
                await result
