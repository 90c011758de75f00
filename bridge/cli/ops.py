"""The ``status`` and ``logs`` commands: what the daemon is doing, and what a function printed."""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

from bridge.errors import UsageError
from bridge.function_logs import Entry, entries, history, log_path, split_lines

SINCE = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add ``status`` and ``logs``."""
    status = sub.add_parser("status", parents=[common], help="sources, functions, queue and dead letters")
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=cmd_status)
    logs = sub.add_parser("logs", parents=[common], help="a function's log (state_dir/logs/FUNCTION.log)")
    logs.add_argument("function")
    logs.add_argument("--follow", "-f", action="store_true", help="keep printing new lines")
    logs.add_argument("--since", help="only lines newer than this: 30s, 10m, 2h, 1d or an ISO time")
    logs.add_argument("--request-id", help="only lines of this invocation")
    logs.set_defaults(handler=cmd_logs)


# --- status ------------------------------------------------------------------------------------------


def cmd_status(args: argparse.Namespace) -> int:
    """Print the daemon's status (table, or JSON with --json); exit 1 when the daemon is not reachable."""
    from bridge.cli.main import load

    config = load(args)
    report = asyncio.run(_fetch_status(config.api.address))
    if report is None:
        report = _offline_status(config)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(render_status(report))
    return 0 if report.get("running", True) else 1


async def _fetch_status(address: tuple[str, int] | None) -> dict[str, Any] | None:
    import aiohttp

    from bridge.daemon.ops_api import STATUS_PATH

    if address is None:
        return None
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session, \
                session.get(f"http://{address[0]}:{address[1]}{STATUS_PATH}") as resp:
            return {"running": True, **await resp.json()}
    except (aiohttp.ClientError, TimeoutError):
        return None


def _offline_status(config: Any) -> dict[str, Any]:
    """What the store alone can tell when the daemon does not answer."""
    from bridge.store import connect, store_path

    conn = connect(store_path(config.state_dir))
    try:
        depth, oldest = conn.execute("SELECT COUNT(*), MIN(received_at) FROM async_events").fetchone()
        dead = conn.execute("SELECT COUNT(*) FROM dead_letters WHERE redriven_at IS NULL").fetchone()[0]
    finally:
        conn.close()
    age = round(time.time() - oldest, 3) if oldest else 0.0
    return {"running": False, "sources": [], "functions": [], "queue": {"depth": depth, "oldest_age_s": age},
            "dead_letters": dead}


def render_status(report: dict[str, Any]) -> str:
    """The status as tables a person reads."""
    running = f"running, up {report.get('uptime_s')} s" if report.get("running") else "NOT RUNNING"
    lines = [f"daemon: {running}"]
    lines += _table("SOURCES", ["name", "type", "function", "state", "events", "last_error"], report["sources"])
    lines += _table("FUNCTIONS", ["name", "workers", "limit", "in_flight", "invocations", "errors"],
                    report["functions"])
    queue = report["queue"]
    lines.append(f"async queue: {queue['depth']} event(s), oldest {queue['oldest_age_s']} s")
    lines.append(f"dead letters: {report['dead_letters']}")
    return "\n".join(lines)


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


def cmd_logs(args: argparse.Namespace) -> int:
    """Print (and with --follow, keep printing) a function's log lines."""
    from bridge.cli.main import load

    config = load(args)
    if args.function not in config.functions:
        raise UsageError(f"function {args.function!r} is not configured; configured: {', '.join(config.functions)}")
    path = log_path(config.state_dir, args.function)
    since = parse_since(args.since, time.time())
    for entry in history(path):
        _print_if(entry, since, args.request_id)
    if args.follow:
        try:
            asyncio.run(_follow(path, since, args.request_id))
        except KeyboardInterrupt:
            return 0
    return 0


def _print_if(entry: Entry, since: str | None, request_id: str | None) -> None:
    if (since is None or entry.time >= since) and (request_id is None or entry.request_id == request_id):
        sys.stdout.write(entry.render() + "\n")
        sys.stdout.flush()


async def _follow(path: Path, since: str | None, request_id: str | None) -> None:
    """Print lines as they are appended; a rotation (file renamed away) starts over on the new file."""
    from asyncinotify import Inotify, Mask

    _ensure_dir(path.parent)
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
            position = _print_from(path, position, since, request_id)


def _ensure_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)


def _file_state(path: Path) -> tuple[int | None, int]:
    """(inode, size), or (None, 0) while the file does not exist (between rotation steps)."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None, 0
    return stat.st_ino, stat.st_size


def _print_from(path: Path, position: int, since: str | None, request_id: str | None) -> int:
    with path.open("rb") as handle:
        handle.seek(position)
        data = handle.read()
    lines, used = split_lines(data)  # a line still being written waits for its newline
    for entry in entries(lines):
        _print_if(entry, since, request_id)
    return position + used
