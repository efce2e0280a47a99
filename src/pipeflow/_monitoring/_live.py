"""A live terminal view redrawn on the run's clock, for the console reporter and the
``pipeflow`` command's status line."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.live import Live

    from .._core._clock import Clock

__all__ = ["Redrawn"]


class Redrawn:
    """A rich ``Live`` display that a task redraws every ``refresh`` seconds on a clock.

    rich's own refresh would redraw from a thread on wall time; here a task of the
    event loop redraws it, so a virtual clock drives it in tests. The display is
    transient: it is gone once stopped, and what is printed next starts on a clean line.
    """

    __slots__ = ("_live", "_task")

    def __init__(self) -> None:
        self._live: Live | None = None
        self._task: asyncio.Task[None] | None = None

    def start(
        self,
        first: RenderableType,
        frame: Callable[[], RenderableType],
        *,
        console: Console,
        refresh: float,
        clock: Clock,
        name: str,
        redirect_stdout: bool = True,
    ) -> None:
        """Show ``first`` now, then ``frame()`` every ``refresh`` seconds on ``clock``."""
        from rich.live import Live

        live = self._live = Live(
            first,
            console=console,
            auto_refresh=False,
            transient=True,
            redirect_stdout=redirect_stdout,
        )
        live.start(refresh=True)

        async def redraw() -> None:
            while True:
                await clock.sleep(refresh)
                live.update(frame(), refresh=True)

        self._task = asyncio.get_running_loop().create_task(redraw(), name=name)

    async def stop(self) -> BaseException | None:
        """Stop redrawing and take the display away; return what the redrawing
        failed with, if it failed."""
        task, self._task = self._task, None
        try:
            if task is not None:
                task.cancel()
                await asyncio.wait([task])
        finally:
            if self._live is not None:
                self._live.stop()
                self._live = None
        if task is None or task.cancelled():
            return None
        return task.exception()
