"""The NATS connection the JetStream source and sink share, and their argument checks.

nats-py reconnects by itself: both connectors configure it from their
``reconnect`` option and log each disconnection and reconnection; a source or
sink whose client gives up fails with a ``ConnectionError`` saying so.
"""

from __future__ import annotations

import logging
from typing import Any

from .._core._policies import Retry

__all__ = ["STATUS", "NatsClient"]

log = logging.getLogger("pipeflow.connectors")

#: Seconds between the client's pings; three unanswered ones drop the connection (to reconnect).
PING_INTERVAL = 10
#: The header holding a status message's code (a reply without a payload of its own).
STATUS = "Status"


def _reconnect_wait(retry: Retry) -> float:
    """The fixed wait between nats-py's reconnect attempts: the mean of ``retry``'s backoff."""
    waits = [min(retry.backoff * 2**i, retry.max_backoff) for i in range(retry.attempts - 1)]
    return sum(waits) / len(waits) if waits else retry.backoff


class NatsClient:
    """One nats-py connection, configured from a ``reconnect`` option, with logged callbacks."""

    __slots__ = ("closed", "nats", "nc", "reconnect", "reconnected", "url", "what")

    def __init__(self, nats: Any, url: str, reconnect: Retry, what: str) -> None:
        self.nats = nats
        self.url = url
        self.reconnect = reconnect
        self.what = what
        self.nc: Any = None
        self.closed = False
        #: Called after each reconnection (the source asks for a batch again).
        self.reconnected: Any = None

    def lost(self) -> tuple[type[BaseException], ...]:
        errors = self.nats.errors
        # Not ConnectionError itself: that is what the source and sink raise once the client
        # gave up, which no retry mends.
        return (
            ConnectionRefusedError,
            ConnectionResetError,
            ConnectionAbortedError,
            BrokenPipeError,
            TimeoutError,
            errors.NoServersError,
            # JetStream answers nothing for a moment after the server restarts.
            errors.NoRespondersError,
            self.nats.js.errors.ServiceUnavailableError,
            errors.ConnectionClosedError,
            errors.ConnectionReconnectingError,
            errors.OutboundBufferLimitError,
            errors.TimeoutError,
            errors.FlushTimeoutError,
        )

    async def connect(self) -> Any:
        retry = self.reconnect

        async def connect() -> Any:
            return await self.nats.connect(
                self.url,
                name=self.what,
                allow_reconnect=True,
                max_reconnect_attempts=retry.attempts,
                reconnect_time_wait=_reconnect_wait(retry),
                connect_timeout=2,
                # A connection gone silent (no reset) is found within half a minute.
                ping_interval=PING_INTERVAL,
                max_outstanding_pings=3,
                error_cb=self._on_error,
                disconnected_cb=self._on_disconnected,
                reconnected_cb=self._on_reconnected,
                closed_cb=self._on_closed,
            )

        # nats-py makes the attempts itself, logging each failure through ``error_cb``.
        try:
            self.nc = await connect()
        except self.lost() as exc:
            msg = f"{self.what}: could not connect to {self.url} in {retry.attempts} attempts"
            raise ConnectionError(msg) from exc
        return self.nc

    def gave_up(self) -> ConnectionError:
        return ConnectionError(
            f"{self.what}: the connection to {self.url} was lost and "
            f"{self.reconnect.attempts} reconnect attempts failed"
        )

    def check_open(self) -> None:
        """Raise ``ConnectionError`` if the client gave up reconnecting."""
        if self.nc is not None and self.nc.is_closed and not self.closed:
            raise self.gave_up()

    async def _on_error(self, exc: Exception) -> None:
        log.warning("pipeflow: %s: NATS error: %s: %s", self.what, type(exc).__name__, exc)

    async def _on_disconnected(self) -> None:
        if not self.closed:
            log.warning("pipeflow: %s: disconnected from %s; reconnecting", self.what, self.url)

    async def _on_reconnected(self) -> None:
        log.warning("pipeflow: %s: reconnected to %s", self.what, self.url)
        if self.reconnected is not None:
            self.reconnected()

    async def _on_closed(self) -> None:
        if not self.closed:
            log.error("pipeflow: %s: connection to %s closed", self.what, self.url)
        if self.reconnected is not None:
            self.reconnected()  # wake a waiting fetch, which then sees the connection closed

    async def aclose(self) -> None:
        nc, self.nc = self.nc, None
        self.closed = True
        if nc is not None and not nc.is_closed:
            try:
                await nc.close()
            except Exception as exc:  # closing is best effort; the connection is gone either way
                log.warning("pipeflow: %s: closing the connection failed: %s", self.what, exc)
