"""Calls a run makes to its source: ``ack``, ``pause`` and ``resume``.

Broker clients are async: their ``ack`` (a commit) or ``pause`` may return an
awaitable. The run never waits for one where results are delivered; it awaits
them in a task of its own, one after the other, in the order they were made.
Acknowledgements are counts from the first item, so one that is still to be
made while another is in progress is folded into the newest: acknowledging 300
covers 200. A call that fails fails the run: the consumer gets its exception at
the next chunk, or at the end.
"""

from __future__ import annotations

import asyncio
import inspect
from collections import deque
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from ._policies import log

__all__ = ["SourceCalls"]


class SourceCalls:
    """The run's calls to its source, made in order, each awaited if it returns
    an awaitable, without making the caller wait."""

    __slots__ = ("_ack", "_acked", "_error", "_queue", "_reported", "_task", "_wanted")

    def __init__(self, ack: Callable[[int], Any] | None) -> None:
        self._ack = ack
        #: The newest count acknowledged, and the newest asked for.
        self._acked = self._wanted = 0
        #: Pause and resume calls waiting for the one in progress.
        self._queue: deque[Callable[[], Any]] = deque()
        self._task: asyncio.Task[None] | None = None
        self._error: BaseException | None = None
        self._reported = False

    @property
    def acked(self) -> int:
        """The count of items whose acknowledgement has completed."""
        return self._acked

    def ack(self, count: int) -> None:
        """Acknowledge the first ``count`` items (now, or once the calls before it are done).

        Raises the failure of an earlier call.
        """
        self.check()
        if count <= self._wanted:
            return
        self._wanted = count
        if self._task is None and not self._queue:
            assert self._ack is not None
            self._settle(self._call(self._ack, count), partial(self._done, count))

    def call(self, fn: Callable[[], Any]) -> None:
        """Call ``fn`` (``pause`` or ``resume``) after the calls before it."""
        self.check()
        if self._task is not None:
            self._queue.append(fn)
        else:
            self._settle(self._call(fn), None)

    def check(self) -> None:
        """Raise the failure of a call made earlier, if one failed."""
        if self._error is not None:
            self._reported = True
            raise self._error

    async def wait(self) -> None:
        """Wait until every call made so far has completed; raise the first failure."""
        task = self._task
        if task is not None:
            await asyncio.shield(task)
        self.check()

    async def close(self, *, cancelled: bool) -> None:
        """At the end of a run: let the calls made so far complete (or, if the run
        was cancelled, give them up). Never raises: a failure the consumer has
        not seen yet is logged, since the run ends with an error of its own or
        none."""
        task = self._task
        if task is not None:
            if cancelled:
                self._queue.clear()
                task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if self._error is not None and not self._reported:
            self._reported = True
            log.error("a call to the source failed while the run was closing", exc_info=self._error)

    def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            result = fn(*args)
        except BaseException as exc:
            self._failed(exc, fn, args)
            raise
        if inspect.isawaitable(result):
            return self._noted(result, fn, args)
        return result

    async def _noted(self, result: Awaitable[Any], fn: Callable[..., Any], args: Any) -> Any:
        try:
            return await result
        except BaseException as exc:
            self._failed(exc, fn, args)
            raise

    def _settle(self, result: Any, done: Callable[[], None] | None) -> None:
        if inspect.isawaitable(result):
            self._task = asyncio.get_running_loop().create_task(
                self._drain(result, done), name="pipeflow: calls to the source"
            )
        elif done is not None:
            done()

    def _done(self, count: int) -> None:
        self._acked = max(self._acked, count)

    async def _drain(self, first: Awaitable[Any], done: Callable[[], None] | None) -> None:
        """Await ``first``, then make and await the calls that came meanwhile, in order."""
        try:
            await self._await(first, done)
            while True:
                if self._queue:
                    fn = self._queue.popleft()
                    await self._await(self._call(fn), None)
                elif self._ack is not None and self._wanted > self._acked:
                    count = self._wanted
                    await self._await(self._call(self._ack, count), partial(self._done, count))
                else:
                    return
        except Exception:
            pass  # kept by _failed: the consumer gets it at the next chunk or the end
        finally:
            self._task = None

    async def _await(self, result: Any, done: Callable[[], None] | None) -> None:
        if inspect.isawaitable(result):
            await result
        if done is not None:
            done()

    def _failed(self, exc: BaseException, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        if not isinstance(exc, Exception):
            return  # cancelled, or the process is stopping: no failure of the source's
        if self._error is None:
            self._error = exc
        name = getattr(fn, "__name__", "a call")
        exc.add_note(
            f"raised by the source's {name}({', '.join(map(repr, args))}): the run stopped"
        )
