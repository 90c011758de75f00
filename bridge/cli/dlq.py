"""The ``dlq`` commands (list, show, redrive, purge) on the store file, safe while the daemon runs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from bridge.cli.context import State, emit_json, global_options, pass_state
from bridge.delivery import deadletters
from bridge.store import DeadLetter, connect, store_path


@click.group("dlq", short_help='list, show, redrive and purge dead letters')
@global_options
def dlq() -> None:
    """Inspect, redrive and purge the dead-letter store (works while the daemon runs, and with an invalid
    config on disk: only state_dir is read from it)."""


def _with_store(state: State, action: Callable[[Any], int]) -> int:
    conn = connect(store_path(state.state_dir()))
    try:
        return action(conn)
    finally:
        conn.close()


@dlq.command("list")
@click.option("--function", metavar="NAME", help="only entries of this function")
@global_options
@pass_state
def list_(state: State, function: str | None) -> int:
    """Entries not yet redriven, newest last (--json: the full entries)."""
    return _with_store(state, lambda conn: _list(deadletters.list_entries(conn, function), state.json))


@dlq.command("show")
@click.argument("entry_id", metavar="ID")
@global_options
@pass_state
def show(state: State, entry_id: str) -> int:
    """Print the dead-letter entry ID (from `dlq list`) with its full AWS invocation record, as JSON."""
    return _with_store(state, lambda conn: _emit(deadletters.get_entry(conn, entry_id).to_json()))


def _emit(value: Any) -> int:
    emit_json(value)
    return 0


def selection(command: Callable[..., int]) -> Callable[..., int]:
    """ID..., --all and --function: which dead letters a redrive or purge takes (cluster dlq shares it)."""
    command = click.option("--function", metavar="NAME", help="only entries of this function")(command)
    command = click.option("--all", "all_", is_flag=True, help="every entry (with --function: all of it)")(command)
    return click.argument("ids", nargs=-1, metavar="[ID]...")(command)


@dlq.command("redrive")
@selection
@global_options
@pass_state
def redrive(state: State, ids: tuple[str, ...], all_: bool, function: str | None) -> int:
    """Queue the original events of the entries ID... (or --all) again; the daemon delivers them."""
    def act(conn: Any) -> int:
        events = deadletters.redrive(conn, deadletters.select(conn, list(ids), all_, function))
        _done(state, {"redriven": [e.id for e in events]},
              f"redrove {len(events)} event(s); the daemon delivers them within seconds")
        return 0

    return _with_store(state, act)


@dlq.command("purge")
@selection
@global_options
@pass_state
def purge(state: State, ids: tuple[str, ...], all_: bool, function: str | None) -> int:
    """Delete the entries ID... (or --all) for good."""
    def act(conn: Any) -> int:
        entries = deadletters.select(conn, list(ids), all_, function)
        count = deadletters.purge(conn, entries)
        _done(state, {"purged": count}, f"purged {count} entr{'y' if count == 1 else 'ies'}")
        return 0

    return _with_store(state, act)


def _done(state: State, value: dict[str, Any], text: str) -> None:
    if state.json:
        emit_json(value)
    else:
        click.echo(text)


def _list(entries: list[DeadLetter], as_json: bool) -> int:
    if as_json:
        emit_json([e.to_json() for e in entries])
        return 0
    if not entries:
        click.echo("the dead-letter store is empty", err=True)
        return 0
    rows = [(e.id, e.function, e.to_json()["time"], e.condition,
             str(e.record["requestContext"]["approximateInvokeCount"]), _error(e)) for e in entries]
    header = ("ID", "FUNCTION", "TIME", "CONDITION", "INVOKES", "ERROR")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(5)]
    for row in [header, *rows]:
        click.echo("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:5])) + "  " + row[5])
    return 0


def _error(entry: DeadLetter) -> str:
    payload = entry.record.get("responsePayload")
    if isinstance(payload, dict) and "errorMessage" in payload:
        return f"{payload.get('errorType', 'Error')}: {payload['errorMessage']}"[:80]
    return entry.reason[:80]


COMMANDS = (dlq,)
