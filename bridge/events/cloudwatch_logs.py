"""CloudWatch Logs subscription events: ``{"awslogs": {"data": base64(gzip(JSON))}}``, as AWS sends them."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

MAX_EVENT_BYTES = 256 * 1024  # AWS's maximum size of one log event: the message's UTF-8 bytes + 26
EVENT_OVERHEAD = 26  # bytes AWS counts per log event on top of its message
MAX_BATCH_BYTES = 1_048_576  # AWS's PutLogEvents batch: at most 1 MiB of (message + 26) ...
MAX_BATCH_EVENTS = 10_000  # ... and at most 10,000 events
MAX_MESSAGE_BYTES = MAX_EVENT_BYTES - EVENT_OVERHEAD
ID_DIGITS = 56  # AWS's log event ids are 56-digit decimal strings


@dataclass(slots=True)
class LogEvent:
    """One log event: its id, epoch milliseconds, message, and extractedFields (space-delimited patterns)."""

    id: str
    timestamp: int
    message: str
    extracted: dict[str, str] | None = field(default=None)

    def to_json(self) -> dict[str, Any]:
        """The event's JSON entry as AWS writes it (``extractedFields`` only when the filter extracts)."""
        entry: dict[str, Any] = {"id": self.id, "timestamp": self.timestamp, "message": self.message}
        if self.extracted is not None:
            entry["extractedFields"] = self.extracted
        return entry

    @property
    def size(self) -> int:
        """What AWS counts against a batch's byte limit."""
        return len(self.message.encode("utf-8", "replace")) + EVENT_OVERHEAD


def event_id(timestamp_ms: int, origin: str, position: int) -> str:
    """A 56-digit id, ordered by time like AWS's, and the same for the same line of the same origin.

    13 digits of milliseconds, 20 of a hash of the origin (file identity, journal), 23 of the position.
    """
    digest = int.from_bytes(hashlib.blake2b(origin.encode(), digest_size=8).digest(), "big")
    value = (timestamp_ms % 10**13) * 10**43 + (digest % 10**20) * 10**23 + position % 10**23
    return str(value).zfill(ID_DIGITS)


def truncate_message(message: str) -> str:
    """At most AWS's 256 KB log event (UTF-8 bytes, whole characters), as the CloudWatch agent truncates; a lone
    surrogate (a journal's JSON may carry one) becomes '?', so the event is valid UTF-8."""
    try:
        data = message.encode("utf-8")
    except UnicodeEncodeError:
        data = message.encode("utf-8", "replace")
        message = data.decode("utf-8")
    if len(data) <= MAX_MESSAGE_BYTES:
        return message
    return data[:MAX_MESSAGE_BYTES].decode("utf-8", "ignore")


def logs_data(owner: str, log_group: str, log_stream: str, filter_name: str, events: list[LogEvent]) -> dict[str, Any]:
    """The decoded ``awslogs.data`` document (one log group and one stream)."""
    return {"messageType": "DATA_MESSAGE", "owner": owner, "logGroup": log_group, "logStream": log_stream,
            "subscriptionFilters": [filter_name], "logEvents": [event.to_json() for event in events]}


def encode(data: dict[str, Any]) -> dict[str, Any]:
    """The Lambda event for a decoded document: base64 of its gzip'd JSON under ``awslogs.data``."""
    raw = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "replace")
    return {"awslogs": {"data": base64.b64encode(gzip.compress(raw, compresslevel=6, mtime=0)).decode("ascii")}}


def decode(event: dict[str, Any]) -> dict[str, Any]:
    """``awslogs.data`` of an event, decoded (for tests and ``generate-event``)."""
    return json.loads(gzip.decompress(base64.b64decode(event["awslogs"]["data"])))


def batches(events: list[LogEvent]) -> Iterator[list[LogEvent]]:
    """Cut ``events`` (in order) into batches within AWS's limits: 10,000 events and 1 MiB."""
    batch: list[LogEvent] = []
    size = 0
    for event in events:
        if batch and (len(batch) >= MAX_BATCH_EVENTS or size + event.size > MAX_BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(event)
        size += event.size
    if batch:
        yield batch


def payloads(owner: str, log_group: str, log_stream: str, filter_name: str, events: list[LogEvent],
             limit: int) -> Iterator[tuple[list[LogEvent], bytes]]:
    """(events, Lambda payload) per batch; a batch whose encoded payload exceeds ``limit`` is halved."""
    for batch in batches(events):
        yield from _fit(owner, log_group, log_stream, filter_name, batch, limit)


def _fit(owner: str, group: str, stream: str, name: str, batch: list[LogEvent],
         limit: int) -> Iterator[tuple[list[LogEvent], bytes]]:
    payload = json.dumps(encode(logs_data(owner, group, stream, name, batch)), separators=(",", ":")).encode()
    if len(payload) <= limit or len(batch) == 1:
        yield batch, payload
        return
    half = len(batch) // 2
    yield from _fit(owner, group, stream, name, batch[:half], limit)
    yield from _fit(owner, group, stream, name, batch[half:], limit)
