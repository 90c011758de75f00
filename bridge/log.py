"""Structured logging: JSON lines when output is not a terminal, readable console lines when it is."""

from __future__ import annotations

import logging
import sys
from typing import IO, Any

import structlog

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def configure(level: str = "info", stream: IO[str] | None = None, *, json: bool | None = None) -> None:
    """Set up structlog once per process; ``json`` defaults to "stream is not a TTY"."""
    stream = stream or sys.stdout
    if json is None:
        json = not stream.isatty()
    renderer: Any = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )


def get_logger(**bound: Any) -> Any:
    """A logger with ``bound`` keys on every event (e.g. ``function=``)."""
    return structlog.get_logger().bind(**bound)
