"""Structured logging: JSON lines when output is not a terminal, readable console lines when it is.

Severity says what an operator must look at (``journalctl -p warning`` shows exactly the failures):

- error: an event given up on (``delivery.failed``: dead letter, dropped by age, retries exhausted), a source
  that crashed (``source.crashed``), an invalid reload, a full disk;
- warning: a function error or timeout (``invoke.report`` with ``status``), a retry (``delivery.retrying``),
  a throttle (``delivery.throttled``), a connection lost and retried;
- info and below: everything that went well.

Under systemd, each line starts with the syslog priority (``<4>`` for a warning, as sd-daemon.h's
``SD_WARNING``) when the stream is connected to the journal, so journald files it at that priority.
"""

from __future__ import annotations

import logging
import os
import sys
import textwrap
from typing import IO, Any

import structlog

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
# syslog priorities (sd-daemon.h: SD_ERR "<3>", SD_WARNING "<4>", SD_INFO "<6>", SD_DEBUG "<7>") by method name
PRIORITIES = {"critical": 2, "exception": 3, "error": 3, "err": 3, "warning": 4, "warn": 4, "notice": 5,
              "info": 6, "msg": 6, "debug": 7}


def configure(level: str = "info", stream: IO[str] | None = None, *, json: bool | None = None) -> None:
    """Set up structlog once per process; ``json`` defaults to "stream is not a TTY"."""
    stream = stream or sys.stdout
    if json is None:
        json = not stream.isatty()
    renderer: Any = structlog.processors.JSONRenderer() if json else MultilineConsoleRenderer()
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        renderer,
    ]
    if connected_to_journal(stream):
        processors.append(prefix_priority)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )


def get_logger(**bound: Any) -> Any:
    """A logger with ``bound`` keys on every event (e.g. ``function=``)."""
    return structlog.get_logger().bind(**bound)


def connected_to_journal(stream: IO[str], environ: dict[str, str] | None = None) -> bool:
    """True when ``stream`` is the journal's stream socket: systemd sets ``JOURNAL_STREAM=dev:inode`` for it
    (systemd.exec(5)); a stream redirected elsewhere by a child or a shell no longer matches."""
    value = (os.environ if environ is None else environ).get("JOURNAL_STREAM", "")
    try:
        device, inode = (int(part) for part in value.split(":"))
        stat = os.fstat(stream.fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (stat.st_dev, stat.st_ino) == (device, inode)


def prefix_priority(_logger: Any, method: str, rendered: str) -> str:
    """``<N>`` before every line of a rendered event (journald's SyslogLevelPrefix= reads it per line)."""
    prefix = f"<{PRIORITIES.get(method, 6)}>"
    return "\n".join(prefix + line for line in rendered.split("\n"))


class MultilineConsoleRenderer:
    """structlog's console renderer, with multi-line values (a traceback a function printed) shown below the
    event as indented text instead of one escaped string."""

    def __init__(self) -> None:
        self._inner = structlog.dev.ConsoleRenderer()

    def __call__(self, logger: Any, method: str, event: dict[str, Any]) -> str:
        blocks = {k: event.pop(k) for k in [k for k, v in event.items()
                                            if k != "event" and isinstance(v, str) and "\n" in v]}
        text = self._inner(logger, method, event)
        for key, value in blocks.items():
            text += f"\n  {key}:\n" + textwrap.indent(value.rstrip("\n"), "    ", lambda _line: True)
        return text
