"""Per-function log files in state_dir/logs/FUNCTION.log, rotated by size, like CloudWatch log groups."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import logging.handlers
import time
from pathlib import Path

from bridge.private import DIR_MODE, private_dir, private_file, tighten

MAX_BYTES = 10 * 1024 * 1024
BACKUPS = 5
FLUSH_S = 0.05  # a crash loses at most this much of a function's file log (the journal has it all)


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
    """Appends a function's output and START/END/REPORT lines, written in batches at most FLUSH_S apart."""

    def __init__(self, path: Path, max_bytes: int = MAX_BYTES, backups: int = BACKUPS) -> None:
        tighten(private_dir(path.parent), DIR_MODE)  # function output may hold payloads: this user's only
        private_file(path)  # the handler opens it for append, keeping the 0600 it has
        # The standard library's rotation, used through its handler (no logger, so nothing process-global).
        self._handler = logging.handlers.RotatingFileHandler(path, maxBytes=max_bytes, backupCount=backups,
                                                             encoding="utf-8")
        self._max_bytes = max_bytes
        self._size = path.stat().st_size
        self._pending: list[str] = []

    def write(self, request_id: str | None, text: str) -> None:
        """Queue one line; it reaches the file within FLUSH_S (one write for everything queued)."""
        if not self._pending:
            asyncio.get_running_loop().call_later(FLUSH_S, self.flush)
        self._pending.append(format_line(request_id, text))

    def flush(self) -> None:
        """Write what is queued; rotate (the handler's doRollover) once the file passes max_bytes."""
        if not self._pending:
            return
        text, self._pending = "\n".join(self._pending) + "\n", []
        stream = self._handler.stream
        try:
            stream.write(text)
            stream.flush()
        except OSError:  # a full disk: these lines are lost (the store says so once); never a traceback
            return
        self._size += len(text.encode())
        if self._size >= self._max_bytes:
            self._handler.doRollover()
            tighten(Path(self._handler.baseFilename))  # reopened with the umask's mode, in our 0700 directory
            self._size = 0

    def close(self) -> None:
        """Flush and close the file."""
        self.flush()
        with contextlib.suppress(OSError):  # what a full disk kept in the buffer cannot be written now either
            self._handler.close()
