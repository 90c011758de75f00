"""The ``status`` and ``logs`` commands: what the daemon is doing, and what a function printed."""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import click

from bridge.cli.context import State, emit_json, global_options, note, pass_state
from bridge.errors import UsageError
from bridge.function_logs import Entry, as_text, entries, history, log_path, split_lines

STATUS_PATH = "/bridge/status"  # the daemon's status endpoint (bridge.daemon.ops_api)
SINCE = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


# --- status ------------------------------------------------------------------------------------------


@click.command("status", short_help='what the running daemon is doing')
@global_options
@pass_state
def status(state: State) -> int:
    """Sources, functions, the async queue and dead letters of the running daemon (exit 1 when none runs).

    Works while the config file on disk is invalid: the daemon is found by its runtime file in state_dir,
    and the status says when the file differs from what the daemon runs. With a cluster: section, also the
    whole cluster from its table (nodes and their last heartbeat, open schedule leases, the shared queue,
    its dead letters), from any node; the exit code still says whether this host's daemon runs.
    """
    daemon = state.daemon(quiet=True)
    api_url = state.api_url()
    report = asyncio.run(_fetch_status(api_url, bearer(state))) if api_url else None
    if report is None:  # a daemon without an API still runs; one whose API does not answer does not
        report = _offline_status(state.known_state_dir(), daemon is not None and daemon.api_url is None)
    if daemon is not None:
        report |= {"pid": daemon.pid, "api_url": daemon.api_url, "config_note": daemon.drift()}
    config = state.valid_config()
    if config is not None and config.cluster is not None:
        report["cluster"] = cluster_status(config)
    if state.json:
        emit_json(report)
    else:
        click.echo(render_status(report))
    return 0 if report.get("running", True) else 1


def bearer(state: State) -> dict[str, str]:
    """The ``Authorization`` header for the daemon's guarded endpoints, when the config sets api.token."""
    config = state.valid_config()
    token = config.api.token if config is not None else None
    return {"Authorization": f"Bearer {token.get_secret_value()}"} if token is not None else {}


async def _fetch_status(api_url: str, headers: dict[str, str]) -> dict[str, Any] | None:
    import aiohttp

    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session, \
                session.get(f"{api_url}{STATUS_PATH}", headers=headers) as resp:
            body = await resp.json()
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return None
    if resp.status in (401, 403):  # api.token missing from this config, or not the daemon's
        raise UsageError(f"the daemon at {api_url} refused the status: {body.get('message')}")
    return {"running": True, **body}


def _offline_status(state_dir: Path | None, alive: bool) -> dict[str, Any]:
    """What the store alone can tell when the daemon does not answer (``alive``: it runs without an API).

    Read only: a state_dir without a store (or unknown: a config file that does not parse) counts nothing.
    """
    from bridge.store import connect_existing, store_path

    if state_dir is None:
        note("the config file does not parse and no daemon runs it, so its state_dir is unknown: "
             "`lambda-bridge check` says what to fix")
    conn = connect_existing(store_path(state_dir) if state_dir is not None else None)
    try:
        depth, oldest = conn.execute("SELECT COUNT(*), MIN(received_at) FROM async_events").fetchone()
        dead = conn.execute("SELECT COUNT(*) FROM dead_letters WHERE redriven_at IS NULL").fetchone()[0]
    finally:
        conn.close()
    age = round(time.time() - oldest, 3) if oldest else 0.0
    return {"running": alive, "sources": [], "functions": [], "queue": {"depth": depth, "oldest_age_s": age},
            "dead_letters": dead}


def cluster_status(config: Any) -> dict[str, Any]:
    """The cluster's part of the status; an unreachable cluster is reported, not raised (the rest still shows)."""
    from bridge.cluster import admin  # aiobotocore is imported only in cluster mode
    from bridge.errors import ClusterUnavailable

    try:
        return asyncio.run(admin.status(config))
    except ClusterUnavailable as err:
        return {"node": config.cluster.node_id, "error": str(err)}


def render_cluster(doc: dict[str, Any]) -> list[str]:
    """The cluster's nodes, leases and shared queue as lines."""
    if "error" in doc:
        return [f"cluster: node {doc['node']}; the table and queue cannot be read: {doc['error']}"]
    queue = doc["queue"]
    lines = [f"cluster: this node {doc['node']}; shared queue {queue['waiting']} waiting, {queue['in_flight']} in "
             f"flight, {queue['delayed']} delayed; dead letters in the table: {doc['dead_letters']}"]
    for n in doc["nodes"]:
        lines.append(f"  node {n['node_id']:<20} {n['state']:<8} host {n['host']} pid {n['pid']}  "
                     f"last heartbeat {n['last_heartbeat_s']} s ago")
    for lease in doc["leases"]:
        lines.append(f"  lease {lease['schedule']} @ {lease['scheduled']} held by {lease['owner']}, "
                     f"expires in {lease['expires_in_s']} s")
    return lines


def render_status(report: dict[str, Any]) -> str:
    """The status as tables a person reads."""
    running = "NOT RUNNING"
    if report.get("running"):
        where = f", API {report['api_url']}" if report.get("api_url") else ""
        pid = f" (pid {report['pid']})" if report.get("pid") else ""
        up = f", up {report['uptime_s']} s" if report.get("uptime_s") is not None else ""
        running = f"running{pid}{up}{where}"
    lines = [f"daemon: {running}"]
    if report.get("config_note"):
        lines.append(f"config: {report['config_note']}")
    lines += _table("SOURCES", ["name", "type", "function", "state", "events", "last_error"], report["sources"])
    lines += _table("FUNCTIONS", ["name", "workers", "limit", "in_flight", "invocations", "errors"],
                    report["functions"])
    queue, here = report["queue"], " (this host's: directory sources)" if "cluster" in report else ""
    lines.append(f"async queue{here}: {queue['depth']} event(s), oldest {queue['oldest_age_s']} s")
    lines.append(f"dead letters{here}: {report['dead_letters']}")
    if "fanout" in report:
        lines += render_fanout(report["fanout"])
    if "cluster" in report:
        lines += render_cluster(report["cluster"])
    return "\n".join(lines)


def render_fanout(fanout: dict[str, Any]) -> list[str]:
    """Buses with their rules, topics with their subscriptions, and the counts since the daemon started."""
    rules = [{"bus": b["name"], "bus_events": b["events"], "rule": r["name"], "matched": r["matched"],
              "targets": ", ".join(r["targets"])} for b in fanout["buses"] for r in b["rules"]]
    rules += [{"bus": b["name"], "bus_events": b["events"], "rule": None} for b in fanout["buses"] if not b["rules"]]
    subs = [{"topic": t["name"], "published": t["published"], "endpoint": s["endpoint"], "filtered": s["filtered"],
             "delivered": s["delivered"]} for t in fanout["topics"] for s in t["subscriptions"]]
    subs += [{"topic": t["name"], "published": t["published"]} for t in fanout["topics"] if not t["subscriptions"]]
    return (_table("BUSES", ["bus", "bus_events", "rule", "matched", "targets"], rules)
            + _table("TOPICS", ["topic", "published", "endpoint", "filtered", "delivered"], subs))


def _table(title: str, columns: list[str], rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return [f"{title}: none"]
    cells = [[str(row.get(c, "") if row.get(c) is not None else "-") for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    out = [title, "  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
    out += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return out


# --- logs --------------------------------------------------------------------------------------------


def parse_since(text: str | None, now: float) -> str | None:
    """``10m`` or an ISO time -> the ISO timestamp lines must be newer than (they sort as strings)."""
    if text is None:
        return None
    match = SINCE.match(text)
    if match:
        ts = now - float(match.group(1)) * UNITS[match.group(2)]
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts))
    if re.match(r"^\d{4}-\d\d-\d\d", text):
        return text.rstrip("Z")
    raise UsageError(f"--since {text!r}: use 30s, 10m, 2h, 1d or an ISO time like 2026-11-23T15:00:00")


@click.command("logs", short_help="print (or follow) a function's log")
@click.argument("function")
@click.option("--follow", "-f", is_flag=True, help="keep printing new lines as the function writes them")
@click.option("--since", metavar="WHEN", help="only lines newer than this: 30s, 10m, 2h, 1d or an ISO time")
@click.option("--request-id", metavar="ID", help="only the lines of this invocation")
@global_options
@pass_state
def logs(state: State, function: str, follow: bool, since: str | None, request_id: str | None) -> int:
    """Print FUNCTION's log (state_dir/logs/FUNCTION.log, rotated files first): START, its output, END, REPORT.

    With --json, one JSON object per line: {"time", "request_id", "message"}.
    """
    config = state.valid_config()
    if config is not None and function not in config.functions:
        raise UsageError(f"function {function!r} is not configured; configured: {', '.join(config.functions)}")
    path = log_path(state.state_dir(), function)
    if config is None:
        state.daemon()  # says on stderr why the file differs from what the daemon runs
    if config is None and not path.exists() and not follow:
        state.config()  # no log to show and no valid config to say why: show the config's problems
    if follow and not path.parent.is_dir():  # nothing to watch, and a reading command creates nothing
        raise UsageError(f"{path.parent} does not exist: no daemon has run {function!r} with this state_dir; "
                         "`lambda-bridge status` shows the running daemon")
    show = _printer(state.json, parse_since(since, time.time()), request_id)
    for entry in history(path):
        show(entry)
    if follow:
        try:
            asyncio.run(_follow(path, show))
        except KeyboardInterrupt:
            return 0
    return 0


def _printer(as_json: bool, since: str | None, request_id: str | None) -> Any:
    """A function printing one log entry if it passes the filters: a runtime record (``\\r``-joined lines)
    stays one entry, shown as the multi-line text it is."""
    def show(entry: Entry) -> None:
        if (since is None or entry.time >= since) and (request_id is None or entry.request_id == request_id):
            record = {"time": entry.time, "request_id": entry.request_id, "message": as_text(entry.text)}
            sys.stdout.write((json.dumps(record) if as_json else entry.render()) + "\n")
            sys.stdout.flush()

    return show


async def _follow(path: Path, show: Any) -> None:
    """Print lines as they are appended; a rotation (file renamed away) starts over on the new file."""
    from asyncinotify import Inotify, Mask

    with Inotify() as inotify:
        inotify.add_watch(path.parent, Mask.MODIFY | Mask.CREATE | Mask.MOVED_TO | Mask.MOVED_FROM)
        inode, position = _file_state(path)
        async for event in inotify:
            if event.name is None or event.name.name != path.name:
                continue
            now_inode, size = _file_state(path)
            if now_inode is None:
                continue
            if now_inode != inode or size < position:
                inode, position = now_inode, 0
            position = _print_from(path, position, show)


def _file_state(path: Path) -> tuple[int | None, int]:
    """(inode, size), or (None, 0) while the file does not exist (between rotation steps)."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None, 0
    return stat.st_ino, stat.st_size


def _print_from(path: Path, position: int, show: Any) -> int:
    with path.open("rb") as handle:
        handle.seek(position)
        data = handle.read()
    lines, used = split_lines(data)  # a line still being written waits for its newline
    for entry in entries(lines):
        show(entry)
    return position + used


COMMANDS = (status, logs)
