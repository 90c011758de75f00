"""The ``cluster`` commands (init, check): thin wrappers over bridge.cluster.admin.

The everyday commands (``status``, ``dlq``, ``schedules``) need no cluster variant: with a ``cluster:``
section they read the cluster's table themselves, from any node.
"""

from __future__ import annotations

import asyncio
from typing import Any

import click

from bridge.cli.context import State, global_options, pass_state


@click.group("cluster", short_help="cluster mode: the shared SQS queue and DynamoDB table")
@global_options
def cluster() -> None:
    """Cluster mode: create and check the shared queue and table (`status`, `dlq` and `schedules` cover the
    whole cluster by themselves)."""


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


COMMANDS = (cluster,)
