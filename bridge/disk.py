"""Room on disk for the store: a reserve set aside for bad days, and the full-disk state, logged once each way."""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESERVE_BYTES = 2 * 1024 * 1024  # released when the disk fills, so that deletes and settles can still commit
RECHECK_S = 0.5  # while full: how often the store looks whether writes that need room may be tried again
RESERVE_RETRY_S = 5.0  # after a recovery without room for the reserve: how often it is tried again


def is_disk_full(err: sqlite3.OperationalError) -> bool:
    """SQLite's SQLITE_FULL ("database or disk is full") and the I/O error a short write can surface as."""
    text = str(err)
    return "full" in text or "disk I/O" in text


class DiskSpace:
    """The store's disk room, used from the store thread; ``full`` is the reason writes are paused, or None.

    SQLite in WAL mode needs room for WAL frames even to commit a DELETE. A file of RESERVE_BYTES is kept
    next to the store; when a write fails for lack of room the reserve is released, so reads, deletes and
    settles keep committing and the backlog drains. Writes that need room resume once the reserve can be set
    aside again, or once the store's own free pages (left by the drained backlog) can hold them.
    """

    def __init__(self, store: Path, conn: sqlite3.Connection, log: Any) -> None:
        self.reserve = store.with_name(store.name + ".reserve")
        self.full: str | None = None
        self.listeners: list[Callable[[str | None], None]] = []
        self._conn = conn
        self._log = log
        self._next_check = 0.0
        self._has_reserve = False
        self._make_reserve()

    def filled(self, err: sqlite3.OperationalError) -> None:
        """A write failed for lack of room: pause growth (said once) and release the reserve."""
        with contextlib.suppress(FileNotFoundError):
            self.reserve.unlink()
        self._has_reserve = False
        self._next_check = time.monotonic() + RECHECK_S
        if self.full is not None:
            return
        self.full = (f"disk full under {self.reserve.parent} ({err}): intake is paused and nothing is lost; "
                     "delivery goes on; free some space to resume")
        self._log.error("store.disk_full", path=str(self.reserve.parent), error=str(err),
                        fix="free space on the filesystem of state_dir; intake resumes by itself")
        self._tell()

    def may_grow(self) -> bool:
        """While full: True when a write that needs room is worth trying again (at most every RECHECK_S)."""
        now = time.monotonic()
        if now < self._next_check:
            return False
        self._next_check = now + RECHECK_S
        return self._make_reserve() or self._free_pages_bytes() >= 2 * RESERVE_BYTES

    def committed(self, *, grew: bool) -> None:
        """A commit went through; one that needed room ends the full state (said once)."""
        if self.full is None:
            if not self._has_reserve and grew and time.monotonic() >= self._next_check:
                self._next_check = time.monotonic() + RESERVE_RETRY_S
                self._make_reserve()  # set aside again once there is room for it
            return
        if not grew:
            return
        self.full = None
        self._log.info("store.disk_recovered", path=str(self.reserve.parent), reserve=self.reserve.exists())
        self._tell()

    def after_full_commit(self) -> None:
        """While full, restart the WAL after each commit so the next one reuses its space instead of growing it."""
        with contextlib.suppress(sqlite3.Error):
            self._conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()

    def _make_reserve(self) -> bool:
        """Set the reserve aside (0600); False when there is no room for it."""
        if self.reserve.exists():
            self._has_reserve = True
            return True
        try:
            fd = os.open(self.reserve, os.O_WRONLY | os.O_CREAT, 0o600)
        except OSError:
            return False
        try:
            _allocate(fd, RESERVE_BYTES)
        except OSError:
            os.close(fd)
            with contextlib.suppress(OSError):
                self.reserve.unlink()
            return False
        os.close(fd)
        self._has_reserve = True
        return True

    def _free_pages_bytes(self) -> int:
        with contextlib.suppress(sqlite3.Error):
            pages = self._conn.execute("PRAGMA freelist_count").fetchone()[0]
            size = self._conn.execute("PRAGMA page_size").fetchone()[0]
            return int(pages) * int(size)
        return 0

    def _tell(self) -> None:
        for listener in self.listeners:
            listener(self.full)


def _allocate(fd: int, size: int) -> None:
    """Really take the blocks (a sparse file would free nothing when deleted)."""
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as err:
        if err.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
            raise
        os.write(fd, b"\0" * size)
        os.fsync(fd)
