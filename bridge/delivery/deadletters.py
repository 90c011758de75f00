"""The dead-letter store for the CLI: list, show, redrive and purge, safe while the daemon runs (WAL)."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence

from bridge.errors import BridgeError, UsageError
from bridge.model import new_request_id
from bridge.store import DeadLetter, QueuedEvent, event_row, insert_events, transaction

COLUMNS = "id, function, time, condition, reason, record, attributes"


def _entry(row: Sequence[object]) -> DeadLetter:
    entry_id, function, ts, condition, reason, record, attributes = row
    return DeadLetter(str(entry_id), str(function), float(ts), str(condition), str(reason), json.loads(str(record)),
                      json.loads(str(attributes)) if attributes else None)


def list_entries(conn: sqlite3.Connection, function: str | None = None) -> list[DeadLetter]:
    """Entries not yet redriven, oldest first, optionally of one function."""
    sql = f"SELECT {COLUMNS} FROM dead_letters WHERE redriven_at IS NULL"
    args: tuple[object, ...] = ()
    if function:
        sql, args = sql + " AND function = ?", (function,)
    return [_entry(row) for row in conn.execute(sql + " ORDER BY time", args)]


def get_entry(conn: sqlite3.Connection, entry_id: str) -> DeadLetter:
    """One entry by id; a clear error when there is none."""
    row = conn.execute(f"SELECT {COLUMNS} FROM dead_letters WHERE id = ?", (entry_id,)).fetchone()
    if row is None:
        raise BridgeError(f"no dead letter with id {entry_id!r}; `lambda-bridge dlq list` shows the ids")
    return _entry(row)


def select(conn: sqlite3.Connection, ids: Sequence[str], all_: bool, function: str | None) -> list[DeadLetter]:
    """The entries named by ``ids``, or every listed entry with ``--all``."""
    if all_ == bool(ids):
        raise UsageError("name entry ids or use --all (not both)")
    if all_:
        return list_entries(conn, function)
    entries = [get_entry(conn, i) for i in ids]
    return [e for e in entries if function is None or e.function == function]


def latest(conn: sqlite3.Connection, function: str | None, limit: int) -> tuple[list[DeadLetter], int]:
    """The newest ``limit`` entries not yet redriven (newest first), and how many there are in all."""
    where, args = "redriven_at IS NULL", ()
    if function:
        where, args = where + " AND function = ?", (function,)
    rows = conn.execute(f"SELECT {COLUMNS} FROM dead_letters WHERE {where} ORDER BY time DESC LIMIT ?",
                        (*args, limit))
    total = conn.execute(f"SELECT COUNT(*) FROM dead_letters WHERE {where}", args).fetchone()[0]
    return [_entry(row) for row in rows], int(total)


def redrive(conn: sqlite3.Connection, entries: Sequence[DeadLetter]) -> list[QueuedEvent]:
    """Queue each entry's original event again as a fresh async invocation; mark the entries redriven."""
    events = redrive_events(entries)
    with transaction(conn):
        insert_events(conn, [event_row(e) for e in events])
        mark_redriven(conn, entries)
    return events


def redrive_events(entries: Sequence[DeadLetter]) -> list[QueuedEvent]:
    """A fresh async invocation of each entry's original event (the running daemon queues them itself)."""
    now = time.time()
    events = []
    for entry in entries:
        rid = new_request_id()
        payload = json.dumps(entry.record.get("requestPayload")).encode()
        events.append(QueuedEvent(rid, entry.function, payload, rid, now, now))
    return events


def mark_redriven(conn: sqlite3.Connection, entries: Sequence[DeadLetter]) -> None:
    """Take the entries off the list (they stay in the table, marked with the time)."""
    now = time.time()
    conn.executemany("UPDATE dead_letters SET redriven_at = ? WHERE id = ?", [(now, e.id) for e in entries])


def purge(conn: sqlite3.Connection, entries: Sequence[DeadLetter]) -> int:
    """Delete entries for good."""
    with transaction(conn):
        conn.executemany("DELETE FROM dead_letters WHERE id = ?", [(e.id,) for e in entries])
    return len(entries)


def enqueue_offline(conn: sqlite3.Connection, function: str, payload: bytes) -> QueuedEvent:
    """Queue an async invocation while the daemon is not running; it is delivered when the daemon starts."""
    now = time.time()
    rid = new_request_id()
    event = QueuedEvent(rid, function, payload, rid, now, now)
    with transaction(conn):
        insert_events(conn, [event_row(event)])
    return event
