"""The cluster's DynamoDB table: membership, schedule fire claims (the ledger) and dead letters, in one table.

Keys: ``pk`` (partition) and ``sk`` (sort), both strings. ``node``/NODE_ID holds a node's heartbeat;
``fire#SCHEDULE``/ISO-TIME a claim on one scheduled time; ``dlq``/ID a dead letter. ``expires_at`` is the
table's TTL attribute: heartbeats and claims clean themselves up; dead letters do not expire.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from bridge.errors import BridgeError, NodeIdInUse
from bridge.runtime_file import pid_alive
from bridge.store import DeadLetter

NODE, DLQ, FIRE = "node", "dlq", "fire#"
TTL_ATTRIBUTE = "expires_at"
NODE_TTL = 7 * 86400.0  # a node's item outlives its last heartbeat by a week, so `status` shows who left
CLAIM_TTL = 40 * 86400.0  # longer than the longest catch-up window (31 days of fire records)
WRITE_ATTEMPTS = 5  # a conditional write whose item keeps changing under it gives up after these


def _enc(value: Any) -> dict[str, str]:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return {"S": str(value)}
    return {"N": repr(float(value)) if isinstance(value, float) else str(value)}


def item(**fields: Any) -> dict[str, dict[str, str]]:
    """A DynamoDB item from plain values (str -> S, numbers -> N); None values are left out."""
    return {k: _enc(v) for k, v in fields.items() if v is not None}


def plain(raw: dict[str, dict[str, str]]) -> dict[str, Any]:
    """A DynamoDB item as plain values."""
    return {k: float(v["N"]) if "N" in v else v.get("S") for k, v in raw.items()}


def conditional_failed(err: BaseException) -> bool:
    """The write's condition did not hold (someone else got there first, or the item is not there)."""
    response = getattr(err, "response", None) or {}
    return response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


def failed_item(err: BaseException) -> dict[str, Any] | None:
    """The item a failed conditional write found (``ReturnValuesOnConditionCheckFailure=ALL_OLD``); None: none.

    Read by the write itself, atomically: a read after the failure could see a later state.
    """
    raw = (getattr(err, "response", None) or {}).get("Item")
    return plain(raw) if raw else None


class NodeItemLost(Exception):
    """This node's membership item is gone (or left to a dead process): the node joins again."""


@dataclass(frozen=True, slots=True)
class Claim:
    """The outcome of claiming one scheduled time: ``won`` it, or someone else holds it until ``lease_until``."""

    won: bool
    state: str  # claimed | handed
    owner: str
    lease_until: float
    took_over: bool = False
    body: str | None = None  # the event to hand over (the first claimant's, after a takeover)


class Table:
    """Typed operations on the cluster table (one aiobotocore DynamoDB client)."""

    def __init__(self, ddb: Any, name: str) -> None:
        self.ddb = ddb
        self.name = name

    # --- setup --------------------------------------------------------------------------------------

    async def create(self) -> bool:
        """Create the table (on-demand billing) with TTL on ``expires_at``; False if it existed."""
        try:
            await self.ddb.create_table(
                TableName=self.name, BillingMode="PAY_PER_REQUEST",
                AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                      {"AttributeName": "sk", "AttributeType": "S"}],
                KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}])
        except Exception as err:
            if getattr(err, "response", {}).get("Error", {}).get("Code") != "ResourceInUseException":
                raise
            return False
        waiter = self.ddb.get_waiter("table_exists")
        await waiter.wait(TableName=self.name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
        await self.ddb.update_time_to_live(TableName=self.name, TimeToLiveSpecification={
            "Enabled": True, "AttributeName": TTL_ATTRIBUTE})
        return True

    # --- membership ---------------------------------------------------------------------------------

    async def join(self, node: str, session: str, host: str, now: float, lease: float,
                   started: float | None = None) -> None:
        """Register this process as ``node``; NodeIdInUse if a live process elsewhere holds the id.

        ``started``: when this process first joined (a re-join keeps it). An item that changes or disappears
        between the read and the write is looked at again: only a live holder refuses the id.
        """
        found = await self.ddb.get_item(TableName=self.name, Key=item(pk=NODE, sk=node), ConsistentRead=True)
        old = plain(found["Item"]) if "Item" in found else None
        for _ in range(WRITE_ATTEMPTS):
            if old is not None and old.get("session") != session and not _free(old, host, now, lease):
                raise NodeIdInUse(_in_use(node, old, now, lease))
            try:
                await self._put_node(node, session, host, now, started, old)
                return
            except Exception as err:
                if not conditional_failed(err):
                    raise
                old = failed_item(err)  # what is there now, read by the failed write itself
        raise NodeIdInUse(f"cluster node id {node!r} was taken by another daemon starting at the same "
                          "time; give each daemon its own cluster.node_id")

    async def _put_node(self, node: str, session: str, host: str, now: float, started: float | None,
                        old: dict[str, Any] | None) -> None:
        """Write this node's item if the item is still ``old`` (None: still missing)."""
        condition = "attribute_not_exists(pk)" if old is None else "#s = :old"
        values = {} if old is None else {":old": {"S": str(old["session"])}}
        names = {} if old is None else {"#s": "session"}
        await self.ddb.put_item(TableName=self.name, Item=self._node_item(node, session, host, started or now, now),
                                ConditionExpression=condition, ReturnValuesOnConditionCheckFailure="ALL_OLD",
                                **_extra(names, values))

    def _node_item(self, node: str, session: str, host: str, started: float, now: float) -> dict[str, Any]:
        return item(pk=NODE, sk=node, session=session, host=host, pid=os.getpid(), started_at=started,
                    heartbeat_at=now, state="running", **{TTL_ATTRIBUTE: int(now + NODE_TTL)})

    async def heartbeat(self, node: str, session: str, now: float, lease: float, host: str, **extra: Any) -> None:
        """Renew this node's heartbeat.

        NodeIdInUse if a live process took the id meanwhile; NodeItemLost if the item is gone (a restored or
        re-created table, TTL after a long pause) or was taken by a process that is no longer alive: the
        caller joins again.
        """
        sets = ", ".join(f"#{k} = :{k}" for k in ["heartbeat_at", TTL_ATTRIBUTE, *extra])
        fields = {"heartbeat_at": now, TTL_ATTRIBUTE: int(now + NODE_TTL), **extra}
        try:
            await self.ddb.update_item(
                TableName=self.name, Key=item(pk=NODE, sk=node), UpdateExpression=f"SET {sets}",
                ConditionExpression="#session = :session", ReturnValuesOnConditionCheckFailure="ALL_OLD",
                ExpressionAttributeNames={"#session": "session", **{f"#{k}": k for k in fields}},
                ExpressionAttributeValues={":session": {"S": session}, **{f":{k}": _enc(v) for k, v in fields.items()}})
        except Exception as err:
            if not conditional_failed(err):
                raise
            old = failed_item(err)
            if old is None:
                raise NodeItemLost("missing") from None
            if _free(old, host, now, lease):
                raise NodeItemLost(f"held by session {old.get('session')}, which is gone") from None
            raise NodeIdInUse(f"cluster node id {node!r} was taken over by another daemon (pid {old.get('pid')} "
                              f"on host {old.get('host')}); each daemon needs its own cluster.node_id") from None

    async def leave(self, node: str, session: str, now: float) -> None:
        """Mark this node stopped (a clean shutdown): its id is free at once."""
        try:
            await self.ddb.update_item(
                TableName=self.name, Key=item(pk=NODE, sk=node), UpdateExpression="SET #st = :stopped, #h = :now",
                ConditionExpression="#session = :session",
                ExpressionAttributeNames={"#st": "state", "#h": "heartbeat_at", "#session": "session"},
                ExpressionAttributeValues={":stopped": {"S": "stopped"}, ":now": _enc(now), ":session": {"S": session}})
        except Exception as err:
            if not conditional_failed(err):
                raise

    async def nodes(self) -> list[dict[str, Any]]:
        """Every node item, by node id."""
        return [plain(i) for i in await self._query(NODE)]

    # --- schedule fire claims (the ledger) ----------------------------------------------------------

    async def claim(self, schedule: str, scheduled: str, *, owner: str, session: str, now: float,
                    lease: float, body: str) -> Claim:
        """Claim ``(schedule, scheduled)`` by a conditional write: new, or an expired lease not handed over.

        ``body`` (the event as a queue message) is kept with the first claim; a takeover gets the first
        claimant's body back, so a fire handed over twice (its owner died between send and mark) is one
        invocation delivered twice (same request id), as SQS's at-least-once allows, never two invocations.
        """
        names = {"#st": "state", "#o": "owner", "#s": "session", "#ttl": TTL_ATTRIBUTE}
        values = {":claimed": {"S": "claimed"}, ":now": _enc(now), ":until": _enc(now + lease), ":o": _enc(owner),
                  ":s": _enc(session), ":ttl": _enc(int(now + CLAIM_TTL)), ":zero": {"N": "0"}, ":one": {"N": "1"},
                  ":body": {"S": body}}
        key = item(pk=FIRE + schedule, sk=scheduled)
        for _ in range(WRITE_ATTEMPTS):
            try:
                response = await self.ddb.update_item(
                    TableName=self.name, Key=key, ReturnValues="ALL_OLD", ReturnValuesOnConditionCheckFailure="ALL_OLD",
                    UpdateExpression="SET #st = :claimed, #o = :o, #s = :s, lease_until = :until, claimed_at = :now, "
                                     "#ttl = :ttl, claims = if_not_exists(claims, :zero) + :one, "
                                     "body = if_not_exists(body, :body)",
                    ConditionExpression="attribute_not_exists(pk) OR (#st = :claimed AND lease_until < :now)",
                    ExpressionAttributeNames=names, ExpressionAttributeValues=values)
            except Exception as err:
                if not conditional_failed(err):
                    raise
                # The claim in the way, as the write saw it; only an endpoint that does not send it back is
                # asked again, and a claim gone by then (a re-created table) is claimed again.
                held = failed_item(err) or await self._get(FIRE + schedule, scheduled)
                if held:
                    return Claim(False, str(held.get("state")), str(held.get("owner")),
                                 float(held.get("lease_until", 0)))
                continue
            old = plain(response.get("Attributes", {}))
            return Claim(True, "claimed", owner, now + lease, took_over=bool(old), body=old.get("body") or body)
        raise BridgeError(f"the claim on {schedule} at {scheduled} keeps changing under this node; "
                          "check that nothing else writes the cluster table")

    async def handed(self, schedule: str, scheduled: str, *, owner: str, session: str, event_id: str,
                     now: float) -> None:
        """The claimed fire is durable in the shared queue: mark it handed over (counted, for audits).

        A claim that is gone (a restored or re-created table) is written again as handed over, so no node
        claims the time again; a claim another session holds now raises ConditionalCheckFailedException.
        """
        await self.ddb.update_item(
            TableName=self.name, Key=item(pk=FIRE + schedule, sk=scheduled),
            UpdateExpression="SET #st = :handed, handed_at = :now, event_id = :event, #o = :o, #session = :session, "
                             "#ttl = if_not_exists(#ttl, :ttl) ADD handovers :one",
            ConditionExpression="attribute_not_exists(pk) OR #session = :session",
            ExpressionAttributeNames={"#st": "state", "#session": "session", "#o": "owner", "#ttl": TTL_ATTRIBUTE},
            ExpressionAttributeValues={":handed": {"S": "handed"}, ":now": _enc(now), ":one": {"N": "1"},
                                       ":session": {"S": session}, ":event": {"S": event_id}, ":o": _enc(owner),
                                       ":ttl": _enc(int(now + CLAIM_TTL))})

    async def claims(self, schedule: str) -> list[dict[str, Any]]:
        """Every claim of one schedule, oldest first."""
        return [plain(i) for i in await self._query(FIRE + schedule)]

    async def last_fire(self, schedule: str) -> str | None:
        """The newest scheduled time (ISO) of ``schedule`` handed over anywhere in the cluster.

        Only hand-overs count, as only an enqueued fire counts on a single box: a time claimed by a node that
        died before handing it over (a whole-cluster outage leaves nobody to take the claim over) is a missed
        time, and the schedule's ``catch_up`` policy decides about it at the next start.
        """
        kwargs: dict[str, Any] = {
            "TableName": self.name, "KeyConditionExpression": "pk = :pk", "ScanIndexForward": False, "Limit": 16,
            "FilterExpression": "#st = :handed", "ExpressionAttributeNames": {"#st": "state"},
            "ExpressionAttributeValues": {":pk": {"S": FIRE + schedule}, ":handed": {"S": "handed"}},
            "ConsistentRead": True}
        while True:  # the filter applies after the limit: the newest hand-over may be a page or two down
            response = await self.ddb.query(**kwargs)
            found = response.get("Items", [])
            if found:
                return str(plain(found[0])["sk"])
            if "LastEvaluatedKey" not in response:
                return None
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    # --- dead letters -------------------------------------------------------------------------------

    async def put_dead_letter(self, entry: DeadLetter, node: str) -> None:
        """Keep a dead letter (idempotent by id: a repeated write after a crash replaces itself)."""
        attributes = json.dumps(entry.attributes) if entry.attributes else None
        await self.ddb.put_item(TableName=self.name, Item=item(
            pk=DLQ, sk=entry.id, function=entry.function, time=entry.time, condition=entry.condition,
            reason=entry.reason, record=json.dumps(entry.record), attributes=attributes, node=node))

    async def dead_letters(self, function: str | None = None) -> list[DeadLetter]:
        """Dead letters not yet redriven, oldest first, optionally of one function."""
        entries = [_dead_letter(plain(i)) for i in await self._query(DLQ) if "redriven_at" not in i]
        return sorted((e for e in entries if function is None or e.function == function), key=lambda e: e.time)

    async def dead_letter(self, entry_id: str) -> DeadLetter:
        """One dead letter by id; a clear error when there is none."""
        found = await self._get(DLQ, entry_id)
        if not found:
            raise BridgeError(f"no dead letter with id {entry_id!r}; `lambda-bridge dlq list` shows the ids")
        return _dead_letter(found)

    async def has_dead_letter(self, entry_id: str) -> bool:
        """An entry with this id exists (redriven or not)."""
        return bool(await self._get(DLQ, entry_id))

    async def mark_redriven(self, entry_id: str, now: float) -> None:
        """The entry's event is queued again (an entry purged meanwhile stays gone: no empty item is made)."""
        try:
            await self.ddb.update_item(TableName=self.name, Key=item(pk=DLQ, sk=entry_id),
                                       UpdateExpression="SET redriven_at = :now",
                                       ConditionExpression="attribute_exists(pk)",
                                       ExpressionAttributeValues={":now": _enc(now)})
        except Exception as err:
            if not conditional_failed(err):
                raise

    async def delete_dead_letter(self, entry_id: str) -> None:
        """Delete an entry for good."""
        await self.ddb.delete_item(TableName=self.name, Key=item(pk=DLQ, sk=entry_id))

    # --- plumbing -----------------------------------------------------------------------------------

    async def _get(self, pk: str, sk: str) -> dict[str, Any]:
        found = await self.ddb.get_item(TableName=self.name, Key=item(pk=pk, sk=sk), ConsistentRead=True)
        return plain(found["Item"]) if "Item" in found else {}

    async def _query(self, pk: str) -> list[dict[str, dict[str, str]]]:
        items: list[dict[str, dict[str, str]]] = []
        kwargs: dict[str, Any] = {"TableName": self.name, "KeyConditionExpression": "pk = :pk",
                                  "ExpressionAttributeValues": {":pk": {"S": pk}}, "ConsistentRead": True}
        while True:
            response = await self.ddb.query(**kwargs)
            items += response.get("Items", [])
            if "LastEvaluatedKey" not in response:
                return items
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]


def _free(old: dict[str, Any], host: str, now: float, lease: float) -> bool:
    """A node id is free when its holder stopped, went silent for a lease, or was this host's dead process."""
    if old.get("state") == "stopped" or now - float(old.get("heartbeat_at", 0)) > lease:
        return True
    return old.get("host") == host and not pid_alive(int(float(old.get("pid") or 0)))


def _in_use(node: str, old: dict[str, Any], now: float, lease: float) -> str:
    age = now - float(old.get("heartbeat_at", 0))
    return (f"cluster node id {node!r} is in use by pid {old.get('pid')} on host {old.get('host')} "
            f"(heartbeat {age:.1f} s ago); give this daemon another cluster.node_id, or stop the other one "
            f"(its id is free {lease:g} s after its last heartbeat)")


def _extra(names: dict[str, str], values: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if names:
        out["ExpressionAttributeNames"] = names
    if values:
        out["ExpressionAttributeValues"] = values
    return out


def _dead_letter(raw: dict[str, Any]) -> DeadLetter:
    attributes = json.loads(raw["attributes"]) if raw.get("attributes") else None
    return DeadLetter(str(raw["sk"]), str(raw["function"]), float(raw["time"]), str(raw["condition"]),
                      str(raw["reason"]), json.loads(raw["record"]), attributes)
