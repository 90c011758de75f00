"""The ``cluster`` commands (init, check, status, dlq): thin wrappers over bridge.cluster.admin."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add ``cluster init|check|status|dlq``."""
    cluster = sub.add_parser("cluster", help="cluster mode: the shared SQS queue and DynamoDB table")
    actions = cluster.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("init", parents=[common], help="create the shared queue and table (TTL on the ledger)")
    actions.add_parser("check", parents=[common], help="the queue and the table exist and answer (exit 2 if not)")
    status = actions.add_parser("status", parents=[common], help="nodes, heartbeats, schedule leases, queue")
    status.add_argument("--json", action="store_true")
    dlq = actions.add_parser("dlq", help="the cluster's dead letters, from any node")
    dlq_actions = dlq.add_subparsers(dest="dlq_action", required=True, metavar="ACTION")
    listing = dlq_actions.add_parser("list", parents=[common], help="entries not yet redriven")
    listing.add_argument("--function")
    listing.add_argument("--json", action="store_true")
    show = dlq_actions.add_parser("show", parents=[common], help="one entry's AWS invocation record")
    show.add_argument("id")
    for name, text in (("redrive", "queue the original events again"), ("purge", "delete entries for good")):
        action = dlq_actions.add_parser(name, parents=[common], help=text)
        action.add_argument("ids", nargs="*", metavar="ID")
        action.add_argument("--all", action="store_true")
        action.add_argument("--function")
    cluster.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Dispatch one ``cluster`` action; returns the exit code (errors go through main's handler)."""
    from bridge.cli.main import load
    from bridge.cluster import admin

    config = load(args)
    if args.action in ("init", "check"):
        lines = asyncio.run(admin.init(config) if args.action == "init" else admin.check(config))
        print("\n".join(lines))
        return 0
    if args.action == "status":
        return _status(asyncio.run(admin.status(config)), args.json)
    return _dlq(args, config, admin)


def _status(doc: dict[str, Any], as_json: bool) -> int:
    if as_json:
        print(json.dumps(doc, indent=2))
        return 0
    print(f"this node: {doc['node']}; queue: {doc['queue']}; dead letters: {doc['dead_letters']}")
    for n in doc["nodes"]:
        print(f"  node {n['node_id']:<20} {n['state']:<8} host {n['host']} pid {n['pid']}  "
              f"last heartbeat {n['last_heartbeat_s']} s ago")
    for lease in doc["leases"]:
        print(f"  lease {lease['schedule']} @ {lease['scheduled']} held by {lease['owner']}, "
              f"expires in {lease['expires_in_s']} s")
    return 0


def _dlq(args: argparse.Namespace, config: Any, admin: Any) -> int:
    action = args.dlq_action
    if action == "list":
        entries = asyncio.run(admin.dead_letters(config, args.function))
        if args.json:
            print(json.dumps([e.to_json() for e in entries], indent=2))
        elif not entries:
            print("the cluster's dead-letter store is empty", file=sys.stderr)
        for e in [] if args.json else entries:
            print(f"{e.id}  {e.function}  {e.to_json()['time']}  {e.condition}  {e.reason[:80]}")
        return 0
    if action == "show":
        print(json.dumps(asyncio.run(admin.dead_letter(config, args.id)).to_json(), indent=2))
        return 0
    if action == "redrive":
        sent = asyncio.run(admin.redrive(config, args.ids, args.all, args.function))
        print(f"redrove {len(sent)} event(s) into the shared queue; any node delivers them")
        return 0
    count = asyncio.run(admin.purge(config, args.ids, args.all, args.function))
    print(f"purged {count} entr{'y' if count == 1 else 'ies'}")
    return 0
