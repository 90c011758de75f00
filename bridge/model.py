"""Value types that flow through the pipeline: Invocation in, InvokeResult out."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from bridge.events import payload as bounded_json

SYNC_LIMIT = 6 * 1024 * 1024
ASYNC_LIMIT = 1024 * 1024


def new_request_id() -> str:
    """A Lambda-style request id (a UUID4)."""
    return str(uuid.uuid4())


@dataclass(frozen=True, slots=True)
class Invocation:
    """One call of one function: the payload and what the caller asked for."""

    payload: bytes
    request_id: str = field(default_factory=new_request_id)
    client_context: str | None = None  # base64 JSON, passed through as Lambda does
    log_tail: bool = False


@dataclass(frozen=True, slots=True)
class InvokeResult:
    """What the function answered; ``function_error`` is set (``Unhandled``) when it failed."""

    request_id: str
    payload: bytes
    function_error: str | None = None
    log_tail: str | None = None
    duration_ms: float = 0.0
    executed_version: str = "$LATEST"

    @property
    def ok(self) -> bool:
        """True when the function returned without error."""
        return self.function_error is None

    @property
    def error_type(self) -> str | None:
        """``errorType`` from the error body, if the body is a Lambda error object."""
        if self.ok:
            return None
        try:
            body = bounded_json.loads(self.payload)
        except ValueError:  # not JSON, or too deep to be an error object
            return None
        return body.get("errorType") if isinstance(body, dict) else None


def error_body(error_type: str | None, message: str) -> bytes:
    """A Lambda error payload, as the runtime reports errors it raises itself."""
    body: dict[str, Any] = {"errorMessage": message}
    if error_type:
        body["errorType"] = error_type
    return json.dumps(body).encode()
