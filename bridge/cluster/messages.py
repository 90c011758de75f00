"""An async event as an SQS message body and back: Lambda's delivery state travels with the event."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

from bridge.store import QueuedEvent

VERSION = 1
MAX_DELAY = 900  # SQS's DelaySeconds limit; a longer wait is done in hops of at most this
MAX_BODY = 1024 * 1024  # SQS's message size limit (1 MiB)


class MalformedMessage(ValueError):
    """A message on the shared queue that is not an event this bridge wrote."""


def encode(event: QueuedEvent) -> str:
    """The message body: every field of the event; the payload as text when it is UTF-8, else base64."""
    try:
        payload, encoding = event.payload.decode(), "utf-8"
    except UnicodeDecodeError:
        payload, encoding = base64.b64encode(event.payload).decode(), "base64"
    return json.dumps({
        "v": VERSION, "id": event.id, "function": event.function, "request_id": event.request_id,
        "payload": payload, "encoding": encoding, "received_at": event.received_at, "next_at": event.next_at,
        "invoke_count": event.invoke_count, "function_errors": event.function_errors, "throttles": event.throttles,
        "last_response": event.last_response, "handover": event.handover,
    }, separators=(",", ":"))


def decode(body: str) -> QueuedEvent:
    """The event in a message body; MalformedMessage for anything else (bytes from the queue are untrusted)."""
    try:
        data = json.loads(body)
        if not isinstance(data, dict) or data.get("v") != VERSION:
            raise MalformedMessage("not a lambda-bridge event (no or unknown version)")
        raw = data["payload"]
        payload = base64.b64decode(raw, validate=True) if data["encoding"] == "base64" else raw.encode()
        return QueuedEvent(
            _text(data, "id"), _text(data, "function"), payload, _text(data, "request_id"),
            _number(data, "received_at"), _number(data, "next_at"), _count(data, "invoke_count"),
            _count(data, "function_errors"), _count(data, "throttles"), _optional(data, "last_response"),
            _optional(data, "handover"))
    except MalformedMessage:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise MalformedMessage(f"{type(err).__name__}: {err}") from None


def delay_for(event: QueuedEvent, now: float | None = None) -> int:
    """DelaySeconds for sending ``event``: until it is due, capped at SQS's 15 minutes."""
    wait = event.next_at - (time.time() if now is None else now)
    return max(0, min(MAX_DELAY, int(wait + 0.999)))


def _text(data: dict[str, Any], key: str) -> str:
    value = data[key]
    if not isinstance(value, str) or not value or len(value) > 256:
        raise MalformedMessage(f"{key} must be a non-empty string of at most 256 characters")
    return value


def _number(data: dict[str, Any], key: str) -> float:
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise MalformedMessage(f"{key} must be a number")
    return float(value)


def _count(data: dict[str, Any], key: str) -> int:
    value = data.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1_000_000:
        raise MalformedMessage(f"{key} must be a whole number >= 0")
    return value


def _optional(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise MalformedMessage(f"{key} must be a string or null")
    return value
