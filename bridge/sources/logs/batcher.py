"""Matching log records wait for the batch window; a commit queues them with the resume point."""

from __future__ import annotations

import functools
import hashlib
import json
import sqlite3
import time
from collections.abc import Callable
from typing import Any

from bridge.delivery.dispatcher import new_event
from bridge.events.cloudwatch_logs import LogEvent, event_id, payloads, truncate_message
from bridge.log import get_logger
from bridge.model import ASYNC_LIMIT
from bridge.sources.base import SourceContext
from bridge.sources.logs.config import LogsSourceConfig
from bridge.sources.logs.pattern import compile_pattern
from bridge.sources.logs.tail import Record
from bridge.store import QueuedEvent

STATE_INTERVAL = 1.0  # seconds lines that matched nothing may wait before their offsets are saved
MAX_PENDING_BYTES = 4 << 20  # matching bytes held before a commit, whatever the window
SAVE_SQL = "INSERT OR REPLACE INTO source_state (source, key, value) VALUES (?, ?, ?)"
Stream = tuple[str, str]  # (log group, log stream)


def _save(source: str, key: str, value: str, conn: sqlite3.Connection) -> None:
    """The resume point, written in the same transaction as the events that hold the lines before it."""
    conn.execute(SAVE_SQL, (source, key, value))


class Batcher:
    """Matching records wait here for the batch window; a commit queues them and saves the resume point."""

    def __init__(self, config: LogsSourceConfig, ctx: SourceContext, state_key: str) -> None:
        self.config = config
        self.ctx = ctx
        self.state_key = state_key
        self.pattern = compile_pattern(config.filter_pattern)
        self.events: dict[Stream, list[LogEvent]] = {}
        self.pending_bytes = 0
        self.first_event: float | None = None  # monotonic time of the oldest matching record waiting
        self.first_line: float | None = None  # ... of the oldest record read since the last commit
        self.log = get_logger(source=config.name, function=config.function)
        ctx.stats.extra.update(lines=0, matched=0, batches=0)

    def offer(self, records: list[Record], stream_of: Callable[[Record], Stream], now: float,
              wall_ms: int | None = None) -> None:
        """Filter the records; keep the matches for the next batch of their log group and stream."""
        if not records:
            return
        self.first_line = self.first_line or now
        match = self.pattern.match
        extracts = self.pattern.extracts
        wall_ms = wall_ms or time.time_ns() // 1_000_000  # the time read, as the CloudWatch agent stamps lines
        matched = 0
        for record in records:
            try:
                fields = match(record.text)
            except Exception as err:  # a bug in matching one line never stops the source: that line is skipped
                self.log.error("logs.match_failed", path=record.path, position=record.position,
                               error=f"{type(err).__name__}: {err}"[:500])
                continue
            if fields is None:
                continue
            message = truncate_message(record.text)
            entry = LogEvent(event_id(wall_ms, record.origin, record.position), wall_ms, message,
                             fields if extracts else None)
            self.events.setdefault(stream_of(record), []).append(entry)
            self.pending_bytes += len(message)
            matched += 1
        extra = self.ctx.stats.extra
        extra["lines"] += len(records)
        extra["matched"] += matched
        if matched and self.first_event is None:
            self.first_event = now

    def deadline(self) -> float | None:
        """When the waiting records must be committed (monotonic)."""
        if self.first_event is not None:
            return self.first_event + self.config.batch_window
        return self.first_line + STATE_INTERVAL if self.first_line is not None else None

    def due(self, now: float) -> bool:
        """The window has passed, or enough is waiting to fill a batch."""
        deadline = self.deadline()
        full = self.pending_bytes >= MAX_PENDING_BYTES or sum(map(len, self.events.values())) >= \
            self.config.batch_size
        return full or (deadline is not None and now >= deadline)

    async def commit(self, state: Any) -> None:
        """Queue the waiting batches and save ``state`` in one transaction; a crash repeats none of them."""
        queued = self._queued_events()
        save = functools.partial(_save, self.config.name, self.state_key, json.dumps(state))
        if queued:
            await self.ctx.dispatcher.accept_many(queued, also=save)
        else:
            await self.ctx.store.call(save)
        self.events.clear()
        self.pending_bytes = 0
        self.first_event = self.first_line = None
        self.ctx.stats.events += len(queued)
        self.ctx.stats.extra["batches"] += len(queued)

    def _queued_events(self) -> list[QueuedEvent]:
        owner, name = self.ctx.config.account_id, self.config.subscription_filter
        queued = []
        for (group, stream), events in self.events.items():
            for batch, payload in payloads(owner, group, stream, name, events, ASYNC_LIMIT):
                digest = hashlib.sha256(f"{self.config.name}\0{group}\0{stream}\0{batch[0].id}".encode()).hexdigest()
                queued.append(new_event(self.config.function, payload, event_id=f"logs-{digest[:40]}"))
        return queued
