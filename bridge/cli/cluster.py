"""The ``cluster`` commands (init, check, status, dlq): thin wrappers over bridge.cluster.admin."""

from __future__ import annotations

import asyncio
from typing import Any

import click

from bridge.cli.context import State, emit_json, global_options, pass_state
from bridge.cli.dlq import selection


@click.group("cluster", short_help="cluster mode: the shared SQS queue and DynamoDB table")
@global_options
def cluster() -> None:
    """Cluster mode: create and check the shared queue and table, see the nodes, handle dead letters."""


def _admin() -> Any:
    from bridge.cluster import admin  # aiobotocore is imported only for cluster commands

    return admin


@cluster.command("init")
@global_options
@pass_state
def init(state: State) -> int:
    """Create the shared queue and the table (TTL on the ledger) when the credentials allow it."""
    click.echo("\n".join(asyncio.run(_admin().init(state.config()))))
    return 0


@cluster.command("check")
@global_options
@pass_state
def check(state: State) -> int:
    """The queue and the table exist and answer (exit 2 if not)."""
    click.echo("\n".join(asyncio.run(_admin().check(state.config()))))
    return 0


@cluster.command("status")
@global_options
@pass_state
def status(state: State) -> int:
    """Nodes and their last heartbeat, schedule leases, the shared queue (--json: the whole document)."""
    doc = asyncio.run(_admin().status(state.config()))
    if state.json:
        emit_json(doc)
        return 0
    click.echo(f"this node: {doc['node']}; queue: {doc['queue']}; dead letters: {doc['dead_letters']}")
    for n in doc["nodes"]:
        click.echo(f"  node {n['node_id']:<20} {n['state']:<8} host {n['host']} pid {n['pid']}  "
                   f"last heartbeat {n['last_heartbeat_s']} s ago")
    for lease in doc["leases"]:
        click.echo(f"  lease {lease['schedule']} @ {lease['scheduled']} held by {lease['owner']}, "
                   f"expires in {lease['expires_in_s']} s")
    return 0


@cluster.group("dlq")
@global_options
def dlq() -> None:
    """The cluster's dead letters (in the table), from any node."""


@dlq.command("list")
@click.option("--function", metavar="NAME", help="only entries of this function")
@global_options
@pass_state
def list_(state: State, function: str | None) -> int:
    """Entries not yet redriven (--json: the full entries)."""
    entries = asyncio.run(_admin().dead_letters(state.config(), function))
    if state.json:
        emit_json([e.to_json() for e in entries])
        return 0
    if not entries:
        click.echo("the cluster's dead-letter store is empty", err=True)
    for e in entries:
        click.echo(f"{e.id}  {e.function}  {e.to_json()['time']}  {e.condition}  {e.reason[:80]}")
    return 0


@dlq.command("show")
@click.argument("entry_id", metavar="ID")
@global_options
@pass_state
def show(state: State, entry_id: str) -> int:
    """Print one entry with its AWS invocation record, as JSON."""
    emit_json(asyncio.run(_admin().dead_letter(state.config(), entry_id)).to_json())
    return 0


@dlq.command("redrive")
@selection
@global_options
@pass_state
def redrive(state: State, ids: tuple[str, ...], all_: bool, function: str | None) -> int:
    """Send the original events of the entries ID... (or --all) to the shared queue again."""
    sent = asyncio.run(_admin().redrive(state.config(), list(ids), all_, function))
    click.echo(f"redrove {len(sent)} event(s) into the shared queue; any node delivers them")
    return 0


@dlq.command("purge")
@selection
@global_options
@pass_state
def purge(state: State, ids: tuple[str, ...], all_: bool, function: str | None) -> int:
    """Delete the entries ID... (or --all) for good."""
    count = asyncio.run(_admin().purge(state.config(), list(ids), all_, function))
    click.echo(f"purged {count} entr{'y' if count == 1 else 'ies'}")
    return 0


COMMANDS = (cluster,)
