"""Output of the ``dlq`` commands: a table for people, JSON for scripts."""

from __future__ import annotations

import argparse
import json
import sys

from bridge import deadletters
from bridge.config import Config
from bridge.store import DeadLetter, connect, store_path


def run(config: Config, args: argparse.Namespace) -> int:
    """Dispatch one ``dlq`` action; returns the exit code."""
    conn = connect(store_path(config.state_dir))
    try:
        if args.action == "list":
            return _list(deadletters.list_entries(conn, args.function), args.json)
        if args.action == "show":
            print(json.dumps(deadletters.get_entry(conn, args.id).to_json(), indent=2))
            return 0
        entries = deadletters.select(conn, args.ids, args.all, args.function)
        if args.action == "redrive":
            events = deadletters.redrive(conn, entries)
            print(f"redrove {len(events)} event(s); the daemon delivers them within seconds")
        else:
            print(f"purged {deadletters.purge(conn, entries)} entr{'y' if len(entries) == 1 else 'ies'}")
        return 0
    finally:
        conn.close()


def _list(entries: list[DeadLetter], as_json: bool) -> int:
    if as_json:
        print(json.dumps([e.to_json() for e in entries], indent=2))
        return 0
    if not entries:
        print("the dead-letter store is empty", file=sys.stderr)
        return 0
    rows = [(e.id, e.function, e.to_json()["time"], e.condition,
             str(e.record["requestContext"]["approximateInvokeCount"]), _error(e)) for e in entries]
    header = ("ID", "FUNCTION", "TIME", "CONDITION", "INVOKES", "ERROR")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(5)]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:5])) + "  " + row[5])
    return 0


def _error(entry: DeadLetter) -> str:
    payload = entry.record.get("responsePayload")
    if isinstance(payload, dict) and "errorMessage" in payload:
        return f"{payload.get('errorType', 'Error')}: {payload['errorMessage']}"[:80]
    return entry.reason[:80]
