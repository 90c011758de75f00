"""Per-function log files in state_dir/logs/FUNCTION.log, rotated by size, like CloudWatch log groups."""

from __future__ import annotations

import asyncio
import logging
import logging.handlers
import time
from pathlib import Path

MAX_BYTES = 10 * 1024 * 1024
BACKUPS = 5


def log_path(state_dir: Path, function: str) -> Path:
    """Where a function's log lives."""
    return state_dir / "logs" / f"{function}.log"


def format_line(request_id: str | None, text: str, now: float | None = None) -> str:
    """``TIME<TAB>REQUEST_ID<TAB>TEXT``: the file format ``lambda-bridge logs`` reads back."""
    now = time.time() if now is None else now
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"
    return f"{stamp}\t{request_id or '-'}\t{text}"


def parse_line(line: str) -> tuple[str, str, str] | None:
    """(time, request id, text) of one file line, or None for a line that is not ours."""
    parts = line.rstrip("\n").split("\t", 2)
    return (parts[0], parts[1], parts[2]) if len(parts) == 3 else None


class FunctionLog:
    """Appends a function's output and START/END/REPORT lines; writes are coalesced per loop turn."""

    def __init__(self, path: Path, max_bytes: int = MAX_BYTES, backups: int = BACKUPS) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # The standard library's rotation, used through its handler (no logger, so nothing process-global).
        self._handler = logging.handlers.RotatingFileHandler(path, maxBytes=max_bytes, backupCount=backups,
                                                             encoding="utf-8", delay=True)
        self._pending: list[str] = []

    def write(self, request_id: str | None, text: str) -> None:
        """Queue one line; it reaches the file at the end of this event-loop turn."""
        if not self._pending:
            asyncio.get_running_loop().call_soon(self.flush)
        self._pending.append(format_line(request_id, text))

    def flush(self) -> None:
        """Write what is queued as one record (one write; rotation checked once)."""
        if self._pending:
            text, self._pending = "\n".join(self._pending), []
            self._handler.handle(logging.makeLogRecord({"msg": text, "levelno": logging.INFO}))

    def close(self) -> None:
        """Flush and close the file."""
        self.flush()
        self._handler.close()
