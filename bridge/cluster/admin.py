"""Cluster operations for the CLI, from any node: init, check, status, and the shared dead letters."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from bridge.cluster import messages
from bridge.cluster.aws import Clients, describe, error_code, is_transient
from bridge.cluster.config import ClusterConfig
from bridge.cluster.table import FIRE, Table
from bridge.config.model import Config
from bridge.delivery.dispatcher import new_event
from bridge.errors import ClusterUnavailable, UsageError
from bridge.store import DeadLetter

RETENTION = 14 * 86400  # SQS's longest: an event waits up to maximum_event_age (6 h) plus redrive time


def _cluster(config: Config) -> ClusterConfig:
    if config.cluster is None:
        raise UsageError("this config has no cluster: section; add one (docs/cluster.md) to use cluster commands")
    return config.cluster


def queue_attributes(cluster: ClusterConfig) -> dict[str, str]:
    """The shared queue's settings: visibility as configured, the longest retention, long polling."""
    return {"VisibilityTimeout": str(cluster.visibility_timeout), "MessageRetentionPeriod": str(RETENTION),
            "ReceiveMessageWaitTimeSeconds": "10", "MaximumMessageSize": str(messages.MAX_BODY)}


async def init(config: Config) -> list[str]:
    """Create the queue and the table (with TTL) if missing; what was done, one line each."""
    cluster = _cluster(config)
    async with Clients(cluster, config.region) as clients:
        try:
            made = await clients.sqs.create_queue(QueueName=cluster.queue_name, Attributes=queue_attributes(cluster))
            created = await Table(clients.ddb, cluster.table).create()
        except Exception as err:
            raise _unavailable(err, cluster) from err
    lines = [f"queue {made['QueueUrl']}: ready"]
    if made["QueueUrl"].rstrip("/") != cluster.async_queue.rstrip("/"):
        lines.append(f"note: the queue's URL differs from cluster.async_queue ({cluster.async_queue}); "
                     "put the URL above into the config")
    lines.append(f"table {cluster.table}: {'created, TTL on expires_at' if created else 'exists'}")
    return lines


async def check(config: Config) -> list[str]:
    """Both exist and answer; ClusterUnavailable (exit 2) with what to do when not."""
    cluster = _cluster(config)
    async with Clients(cluster, config.region) as clients:
        found = await clients.check()
    attributes, table = found["queue"], found["table"]
    return [f"queue {cluster.async_queue}: reachable, ~{attributes.get('ApproximateNumberOfMessages', '?')} "
            f"message(s) waiting, visibility {attributes.get('VisibilityTimeout', '?')} s",
            f"table {cluster.table}: reachable, {table.get('TableStatus', '?')}"]


async def status(config: Config) -> dict[str, Any]:
    """Nodes (alive, last heartbeat), open schedule claims (leases) and the queue's counts."""
    cluster = _cluster(config)
    now = time.time()
    async with Clients(cluster, config.region) as clients:
        try:
            table = Table(clients.ddb, cluster.table)
            nodes = await table.nodes()
            schedules = [s.name for s in config.sources if getattr(s, "type", "") == "schedule"]
            claims = [c | {"schedule": s} for s in schedules for c in await table.claims(s)]
            leases = [c for c in claims if c.get("state") == "claimed"]
            queue = await clients.sqs.get_queue_attributes(QueueUrl=cluster.async_queue, AttributeNames=["All"])
            dead = len(await table.dead_letters())
        except Exception as err:
            raise _unavailable(err, cluster) from err
    return {"node": cluster.node_id, "nodes": [_node(n, now, cluster.lease_seconds) for n in nodes],
            "leases": [_lease(c, now) for c in leases], "queue": _queue(queue.get("Attributes", {})),
            "dead_letters": dead}


def _node(raw: dict[str, Any], now: float, lease: float) -> dict[str, Any]:
    age = now - float(raw.get("heartbeat_at", 0))
    state = raw.get("state") if raw.get("state") == "stopped" else ("alive" if age <= lease else "lost")
    return {"node_id": raw["sk"], "state": state, "host": raw.get("host"), "pid": int(raw.get("pid") or 0),
            "last_heartbeat_s": round(age, 1), "started_at": raw.get("started_at"),
            "queue_depth": raw.get("queue_depth")}


def _lease(raw: dict[str, Any], now: float) -> dict[str, Any]:
    return {"schedule": raw["schedule"], "scheduled": raw["sk"], "owner": raw.get("owner"),
            "expires_in_s": round(float(raw.get("lease_until", 0)) - now, 1)}


def _queue(attributes: dict[str, str]) -> dict[str, int]:
    keys = {"waiting": "ApproximateNumberOfMessages", "in_flight": "ApproximateNumberOfMessagesNotVisible",
            "delayed": "ApproximateNumberOfMessagesDelayed"}
    return {k: int(attributes.get(v, 0)) for k, v in keys.items()}


async def last_fires(config: Config, schedules: Sequence[str]) -> dict[str, datetime | None]:
    """Each schedule's newest scheduled time handed over anywhere in the cluster (None: never)."""
    cluster = _cluster(config)
    async with Clients(cluster, config.region) as clients:
        table = Table(clients.ddb, cluster.table)
        try:
            found = {name: await table.last_fire(name) for name in schedules}
        except Exception as err:
            raise _unavailable(err, cluster) from err
    return {name: datetime.fromisoformat(t) if t else None for name, t in found.items()}


async def fire_ledger(config: Config, schedule: str) -> list[dict[str, Any]]:
    """Every claim of one schedule (tests and audits: one hand-over per scheduled time)."""
    cluster = _cluster(config)
    async with Clients(cluster, config.region) as clients:
        return await Table(clients.ddb, cluster.table).claims(schedule)


# --- dead letters ------------------------------------------------------------------------------------

async def dead_letters(config: Config, function: str | None = None) -> list[DeadLetter]:
    """The cluster's dead letters not yet redriven."""
    cluster = _cluster(config)
    async with Clients(cluster, config.region) as clients:
        try:
            return await Table(clients.ddb, cluster.table).dead_letters(function)
        except Exception as err:
            raise _unavailable(err, cluster) from err


async def dead_letter(config: Config, entry_id: str) -> DeadLetter:
    """One dead letter by id."""
    cluster = _cluster(config)
    async with Clients(cluster, config.region) as clients:
        return await Table(clients.ddb, cluster.table).dead_letter(entry_id)


async def held_dead_letters(config: Config, ids: Sequence[str]) -> set[str]:
    """Which of ``ids`` are dead letters in the cluster's table (the others may be a host's local ones)."""
    cluster = _cluster(config)
    async with Clients(cluster, config.region) as clients:
        table = Table(clients.ddb, cluster.table)
        try:
            return {i for i in ids if await table.has_dead_letter(i)}
        except Exception as err:
            raise _unavailable(err, cluster) from err


async def redrive(config: Config, ids: Sequence[str], all_: bool, function: str | None) -> list[str]:
    """Send each entry's original event to the shared queue as a fresh invocation; returns the request ids.

    The event is sent before the entry is marked: a crash in between leaves it listed (redrive twice
    rather than lose it).
    """
    cluster = _cluster(config)
    async with Clients(cluster, config.region) as clients:
        table = Table(clients.ddb, cluster.table)
        entries = await _select(table, ids, all_, function)
        sent = []
        for entry in entries:
            event = new_event(entry.function, json.dumps(entry.record.get("requestPayload")).encode())
            await clients.sqs.send_message(QueueUrl=cluster.async_queue, MessageBody=messages.encode(event))
            await table.mark_redriven(entry.id, time.time())
            sent.append(event.request_id)
        return sent


async def purge(config: Config, ids: Sequence[str], all_: bool, function: str | None) -> int:
    """Delete entries for good."""
    cluster = _cluster(config)
    async with Clients(cluster, config.region) as clients:
        table = Table(clients.ddb, cluster.table)
        entries = await _select(table, ids, all_, function)
        for entry in entries:
            await table.delete_dead_letter(entry.id)
        return len(entries)


async def _select(table: Table, ids: Sequence[str], all_: bool, function: str | None) -> list[DeadLetter]:
    if all_ == bool(ids):
        raise UsageError("name entry ids or use --all (not both)")
    if all_:
        return await table.dead_letters(function)
    entries = [await table.dead_letter(i) for i in ids]
    return [e for e in entries if function is None or e.function == function]


def _unavailable(err: BaseException, cluster: ClusterConfig) -> BaseException:
    if isinstance(err, ClusterUnavailable) or not (error_code(err) or is_transient(err)):
        return err
    return ClusterUnavailable(describe(err, cluster))


__all__ = ["FIRE", "check", "dead_letter", "dead_letters", "fire_ledger", "held_dead_letters", "init", "last_fires",
           "purge", "redrive", "status"]
