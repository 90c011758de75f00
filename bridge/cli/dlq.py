"""The ``dlq`` commands (list, show, redrive, purge): the store file, and in a cluster the shared table too.

On a single box the dead letters are in the store file (safe while the daemon runs; works with an invalid
config on disk: only state_dir is read from it). With a ``cluster:`` section they are in two places: the
cluster's table (every event of the shared queue, from any node) and this host's store (its directory
sources' events); each command covers both, and says which an entry is in.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

from bridge.cli.context import State, emit_json, global_options, note, pass_state
from bridge.config.model import Config
from bridge.delivery import deadletters
from bridge.errors import BridgeError, UsageError
from bridge.store import DeadLetter, connect_existing, store_path

CLUSTER, LOCAL = "cluster", "local"  # where an entry is kept, in cluster mode


@click.group("dlq", short_help='list, show, redrive and purge dead letters')
@global_options
def dlq() -> None:
    """Inspect, redrive and purge the dead-letter store (works while the daemon runs, and with an invalid
    config on disk: only state_dir is read from it). With a cluster: section, also the cluster's dead letters
    (in its table), from any node."""


def _admin() -> Any:
    from bridge.cluster import admin  # aiobotocore is imported only in cluster mode

    return admin


def _cluster(state: State) -> Config | None:
    """The config when it has a cluster: section; a note when an invalid config seems to have one."""
    config = state.valid_config()
    if config is not None:
        return config if config.cluster is not None else None
    state.daemon()  # says on stderr why the file differs from what the daemon runs
    if _mentions_cluster(Path(state.config_path)):
        note("the config is invalid, so only this host's dead letters are shown, not the cluster's (in its "
             "table); `lambda-bridge check` says what to fix")
    return None


def _mentions_cluster(path: Path) -> bool:
    try:
        return re.search(r"^cluster\s*:", path.read_text(), re.MULTILINE) is not None
    except OSError:
        return False


def _with_store(state: State, action: Callable[[Any], Any], *, cluster: bool = False) -> Any:
    """``action(conn)`` on this host's store; in a cluster, a host without one (an admin box) has none.

    A missing store is never created here: it has no entries (an empty one in memory stands in for it).
    """
    path = store_path(state.state_dir())
    if cluster and not path.exists():
        return action(None)
    conn = connect_existing(path)
    try:
        return action(conn)
    finally:
        conn.close()


@dlq.command("list")
@click.option("--function", metavar="NAME", help="only entries of this function")
@global_options
@pass_state
def list_(state: State, function: str | None) -> int:
    """Entries not yet redriven, newest last (--json: the full entries; in a cluster each with "store")."""
    config = _cluster(state)
    if config is None:
        return _with_store(state, lambda conn: _list(deadletters.list_entries(conn, function), state.json))
    shared = asyncio.run(_admin().dead_letters(config, function))
    local = _with_store(state, lambda conn: deadletters.list_entries(conn, function) if conn else [], cluster=True)
    found = sorted([(e, CLUSTER) for e in shared] + [(e, LOCAL) for e in local], key=lambda pair: pair[0].time)
    return _list([e for e, _ in found], state.json, [where for _, where in found])


@dlq.command("show")
@click.argument("entry_id", metavar="ID")
@global_options
@pass_state
def show(state: State, entry_id: str) -> int:
    """Print the dead-letter entry ID (from `dlq list`) with its full AWS invocation record, as JSON."""
    config = _cluster(state)
    if config is None:
        return _with_store(state, lambda conn: _emit(deadletters.get_entry(conn, entry_id).to_json()))
    if asyncio.run(_admin().held_dead_letters(config, [entry_id])):
        return _emit(asyncio.run(_admin().dead_letter(config, entry_id)).to_json() | {"store": CLUSTER})
    entry = _with_store(state, lambda conn: _local_entry(conn, entry_id), cluster=True)
    return _emit(entry.to_json() | {"store": LOCAL})


def _local_entry(conn: Any, entry_id: str) -> DeadLetter:
    if conn is None:
        raise BridgeError(f"no dead letter with id {entry_id!r}; `lambda-bridge dlq list` shows the ids")
    return deadletters.get_entry(conn, entry_id)


def _emit(value: Any) -> int:
    emit_json(value)
    return 0


def selection(command: Callable[..., int]) -> Callable[..., int]:
    """ID..., --all and --function: which dead letters a redrive or purge takes."""
    command = click.option("--function", metavar="NAME", help="only entries of this function")(command)
    command = click.option("--all", "all_", is_flag=True, help="every entry (with --function: all of it)")(command)
    return click.argument("ids", nargs=-1, metavar="[ID]...")(command)


@dlq.command("redrive")
@selection
@global_options
@pass_state
def redrive(state: State, ids: tuple[str, ...], all_: bool, function: str | None) -> int:
    """Queue the original events of the entries ID... (or --all) again; the daemon delivers them."""
    config = _cluster(state)
    if config is None:
        def act(conn: Any) -> int:
            events = deadletters.redrive(conn, deadletters.select(conn, list(ids), all_, function))
            _done(state, {"redriven": [e.id for e in events]},
                  f"redrove {len(events)} event(s); the daemon delivers them within seconds")
            return 0

        return _with_store(state, act)
    shared, local = _split(config, ids, all_)
    sent = asyncio.run(_admin().redrive(config, shared, all_, function)) if shared or all_ else []
    queued = [e.id for e in _on_host(state, deadletters.redrive, local, all_, function) or []]
    _done(state, {"redriven": sent + queued, CLUSTER: sent, LOCAL: queued},
          f"redrove {len(sent) + len(queued)} event(s): {len(sent)} into the cluster's shared queue (any node "
          f"delivers them), {len(queued)} into this host's queue (its daemon delivers them)")
    return 0


@dlq.command("purge")
@selection
@global_options
@pass_state
def purge(state: State, ids: tuple[str, ...], all_: bool, function: str | None) -> int:
    """Delete the entries ID... (or --all) for good."""
    config = _cluster(state)
    if config is None:
        def act(conn: Any) -> int:
            entries = deadletters.select(conn, list(ids), all_, function)
            count = deadletters.purge(conn, entries)
            _done(state, {"purged": count}, f"purged {count} entr{'y' if count == 1 else 'ies'}")
            return 0

        return _with_store(state, act)
    shared, local = _split(config, ids, all_)
    count = asyncio.run(_admin().purge(config, shared, all_, function)) if shared or all_ else 0
    count += _on_host(state, deadletters.purge, local, all_, function) or 0
    _done(state, {"purged": count}, f"purged {count} entr{'y' if count == 1 else 'ies'}")
    return 0


def _split(config: Config, ids: Sequence[str], all_: bool) -> tuple[list[str], list[str]]:
    """The named ids the cluster's table holds, and the others (this host's, or unknown: an error later)."""
    if all_ == bool(ids):
        raise UsageError("name entry ids or use --all (not both)")
    held = asyncio.run(_admin().held_dead_letters(config, ids)) if ids else set()
    return [i for i in ids if i in held], [i for i in ids if i not in held]


def _on_host(state: State, act: Callable[[Any, list[DeadLetter]], Any], ids: list[str], all_: bool,
             function: str | None) -> Any:
    """``act(conn, entries)`` on this host's entries named by ``ids`` (or all); None when there are none."""
    if not (ids or all_):
        return None

    def run(conn: Any) -> Any:
        entries = [_local_entry(conn, i) for i in ids] if conn is None else (
            deadletters.select(conn, ids, all_, function))
        return act(conn, entries) if entries else None

    return _with_store(state, run, cluster=True)


def _done(state: State, value: dict[str, Any], text: str) -> None:
    if state.json:
        emit_json(value)
    else:
        click.echo(text)


def _list(entries: list[DeadLetter], as_json: bool, stores: list[str] | None = None) -> int:
    if as_json:
        extra = [{"store": s} for s in stores] if stores is not None else [{} for _ in entries]
        emit_json([e.to_json() | more for e, more in zip(entries, extra, strict=True)])
        return 0
    if not entries:
        click.echo("the dead-letter store is empty" if stores is None else
                   "no dead letters, in the cluster's table nor on this host", err=True)
        return 0
    rows = [(e.id, e.function, e.to_json()["time"], e.condition,
             str(e.record["requestContext"]["approximateInvokeCount"]), _error(e)) for e in entries]
    header = ("ID", "FUNCTION", "TIME", "CONDITION", "INVOKES", "ERROR")
    if stores is not None:  # a cluster: where each entry is kept, before its error
        rows = [(*row[:5], where, row[5]) for row, where in zip(rows, stores, strict=True)]
        header = (*header[:5], "STORE", header[5])
    fixed = len(header) - 1
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(fixed)]
    for row in [header, *rows]:
        click.echo("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:fixed])) + "  " + row[fixed])
    return 0


def _error(entry: DeadLetter) -> str:
    payload = entry.record.get("responsePayload")
    if isinstance(payload, dict) and "errorMessage" in payload:
        return f"{payload.get('errorType', 'Error')}: {payload['errorMessage']}"[:80]
    return entry.reason[:80]


COMMANDS = (dlq,)
