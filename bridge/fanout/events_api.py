"""EventBridge's JSON protocol (AWS JSON 1.1, ``X-Amz-Target: AWSEvents.PutEvents``) over the embedded buses."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from bridge.events import bus as shapes
from bridge.events import payload as bounded_json
from bridge.fanout.bus import Buses, PutEventsTooLarge
from bridge.log import get_logger
from bridge.model import new_request_id

CONTENT_TYPE = "application/x-amz-json-1.1"
TARGET_PREFIX = "AWSEvents."
MAX_BODY = 1_048_576  # bytes of HTTP body read at most (the entries are capped at 256 KB anyway)


class EventsError(Exception):
    """An error EventBridge answers for the whole request."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


class EventsApi:
    """Serves PutEvents; other EventBridge actions are answered as unsupported."""

    def __init__(self, buses: Buses) -> None:
        self.buses = buses
        self.log = get_logger()

    @staticmethod
    def claims(request: web.Request) -> bool:
        """Whether the request is EventBridge's (its ``X-Amz-Target``)."""
        return request.method == "POST" and request.headers.get("X-Amz-Target", "").startswith(TARGET_PREFIX)

    async def handle(self, request: web.Request) -> web.Response:
        """One EventBridge request: its answer, or EventBridge's error shape (4xx) and one log line."""
        rid = new_request_id()
        action = request.headers.get("X-Amz-Target", "").removeprefix(TARGET_PREFIX)
        try:
            if action != "PutEvents":
                raise EventsError("UnknownOperationException", f"{action}: the bridge's buses serve PutEvents "
                                  "only; rules and targets come from the config file (buses:)")
            result = await self.put_events(await _body(request))
        except EventsError as err:
            self.log.info("events_api.error", action=action, code=err.code, error=err.message[:300],
                          request_id=rid)
            body = {"__type": err.code, "message": err.message}
            return web.Response(status=err.status, text=json.dumps(body), content_type=CONTENT_TYPE,
                                headers={"x-amzn-RequestId": rid})
        return web.Response(text=json.dumps(result), content_type=CONTENT_TYPE, headers={"x-amzn-RequestId": rid})

    async def put_events(self, params: dict[str, Any]) -> dict[str, Any]:
        """PutEvents: per-entry results; answered once every accepted entry's deliveries are durable."""
        entries = params.get("Entries")
        if not isinstance(entries, list) or not entries:
            raise EventsError("ValidationException", "1 validation error detected: Value null at 'entries' "
                                                     "failed to satisfy constraint: Member must not be null")
        if len(entries) > shapes.MAX_ENTRIES:
            raise EventsError("ValidationException", f"1 validation error detected: Value at 'entries' failed to "
                              f"satisfy constraint: Member must have length less than or equal to "
                              f"{shapes.MAX_ENTRIES}")
        try:
            results = await self.buses.put_events(entries)
        except PutEventsTooLarge as err:
            raise EventsError("ValidationException", str(err)) from None
        return {"FailedEntryCount": sum("ErrorCode" in r for r in results), "Entries": results}


async def _body(request: web.Request) -> dict[str, Any]:
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise EventsError("ValidationException", "Total size of the entries in the request is over the limit.",
                          413)
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise EventsError("ValidationException", "Total size of the entries in the request is over the limit.",
                          413) from None
    try:
        params = bounded_json.loads(raw or b"{}")
    except ValueError:
        raise EventsError("SerializationException", "The request body is not valid JSON (AWS JSON 1.1)") from None
    if not isinstance(params, dict):
        raise EventsError("SerializationException", "The request body must be a JSON object")
    return params
