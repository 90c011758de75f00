"""The HTTP API's last line of defence: an unexpected exception becomes one 500 and one JSON log line, and a path
no endpoint claims one 404."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from bridge.log import get_logger
from bridge.model import new_request_id


def aws_error(status: int, code: str, message: str, request_id: str = "", **extra: Any) -> web.Response:
    """An error in the rest-json shape botocore parses (code from x-amzn-ErrorType, ``message``)."""
    body = {"Type": "User" if status < 500 else "Service", "message": message, **extra}
    headers = {"x-amzn-ErrorType": code, "x-amzn-RequestId": request_id or new_request_id()}
    return web.json_response(body, status=status, headers=headers)


@web.middleware
async def unexpected_errors(request: web.Request, handler: web.Handler) -> web.StreamResponse:
    """Answer a handler's unexpected exception with a 500 (rest-json, as Lambda's ServiceException) and log it
    once, as a structured event: never a traceback on stderr, never a dropped connection.

    Bad requests are the handlers' job (4xx with AWS's error shape); this only catches what they missed.
    """
    try:
        return await handler(request)
    except web.HTTPException:
        raise  # aiohttp's own answers (no route, body too large): already well-formed 4xx
    except Exception as err:
        rid = new_request_id()
        get_logger().error("api.unexpected_error", method=request.method, path=request.path, request_id=rid,
                           error=f"{type(err).__name__}: {err}"[:1024])
        return aws_error(500, "ServiceException", "An internal error occurred; the bridge's log has the details "
                         f"under request_id {rid}.", rid)


UNCLAIMED = "unclaimed"  # the name of the app's last route: any path no endpoint has


async def unclaimed(request: web.Request) -> web.StreamResponse:
    """404 for a path no route and no middleware (S3, EventBridge, SNS) claimed."""
    raise web.HTTPNotFound()


def is_unclaimed(request: web.Request) -> bool:
    """Whether no endpoint's route matched the request (its path or its method): only the fallback did."""
    info = request.match_info
    return info.http_exception is not None or info.route.name == UNCLAIMED
