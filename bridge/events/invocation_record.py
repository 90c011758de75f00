"""The AWS invocation record that async destinations and the dead-letter store receive (version 1.0)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bridge.events.payload import json_or_text

# The condition of an event the bridge could not handle (not one of AWS's: it is the bridge's failure).
HANDLING_FAILED = "EventHandlingFailed"


def iso_millis(ts: float) -> str:
    """``2019-11-14T18:16:05.568Z``."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def invocation_record(
    *, request_id: str, function_arn: str, condition: str, invoke_count: int, request_payload: bytes,
    last_response: dict[str, Any] | None, now: float,
) -> dict[str, Any]:
    """The record Lambda sends to OnSuccess/OnFailure destinations, with the original event untouched."""
    record: dict[str, Any] = {
        "version": "1.0",
        "timestamp": iso_millis(now),
        "requestContext": {"requestId": request_id, "functionArn": f"{function_arn}:$LATEST",
                           "condition": condition, "approximateInvokeCount": invoke_count},
        "requestPayload": json_or_text(request_payload),
    }
    if last_response is not None:
        context = {"statusCode": last_response["statusCode"], "executedVersion": "$LATEST"}
        if last_response.get("functionError"):
            context["functionError"] = last_response["functionError"]
        record["responseContext"] = context
        if last_response.get("payload") is not None:
            record["responsePayload"] = json_or_text(last_response["payload"])
    else:
        record["responseContext"] = {"statusCode": 429, "executedVersion": "$LATEST"}
    return record


def unhandled_record(*, request_id: str, function_arn: str, invoke_count: int, request_payload: bytes,
                     reason: str, now: float) -> dict[str, Any]:
    """The record kept when the bridge itself failed on this event: built without parsing anything.

    The payload is carried as text, so this cannot fail on the input that made the normal record fail.
    """
    return {
        "version": "1.0",
        "timestamp": iso_millis(now),
        "requestContext": {"requestId": request_id, "functionArn": f"{function_arn}:$LATEST",
                           "condition": HANDLING_FAILED, "approximateInvokeCount": invoke_count},
        "requestPayload": request_payload.decode(errors="replace"),
        "responseContext": {"statusCode": 500, "executedVersion": "$LATEST", "functionError": "BridgeError"},
        "responsePayload": {"errorType": "BridgeError", "errorMessage": reason},
    }
