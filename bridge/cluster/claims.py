"""Schedule fires claimed in the cluster table, so each scheduled time is handed over by exactly one node.

Every node evaluates every schedule. At a fire time each node tries a conditional write on
``(schedule, time)``; the winner hands the event to the shared queue and marks the claim ``handed``. A
loser whose winner has not handed over yet watches the claim: once the winner's lease runs out it claims
again, so a node that dies between claim and hand-over delays the fire by at most one lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

from bridge.cluster import messages
from bridge.cluster.aws import transient_or_table_missing, with_retries
from bridge.cluster.node import Node
from bridge.cluster.table import Claim, Table
from bridge.log import get_logger
from bridge.store import QueuedEvent

Retry = Callable[[tuple[datetime, ...]], Awaitable[None]]
MARGIN = 0.2  # seconds past a lease's end before claiming it (the holder's clock may run slightly behind)


def stamp(scheduled: datetime) -> str:
    """The ledger's key for a scheduled time: ISO 8601 in UTC (sorts as time does)."""
    return scheduled.astimezone(UTC).isoformat()


class Claims:
    """The schedule sources' hook (``ctx.extensions['cluster.claims']``)."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.lease = node.config.lease_seconds
        self._watching: dict[tuple[str, str], asyncio.Task[None]] = {}
        self.log = get_logger(node=node.id)

    @property
    def table(self) -> Table:
        """The cluster table (the node has joined)."""
        assert self.node.table is not None
        return self.node.table

    async def claim(self, schedule: str, fires: Sequence[tuple[datetime, QueuedEvent]],
                    retry: Retry) -> list[tuple[datetime, QueuedEvent]]:
        """The fires this node won, each with the event to hand over (after a takeover: the first claimant's).

        The others are watched and ``retry``-ed if their holder's lease runs out before it hands them over.
        """
        won = []
        for scheduled, event in fires:
            try:
                claim = await with_retries(lambda t=scheduled, e=event: self._claim(schedule, t, e), what="claim",
                                           give_up_after=self.lease)
            except Exception as err:  # the table is out of reach: try again after a lease, fire nothing now
                self.log.warning("cluster.claim_failed", source=schedule, scheduled=stamp(scheduled), error=str(err))
                self._watch(schedule, scheduled, time.time() + self.lease, retry)
                continue
            if claim.won:
                won.append((scheduled, messages.decode(claim.body) if claim.body else event))
                if claim.took_over:
                    self.log.info("cluster.claim_taken_over", source=schedule, scheduled=stamp(scheduled))
            elif claim.state == "claimed":
                self._watch(schedule, scheduled, claim.lease_until, retry)
        return tuple(won)

    async def _claim(self, schedule: str, scheduled: datetime, event: QueuedEvent) -> Claim:
        return await self.table.claim(schedule, stamp(scheduled), owner=self.node.id, session=self.node.session,
                                      now=time.time(), lease=self.lease, body=messages.encode(event))

    async def handed(self, schedule: str, fires: Sequence[tuple[datetime, str]]) -> None:
        """The fires ``(scheduled, event_id)`` are durable in the shared queue: close their claims."""
        for scheduled, event_id in fires:
            async def mark(t: datetime = scheduled, e: str = event_id) -> None:
                await self.table.handed(schedule, stamp(t), owner=self.node.id, session=self.node.session,
                                        event_id=e, now=time.time())

            try:
                await with_retries(mark, what="handed", give_up_after=self.lease)
            except Exception as err:  # the event is queued; another node may hand it over again (at least once)
                self.log.warning("cluster.handed_unrecorded", source=schedule, scheduled=stamp(scheduled),
                                 error=str(err))

    async def last_fire(self, schedule: str) -> datetime | None:
        """The newest time any node claimed for ``schedule`` (anchors rate() grids alike on every node)."""
        found = await with_retries(lambda: self.table.last_fire(schedule), what="last_fire", give_up_after=None,
                                   transient=transient_or_table_missing)
        return datetime.fromisoformat(found) if found else None

    def _watch(self, schedule: str, scheduled: datetime, until: float, retry: Retry) -> None:
        key = (schedule, stamp(scheduled))
        if key in self._watching:
            return
        task = asyncio.create_task(self._after(until, scheduled, retry))
        self._watching[key] = task
        task.add_done_callback(lambda _t: self._watching.pop(key, None))

    async def _after(self, until: float, scheduled: datetime, retry: Retry) -> None:
        await asyncio.sleep(max(0.0, until - time.time()) + MARGIN)
        await retry((scheduled,))

    async def close(self) -> None:
        """Stop watching (a stopping node leaves its watches to the others)."""
        for task in list(self._watching.values()):
            task.cancel()
        for task in list(self._watching.values()):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
