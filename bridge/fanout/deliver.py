"""Hands fanned-out messages over in one durable commit: function targets to the async queue, queue targets
into the embedded queues, so that a PutEvents or Publish is answered only once all of it is on disk."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bridge.delivery.dispatcher import new_event
from bridge.log import get_logger
from bridge.queues import messages, storage
from bridge.queues.engine import DEDUP_WINDOW, QueueEngine
from bridge.queues.errors import SqsError
from bridge.store import QueuedEvent


@dataclass(slots=True)
class Batch:
    """What one request fans out to: async events for functions, SendMessage entries for queues."""

    events: list[QueuedEvent] = field(default_factory=list)
    messages: list[tuple[str, Mapping[str, Any]]] = field(default_factory=list)

    def to_function(self, function: str, payload: bytes, *, event_id: str,
                    handover: dict[str, Any] | None = None) -> None:
        """An async invocation of ``function`` (``event_id`` makes a repeat of the same delivery a no-op)."""
        self.events.append(new_event(function, payload, event_id=event_id, handover=handover))

    def to_queue(self, queue: str, entry: Mapping[str, Any]) -> None:
        """A SendMessage entry (API shape) for the embedded queue ``queue``."""
        self.messages.append((queue, entry))


class Deliveries:
    """Commits batches through the dispatcher (one group commit) and wakes the queues' receivers."""

    def __init__(self, dispatcher: Any, queues: QueueEngine | None) -> None:
        self.dispatcher = dispatcher
        self.queues = queues
        self.log = get_logger()

    async def commit(self, batch: Batch) -> None:
        """Durable before it returns; a message the queue refuses (past its maximum_message_size) is logged
        and left out, as SNS and EventBridge drop what an endpoint refuses."""
        prepared = self._prepare(batch.messages)
        if not batch.events and not prepared:
            return
        await self.dispatcher.accept_many(batch.events, also=_insert(prepared) if prepared else None)
        for name in {name for name, _ in prepared}:
            assert self.queues is not None
            self.queues.get(name).notify()

    def _prepare(self, entries: list[tuple[str, Mapping[str, Any]]]) -> list[tuple[str, storage.NewMessage]]:
        if not entries:
            return []
        if self.queues is None:
            raise RuntimeError("queue targets need the embedded queues (bridge.queues) installed")
        now = time.time()
        prepared = []
        for name, entry in entries:
            try:
                prepared.append((name, messages.new_message(self.queues.get(name).settings, entry, now)))
            except SqsError as err:
                self.log.warning("fanout.queue_refused", queue=name, code=err.code, error=err.message[:300])
        return prepared


def _insert(prepared: list[tuple[str, storage.NewMessage]]) -> Any:
    def op(conn: sqlite3.Connection) -> None:
        for name, message in prepared:
            storage.insert(conn, name, message, DEDUP_WINDOW)
    return op
