"""The AWS invocation record that async destinations and the dead-letter store receive (version 1.0)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any


def iso_millis(ts: float) -> str:
    """``2019-11-14T18:16:05.568Z``."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def json_or_text(payload: bytes | str) -> Any:
    """A payload as the record carries it: parsed JSON, or the text when it is not JSON."""
    try:
        return json.loads(payload)
    except ValueError:
        return payload.decode(errors="replace") if isinstance(payload, bytes) else payload


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
