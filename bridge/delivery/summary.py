"""The async queue's periodic summary line: what the daemon log says instead of one line per success."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

INTERVAL_S = 30.0  # one line per this many seconds while events flow; none while idle


@dataclass
class Summary:
    """Counts outcomes between two summary lines (``delivery.summary``, info level)."""

    log: Any
    depth: Callable[[], int]
    interval: float = INTERVAL_S
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))

    def count(self, outcome: str) -> None:
        """One ``succeeded``, ``failed``, ``retried`` or ``throttled`` outcome."""
        self.counts[outcome] += 1

    async def run(self) -> None:
        """Log a line every ``interval`` seconds in which something happened (cancel to stop)."""
        last, last_depth = time.monotonic(), self.depth()
        while True:
            await asyncio.sleep(self.interval)  # a timer, not a poll: one wake-up per interval, even idle
            now, depth = time.monotonic(), self.depth()
            if any(self.counts.values()) or depth != last_depth:
                self.emit(now - last, depth)
            last, last_depth = now, depth

    def emit(self, elapsed: float, depth: int) -> None:
        """Write one summary line for ``elapsed`` seconds and reset the counts."""
        counts, self.counts = self.counts, dict.fromkeys(OUTCOMES, 0)
        done = counts["succeeded"] + counts["failed"]
        self.log.info("delivery.summary", events_per_s=round(done / max(elapsed, 1e-9), 1), queue_depth=depth,
                      interval_s=round(elapsed, 1), **counts)


OUTCOMES = ("succeeded", "failed", "retried", "throttled")
