"""The ``schedules`` (list upcoming fires) and ``fire`` (fire one schedule now) commands."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime

from bridge.config.model import Config
from bridge.errors import UsageError
from bridge.sources.schedule import fire as schedule_fire
from bridge.sources.schedule.config import ScheduleSourceConfig
from bridge.store import connect, event_row, insert_events, store_path, transaction


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add ``schedules`` and ``fire``."""
    listing = sub.add_parser("schedules", parents=[common], help="list each schedule with its next fire times")
    listing.add_argument("--next", type=int, default=5, metavar="N", help="fire times per schedule (default 5)")
    listing.add_argument("--json", action="store_true", help='a JSON list of {"name", "next": [ISO-8601 times]}')
    listing.set_defaults(handler=cmd_schedules)
    fire = sub.add_parser("fire", parents=[common], help="fire one schedule now (queued for the daemon)")
    fire.add_argument("name", help="the schedule source's name")
    fire.set_defaults(handler=cmd_fire)


def schedule_sources(config: Config) -> list[ScheduleSourceConfig]:
    """The configured schedule sources, in config order."""
    return [s for s in config.sources if isinstance(s, ScheduleSourceConfig)]


def upcoming(config: Config, count: int, now: datetime) -> list[dict]:
    """Each schedule's next ``count`` fires after ``now``, in its time zone (a disabled one: none)."""
    conn = connect(store_path(config.state_dir))
    try:
        result = []
        for cfg in schedule_sources(config):
            last = schedule_fire.last_fire(conn, cfg.name)
            schedule = schedule_fire.effective_schedule(cfg, last, now)
            fires = schedule.next_fires(max(now, last or now), count) if cfg.enabled else []
            result.append({"name": cfg.name, "next": [f.isoformat() for f in fires]})
        return result
    finally:
        conn.close()


def cmd_schedules(args: argparse.Namespace) -> int:
    """Print the upcoming fires as a table, or as JSON with ``--json``."""
    from bridge.cli.main import load

    if args.next < 1:
        raise UsageError("--next takes a whole number of at least 1")
    config = load(args)
    rows = upcoming(config, args.next, datetime.now(UTC))
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    by_name = {cfg.name: cfg for cfg in schedule_sources(config)}
    for row in rows:
        cfg = by_name[row["name"]]
        state = "" if cfg.enabled else "  (disabled)"
        print(f"{cfg.name}  {cfg.schedule}  [{cfg.timezone}]  -> {cfg.function}{state}")
        for fire in row["next"]:
            print(f"    {fire}")
    return 0


def cmd_fire(args: argparse.Namespace) -> int:
    """Queue one fire of a schedule, timed now, into the durable queue; print its event id."""
    from bridge.cli.main import load

    config = load(args)
    by_name = {cfg.name: cfg for cfg in schedule_sources(config)}
    cfg = by_name.get(args.name)
    if cfg is None:
        known = ", ".join(by_name) or "(none configured)"
        raise UsageError(f"no schedule source named {args.name!r}; schedule sources: {known}")
    now = datetime.now(UTC).replace(microsecond=0)
    # A manual fire is not a scheduled time: it gets a fresh id and is not recorded as a fire, so it
    # changes nothing about catch-up. The running daemon picks the row up within seconds (or on start).
    event = schedule_fire.queued_fire(cfg.model_copy(update={"flexible_time_window": 0}), config, now, now,
                                      event_id=schedule_fire.manual_fire_id())
    conn = connect(store_path(config.state_dir))
    try:
        with transaction(conn):
            insert_events(conn, [event_row(event)])
    finally:
        conn.close()
    print(event.id)
    return 0
