"""The consumer group side of ``KafkaSource``: partitions owned, offsets committed."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from types import ModuleType
from typing import Any

from .._core._policies import Retry
from ._positions import Positions
from ._reconnect import reconnecting

log = logging.getLogger("pipeflow.connectors")


class KafkaCommits:
    """The partitions a ``KafkaSource`` owns and the offsets it commits.

    It keeps the records handed over, the partitions the group assigns and
    revokes (and, for ``stop_at_end``, where each ends), and commits, per
    partition, the offset after the last message the run acknowledged.
    ``KafkaSource`` sets the attributes below, and calls ``__init__`` for
    the rest.
    """

    # Set by KafkaSource.
    _aiokafka: ModuleType
    _consumer: Any
    _topic: str
    _group: str
    _timeout: float
    _reconnect: Retry
    _lost: tuple[type[BaseException], ...]
    _commit_interval: float
    _paused: bool

    def __init__(self) -> None:
        #: The records handed over and not acknowledged, in order.
        self._positions: Positions[Any] = Positions()
        #: Partitions owned now, and whether the group has assigned any yet.
        self._owned: set[int] = set()
        self._joined = False
        #: Bumped when partitions are revoked: a batch being handed over stops.
        self._generation = 0
        #: (records handed over at a revocation, partitions revoked): records
        #: handed over before it, of those partitions, are never committed.
        self._revocations: deque[tuple[int, frozenset[int]]] = deque()
        #: Per partition, the offset to commit that is acknowledged and not yet committed.
        self._uncommitted: dict[int, int] = {}
        self._lock = asyncio.Lock()
        #: When offsets were last committed (event loop time), and the task that
        #: commits what is acknowledged meanwhile once ``commit_interval`` is over.
        self._last_commit = float("-inf")
        self._flusher: asyncio.Task[None] | None = None
        self._failure: Exception | None = None
        #: stop_at_end: per partition, the offset it ends at.
        self._ends: dict[int, int] = {}

    # -- partitions owned ---------------------------------------------------------

    def _assigned(self, partitions: set[int]) -> None:
        self._owned = set(partitions)
        self._joined = True
        if self._paused and self._consumer is not None and partitions:
            self._consumer.pause(*self._consumer.assignment())
        if partitions:
            log.info(
                "pipeflow: %r assigned partitions %s", self, ", ".join(map(str, sorted(partitions)))
            )

    async def _revoked(self, partitions: set[int]) -> None:
        """Commit what is acknowledged of ``partitions`` before the group hands them on."""
        gone = frozenset(partitions)
        self._generation += 1
        self._owned -= gone
        self._revocations.append((self._positions.acked + len(self._positions), gone))
        async with self._lock:
            offsets = {p: o for p, o in self._uncommitted.items() if p in gone}
            for p in gone:
                self._uncommitted.pop(p, None)
            if offsets:
                try:
                    await self._commit(offsets)
                except Exception as exc:
                    log.warning(
                        "pipeflow: %r could not commit offsets %s of the partitions it gives up "
                        "(%s: %s); their new owner reads those messages again",
                        self,
                        offsets,
                        type(exc).__name__,
                        exc,
                    )

    async def _at_end(self, consumer: Any) -> bool:
        """Whether every partition owned has been read up to where it ends."""
        if not self._joined:
            return False
        tp_of = self._aiokafka.TopicPartition
        for partition in self._owned:
            tp = tp_of(self._topic, partition)
            end = self._ends.get(partition)
            if end is None:
                end = consumer.highwater(tp)
                if end is None:
                    return False  # no fetch response for it yet
                self._ends[partition] = end
            try:
                if await consumer.position(tp) < end:
                    return False
            except self._aiokafka.errors.IllegalStateError:
                return False  # given up in a rebalance meanwhile
        return True

    # -- acknowledgement ----------------------------------------------------------

    async def _ack(self, count: int) -> None:
        """What ``KafkaSource.ack`` does."""
        self._check()
        async with self._lock:
            positions = self._positions
            base = positions.acked
            records = positions.take(count)
            if not records:
                return
            revoked = self._revocations
            while revoked and revoked[0][0] <= base:
                revoked.popleft()  # nothing handed over before it is left
            uncommitted = self._uncommitted
            if revoked:
                for index, r in enumerate(records, base):
                    if not any(index < at and r.partition in gone for at, gone in revoked):
                        uncommitted[r.partition] = r.offset + 1
            else:
                # The last record of each partition is the one to commit: looking
                # from the end, stop once every partition owned is seen.
                seen: dict[int, int] = {}
                owned = len(self._owned)
                for r in reversed(records):
                    if r.partition not in seen:
                        seen[r.partition] = r.offset + 1
                        if len(seen) >= owned:
                            break
                uncommitted.update(seen)
            while revoked and revoked[0][0] <= count:
                revoked.popleft()
            if not uncommitted:
                return
            loop = asyncio.get_running_loop()
            wait = self._last_commit + self._commit_interval - loop.time()
            if wait <= 0:
                await self._commit_uncommitted()
            elif self._flusher is None:
                self._flusher = loop.create_task(
                    self._commit_later(wait), name=f"pipeflow: committing {self._topic!r}"
                )

    async def _commit_later(self, wait: float) -> None:
        """Commit what is acknowledged once ``wait`` seconds have passed."""
        await asyncio.sleep(wait)
        async with self._lock:
            self._flusher = None
            try:
                await self._commit_uncommitted()
            except Exception as exc:
                self._failure = exc  # for the next acknowledgement, or closing

    def _check(self) -> None:
        failure, self._failure = self._failure, None
        if failure is not None:
            raise failure

    async def _commit_uncommitted(self) -> None:
        self._last_commit = asyncio.get_running_loop().time()
        owned = self._owned
        offsets = {p: o for p, o in self._uncommitted.items() if p in owned}
        self._uncommitted = {}
        if not offsets:
            return
        errors = self._aiokafka.errors
        try:
            await self._commit(offsets)
        except (errors.CommitFailedError, errors.IllegalStateError) as exc:
            # The group is rebalancing: keep them, for the next acknowledgement
            # or the revocation (which commits what this member gives up).
            log.info("pipeflow: %r will commit %s later (%s)", self, offsets, exc)
            for p, o in offsets.items():
                self._uncommitted.setdefault(p, o)

    async def _commit(self, offsets: dict[int, int]) -> None:
        consumer = self._consumer
        tp_of = self._aiokafka.TopicPartition
        topic = self._topic

        async def commit() -> None:
            await asyncio.wait_for(
                consumer.commit({tp_of(topic, p): o for p, o in offsets.items()}),
                self._timeout,
            )

        await reconnecting(
            commit,
            retry=self._reconnect,
            lost=self._lost,
            what=f"committing offsets of {topic!r} for group {self._group!r}",
        )


class _Listener:
    """Tells the source which partitions it gains and loses in a rebalance.

    aiokafka wants a subclass of its ``ConsumerRebalanceListener``: ``listener``
    makes one, since aiokafka is imported only when a source is made.
    """

    def __init__(self, source: KafkaCommits) -> None:
        self._source = source

    def on_partitions_assigned(self, assigned: Any) -> None:
        self._source._assigned({tp.partition for tp in assigned})

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self._source._revoked({tp.partition for tp in revoked})


def listener(aiokafka: ModuleType, source: KafkaCommits) -> Any:
    """The rebalance listener to subscribe ``source``'s consumer with."""
    cls = type("RebalanceListener", (_Listener, aiokafka.ConsumerRebalanceListener), {})
    return cls(source)
