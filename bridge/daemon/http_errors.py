"""The HTTP API's last line of defence: an unexpected exception or malformed HTTP becomes one JSON log line."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

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


class _Structured(logging.Handler):
    """Forwards aiohttp's own log records (bad HTTP, unhandled errors) as one structured event each."""

    def emit(self, record: logging.LogRecord) -> None:
        exc = record.exc_info[1] if record.exc_info else None
        error = f"{type(exc).__name__}: {exc}".splitlines()[0][:1024] if exc else None
        log = get_logger()
        if record.levelno <= logging.DEBUG:
            log.debug("http.debug", message=record.getMessage(), error=error)
        elif isinstance(exc, HttpProcessingError):  # the client sent something that is not valid HTTP: a 4xx
            log.info("http.bad_request", message=record.getMessage(), error=error)
        else:
            log.error("http.unexpected_error", message=record.getMessage(), error=error)


def server_logger() -> logging.Logger:
    """The logger to give aiohttp's server (``AppRunner(logger=...)``): one JSON line per event, no traceback."""
    logger = logging.Logger("bridge.http", logging.DEBUG)  # not registered globally: one per server
    logger.propagate = False
    logger.addHandler(_Structured())
    return logger
