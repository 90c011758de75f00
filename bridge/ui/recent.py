"""What the status page shows beyond the status report: a 15-minute ring of samples, recent failures, durations."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from bridge.events import payload as bounded_json

SAMPLE_S = 5.0  # one chart point per this many seconds
WINDOW_S = 15 * 60  # the chart's span
FAILURES = 50  # recent failures kept
DURATIONS = 1000  # recent durations kept per function, for p50 / p99
MESSAGE_CHARS = 500  # of an error message, on the page


@dataclass
class Sample:
    """One chart point: rates over the interval before ``time`` and the queue at ``time``."""

    time: float
    events_per_s: float
    errors_per_s: float
    depth: int


@dataclass
class Recent:
    """Fed by the metrics listener (every invocation) and a sampler task; bounded in memory."""

    invocations: int = 0
    errors: int = 0
    samples: deque[Sample] = field(default_factory=lambda: deque(maxlen=int(WINDOW_S / SAMPLE_S)))
    failures: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=FAILURES))
    durations: dict[str, deque[float]] = field(default_factory=dict)

    def observe(self, function: str, result: Any, seconds: float) -> None:
        """One finished invocation (a ``Metrics`` listener): counted, timed, kept when it failed."""
        self.invocations += 1
        self.durations.setdefault(function, deque(maxlen=DURATIONS)).append(seconds)
        if not result.ok:
            self.errors += 1
            self.failures.appendleft(failure(function, result))

    def percentiles(self, function: str) -> dict[str, float | None]:
        """p50 and p99 of the function's recent durations, in milliseconds (None before its first call)."""
        values = sorted(self.durations.get(function, ()))
        if not values:
            return {"p50_ms": None, "p99_ms": None}
        return {"p50_ms": round(nearest_rank(values, 0.50) * 1000, 2),
                "p99_ms": round(nearest_rank(values, 0.99) * 1000, 2)}

    async def sample_forever(self, depth: Callable[[], Awaitable[int]], interval: float = SAMPLE_S) -> None:
        """Add a chart point every ``interval`` seconds (cancel to stop)."""
        since = self.mark()
        while True:
            await asyncio.sleep(interval)  # a timer: one wake-up per point
            since = self.sample(since, await depth())

    def mark(self, now: float | None = None) -> tuple[float, int, int]:
        """Where the next sample's rates start: (monotonic time, invocations, errors)."""
        return (time.monotonic() if now is None else now), self.invocations, self.errors

    def sample(self, since: tuple[float, int, int], depth: int, now: float | None = None) -> tuple[float, int, int]:
        """Add the point for the interval since ``since`` (a ``mark``); returns the mark for the next one."""
        mark = self.mark(now)
        elapsed = max(mark[0] - since[0], 1e-9)
        self.samples.append(Sample(time.time(), round((mark[1] - since[1]) / elapsed, 3),
                                   round((mark[2] - since[2]) / elapsed, 3), depth))
        return mark

    def chart(self) -> list[dict[str, float]]:
        """The ring as JSON rows, oldest first."""
        return [{"t": round(s.time, 3), "events_per_s": s.events_per_s, "errors_per_s": s.errors_per_s,
                 "depth": s.depth} for s in self.samples]


def nearest_rank(values: list[float], q: float) -> float:
    """The nearest-rank percentile of sorted ``values``."""
    return values[min(len(values) - 1, max(0, int(q * len(values) + 0.999999) - 1))]


def failure(function: str, result: Any) -> dict[str, Any]:
    """A failed invocation as the page lists it: when, which request, and the error Lambda reports."""
    error_type, message = result.function_error or "Error", ""
    try:
        body = bounded_json.loads(result.payload)
    except ValueError:  # not JSON, or too deep to be an error object
        body = None
    if isinstance(body, dict):
        error_type = str(body.get("errorType") or error_type)
        message = str(body.get("errorMessage") or "")
    elif result.payload:
        message = result.payload[:MESSAGE_CHARS].decode(errors="replace")
    return {"time": round(time.time(), 3), "function": function, "request_id": result.request_id,
            "error_type": error_type, "error_message": message[:MESSAGE_CHARS]}
