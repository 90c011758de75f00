"""Cluster mode when something fails: our own code on one event, the shared queue, AWS's throttling.

moto's server (SQS and DynamoDB over HTTP) is real throughout; where a fault cannot happen on its own it
is injected, and each injection says so.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from bridge.cluster import dispatcher as cluster_dispatcher
from bridge.cluster.dispatcher import ClusterDispatcher
from bridge.events.invocation_record import HANDLING_FAILED
from bridge.invokers.registry import Functions
from bridge.store import Store
from bridge.testing import wait_until
from tests.integration.cluster_kit import Cluster, atomic_moto, records
from tests.integration.fault_proxy import THROTTLES, FaultProxy, access_denied


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    """moto for this module, its DynamoDB writes made atomic (see cluster_kit); ``make_cluster`` uses it."""
    with atomic_moto() as url:
        yield url


# --- one event the bridge fails on ------------------------------------------------------------------------


async def test_an_event_the_bridge_fails_on_is_dead_lettered_and_the_node_goes_on(
        make_cluster: Callable[..., Cluster], monkeypatch: pytest.MonkeyPatch) -> None:
    """Fault injection (labelled): building the invocation record raises for event 1 (a bug in our code) and,
    once, an OSError for event 2 (as AWS out of reach would); the node, queue, table and worker are real."""
    cluster = make_cluster(function={"async": {"maximum_retry_attempts": 0, "on_failure": "dlq"}})
    real, calls = cluster_dispatcher.invocation_record, []

    def broken(**kwargs: Any) -> dict:
        n = json.loads(kwargs["request_payload"])["n"]
        calls.append(n)
        if n == 1:
            raise RuntimeError("injected: building the record failed")
        if n == 2 and calls.count(2) == 1:
            raise OSError("injected: unreachable")
        return real(**kwargs)

    monkeypatch.setattr(cluster_dispatcher, "invocation_record", broken)
    config = cluster.config("n1")
    functions = Functions(config)
    async with Store(cluster.tmp / "store.sqlite3") as store:
        dispatcher = ClusterDispatcher(store, functions, config)
        async with dispatcher.node:
            running = asyncio.create_task(dispatcher.run())
            try:
                for n in (1, 2, 3):
                    await dispatcher.accept("sink", json.dumps({"fail": True, "n": n}).encode())
                entries = await _wait_for_dead_letters(dispatcher, 3, timeout=30)
                assert not running.done(), "the node goes on"
            finally:
                dispatcher.stop()
                await running
                await functions.close()
    by_n = {_n(e.record["requestPayload"]): e for e in entries}
    assert by_n[1].condition == HANDLING_FAILED
    assert "injected: building the record failed" in by_n[1].reason
    assert by_n[1].record["requestContext"]["requestId"]  # the request id the function saw, to find its logs
    # The OSError was not the event's fault: it stayed on the queue, came back and was judged as usual.
    assert by_n[2].condition == by_n[3].condition == "RetriesExhausted"
    assert calls.count(2) == 2
    assert cluster.backlog() == 0


def _n(payload: Any) -> int:
    """The event's ``n``: the record of an event the bridge failed on carries the payload as text."""
    return (json.loads(payload) if isinstance(payload, str) else payload)["n"]


async def _wait_for_dead_letters(dispatcher: ClusterDispatcher, count: int, timeout: float) -> list:
    table = dispatcher.node.table
    assert table is not None
    async with asyncio.timeout(timeout):
        # The table signals nothing, so it is polled (with the deadline above).
        while len(entries := await table.dead_letters()) < count:  # noqa: ASYNC110
            await asyncio.sleep(0.2)
    return entries


# --- the shared queue refuses an Event invocation ----------------------------------------------------------


def test_an_event_the_shared_queue_refuses_gets_lambdas_503_and_nothing_is_queued(
        make_cluster: Callable[..., Cluster], moto_url: str) -> None:
    """The fault proxy (labelled fake boundary) answers SendMessage as SQS does when the node's IAM policy
    lacks sqs:SendMessage; boto3 is the caller, the daemon a subprocess."""
    with FaultProxy(moto_url) as proxy:
        cluster = make_cluster(endpoint=proxy.url)
        node = cluster.start("n1")
        client = cluster.lambda_client("n1")
        proxy.refuse = lambda service, op: access_denied("sqs:sendmessage") if op.startswith("SendMessage") else None
        with pytest.raises(ClientError) as refused:
            client.invoke(FunctionName="sink", InvocationType="Event", Payload=json.dumps({"n": 1}))
        error = refused.value.response
        assert error["ResponseMetadata"]["HTTPStatusCode"] == 503
        assert error["Error"]["Code"] == "ServiceException"
        message = error["Error"]["Message"]
        assert "shared queue is unreachable" in message and "cluster check" in message, message
        assert "IAM actions" in message, message  # what to fix, from AWS's own answer
        rid = error["ResponseMetadata"]["RequestId"]
        [logged] = node.wait_for("invoke.queue_unavailable", request_id=rid)
        assert logged["function"] == "sink" and logged["level"] == "error"

        proxy.refuse = None  # the policy is fixed: the same call is accepted and delivered, the refused one never
        accepted = client.invoke(FunctionName="sink", InvocationType="Event", Payload=json.dumps({"n": 2}))
        assert accepted["StatusCode"] == 202
        delivered = wait_until(lambda: records(cluster.sink), timeout=30)
        node.wait_for("delivery.succeeded", timeout=30)
        cluster.stop_all()
    assert [r["event"]["n"] for r in delivered] == [2]
    assert len(node.find("invoke.queue_unavailable")) == 1


def test_a_node_stops_at_once_while_aws_is_out_of_reach(make_cluster: Callable[..., Cluster], moto_url: str) -> None:
    """Its heartbeat and long polls are retrying with backoff; a stop must not wait that out."""
    with FaultProxy(moto_url) as proxy:
        cluster = make_cluster(endpoint=proxy.url)
        node = cluster.start("n1")
    node.wait_for("cluster.retrying", timeout=30)  # the proxy is gone: the node cannot reach SQS or DynamoDB
    assert node.stop(timeout=20) == 0
    assert not node.find("service.drain_timeout"), node.tail()


# --- AWS throttles: backoff, nothing lost --------------------------------------------------------------------

THROTTLE = 0.3  # the share of SQS and DynamoDB requests the proxy answers with a throttling error


def test_throttled_sqs_and_dynamodb_answers_are_retried_and_lose_nothing(
        make_cluster: Callable[..., Cluster], moto_url: str) -> None:
    """Every request of two nodes goes through the fault proxy (labelled fake boundary: AWS's throttling
    cannot be produced with moto), which answers 30 % of them with SQS's and DynamoDB's throttling errors:
    async invokes (SQS sends, receives, deletes), dead letters, heartbeats and a schedule's claim (DynamoDB)."""
    first = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=12)
    with FaultProxy(moto_url) as proxy:
        cluster = make_cluster(endpoint=proxy.url, function={"async": {"maximum_retry_attempts": 0}}, sources=[
            {"name": "tick", "type": "schedule", "function": "sink", "schedule": "rate(1 minute)",
             "start_date": first.isoformat()}])
        nodes = cluster.start_all(["n1", "n2"])
        proxy.throttle = THROTTLE
        payloads = [{"n": n, "fail": n % 8 == 0} for n in range(48)]  # every 8th fails: a dead letter
        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(lambda p: cluster.post(f"n{1 + p['n'] % 2}", p), payloads))
        assert statuses == [202] * len(payloads)  # accepted means durable: each one must arrive
        wait_until(lambda: {r["event"].get("n") for r in records(cluster.sink)} >= set(range(48)), timeout=60,
                   interval=0.2)
        failing = [p["n"] for p in payloads if p["fail"]]
        wait_until(lambda: len(_dead_letters(cluster)) >= len(failing), timeout=60, interval=0.2)
        wait_until(lambda: [c for c in cluster.ledger() if c["state"] == "handed"], timeout=30, interval=0.2)
        retried = [e for node in nodes for e in node.find("cluster.retrying")]
        cluster.stop_all()
    assert sorted(_n(e["record"]["requestPayload"]) for e in _dead_letters(cluster)) == failing
    [claim] = cluster.ledger()
    assert claim["handovers"] == "1"  # the schedule's one fire, handed over once
    fired = [r for r in records(cluster.sink) if r["event"].get("source") == "aws.events"]
    assert len({r["request_id"] for r in fired}) == 1
    # The throttles really happened, of all four kinds, and the nodes backed off and went on.
    assert set(proxy.throttled) == {(s, a.code) for s, answers in THROTTLES.items() for a in answers}, proxy.throttled
    assert retried, "at least one call was throttled past botocore's own retry"
    print(f"throttled: {dict(proxy.throttled)}; forwarded {sum(proxy.forwarded.values())}; "
          f"{len(retried)} backoffs in the nodes' logs")


def _dead_letters(cluster: Cluster) -> list[dict]:
    """The cluster's dead letters, read from moto itself."""
    items = cluster.ddb().query(TableName=cluster.table, KeyConditionExpression="pk = :pk",
                                ExpressionAttributeValues={":pk": {"S": "dlq"}})["Items"]
    return [{"record": json.loads(i["record"]["S"])} for i in items]
