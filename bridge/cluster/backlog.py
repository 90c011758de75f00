"""``max_queued_events`` on the shared queue: intake waits while the cluster's backlog is over the cap.

The cap means in a cluster what it means on one box: how many events may wait in the async queue before
intake pauses (MQTT PUBACKs, directory scans and Event callers wait) instead of letting the backlog grow
until its events age out. The queue is shared, so the cap is the cluster's: every node compares SQS's
approximate backlog (waiting + in flight + delayed, as a box counts every queued row) with it. SQS only
tells by being asked, so a node asks at most every CHECK seconds and counts its own sends in between;
other nodes' sends in that time and SQS's own lag make it a soft cap (see docs/cluster.md).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

CHECK = 1.0  # seconds: SQS's count is asked for at most this often (also while intake waits for room)


class Backlog:
    """This node's view of the shared queue's backlog; ``reserve(n)`` returns once ``n`` more fit under ``cap``."""

    def __init__(self, count: Callable[[], Awaitable[int]], cap: int, log: Any, check: float = CHECK) -> None:
        self._count = count
        self.cap = cap
        self.log = log
        self.check = check
        self._known = 0  # SQS's count at the last look
        self._at = float("-inf")  # monotonic time of the last look
        self._sent = 0  # events this node reserved since the last look
        self._waiting = 0  # callers waiting for room now
        self._looking = asyncio.Lock()

    @property
    def estimate(self) -> int:
        """The backlog as this node knows it: SQS's last count plus what this node sent since."""
        return self._known + self._sent

    async def reserve(self, count: int) -> None:
        """Wait (saying so once) until ``count`` more events fit, then count them as sent."""
        await self._look()
        if self.estimate + count > self.cap:
            await self._wait(count)
        self._sent += count

    def release(self, count: int) -> None:
        """``count`` reserved events were not sent after all."""
        self._sent = max(0, self._sent - count)

    async def _wait(self, count: int) -> None:
        """One ``queue.full`` when intake starts waiting, one ``queue.resumed`` when no caller waits any more."""
        if not self._waiting:
            self.log.warning("queue.full", depth=self.estimate, max_queued_events=self.cap, shared=True)
        self._waiting += 1
        try:
            while self.estimate + count > self.cap:
                await asyncio.sleep(self.check)  # SQS has no notification: its count is asked for again
                await self._look()
        finally:
            self._waiting -= 1
        if not self._waiting:
            self.log.info("queue.resumed", depth=self.estimate, shared=True)

    async def _look(self) -> None:
        """Ask SQS unless someone did within ``check`` seconds (concurrent callers share one request)."""
        async with self._looking:
            if time.monotonic() - self._at < self.check:
                return
            known = await self._count()
            self._known, self._sent, self._at = known, 0, time.monotonic()
