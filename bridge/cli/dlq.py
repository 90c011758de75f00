"""The ``dlq`` commands (list, show, redrive, purge) on the store file, safe while the daemon runs."""

from __future__ import annotations

import argparse
import json
import sys

from bridge.delivery import deadletters
from bridge.store import DeadLetter, connect, store_path


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add ``dlq list|show|redrive|purge``."""
    dlq = sub.add_parser("dlq", help="inspect, redrive and purge the dead-letter store")
    actions = dlq.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", parents=[common], help="entries not yet redriven")
    listing.add_argument("--function")
    listing.add_argument("--json", action="store_true", help="a JSON array instead of a table")
    show = actions.add_parser("show", parents=[common], help="one entry's full AWS invocation record")
    show.add_argument("id")
    for name, text in (("redrive", "queue the original events again"), ("purge", "delete entries for good")):
        action = actions.add_parser(name, parents=[common], help=text)
        action.add_argument("ids", nargs="*", metavar="ID")
        action.add_argument("--all", action="store_true")
        action.add_argument("--function")
    dlq.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Dispatch one ``dlq`` action; returns the exit code."""
    from bridge.cli.main import load

    conn = connect(store_path(load(args).state_dir))
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
