"""SQLite (WAL) persistence: the durable async queue, dead letters and per-source state, with group commit."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import EllipsisType
from typing import Any, TypeVar

from bridge.disk import DiskSpace, is_disk_full
from bridge.errors import IntakeStopped
from bridge.log import get_logger
from bridge.private import private_dir, private_file, tighten

T = TypeVar("T")
Op = Callable[[sqlite3.Connection], Any]
StoreOp = Op

LINGER_S = 0.005  # a delivered event's delete waits at most this long for others to share its commit
LINGER_MAX = 256  # ... or until this many are waiting
FULL_RETRY_FIRST, FULL_RETRY_CAP = 0.25, 2.0  # seconds: a write that found the disk full tries again

SCHEMA = """
CREATE TABLE IF NOT EXISTS async_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    function TEXT NOT NULL,
    payload BLOB NOT NULL,
    request_id TEXT NOT NULL,
    received_at REAL NOT NULL,
    next_at REAL NOT NULL,
    invoke_count INTEGER NOT NULL DEFAULT 0,
    function_errors INTEGER NOT NULL DEFAULT 0,
    throttles INTEGER NOT NULL DEFAULT 0,
    last_response TEXT
);
CREATE INDEX IF NOT EXISTS async_due ON async_events (function, next_at);
CREATE TABLE IF NOT EXISTS dead_letters (
    id TEXT PRIMARY KEY,
    function TEXT NOT NULL,
    time REAL NOT NULL,
    condition TEXT NOT NULL,
    reason TEXT NOT NULL,
    record TEXT NOT NULL,
    redriven_at REAL
);
CREATE TABLE IF NOT EXISTS source_state (
    source TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (source, key)
);
"""


@dataclass(frozen=True, slots=True)
class QueuedEvent:
    """One asynchronous invocation waiting in the queue, with its delivery history."""

    id: str
    function: str
    payload: bytes
    request_id: str
    received_at: float
    next_at: float
    invoke_count: int = 0
    function_errors: int = 0
    throttles: int = 0
    last_response: str | None = None  # JSON: {"statusCode", "functionError", "payload"} of the last attempt
    # JSON: an origin's own hand-over retry policy (EventBridge Scheduler's RetryPolicy), or None:
    # {"max_attempts", "max_age", "rule_arn", "target_arn"}
    handover: str | None = None

    def after_attempt(self, next_at: float, *, invoke_count: int | None = None, function_errors: int | None = None,
                      throttles: int | None = None, last_response: str | EllipsisType | None = ...) -> QueuedEvent:
        """The same event, rescheduled with updated counters (once per attempt: cheaper than ``replace``)."""
        return QueuedEvent(
            self.id, self.function, self.payload, self.request_id, self.received_at, next_at,
            self.invoke_count if invoke_count is None else invoke_count,
            self.function_errors if function_errors is None else function_errors,
            self.throttles if throttles is None else throttles,
            self.last_response if last_response is ... else last_response, self.handover)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An event that ended without success: its AWS invocation record and why."""

    id: str
    function: str
    time: float
    condition: str
    reason: str
    record: dict[str, Any]
    attributes: dict[str, str] | None = None  # the origin's DLQ message attributes (EventBridge's RULE_ARN, ...)

    def to_json(self) -> dict[str, Any]:
        """The entry as ``dlq list --json`` prints it."""
        extra = {"attributes": self.attributes} if self.attributes else {}
        return {**extra, "id": self.id, "function": self.function, "time": _iso(self.time),
                "condition": self.condition,
                "reason": self.reason, "record": self.record}


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1000) % 1000:03d}Z"


def connect(path: Path) -> sqlite3.Connection:
    """Open the store file: WAL, fsync on every commit (synchronous=FULL), wait on locks.

    The file is 0600 in a 0700 directory when created (it holds payloads and dead letters); SQLite gives
    its -wal and -shm files the store's mode. Files of an older, world-readable store are tightened.
    """
    private_file(private_dir(path.parent) / path.name)
    for extra in ("-wal", "-shm"):
        tighten(path.with_name(path.name + extra))
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=30000")
    conn.executescript(SCHEMA)
    _add_columns(conn)
    return conn


# Columns added after the first release: (table, column, type). Old store files get them on open.
ADDED_COLUMNS = (("async_events", "handover", "TEXT"), ("dead_letters", "attributes", "TEXT"))


def _add_columns(conn: sqlite3.Connection) -> None:
    for table, column, kind in ADDED_COLUMNS:
        existing = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        if column not in existing:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error) on an autocommit connection."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:  # also when COMMIT itself failed (a full disk): never leave it open
            conn.execute("ROLLBACK")
        raise


def store_path(state_dir: Path) -> Path:
    """Where the store lives inside ``state_dir``."""
    return state_dir / "bridge.sqlite3"


def connect_existing(path: Path | None) -> sqlite3.Connection:
    """The store file for a command that reads it (or changes only entries it holds).

    When there is no file (or no path: an unknown state_dir), an empty store in memory: nothing is created,
    as a mistyped or unknown state_dir must not make a new store that then looks like the daemon's, empty.
    """
    if path is not None and path.is_file():
        return connect(path)
    conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
    conn.executescript(SCHEMA)
    _add_columns(conn)
    return conn


RESCHEDULE_IN_PLACE = 16 * 1024  # bytes of a rescheduled event's last response still counted as "in place"


def _large(event: QueuedEvent) -> bool:
    """The reschedule carries a response big enough to grow the store (a function error's payload)."""
    return len(event.last_response or "") > RESCHEDULE_IN_PLACE


class Store:
    """The daemon's store: every write goes through one thread and is group-committed with one fsync.

    A full disk pauses only the writes that need room (``grows``): reads, deletes and the settles that
    free space go on committing, so the backlog drains; ``full`` says why while it lasts (readiness).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn = connect(path)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="store")
        self._pending: list[Pending] = []
        self._deletes: list[tuple[str, asyncio.Future[Any]]] = []
        self._durable_pending = False
        self._synchronous = "FULL"
        self._wake = asyncio.Event()
        self._linger: asyncio.TimerHandle | None = None
        self._delete_batch: asyncio.Future[None] | None = None  # the future the lingering deletes share
        self._writer: asyncio.Task[None] | None = None
        self._intake_stopped = asyncio.Event()
        self.log = get_logger()
        self.commits = 0
        self.space = DiskSpace(path, self._conn, self.log)

    @property
    def full(self) -> str | None:
        """Why writes that need room are paused (the disk is full), or None."""
        return self.space.full

    def on_full_change(self, callback: Callable[[str | None], None]) -> None:
        """Call ``callback(reason or None)`` in the event loop whenever the disk fills up or has room again."""
        loop = asyncio.get_running_loop()
        self.space.listeners.append(lambda state: loop.call_soon_threadsafe(callback, state))

    async def __aenter__(self) -> Store:
        self._writer = asyncio.get_running_loop().create_task(self._write_loop())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Flush what is pending, stop the writer, close the file."""
        if self._writer is not None:
            await self.call(lambda conn: None, durable=False)
            self._writer.cancel()
            self._writer = None
        await asyncio.get_running_loop().run_in_executor(self._executor, self._conn.close)
        self._executor.shutdown()

    async def call(self, op: Callable[[sqlite3.Connection], T], *, durable: bool = True,
                   grows: bool | None = None, intake: bool = False) -> T:
        """Run ``op`` in the next group commit; returns once it is committed.

        ``durable`` (the default): the commit is fsync'ed before this returns, so it survives power loss.
        ``durable=False`` is for writes whose loss on power failure only repeats work (a delivered event's
        delete: it would be delivered again, which at-least-once allows) and for reads; a batch of only
        such ops commits without an fsync (SQLite WAL with synchronous=NORMAL: still atomic, and durable
        against a crash of the process).
        ``grows`` (default: ``durable``): the op may need disk space; on a full disk it waits, and retries
        until space returns, while ops that do not grow the store keep committing.
        ``intake``: new work from outside, which stops waiting for room when the daemon stops.
        """
        grows = durable if grows is None else grows
        delay = FULL_RETRY_FIRST
        while True:
            result = await self._submit(op, durable, grows)
            if result is not _FULL:
                return result
            await self._pause(delay, intake)  # the disk is full: this write waits (cancellable: stop works)
            delay = min(delay * 2, FULL_RETRY_CAP)

    async def _pause(self, delay: float, intake: bool) -> None:
        """Wait before trying a write that found the disk full again; an ``intake`` write gives up once intake
        stops (IntakeStopped): nothing of it was committed, so its sender can send it again."""
        if not intake:
            await asyncio.sleep(delay)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._intake_stopped.wait(), delay)
        if self._intake_stopped.is_set():
            raise IntakeStopped(f"the daemon is stopping, and the disk under {self.path.parent} is full")

    def stop_intake(self) -> None:
        """The daemon stops: intake writes still waiting for room on a full disk give up (IntakeStopped)."""
        self._intake_stopped.set()

    def _submit(self, op: Op, durable: bool, grows: bool) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append(Pending(op, future, grows))
        self._durable_pending = self._durable_pending or durable
        self._wake.set()
        return future

    async def delete_event(self, event_id: str) -> None:
        """Remove a delivered event (see ``delete_soon``); returns once the delete is committed."""
        await asyncio.shield(self.delete_soon(event_id))  # shared: a cancelled caller must not cancel it

    def delete_soon(self, event_id: str) -> asyncio.Future[None]:
        """Remove a delivered event; the future resolves once the delete is committed, never before.

        Deletes linger up to LINGER_S (or until LINGER_MAX wait) so that the settles of the moment, across
        all functions, share one commit, without fsync: a delete lost to a power cut repeats one delivery.
        The deletes of one commit share one future (one wake-up for the batch, not one per event); await
        it through ``asyncio.shield``.
        """
        if self._delete_batch is None:
            self._delete_batch = asyncio.get_running_loop().create_future()
        self._queue_delete(event_id, self._delete_batch)
        return self._delete_batch

    def _queue_delete(self, event_id: str, future: asyncio.Future[Any]) -> None:
        self._deletes.append((event_id, future))
        if len(self._deletes) >= LINGER_MAX:
            self._wake.set()
        elif self._linger is None:
            self._linger = asyncio.get_running_loop().call_later(LINGER_S, self._wake.set)

    async def _write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._linger is not None:
                self._linger.cancel()
                self._linger = None
            batch, self._pending = self._pending, []
            deletes, self._deletes = self._deletes, []
            self._delete_batch = None  # deletes from now on wait for the next commit
            durable, self._durable_pending = self._durable_pending, False
            if not (batch or deletes):
                continue
            try:
                results = await loop.run_in_executor(self._executor, self._commit_batch, batch, deletes, durable)
            except Exception as err:  # a broken store must not leave every caller waiting forever
                results = [_Failed(err)] * (len(batch) + len(deletes))
            self._resolve([p.future for p in batch], results[:len(batch)])
            self._resolve_deletes(deletes, results[len(batch):])

    def _resolve_deletes(self, deletes: list[tuple[str, asyncio.Future[Any]]], results: list[Any]) -> None:
        """Deletes that found no room at all (not even the reserve's) are tried again a little later."""
        loop = asyncio.get_running_loop()
        for (event_id, future), result in zip(deletes, results, strict=True):
            if result is _FULL:
                loop.call_later(FULL_RETRY_FIRST, self._queue_delete, event_id, future)
            else:
                self._resolve([future], [result])

    def _commit_batch(self, batch: list[Pending], deletes: list[tuple[str, Any]], durable: bool) -> list[Any]:
        """One transaction for the whole batch; on a full disk, again without the ops that need room."""
        wanted = "FULL" if durable else "NORMAL"
        if wanted != self._synchronous:  # per connection, between transactions: decides this commit's fsync
            self._conn.execute(f"PRAGMA synchronous={wanted}")
            self._synchronous = wanted
        if self.space.full is None or self.space.may_grow():
            try:
                results = self._transaction(batch, deletes)
                self.space.committed(grew=any(p.grows for p in batch))
                return results
            except sqlite3.OperationalError as err:
                if not is_disk_full(err):
                    raise
                self.space.filled(err)
        return self._commit_without_growth(batch, deletes)

    def _commit_without_growth(self, batch: list[Pending], deletes: list[tuple[str, Any]]) -> list[Any]:
        """Full disk: commit reads and deletes alone (they free pages), answer _FULL to the rest."""
        keep = [p for p in batch if not p.grows]
        try:
            done = iter(self._transaction(keep, deletes))
            self.space.after_full_commit()
        except sqlite3.OperationalError as err:
            if not is_disk_full(err):
                raise
            return [_FULL] * (len(batch) + len(deletes))
        return [_FULL if p.grows else next(done) for p in batch] + [next(done) for _ in deletes]

    def _transaction(self, batch: list[Pending], deletes: list[tuple[str, Any]]) -> list[Any]:
        """Commit the batch; an op that raises fails alone (the others commit), at the price of a second try.

        The first try runs the ops bare: a savepoint per op costs two statement steps, and each step waits
        for the event loop to hand back the GIL, which made small ops (one MQTT message) several times
        dearer. Only when an op raises is the batch run again with each op in its own savepoint. Ops are
        database work on values captured beforehand, so running one twice is safe.
        """
        ids = [event_id for event_id, _ in deletes]
        try:
            with transaction(self._conn) as conn:
                results = [p.op(conn) for p in batch]
                delete_events(conn, ids)
        except sqlite3.OperationalError:
            raise  # disk full and friends: the whole batch is retried (see _commit_batch)
        except Exception:
            with transaction(self._conn) as conn:
                results = [_apply(p.op, conn) for p in batch]
                delete_events(conn, ids)
        self.commits += 1
        return results + [None] * len(deletes)

    @staticmethod
    def _resolve(futures: list[asyncio.Future[Any]], results: list[Any]) -> None:
        for future, result in zip(futures, results, strict=True):
            if future.done():
                continue
            if isinstance(result, _Failed):
                future.set_exception(result.error)
            else:
                future.set_result(result)

    # --- the async queue -------------------------------------------------------------------------

    async def enqueue(self, events: Iterable[QueuedEvent], also: Op | None = None) -> list[QueuedEvent]:
        """Insert events and run ``also`` atomically; returns the events that were new (intake: see ``call``).

        An event whose id is already queued (or repeated in ``events``) is left out: it is not queued twice.
        """
        first: dict[str, QueuedEvent] = {}
        for event in events:
            first.setdefault(event.id, event)
        unique = list(first.values())

        def op(conn: sqlite3.Connection) -> list[QueuedEvent]:
            queued = existing_ids(conn, [e.id for e in unique])
            new = [e for e in unique if e.id not in queued]
            insert_events(conn, [event_row(e) for e in new])
            if also is not None:
                also(conn)
            return new

        return await self.call(op, intake=True)

    async def due(self, function: str, now: float, exclude: Iterable[str], limit: int) -> list[QueuedEvent]:
        """Events of ``function`` due by ``now``, oldest first, skipping ids already being handled."""
        skip = list(exclude)
        sql = (f"SELECT {EVENT_COLUMNS} FROM async_events WHERE function = ? AND next_at <= ?"
               f" AND id NOT IN ({','.join('?' * len(skip))}) ORDER BY next_at, seq LIMIT ?")
        rows = await self.call(lambda conn: conn.execute(sql, (function, now, *skip, limit)).fetchall(),
                               durable=False)
        return [QueuedEvent(*row) for row in rows]

    async def next_due(self, function: str, exclude: Iterable[str]) -> float | None:
        """When the next event of ``function`` (not already handled) becomes due."""
        skip = list(exclude)
        sql = (f"SELECT MIN(next_at) FROM async_events WHERE function = ?"
               f" AND id NOT IN ({','.join('?' * len(skip))})")
        return await self.call(lambda conn: conn.execute(sql, (function, *skip)).fetchone()[0], durable=False)

    async def settle(self, event_id: str, *, reschedule: QueuedEvent | None = None,
                     dead_letter: DeadLetter | None = None, follow_up: Iterable[QueuedEvent] = ()) -> None:
        """Atomically: remove (or reschedule) the event, record a dead letter, enqueue follow-up events.

        Lost on power failure = the attempt is repeated, so no fsync. A plain removal shares its commit with
        the other settles of the moment; the rest may need room and wait while the disk is full.
        """
        rows = [event_row(e) for e in follow_up]
        if reschedule is None and dead_letter is None and not rows:
            await self.delete_event(event_id)
            return

        def op(conn: sqlite3.Connection) -> None:
            if reschedule is not None:
                conn.execute("UPDATE async_events SET next_at=?, invoke_count=?, function_errors=?, throttles=?,"
                             " last_response=? WHERE id=?", (*_counters(reschedule), event_id))
            else:
                conn.execute("DELETE FROM async_events WHERE id=?", (event_id,))
            if dead_letter is not None:
                insert_dead_letter(conn, dead_letter)
            insert_events(conn, rows)

        # A reschedule rewrites its row nearly in place: it needs no room beyond the reserve, as a delete does.
        # Made to wait, a throttled event on a full disk stayed "being handled" until room came back, which only
        # deliveries make: a backlog of throttled events stopped delivery altogether.
        grows = dead_letter is not None or bool(rows) or (reschedule is not None and _large(reschedule))
        await self.call(op, durable=False, grows=grows)

    async def depth(self) -> tuple[int, float | None]:
        """(events queued, oldest received_at)."""
        sql = "SELECT COUNT(*), MIN(received_at) FROM async_events"
        return await self.call(lambda conn: tuple(conn.execute(sql).fetchone()), durable=False)

    # --- per-source state --------------------------------------------------------------------------

    async def get_state(self, source: str, key: str) -> Any:
        """A source's saved JSON value, or None."""
        sql = "SELECT value FROM source_state WHERE source=? AND key=?"
        row = await self.call(lambda conn: conn.execute(sql, (source, key)).fetchone(), durable=False)
        return json.loads(row[0]) if row else None

    async def put_state(self, source: str, key: str, value: Any) -> None:
        """Save a source's JSON value durably."""
        sql = "INSERT OR REPLACE INTO source_state (source, key, value) VALUES (?, ?, ?)"
        text = json.dumps(value)
        await self.call(lambda conn: conn.execute(sql, (source, key, text)))


@dataclass(slots=True)
class Pending:
    """One op waiting for the next group commit."""

    op: Op
    future: asyncio.Future[Any]
    grows: bool


_FULL = object()  # an op's result when the disk had no room for it: the caller waits and retries

class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def _apply(op: Op, conn: sqlite3.Connection) -> Any:
    """Run one op inside a savepoint so that its failure does not undo the rest of the batch."""
    conn.execute("SAVEPOINT op")
    try:
        result = op(conn)
    except sqlite3.OperationalError:
        raise  # disk full and friends: the whole batch is retried
    except Exception as err:
        conn.execute("ROLLBACK TO op")
        conn.execute("RELEASE op")
        return _Failed(err)
    conn.execute("RELEASE op")
    return result


EVENT_COLUMNS = ("id, function, payload, request_id, received_at, next_at, invoke_count, function_errors,"
                 " throttles, last_response, handover")


def event_row(e: QueuedEvent) -> tuple[Any, ...]:
    return (e.id, e.function, e.payload, e.request_id, e.received_at, *_counters(e), e.handover)


def _counters(e: QueuedEvent) -> tuple[Any, ...]:
    return (e.next_at, e.invoke_count, e.function_errors, e.throttles, e.last_response)


ROWS_PER_STATEMENT = 500  # well under SQLite's 32,766 bound variables (11 per event row)


def statement_chunks(items: list[T]) -> Iterator[list[T]]:
    """``items`` in slices of ROWS_PER_STATEMENT: one multi-row statement each.

    A statement step lets go of the GIL, and the store's thread must then wait for the busy event loop to
    hand it back; so rows go to SQLite many per statement, never one statement (or one step) per row.
    """
    for start in range(0, len(items), ROWS_PER_STATEMENT):
        yield items[start:start + ROWS_PER_STATEMENT]


def insert_events(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> int:
    """Insert event rows (an id already queued is ignored); returns how many were new."""
    before = conn.total_changes
    for chunk in statement_chunks(rows):
        values = ",".join(["(?,?,?,?,?,?,?,?,?,?,?)"] * len(chunk))
        conn.execute(f"INSERT OR IGNORE INTO async_events ({EVENT_COLUMNS}) VALUES {values}",
                     [value for row in chunk for value in row])
    return conn.total_changes - before


def existing_ids(conn: sqlite3.Connection, ids: list[str]) -> set[str]:
    """Which of ``ids`` are queued now (usually none: one statement step per 500 ids)."""
    found: set[str] = set()
    for chunk in statement_chunks(ids):
        sql = f"SELECT id FROM async_events WHERE id IN ({','.join('?' * len(chunk))})"
        found.update(row[0] for row in conn.execute(sql, chunk))
    return found


def delete_events(conn: sqlite3.Connection, ids: list[str]) -> None:
    """Delete events by id, one statement per 500 ids."""
    for chunk in statement_chunks(ids):
        conn.execute(f"DELETE FROM async_events WHERE id IN ({','.join('?' * len(chunk))})", chunk)


def insert_dead_letter(conn: sqlite3.Connection, entry: DeadLetter) -> None:
    """Record a dead letter (its id is unique per ending, so a repeat is ignored)."""
    attributes = json.dumps(entry.attributes) if entry.attributes else None
    conn.execute("INSERT OR IGNORE INTO dead_letters (id, function, time, condition, reason, record, attributes)"
                 " VALUES (?, ?, ?, ?, ?, ?, ?)",
                 (entry.id, entry.function, entry.time, entry.condition, entry.reason, json.dumps(entry.record),
                  attributes))
