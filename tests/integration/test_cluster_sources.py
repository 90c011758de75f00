"""Cluster mode's intake: backpressure on the shared queue, SQS event source mappings on several nodes,
and schedules catching up after the whole cluster was down. moto's server and daemons as subprocesses.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest

from bridge.testing import wait_until, write_handler
from tests.integration.cluster_kit import Cluster, atomic_moto, records


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    """moto for this module, its DynamoDB writes made atomic (see cluster_kit); ``make_cluster`` uses it."""
    with atomic_moto(fifo_receives=True) as url:
        yield url


# --- max_queued_events on the shared queue ----------------------------------------------------------------


class Post(threading.Thread):
    """One Event invocation through a node, in the background (it waits while intake is paused)."""

    def __init__(self, cluster: Cluster, node: str, payload: dict) -> None:
        super().__init__(daemon=True)
        self.cluster, self.node, self.payload = cluster, node, payload
        self.status: int | None = None

    def run(self) -> None:
        self.status = self.cluster.post(self.node, self.payload)


def test_intake_waits_while_the_clusters_backlog_is_over_max_queued_events(
        make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(function={"timeout": 30, "reserved_concurrency": 1}, max_queued_events=5)
    gate = cluster.tmp / "gate"  # the function holds every event until this file exists
    node1, node2 = cluster.start("n1"), cluster.start("n2")
    for n in range(5):  # up to the cap: accepted at once (2 in the nodes' hands, 3 waiting)
        assert cluster.post("n1", {"gate": str(gate), "n": n}) == 202
    late = [Post(cluster, "n1", {"gate": str(gate), "n": 5})]
    try:
        late[0].start()
        node1.wait_for("queue.full", timeout=30)
        # The cap is the cluster's: n2 accepted nothing yet, and it waits too (saying so once).
        late += [Post(cluster, "n2", {"gate": str(gate), "n": n}) for n in (6, 7, 8)]
        for post in late[1:]:
            post.start()
        [full] = node2.wait_for("queue.full", timeout=30)
        assert full["max_queued_events"] == 5 and full["depth"] == 5
        assert all(p.status is None for p in late), "nothing past the cap was accepted"
        assert cluster.backlog() == 5
    finally:
        gate.touch()  # delivery makes room: the callers waiting get their 202, nothing is lost
    for post in late:
        post.join(60)
    assert [p.status for p in late] == [202] * 4
    wait_until(lambda: {r["event"]["n"] for r in records(cluster.sink)} == set(range(9)), timeout=60)
    node1.wait_for("queue.resumed", timeout=30)
    node2.wait_for("queue.resumed", timeout=30)
    assert len(node2.find("queue.full")) == len(node2.find("queue.resumed")) == 1



# --- SQS event source mappings: N nodes polling one FIFO queue ---------------------------------------------

# Processes a batch in order; a message marked fail_once fails its first time, and (as Lambda's docs ask of
# a FIFO consumer) the rest of the batch is reported with it. One line per invocation: node, times, items.
BATCHER = """
    import json, os, time
    def handler(event, context):
        start, done, failures, reported = time.time(), [], [], []
        for record in event["Records"]:
            body = json.loads(record["body"])
            marker = os.path.join(os.environ["MARKS"], "%s-%s" % (body["g"], body["seq"]))
            if not failures and body.get("fail_once") and not os.path.exists(marker):
                open(marker, "w").close()
            elif not failures:
                done.append([body["g"], body["seq"], int(record["attributes"]["ApproximateReceiveCount"])])
                continue
            failures.append({"itemIdentifier": record["messageId"]})
            reported.append([body["g"], body["seq"]])
        time.sleep(0.4)  # long enough for batches to overlap, so concurrency shows
        line = json.dumps({"node": os.environ["NODE_ID"], "start": start, "end": time.time(), "done": done,
                           "reported": reported})
        fd = os.open(os.environ["RECORD_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        os.write(fd, (line + "\\n").encode())
        os.close(fd)
        return {"batchItemFailures": failures}
"""
GROUPS, PER_GROUP = 8, 6
FAILING = 2  # the seq of each group that fails once
LANES = 2  # the mapping's maximum_concurrency: per node


def test_n_nodes_on_one_fifo_queue_keep_group_order_partial_batches_and_per_node_concurrency(
        tmp_path: Path, make_cluster: Callable[..., Cluster], moto_url: str) -> None:
    sqs = boto3.client("sqs", endpoint_url=moto_url, region_name="us-east-1")
    queue = sqs.create_queue(QueueName=f"jobs-{uuid.uuid4().hex[:8]}.fifo", Attributes={
        "FifoQueue": "true", "ContentBasedDeduplication": "true", "VisibilityTimeout": "2"})["QueueUrl"]
    (tmp_path / "marks").mkdir()
    batches = tmp_path / "batches.jsonl"
    code = write_handler(tmp_path, "batcher", BATCHER)
    cluster = make_cluster(functions={"batcher": {
        "handler": "app.handler", "code": str(code), "timeout": 30, "reserved_concurrency": 4,
        "environment": {"RECORD_FILE": str(batches), "MARKS": str(tmp_path / "marks"), "NODE_ID": "${NODE_ID}"}}},
        sources=[{"name": "jobs", "type": "sqs", "queue": queue, "endpoint_url": moto_url, "function": "batcher",
                  "batch_size": 3, "maximum_concurrency": LANES,
                  "function_response_types": ["ReportBatchItemFailures"]}])
    nodes = cluster.start_all(["n1", "n2", "n3"])
    for node in nodes:
        node.wait_for("sqs.polling", timeout=30)
    for seq in range(PER_GROUP):  # in order within each group; the groups interleaved
        sqs.send_message_batch(QueueUrl=queue, Entries=[
            {"Id": str(g), "MessageGroupId": f"g{g}",
             "MessageBody": json.dumps({"g": g, "seq": seq, "fail_once": seq == FAILING})} for g in range(GROUPS)])

    lines = wait_until(lambda: _all_done(batches), timeout=60, interval=0.2)
    by_group: dict[int, list[int]] = {}
    for line in lines:
        for g, seq, _count in line["done"]:
            by_group.setdefault(g, []).append(seq)
    # Each group's messages were processed once each, in order, although three nodes took turns with them.
    assert by_group == {g: list(range(PER_GROUP)) for g in range(GROUPS)}
    # ReportBatchItemFailures: exactly the reported messages came back (once per report); the rest of each
    # batch was deleted, never received again.
    reported = Counter((g, seq) for line in lines for g, seq in line["reported"])
    receives = {(g, seq): count for line in lines for g, seq, count in line["done"]}
    assert {k: count - 1 for k, count in receives.items() if count > 1} == dict(reported)
    assert all(reported[(g, FAILING)] >= 1 for g in range(GROUPS))
    per_node = {n: _peak([(b["start"], b["end"]) for b in lines if b["node"] == n]) for n in ("n1", "n2", "n3")}
    everywhere = _peak([(b["start"], b["end"]) for b in lines])
    print(f"peak concurrent batches: {per_node} per node, {everywhere} in the cluster")
    assert all(1 <= peak <= LANES for peak in per_node.values()), per_node  # maximum_concurrency is per node
    assert everywhere > LANES, "the nodes together ran more batches at once than one node may"


def _all_done(path: Path) -> list[dict] | None:
    lines = records(path)
    done = sum(len(line["done"]) for line in lines)
    return lines if done >= GROUPS * PER_GROUP else None


def _peak(intervals: list[tuple[float, float]]) -> int:
    """The most intervals open at one moment."""
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    peak = open_ = 0
    for _, step in edges:
        open_ += step
        peak = max(peak, open_)
    return peak


# --- catch-up after the whole cluster was down ---------------------------------------------------------------


def test_after_a_whole_cluster_outage_each_missed_fire_is_caught_up_once_by_its_policy(
        make_cluster: Callable[..., Cluster]) -> None:
    missed = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=15)  # while every node is down
    sources = [{"name": name, "type": "schedule", "function": "sink", "schedule": "rate(1 minute)",
                "start_date": missed.isoformat(), "catch_up": policy, "input": {"schedule": name}}
               for name, policy in (("all", "all"), ("none", "none"), ("orphan", "latest"))]
    cluster = make_cluster(sources=sources, lease=2)
    names = ["n1", "n2", "n3"]
    for node in cluster.start_all(names):
        node.wait_for("schedule.armed", count=3, timeout=30)
    assert datetime.now(UTC) < missed - timedelta(seconds=1), "the nodes took too long to start for this window"
    for name in names:
        cluster.nodes[name].kill()
    # "orphan": a node claimed its fire and died before handing it over (the claim is written as that node
    # wrote it, through the table's own code), and the whole cluster was down when its lease ran out.
    ghost = asyncio.run(_claim_and_die(cluster, "orphan", missed))
    wait_until(lambda: datetime.now(UTC) > missed + timedelta(seconds=1), timeout=30, interval=0.1)

    restarted = cluster.start_all(names)  # every node catches up at once
    for node in restarted:
        node.wait_for("schedule.skipped", source="none", timeout=30)  # each node went through its catch-up
    fired = wait_until(lambda: _fired_by_schedule(cluster.sink, {"all", "orphan"}), timeout=30, interval=0.2)
    ledger = {c["pk"].removeprefix("fire#"): c for c in cluster.ledger()}
    assert set(ledger) == {"all", "orphan"}  # catch_up none: the missed time stays missed
    for name in ("all", "orphan"):
        assert ledger[name]["sk"] == missed.isoformat() and ledger[name]["state"] == "handed"
        assert ledger[name]["handovers"] == "1", ledger[name]  # one hand-over, not one per node
    assert ledger["all"]["claims"] == "1"  # the first node's claim; the others' conditional writes failed
    assert ledger["orphan"]["claims"] == "2"  # the dead node's, then one takeover
    assert [len(fired["all"]), len(fired["orphan"])] == [1, 1]
    assert fired["orphan"][0]["request_id"] == ghost  # the invocation the dead node had claimed, not a new one
    assert sum(len(n.find("cluster.claim_taken_over", source="orphan")) for n in restarted) == 1


async def _claim_and_die(cluster: Cluster, schedule: str, scheduled: datetime) -> str:
    """Claim ``(schedule, scheduled)`` as a node would just before dying; the claimed event's request id."""
    from bridge.cluster import messages
    from bridge.cluster.aws import Clients
    from bridge.cluster.claims import stamp
    from bridge.cluster.table import Table
    from bridge.sources.schedule.fire import queued_fire

    config = cluster.config("ghost")
    [cfg] = [s for s in config.sources if s.name == schedule]
    event = queued_fire(cfg, config, scheduled, datetime.now(UTC))
    async with Clients(config.cluster, config.region) as clients:
        claim = await Table(clients.ddb, cluster.table).claim(
            schedule, stamp(scheduled), owner="ghost", session="ghost", now=time.time(), lease=1,
            body=messages.encode(event))
    assert claim.won
    return event.request_id


def _fired_by_schedule(sink: Path, names: set[str]) -> dict[str, list[dict]] | None:
    by_name: dict[str, list[dict]] = {}
    for record in records(sink):
        name = record["event"].get("schedule") if isinstance(record["event"], dict) else None
        if name is not None:
            by_name.setdefault(name, []).append(record)
    return by_name if set(by_name) >= names else None
