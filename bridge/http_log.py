"""aiohttp's own log records (malformed HTTP, a handler's unhandled error) as one JSON line each, for every listener."""

from __future__ import annotations

import logging

from aiohttp.http_exceptions import HttpProcessingError

from bridge.log import get_logger


class _Structured(logging.Handler):
    """Forwards aiohttp's own log records (bad HTTP, unhandled errors) as one structured event each."""

    def emit(self, record: logging.LogRecord) -> None:
        exc = record.exc_info[1] if record.exc_info else None
        # aiohttp's messages span lines (the offending bytes, a caret under them): one line, whitespace collapsed
        error = " ".join(f"{type(exc).__name__}: {exc}".split())[:1024] if exc else None
        log = get_logger()
        if isinstance(exc, HttpProcessingError):  # the client sent something that is not valid HTTP: a 4xx
            # (aiohttp logs a bad method, TLS to a plain port say, at debug: here it is one line like the rest)
            log.info("http.bad_request", message=record.getMessage(), error=error)
        elif record.levelno <= logging.DEBUG:
            log.debug("http.debug", message=record.getMessage(), error=error)
        else:
            log.error("http.unexpected_error", message=record.getMessage(), error=error)


def server_logger() -> logging.Logger:
    """The logger to give an aiohttp server (``AppRunner(logger=...)``, ``web.Server(logger=...)``): one JSON
    line per event, never a traceback on stderr."""
    logger = logging.Logger("bridge.http", logging.DEBUG)  # not registered globally: one per server
    logger.propagate = False
    logger.addHandler(_Structured())
    return logger
