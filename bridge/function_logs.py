"""Per-function log files in state_dir/logs/FUNCTION.log, rotated by size, like CloudWatch log groups.

One entry is one line of the file. The runtime client writes a multi-line record (an error with its traceback)
as one entry whose lines are joined with ``\\r`` and indented with no-break spaces, as CloudWatch receives it
from a Lambda runtime without a telemetry pipe; ``as_text`` turns such an entry back into the text it shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import logging.handlers
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

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


RECORD_BREAK = "\r"  # awslambdaric's line separator inside one record (ERROR_LOG_LINE_TERMINATE)
_NBSP_INDENT = re.compile("^\u00a0+", re.M)  # and its indentation (ERROR_LOG_IDENT)


class Entry(NamedTuple):
    """One log entry: its time stamp, request id (``-`` for none) and text (one record, maybe multi-line)."""

    time: str
    request_id: str
    text: str

    def render(self) -> str:
        """``TIME REQUEST_ID TEXT``, the text as the multi-line text it is."""
        return f"{self.time} {self.request_id} {as_text(self.text)}"


def as_text(record: str) -> str:
    """One record as a person reads it: ``\\r``-joined lines on lines of their own, indentation as spaces."""
    if RECORD_BREAK not in record and "\u00a0" not in record:
        return record  # the common case costs one scan
    text = record.rstrip(RECORD_BREAK).replace("\r\n", "\n").replace(RECORD_BREAK, "\n")
    return _NBSP_INDENT.sub(lambda m: " " * len(m.group(0)), text)


def parse_line(line: str) -> Entry | None:
    """The entry of one file line, or None for a line that is not ours."""
    parts = line.rstrip("\n").split("\t", 2)
    return Entry(parts[0], parts[1], parts[2]) if len(parts) == 3 else None


def split_lines(data: bytes) -> tuple[list[str], int]:
    """Complete file lines in ``data`` (split on ``\\n`` only: a ``\\r`` belongs to its record) and the
    number of bytes they use; a last line still being written waits for its newline."""
    end = data.rfind(b"\n") + 1
    return data[:end].decode(errors="replace").split("\n")[:-1] if end else [], end


def entries(lines: list[str]) -> Iterator[Entry]:
    """The entries among file lines (anything else in the file is skipped)."""
    for line in lines:
        entry = parse_line(line)
        if entry is not None:
            yield entry


def history(path: Path) -> Iterator[Entry]:
    """Every entry of a function's log: rotated files oldest first, then the current one."""
    rotated = sorted(path.parent.glob(path.name + ".*"), key=lambda p: -_rotation_number(p))
    for file in [*rotated, path]:
        if file.exists():
            yield from entries(split_lines(file.read_bytes())[0])


def _rotation_number(path: Path) -> int:
    suffix = path.suffix[1:]
    return int(suffix) if suffix.isdigit() else 0


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
