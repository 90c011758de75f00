"""The ``schedules`` (list upcoming fires) and ``fire`` (fire one schedule now) commands."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import click

from bridge.cli.context import State, emit_json, global_options, pass_state
from bridge.config.model import Config
from bridge.errors import UsageError
from bridge.sources.schedule import fire as schedule_fire
from bridge.sources.schedule.config import ScheduleSourceConfig
from bridge.store import QueuedEvent, connect, connect_existing, event_row, insert_events, store_path, transaction


def schedule_sources(config: Config) -> list[ScheduleSourceConfig]:
    """The configured schedule sources, in config order."""
    return [s for s in config.sources if isinstance(s, ScheduleSourceConfig)]


def upcoming(config: Config, count: int, now: datetime, shared: dict[str, datetime | None] | None = None) -> list[dict]:
    """Each schedule's next ``count`` fires after ``now``, in its time zone (a disabled one: none).

    ``shared``: in a cluster, each schedule's newest fire handed over by any node (the table's ledger); the
    rows then also say it (``last_fire``), as the fires of this host alone do not tell.
    """
    conn = connect_existing(store_path(config.state_dir))  # only reads: a missing store stays missing
    try:
        result = []
        for cfg in schedule_sources(config):
            mine = schedule_fire.last_fire(conn, cfg.name)
            last = max((t for t in (mine, (shared or {}).get(cfg.name)) if t is not None), default=None)
            schedule = schedule_fire.effective_schedule(cfg, last, now)
            fires = schedule.next_fires(max(now, last or now), count) if cfg.enabled else []
            row = {"name": cfg.name, "next": [f.isoformat() for f in fires]}
            if shared is not None:
                row["last_fire"] = last.isoformat() if last else None
            result.append(row)
        return result
    finally:
        conn.close()


def cluster_fires(config: Config) -> dict[str, datetime | None] | None:
    """In a cluster, each schedule's newest fire handed over by any node (None on a single box)."""
    if config.cluster is None:
        return None
    from bridge.cluster import admin  # aiobotocore is imported only in cluster mode

    return asyncio.run(admin.last_fires(config, [cfg.name for cfg in schedule_sources(config)]))


@click.command("schedules", short_help='list the schedules and their next fire times')
@click.option("--next", "count", type=click.IntRange(min=1), default=5, show_default=True, metavar="N",
              help="fire times to show per schedule")
@global_options
@pass_state
def schedules(state: State, count: int) -> int:
    """List each schedule source with its next fire times (--json: [{"name", "next": [ISO-8601 times]}]).

    With a cluster: section the times continue from the newest fire of any node (the cluster's table), and
    each row also has "last_fire".
    """
    config = state.config()
    rows = upcoming(config, count, datetime.now(UTC), cluster_fires(config))
    if state.json:
        emit_json(rows)
        return 0
    by_name = {cfg.name: cfg for cfg in schedule_sources(config)}
    for row in rows:
        cfg = by_name[row["name"]]
        disabled = "" if cfg.enabled else "  (disabled)"
        last = f"  (last fire {row['last_fire'] or 'never'})" if "last_fire" in row else ""
        click.echo(f"{cfg.name}  {cfg.schedule}  [{cfg.timezone}]  -> {cfg.function}{disabled}{last}")
        for when in row["next"]:
            click.echo(f"    {when}")
    return 0


@click.command("fire", short_help='fire a schedule now and say where its event went')
@click.argument("name")
@global_options
@pass_state
def fire(state: State, name: str) -> int:
    """Fire the schedule source NAME now: queue its event for its function, timed now.

    Prints the schedule, the time, the event and request ids, and where the event went: to the running
    daemon, or into the queue in state_dir to wait for the daemon's next start.
    """
    config = state.config()
    by_name = {cfg.name: cfg for cfg in schedule_sources(config)}
    cfg = by_name.get(name)
    if cfg is None:
        known = ", ".join(by_name) or "(none configured)"
        raise UsageError(f"no schedule source named {name!r}; schedule sources: {known}")
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
    _report_fire(state, cfg, now, event)
    return 0


def _report_fire(state: State, cfg: ScheduleSourceConfig, when: datetime, event: QueuedEvent) -> None:
    daemon = state.daemon()
    if daemon is not None:
        went = f"queued; the running daemon (pid {daemon.pid}) delivers it to {cfg.function!r} within seconds"
    else:
        went = (f"queued in {state.state_dir()}; no daemon is running, so it waits for the next start "
                f"(lambda-bridge run) and then goes to {cfg.function!r}")
    report = {"schedule": cfg.name, "expression": cfg.schedule, "style": cfg.style,
              "scheduled_time": when.isoformat().replace("+00:00", "Z"), "event_id": event.id,
              "request_id": event.request_id, "function": cfg.function,
              "daemon_running": daemon is not None, "delivery": went}
    if state.json:
        emit_json(report)
        return
    click.echo(f"fired {cfg.name} ({cfg.schedule}, {cfg.style}) at {report['scheduled_time']}\n"
               f"  event id:   {report['event_id']}\n  request id: {report['request_id']}\n  {went}")


COMMANDS = (schedules, fire)
