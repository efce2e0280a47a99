"""Calls to a broker that survive a dropped connection: retried with backoff, logged.

A connector wraps each call that talks to its broker (connect, fetch, write,
acknowledge) in ``reconnecting``: a failure of the kinds its client raises for
a lost connection is logged at WARNING and the call is tried again, backing off
as ``retry`` says, on the run's clock; once the attempts are spent the failure
goes out with a note saying how many attempts were made. Any other failure goes
out at once.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from .._core._clock import SYSTEM_CLOCK, Clock
from .._core._policies import Retry, retry_failed

__all__ = ["DEFAULT_RECONNECT", "check_reconnect", "reconnecting"]

log = logging.getLogger("pipeflow.connectors")

T = TypeVar("T")

#: Ten attempts in all over about 20 seconds: waits of 0.2 s doubling up to 5 s, plus jitter.
DEFAULT_RECONNECT = Retry(attempts=10, backoff=0.2, max_backoff=5.0, jitter=0.2)


def check_reconnect(retry: object) -> Retry:
    """``retry``, checked as a ``reconnect`` option: a ``Retry`` with ``then="raise"``."""
    if not isinstance(retry, Retry):
        msg = f"reconnect must be a Retry, got {type(retry).__name__}"
        raise TypeError(msg)
    if retry.then != "raise":
        msg = f"reconnect takes a Retry with then='raise', got then={retry.then!r}"
        raise ValueError(msg)
    return retry


async def reconnecting(
    call: Callable[[], Awaitable[T]],
    *,
    retry: Retry,
    lost: tuple[type[BaseException], ...],
    what: str,
    clock: Clock = SYSTEM_CLOCK,
    before_retry: Callable[[], Awaitable[Any]] | None = None,
) -> T:
    """``await call()``, tried again while it fails with a lost connection.

    Args:
        call: the call to the broker; a new coroutine each time.
        retry: how often and how long apart it is tried (its ``on`` narrows ``lost``).
        lost: the exception types that mean the connection was lost.
        what: what the call does, for the log and the error (``"reading orders"``).
        clock: the clock backoff sleeps on.
        before_retry: awaited before each new attempt (to reconnect).
    """
    try:
        return await call()
    except lost as exc:
        first = exc

    last: list[BaseException] = [first]

    def worth_it(exc: BaseException) -> bool:
        last[0] = exc
        return isinstance(exc, lost) and isinstance(exc, retry.on)

    async def again() -> T:
        exc = last[0]
        log.warning("pipeflow: %s failed (%s: %s); trying again", what, type(exc).__name__, exc)
        if before_retry is not None:
            await before_retry()
        return await call()

    ok, result, attempts = await retry_failed(
        retry, first, again, sleep=clock.sleep, worth_it=worth_it
    )
    if not ok:
        result.add_note(f"pipeflow: {what} failed after {attempts} attempts")
        raise result
    if attempts > 1:
        log.info("pipeflow: %s succeeded after %d attempts", what, attempts)
    return result  # type: ignore[no-any-return]
