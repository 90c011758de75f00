"""One fire of a schedule: its event, its stable id, its queue entry and its durable record (source and CLI)."""

from __future__ import annotations

import json
import random
import sqlite3
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from bridge.config.model import Config
from bridge.delivery.dispatcher import new_event
from bridge.events.eventbridge import rule_arn, rule_event, schedule_arn, scheduler_event, scheduler_input
from bridge.sources.schedule.config import ScheduleSourceConfig
from bridge.sources.schedule.expressions import RateExpression, Schedule, parse_schedule
from bridge.store import QueuedEvent, StoreOp

# Fixed, so that (source, scheduled time) always yields the same event id, in every process and release.
FIRE_NAMESPACE = uuid.UUID("5b0d6f3e-7c1a-4a43-9a57-2f6b1c9e0d11")
KEEP_RECORDS = timedelta(days=31)  # older fire records are pruned; only the newest one decides anything

SCHEMA = """
CREATE TABLE IF NOT EXISTS schedule_fires (
    source TEXT NOT NULL,
    scheduled_time REAL NOT NULL,
    event_id TEXT NOT NULL,
    fired_at REAL NOT NULL,
    PRIMARY KEY (source, scheduled_time)
)
"""


def fire_id(source: str, scheduled: datetime) -> str:
    """The event id of the fire of ``source`` at ``scheduled``: a UUID, the same whoever computes it."""
    return str(uuid.uuid5(FIRE_NAMESPACE, f"{source}\n{scheduled.astimezone(UTC).isoformat()}"))


def manual_fire_id() -> str:
    """The event id of a manual fire (``lambda-bridge fire``): a fresh UUID, never a scheduled time's."""
    return str(uuid.uuid4())


def build_event(cfg: ScheduleSourceConfig, config: Config, scheduled: datetime, event_id: str) -> Any:
    """The JSON value the function receives for a fire at ``scheduled`` (the event, or the ``input``)."""
    where = {"region": config.region, "account": config.account_id}
    if cfg.style == "scheduler":
        if cfg.input is None:
            return scheduler_event(schedule_name=cfg.name, time=scheduled, event_id=event_id, **where)
        arn = schedule_arn(schedule_name=cfg.name, **where)
        # The handover happens once per fire, so the attempt number the target sees is always 1.
        return scheduler_input(cfg.input, schedule_arn=arn, scheduled_time=scheduled, execution_id=event_id,
                               attempt_number=1)
    if cfg.input is None:
        return rule_event(rule_name=cfg.name, time=scheduled, event_id=event_id, **where)
    return _constant_input(cfg.input)


def _constant_input(value: Any) -> Any:
    """A rule target's constant Input: a string is the Input text itself (JSON when it parses as JSON)."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def queued_fire(cfg: ScheduleSourceConfig, config: Config, scheduled: datetime, now: datetime,
                rng: random.Random | None = None, event_id: str | None = None) -> QueuedEvent:
    """The queue entry for one fire; with a flexible window it becomes due at a random moment within it.

    The entry counts as received when it is due (that is when Scheduler would hand it to Lambda), so the
    function's maximum_event_age does not start ticking during the window.
    """
    event_id = event_id or fire_id(cfg.name, scheduled)
    payload = json.dumps(build_event(cfg, config, scheduled, event_id)).encode()
    event = new_event(cfg.function, payload, event_id=event_id, handover=handover_policy(cfg, config))
    if cfg.flexible_time_window == 0:
        return event
    delay = (rng or random.Random()).uniform(0, cfg.flexible_time_window * 60)
    landing = max(now, scheduled + timedelta(seconds=delay)).timestamp()
    return replace(event, received_at=landing, next_at=landing)


def source_arn(cfg: ScheduleSourceConfig, config: Config) -> str:
    """The rule's or the schedule's ARN, as the DLQ attribute RULE_ARN names it."""
    where = {"region": config.region, "account": config.account_id}
    if cfg.style == "scheduler":
        return schedule_arn(schedule_name=cfg.name, **where)
    return rule_arn(rule_name=cfg.name, **where)


def handover_policy(cfg: ScheduleSourceConfig, config: Config) -> dict[str, object]:
    """Scheduler's RetryPolicy, applied by the dispatcher when the target throttles or cannot be reached."""
    return {"max_attempts": cfg.retry_policy.maximum_retry_attempts, "max_age": cfg.retry_policy.maximum_event_age,
            "rule_arn": source_arn(cfg, config), "target_arn": config.function_arn(cfg.function)}


def record_fires(source: str, events: list[tuple[datetime, str]], fired_at: float) -> StoreOp:
    """A store op recording fires ``(scheduled, event_id)``; runs in the enqueue's transaction.

    A plain INSERT: a time already recorded raises ``sqlite3.IntegrityError``, which rolls the enqueue
    back with it, so no scheduled time is ever queued twice.
    """
    rows = [(source, t.timestamp(), event_id, fired_at) for t, event_id in events]
    newest = max(t for t, _ in events)

    def op(conn: sqlite3.Connection) -> None:
        conn.executemany("INSERT INTO schedule_fires (source, scheduled_time, event_id, fired_at)"
                         " VALUES (?, ?, ?, ?)", rows)
        conn.execute("DELETE FROM schedule_fires WHERE source = ? AND scheduled_time < ?",
                     (source, (newest - KEEP_RECORDS).timestamp()))

    return op


def create_table(conn: sqlite3.Connection) -> None:
    """Create the fire record table if it is missing."""
    conn.execute(SCHEMA)


def last_fire(conn: sqlite3.Connection, source: str) -> datetime | None:
    """The newest recorded scheduled time of ``source`` (None if it never fired, or no table yet)."""
    try:
        row = conn.execute("SELECT MAX(scheduled_time) FROM schedule_fires WHERE source = ?", (source,)).fetchone()
    except sqlite3.OperationalError:  # no such table: no schedule has ever run on this state_dir
        return None
    return None if row[0] is None else datetime.fromtimestamp(row[0], UTC)


def effective_schedule(cfg: ScheduleSourceConfig, last: datetime | None, now: datetime) -> Schedule:
    """The schedule with its phase fixed: a rate() without start_date continues its grid from the last fire.

    Never fired: the first fire is one interval after ``now`` (whole seconds), as the trigger documents.
    """
    schedule = parse_schedule(cfg.schedule, timezone=cfg.timezone, start_date=cfg.start_date,
                              end_date=cfg.end_date)
    if not isinstance(schedule.expression, RateExpression) or schedule.start_date is not None:
        return schedule
    anchor = last or (now.astimezone(UTC).replace(microsecond=0) + schedule.expression.interval)
    return replace(schedule, start_date=anchor)
