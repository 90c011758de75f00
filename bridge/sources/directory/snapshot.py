"""What a directory source has reported, kept durable in the store: object versions and the sequencer counter."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from typing import Any

from bridge.events.s3 import make_sequencer
from bridge.sources.directory.tree import Version
from bridge.store import Store, StoreOp, statement_chunks

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS directory_objects (source TEXT NOT NULL, key BLOB NOT NULL, size INTEGER NOT NULL,"
    " mtime_ns INTEGER NOT NULL, ino INTEGER NOT NULL, PRIMARY KEY (source, key)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS directory_sources (source TEXT PRIMARY KEY, root BLOB NOT NULL,"
    " counter INTEGER NOT NULL)",
)
UPSERT = "INSERT OR REPLACE INTO directory_objects (source, key, size, mtime_ns, ino) VALUES "
DELETE = "DELETE FROM directory_objects WHERE source=? AND key IN "


class Snapshot:
    """The objects a source has reported (key -> version) and its sequencer, with changes not yet saved.

    Changes are collected in memory and written by ``take_op()``, an op the caller runs in the same transaction
    as the events that report them (``accept_many(also=...)``), so the two are durable together.
    """

    def __init__(self, source: str, root: bytes, objects: dict[bytes, Version], counter: int, fresh: bool) -> None:
        self.source = source
        self.root = root
        self.objects = objects
        self.fresh = fresh  # no snapshot existed (first start, or a new path): take a baseline, report nothing
        # Seeded with the clock so the sequencer also grows if the store is ever lost.
        self.counter = max(counter, time.time_ns() // 1000)
        self._changed: dict[bytes, Version | None] = {}

    @classmethod
    async def load(cls, store: Store, source: str, root: bytes) -> Snapshot:
        """The saved snapshot of ``source``; empty and ``fresh`` if none exists for this root."""
        return await store.call(lambda conn: cls._read(conn, source, root))

    @classmethod
    def _read(cls, conn: sqlite3.Connection, source: str, root: bytes) -> Snapshot:
        for statement in SCHEMA:
            conn.execute(statement)
        row = conn.execute("SELECT root, counter FROM directory_sources WHERE source=?", (source,)).fetchone()
        if row is None or bytes(row[0]) != root:
            return cls(source, root, {}, row[1] if row else 0, fresh=True)
        rows = conn.execute("SELECT key, size, mtime_ns, ino FROM directory_objects WHERE source=?", (source,))
        objects = {bytes(key): Version(size, mtime, ino) for key, size, mtime, ino in rows}
        return cls(source, root, objects, row[1], fresh=False)

    def next_sequencer(self) -> str:
        """A sequencer larger than every one handed out before by this source (so per key too)."""
        self.counter += 1
        return make_sequencer(self.counter)

    def put(self, key: bytes, version: Version) -> None:
        """Record that ``key`` now has ``version``."""
        self.objects[key] = version
        self._changed[key] = version

    def remove(self, key: bytes) -> None:
        """Record that ``key`` is gone."""
        self.objects.pop(key, None)
        self._changed[key] = None

    def under(self, prefix: bytes) -> Iterator[bytes]:
        """Keys inside the relative directory ``prefix``, sorted."""
        start = prefix + b"/"
        return iter(sorted(k for k in self.objects if k.startswith(start)))

    @property
    def dirty(self) -> bool:
        """Whether there are changes ``take_op`` has not handed out yet."""
        return bool(self._changed) or self.fresh

    def take_op(self) -> StoreOp:
        """An op that saves every change since the last call (and the counter); the changes are handed over."""
        changed, self._changed = self._changed, {}
        fresh, self.fresh = self.fresh, False
        source, root, counter = self.source, self.root, self.counter
        objects = dict(self.objects) if fresh else None

        def op(conn: sqlite3.Connection) -> Any:
            if objects is not None:  # a new baseline replaces whatever an old root left behind
                conn.execute("DELETE FROM directory_objects WHERE source=?", (source,))
                _write(conn, source, objects)
            _write(conn, source, changed)
            conn.execute("INSERT OR REPLACE INTO directory_sources (source, root, counter) VALUES (?, ?, ?)",
                         (source, root, counter))

        return op


def _write(conn: sqlite3.Connection, source: str, changes: dict[bytes, Version | None]) -> None:
    puts = [(source, k, v.size, v.mtime_ns, v.ino) for k, v in changes.items() if v is not None]
    gone = [k for k, v in changes.items() if v is None]
    for rows in statement_chunks(puts):
        conn.execute(UPSERT + ",".join(["(?,?,?,?,?)"] * len(rows)), [value for row in rows for value in row])
    for keys in statement_chunks(gone):
        conn.execute(DELETE + f"({','.join('?' * len(keys))})", [source, *keys])
