"""The embedded queue's tables and the SQL each operation runs (inside one store group commit)."""

from __future__ import annotations

import json
import secrets
import sqlite3
from dataclasses import dataclass, replace
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS queue_queues (
    name TEXT PRIMARY KEY,
    settings TEXT NOT NULL,
    extra TEXT NOT NULL,
    created REAL NOT NULL,
    modified REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS queue_messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    id TEXT NOT NULL UNIQUE,
    body TEXT NOT NULL,
    attributes TEXT NOT NULL,
    md5_body TEXT NOT NULL,
    md5_attributes TEXT,
    sent REAL NOT NULL,
    visible_at REAL NOT NULL,
    expires REAL NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    first_receive REAL,
    receipt TEXT,
    group_id TEXT,
    dedup_id TEXT,
    source_arn TEXT
);
CREATE INDEX IF NOT EXISTS queue_messages_visible ON queue_messages (queue, visible_at);
CREATE INDEX IF NOT EXISTS queue_messages_order ON queue_messages (queue, seq);
CREATE INDEX IF NOT EXISTS queue_messages_expires ON queue_messages (queue, expires);
CREATE TABLE IF NOT EXISTS queue_dedup (
    queue TEXT NOT NULL,
    dedup_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    expires REAL NOT NULL,
    PRIMARY KEY (queue, dedup_id)
);
"""
MESSAGE_COLUMNS = ("seq, id, body, attributes, md5_body, md5_attributes, sent, receive_count, first_receive,"
                   " group_id, dedup_id, source_arn")


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message as SendMessage stores it."""

    id: str
    body: str
    attributes: dict[str, Any]
    md5_body: str
    md5_attributes: str | None
    sent: float
    visible_at: float
    expires: float
    group_id: str | None = None
    dedup_id: str | None = None


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A message as ReceiveMessage hands it out, with the receipt token of this receive."""

    seq: int
    id: str
    body: str
    attributes: dict[str, Any]
    md5_body: str
    md5_attributes: str | None
    sent: float
    receive_count: int
    first_receive: float | None
    group_id: str | None
    dedup_id: str | None
    source_arn: str | None
    receipt: str = ""


@dataclass(frozen=True, slots=True)
class ReceiveSpec:
    """What one receive needs to know about its queue (taken from the queue's settings at call time)."""

    queue: str
    fifo: bool
    limit: int
    visibility: float
    dlq: str | None = None
    max_receive_count: int = 0
    source_arn: str | None = None


def sequence_number(seq: int) -> str:
    """FIFO ``SequenceNumber``: 20 digits, growing with every message."""
    return f"{seq:020d}"


def ensure_schema(conn: sqlite3.Connection) -> None:
    """Create the tables if they are missing (statement by statement: executescript would end the transaction)."""
    for statement in SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)


def load_queues(conn: sqlite3.Connection) -> list[tuple[str, dict, dict, float, float]]:
    """Every persisted queue: (name, settings, extra, created, modified)."""
    rows = conn.execute("SELECT name, settings, extra, created, modified FROM queue_queues").fetchall()
    return [(n, json.loads(s), json.loads(e), c, m) for n, s, e, c, m in rows]


def save_queue(conn: sqlite3.Connection, name: str, settings: dict, extra: dict, created: float,
               modified: float) -> None:
    """Insert or replace a queue's definition."""
    conn.execute("INSERT OR REPLACE INTO queue_queues (name, settings, extra, created, modified)"
                 " VALUES (?, ?, ?, ?, ?)", (name, json.dumps(settings), json.dumps(extra), created, modified))


def drop_queue(conn: sqlite3.Connection, name: str) -> None:
    """Delete a queue with its messages and deduplication records."""
    for table, column in (("queue_queues", "name"), ("queue_messages", "queue"), ("queue_dedup", "queue")):
        conn.execute(f"DELETE FROM {table} WHERE {column}=?", (name,))


def insert(conn: sqlite3.Connection, queue: str, message: NewMessage, dedup_window: float) -> tuple[str, int]:
    """Store one message; a FIFO duplicate within the window returns the original (id, seq) instead."""
    if message.dedup_id is not None:
        row = conn.execute("SELECT message_id, seq FROM queue_dedup WHERE queue=? AND dedup_id=? AND expires>?",
                           (queue, message.dedup_id, message.sent)).fetchone()
        if row is not None:
            return row[0], row[1]
    cursor = conn.execute(
        "INSERT INTO queue_messages (queue, id, body, attributes, md5_body, md5_attributes, sent, visible_at,"
        " expires, group_id, dedup_id) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        (queue, message.id, message.body, json.dumps(message.attributes), message.md5_body,
         message.md5_attributes, message.sent, message.visible_at, message.expires, message.group_id,
         message.dedup_id))
    seq = cursor.lastrowid or 0
    if message.dedup_id is not None:
        conn.execute("INSERT OR REPLACE INTO queue_dedup (queue, dedup_id, message_id, seq, expires)"
                     " VALUES (?,?,?,?,?)", (queue, message.dedup_id, message.id, seq, message.sent + dedup_window))
    return message.id, seq


def receive(conn: sqlite3.Connection, spec: ReceiveSpec, now: float) -> tuple[list[StoredMessage], int]:
    """Hand out up to ``spec.limit`` visible messages (FIFO: skipping groups in flight); returns (taken, moved).

    A message already received ``max_receive_count`` times moves to the dead-letter queue instead.
    """
    conn.execute("DELETE FROM queue_messages WHERE queue=? AND expires<=?", (spec.queue, now))
    blocked = _groups_in_flight(conn, spec.queue, now) if spec.fifo else set()
    taken: list[StoredMessage] = []
    moved = 0
    # Walk the queue in sequence order and stop at the limit; the (queue, visible_at) index would make SQLite
    # sort every visible message of a long backlog first.
    rows = conn.execute(f"SELECT {MESSAGE_COLUMNS} FROM queue_messages INDEXED BY queue_messages_order"
                        " WHERE queue=? AND visible_at<=? ORDER BY seq", (spec.queue, now))
    for row in rows:
        message = _stored(row)
        if message.group_id in blocked:
            continue
        if spec.dlq is not None and message.receive_count >= spec.max_receive_count:
            moved += 1
            continue
        taken.append(message)
        if len(taken) >= spec.limit:
            break
    rows.close()
    if moved:
        _move_to_dlq(conn, spec, now)
    return _mark_received(conn, taken, now, spec.visibility), moved


def _groups_in_flight(conn: sqlite3.Connection, queue: str, now: float) -> set[str | None]:
    rows = conn.execute("SELECT DISTINCT group_id FROM queue_messages WHERE queue=? AND visible_at>?"
                        " AND receive_count>0", (queue, now))
    return {group for (group,) in rows}


def _move_to_dlq(conn: sqlite3.Connection, spec: ReceiveSpec, now: float) -> None:
    conn.execute("UPDATE queue_messages SET queue=?, receive_count=0, first_receive=NULL, receipt=NULL,"
                 " source_arn=? WHERE queue=? AND visible_at<=? AND receive_count>=?",
                 (spec.dlq, spec.source_arn, spec.queue, now, spec.max_receive_count))


def _mark_received(conn: sqlite3.Connection, taken: list[StoredMessage], now: float,
                   visibility: float) -> list[StoredMessage]:
    out = []
    for message in taken:
        out.append(replace(message, receipt=secrets.token_hex(8), receive_count=message.receive_count + 1,
                           first_receive=message.first_receive or now))
    conn.executemany("UPDATE queue_messages SET receive_count=?, first_receive=?, visible_at=?, receipt=?"
                     " WHERE seq=?", [(m.receive_count, m.first_receive, now + visibility, m.receipt, m.seq)
                                      for m in out])
    return out


def _stored(row: tuple[Any, ...]) -> StoredMessage:
    seq, mid, body, attributes, *rest = row
    return StoredMessage(seq, mid, body, json.loads(attributes), *rest)


def next_visible(conn: sqlite3.Connection, queue: str, now: float) -> float | None:
    """When the next message of ``queue`` becomes visible (delay or visibility timeout ending)."""
    return conn.execute("SELECT MIN(visible_at) FROM queue_messages WHERE queue=? AND visible_at>?",
                        (queue, now)).fetchone()[0]


def delete(conn: sqlite3.Connection, queue: str, message_id: str, token: str) -> None:
    """Delete a message if ``token`` is its latest receipt (an older handle succeeds without deleting, as SQS)."""
    conn.execute("DELETE FROM queue_messages WHERE queue=? AND id=? AND receipt=?", (queue, message_id, token))


def change_visibility(conn: sqlite3.Connection, queue: str, message_id: str, token: str, now: float,
                      timeout: float) -> str:
    """Set a received message's visibility to ``now + timeout``; returns ok, not_in_flight or gone."""
    row = conn.execute("SELECT receipt, visible_at FROM queue_messages WHERE queue=? AND id=?",
                       (queue, message_id)).fetchone()
    if row is None or row[0] != token:
        return "gone"
    if row[1] <= now:
        return "not_in_flight"
    conn.execute("UPDATE queue_messages SET visible_at=? WHERE queue=? AND id=?", (now + timeout, queue, message_id))
    return "ok"


def purge(conn: sqlite3.Connection, queue: str) -> int:
    """Delete every message of ``queue``; returns how many."""
    return conn.execute("DELETE FROM queue_messages WHERE queue=?", (queue,)).rowcount


def counts(conn: sqlite3.Connection, queue: str, now: float) -> tuple[int, int, int]:
    """(visible, in flight, delayed) messages of ``queue``, not counting expired ones."""
    row = conn.execute(
        "SELECT COALESCE(SUM(visible_at<=?),0), COALESCE(SUM(visible_at>? AND receive_count>0),0),"
        " COALESCE(SUM(visible_at>? AND receive_count=0),0) FROM queue_messages WHERE queue=? AND expires>?",
        (now, now, now, queue, now)).fetchone()
    return int(row[0]), int(row[1]), int(row[2])
