"""Cluster mode end to end: moto's server (SQS and DynamoDB over HTTP) and three daemons as subprocesses.

The kit (one config, the nodes, what they recorded) is tests/integration/cluster_kit.py. Nodes are killed
with SIGKILL (their whole process group, workers included) and restarted.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bridge.testing import Daemon, free_port, wait_until
from tests.integration.cluster_kit import Cluster, atomic_moto, base_env, records


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    """moto for this module, its DynamoDB writes made atomic (see cluster_kit); ``make_cluster`` uses it."""
    with atomic_moto() as url:
        yield url


# --- setup and bad input --------------------------------------------------------------------------------


def test_check_says_what_is_missing_and_init_creates_it(tmp_path: Path, moto_url: str) -> None:
    cluster = Cluster(tmp_path, moto_url)
    missing = cluster.cli("n1", "cluster", "check")
    assert missing.returncode == 2
    assert "does not exist" in missing.stderr and "cluster init" in missing.stderr
    cluster.init()
    again = cluster.cli("n1", "cluster", "init")  # idempotent
    assert again.returncode == 0 and "exists" in again.stdout
    ok = cluster.cli("n1", "cluster", "check")
    assert ok.returncode == 0, ok.stderr
    assert "reachable" in ok.stdout
    ttl = cluster.ddb().describe_time_to_live(TableName=cluster.table)["TimeToLiveDescription"]
    assert ttl["AttributeName"] == "expires_at" and ttl["TimeToLiveStatus"] == "ENABLED"


def test_check_exits_2_when_the_endpoint_is_unreachable(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, f"http://127.0.0.1:{free_port()}")
    run = cluster.cli("n1", "cluster", "check")
    assert run.returncode == 2
    assert "cannot reach" in run.stderr


def test_a_node_waits_for_an_unreachable_cluster_and_accepts_nothing(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, f"http://127.0.0.1:{free_port()}")
    daemon = Daemon(cluster.config_path, env=cluster.env("n1"))
    with pytest.raises(AssertionError):
        daemon.start(timeout=8)  # no READY=1: the node keeps retrying the join
    try:
        assert any(line for line in daemon.raw if '"cluster.retrying"' in line), daemon.tail()
        with pytest.raises(OSError):  # intake never opened: nothing can be accepted that is not durable
            cluster.post("n1", {"n": 1})
    finally:
        daemon.kill()


def test_two_nodes_with_one_node_id_are_refused(make_cluster) -> None:
    cluster = make_cluster()
    cluster.start("n1")
    second = subprocess.run([sys.executable, "-m", "bridge.cli", "run", "--config", str(cluster.config_path)],
                            capture_output=True, text=True, timeout=60,
                            env={**base_env(), **cluster.env("n1"), "STATE": str(cluster.tmp / "other"),
                                 "PORT": str(free_port())})
    assert second.returncode == 2
    assert "cluster node id 'n1' is in use" in second.stdout + second.stderr


def test_a_killed_node_restarts_under_its_own_id(make_cluster) -> None:
    cluster = make_cluster()
    cluster.start("n1").kill()
    cluster.start("n1")  # the old process is gone: its id is free at once, not a lease later
    status = json.loads(cluster.cli("n2", "status", "--json").stdout)["cluster"]
    assert [n["state"] for n in status["nodes"] if n["node_id"] == "n1"] == ["alive"]


# --- (a) async invocations while nodes are killed -------------------------------------------------------


class Sender(threading.Thread):
    """Posts Event invocations with increasing ``n`` through one node; remembers each one answered 202."""

    def __init__(self, cluster: Cluster, node: str, start_at: int) -> None:
        super().__init__(daemon=True)
        self.cluster, self.node, self.n = cluster, node, start_at
        self.accepted: list[int] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                status = self.cluster.post(self.node, {"n": self.n})
            except (OSError, http.client.HTTPException):
                self.stop.wait(0.05)  # the node is down: try again once it is back
                continue
            if status == 202:
                self.accepted.append(self.n)
            self.n += 1
            self.stop.wait(PAUSE)


KILLS = 20  # one node at a time
PAUSE = 0.4  # seconds between a sender's events: moto delivers ~10 events/s here, so the backlog stays small


def test_async_invokes_survive_nodes_killed_one_at_a_time(make_cluster) -> None:
    cluster = make_cluster()
    names = ["n1", "n2", "n3"]
    for name in names:
        cluster.start(name)
    senders = [Sender(cluster, name, i * 1_000_000) for i, name in enumerate(names)]
    for sender in senders:
        sender.start()
    rng = random.Random(18)
    started = time.monotonic()
    for kill in range(KILLS):
        time.sleep(rng.uniform(0.3, 1.0))  # the scenario: events flow for a random while, then the kill
        victim = names[kill % 3]
        cluster.nodes[victim].kill()
        cluster.start(victim)
    for sender in senders:
        sender.stop.set()
        sender.join()
    accepted = [n for s in senders for n in s.accepted]
    assert len(accepted) > 50, f"only {len(accepted)} events were accepted"
    delivered = wait_until(lambda: _all_delivered(cluster.sink, accepted), timeout=120, interval=0.5)
    print(f"{KILLS} kills in {time.monotonic() - started:.1f} s; {len(accepted)} accepted, "
          f"{len(delivered) - len(set(delivered))} delivered twice")


def _all_delivered(sink: Path, accepted: list[int]) -> list[int] | None:
    seen = [r["event"]["n"] for r in records(sink) if "n" in r["event"]]
    return seen if set(accepted) <= set(seen) else None


# --- (d) failover of in-flight work ---------------------------------------------------------------------


def test_work_in_flight_on_a_killed_node_is_done_elsewhere_in_time(make_cluster) -> None:
    lease, visibility = 2.0, 6
    cluster = make_cluster(lease=lease, visibility=visibility)
    for name in ("n1", "n2", "n3"):
        cluster.start(name)
    marker = cluster.tmp / "hanging"
    assert cluster.post("n1", {"hang": str(marker), "n": 1}) == 202
    wait_until(lambda: marker.exists() and marker.read_text(), timeout=30)
    holder = records(cluster.sink)[0]["node"]
    cluster.nodes[holder].kill()
    killed = time.time()
    with contextlib.suppress(ProcessLookupError):  # a worker in its handler outlives its daemon until it returns
        os.kill(int(marker.read_text()), signal.SIGKILL)
    done = wait_until(lambda: [r for r in records(cluster.sink) if r["node"] != holder], timeout=60, interval=0.1)
    failover = done[0]["time"] - killed
    print(f"failover: {failover:.2f} s (bound {2 * lease + visibility:g} s)")
    assert done[0]["request_id"] == records(cluster.sink)[0]["request_id"]  # the same invocation, retried
    assert failover < 2 * lease + visibility


# --- (b) a schedule fires exactly once per scheduled time -----------------------------------------------

SECONDS = 20  # one fire a second for this long (the minute, shortened for the shared box)


def test_each_scheduled_time_fires_once_across_the_cluster_while_nodes_die(make_cluster) -> None:
    first = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=25)
    # AWS's finest rate is a minute: one rate(1 minute) schedule per second of the window, each starting
    # one second after the previous, gives one fire every second across the cluster.
    sources = [{"name": f"tick-{k:02d}", "type": "schedule", "function": "sink", "schedule": "rate(1 minute)",
                "start_date": (first + timedelta(seconds=k)).isoformat()} for k in range(SECONDS)]
    cluster = make_cluster(sources=sources, lease=2)
    names = ["n1", "n2", "n3"]
    for name in names:
        cluster.start(name)
    assert datetime.now(UTC) < first, "the nodes took too long to start for this window"
    rng = random.Random(3)
    kills = 0
    while datetime.now(UTC) < first + timedelta(seconds=SECONDS):
        time.sleep(rng.uniform(1.0, 3.0))
        victim = rng.choice(names)
        cluster.nodes[victim].kill()
        kills += 1
        cluster.start(victim)
    expected = {(first + timedelta(seconds=k)).isoformat() for k in range(SECONDS)}
    fired = wait_until(lambda: _fired(cluster.sink, expected), timeout=60, interval=0.5)
    ledger = cluster.ledger()
    handed = [c for c in ledger if c["state"] == "handed"]
    print(f"{kills} kills; ledger: {len(ledger)} claims, "
          f"{sum(int(float(c.get('claims', 1))) - 1 for c in ledger)} taken over")
    assert {c["sk"] for c in handed} == expected and len(ledger) == SECONDS
    assert all(c["handovers"] == "1" for c in handed), ledger
    # Delivery is at least once (a node killed mid-invocation repeats it), but every time has one request id.
    twice = {t: ids for t, ids in fired.items() if len(ids) != 1}
    assert not twice, (twice, [c for c in ledger if c["sk"] in twice])


def _fired(sink: Path, expected: set[str]) -> dict[str, set[str]] | None:
    by_time: dict[str, set[str]] = {}
    for r in records(sink):
        if isinstance(r["event"], dict) and r["event"].get("source") == "aws.events":
            when = datetime.fromisoformat(r["event"]["time"].replace("Z", "+00:00")).isoformat()
            by_time.setdefault(when, set()).add(r["request_id"])
    return by_time if set(by_time) >= expected else None


# --- (c) dead letters from any node ---------------------------------------------------------------------


def test_dead_letters_status_and_schedules_of_node_1_from_the_other_nodes(tmp_path: Path, make_cluster) -> None:
    """The plain commands (dlq, status, schedules) read the cluster's table from any node, and this host's
    store for its directory sources' dead letters."""
    here = tmp_path / "here"
    here.mkdir()
    tick = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=8)
    cluster = make_cluster(function={"async": {"maximum_retry_attempts": 0, "on_failure": "dlq"}}, sources=[
        {"name": "tick", "type": "schedule", "function": "sink", "schedule": "rate(1 minute)",
         "start_date": tick.isoformat()},
        {"name": "here", "type": "directory", "path": str(here), "function": "sink"}])
    node1 = cluster.start("n1")
    node1.wait_for("directory.ready", source="here", timeout=30)
    assert cluster.post("n1", {"fail": True, "n": 7}) == 202
    (here / "fail.txt").write_text("a file whose event fails")
    node1.wait_for("cluster.dead_letter", timeout=30)
    node1.wait_for("delivery.failed", count=2, timeout=30)  # the file's: in n1's own store

    listing = cluster.cli("n3", "dlq", "list", "--json")
    assert listing.returncode == 0, listing.stderr
    entries = json.loads(listing.stdout)
    assert [(e["record"]["requestPayload"], e["store"]) for e in entries] == [({"fail": True, "n": 7}, "cluster")]
    assert entries[0]["condition"] == "RetriesExhausted"
    on_node1 = json.loads(cluster.cli("n1", "dlq", "list", "--json").stdout)
    assert sorted(e["store"] for e in on_node1) == ["cluster", "local"]
    assert "STORE" in cluster.cli("n1", "dlq", "list").stdout
    shown = json.loads(cluster.cli("n3", "dlq", "show", entries[0]["id"]).stdout)
    assert shown["id"] == entries[0]["id"] and shown["store"] == "cluster"

    redrive = cluster.cli("n3", "dlq", "redrive", entries[0]["id"])
    assert redrive.returncode == 0, redrive.stderr
    assert "1 into the cluster's shared queue" in redrive.stdout
    wait_until(lambda: [r for r in records(cluster.sink) if r["event"].get("n") == 7][1:], timeout=30)
    node1.wait_for("cluster.dead_letter", count=2, timeout=30)  # it fails again: a new entry, the old one done
    after = json.loads(cluster.cli("n3", "dlq", "list", "--json").stdout)
    assert len(after) == 1 and after[0]["id"] != entries[0]["id"]

    status = cluster.cli("n3", "status", "--json")
    assert status.returncode == 1, status.stderr  # n3's own daemon does not run; the cluster's state shows
    doc = json.loads(status.stdout)["cluster"]
    assert [(n["node_id"], n["state"]) for n in doc["nodes"]] == [("n1", "alive")]
    assert doc["dead_letters"] == 1
    assert "node n1" in cluster.cli("n3", "status").stdout

    wait_until(lambda: [r for r in records(cluster.sink) if r["event"].get("source") == "aws.events"], timeout=30)
    [row] = json.loads(cluster.cli("n3", "schedules", "--json", "--next", "1").stdout)
    assert row["last_fire"] == tick.isoformat()  # fired on n1: n3's own store knows nothing of it
    assert row["next"] == [(tick + timedelta(minutes=1)).isoformat()]

    purge = cluster.cli("n2", "dlq", "purge", "--all")
    assert purge.returncode == 0 and "purged 1 entry" in purge.stdout, purge.stderr
    local = cluster.cli("n1", "dlq", "purge", "--all")
    assert local.returncode == 0 and "purged 1 entry" in local.stdout, local.stderr


# --- the table's conditional writes, one call at a time --------------------------------------------------


async def test_a_claim_is_won_once_and_taken_over_only_after_its_lease(tmp_path: Path, moto_url: str) -> None:
    from bridge.cluster.aws import Clients
    from bridge.cluster.config import ClusterConfig
    from bridge.cluster.table import Table
    from bridge.errors import NodeIdInUse

    cluster = Cluster(tmp_path, moto_url)
    cluster.init()
    config = ClusterConfig(node_id="a", async_queue=cluster.queue_url, table=cluster.table, endpoint_url=moto_url)
    async with Clients(config, "us-east-1") as clients:
        table = Table(clients.ddb, cluster.table)
        now = time.time()
        first = await table.claim("s", "t1", owner="a", session="sa", now=now, lease=5, body="A's event")
        held = await table.claim("s", "t1", owner="b", session="sb", now=now + 1, lease=5, body="B's event")
        assert first.won and not first.took_over and first.body == "A's event"
        assert not held.won and held.owner == "a" and held.state == "claimed"
        taken = await table.claim("s", "t1", owner="b", session="sb", now=now + 6, lease=5, body="B's event")
        assert taken.won and taken.took_over and taken.body == "A's event"  # the same invocation, not a new one
        with pytest.raises(Exception, match="ConditionalCheckFailed"):  # a's lease is gone: it cannot mark it
            await table.handed("s", "t1", owner="a", session="sa", event_id="e", now=now + 6)
        await table.handed("s", "t1", owner="b", session="sb", event_id="e", now=now + 6)
        late = await table.claim("s", "t1", owner="c", session="sc", now=now + 60, lease=5, body="C's event")
        assert not late.won and late.state == "handed"  # a handed-over fire is never claimed again
        [entry] = await table.claims("s")
        assert (entry["owner"], entry["handovers"], entry["claims"]) == ("b", 1, 2)

        await table.join("x", "s1", "host-1", now, lease=5)
        with pytest.raises(NodeIdInUse, match="in use by pid"):
            await table.join("x", "s2", "host-2", now + 1, lease=5)
        await table.join("x", "s2", "host-2", now + 6, lease=5)  # silent for a lease: free
        with pytest.raises(NodeIdInUse, match="taken over"):
            await table.heartbeat("x", "s1", now + 7, 5, "host-1")


async def test_a_missing_item_is_written_again_never_read_as_someone_elses(tmp_path: Path, moto_url: str) -> None:
    """Every conditional write on an item that is gone (restored or re-created table, TTL) re-creates it."""
    from bridge.cluster.aws import Clients
    from bridge.cluster.config import ClusterConfig
    from bridge.cluster.table import NodeItemLost, Table, item
    from bridge.errors import NodeIdInUse

    cluster = Cluster(tmp_path, moto_url)
    cluster.init()
    config = ClusterConfig(node_id="a", async_queue=cluster.queue_url, table=cluster.table, endpoint_url=moto_url)
    async with Clients(config, "us-east-1") as clients:
        table = Table(clients.ddb, cluster.table)
        now = time.time()
        with pytest.raises(NodeItemLost, match="missing"):  # never joined, or its item was lost
            await table.heartbeat("y", "s1", now, 5, "host-1")
        await table.join("y", "s1", "host-1", now, lease=5)
        await table.leave("y", "s1", now + 1)
        await table.join("y", "s2", "host-2", now + 1, lease=5)
        await table.leave("y", "s2", now + 2)  # s2 came and went while s1 was paused: s1 may have it again
        with pytest.raises(NodeItemLost, match="gone"):
            await table.heartbeat("y", "s1", now + 3, 5, "host-1")
        await table.join("y", "s1", "host-1", now + 3, lease=5, started=now)
        await table.heartbeat("y", "s1", now + 4, 5, "host-1")
        [node] = [n for n in await table.nodes() if n["sk"] == "y"]
        assert (node["session"], node["started_at"], node["state"]) == ("s1", now, "running")
        with pytest.raises(NodeIdInUse, match="in use by pid"):  # a live holder still refuses a join
            await table.join("y", "s3", "host-3", now + 5, lease=5)

        first = await table.claim("s", "t1", owner="a", session="sa", now=now, lease=5, body="A's event")
        assert first.won
        cluster.ddb().delete_item(TableName=cluster.table, Key=item(pk="fire#s", sk="t1"))
        await table.handed("s", "t1", owner="a", session="sa", event_id="e1", now=now + 1)
        [entry] = await table.claims("s")
        assert (entry["state"], entry["owner"], entry["event_id"]) == ("handed", "a", "e1")
        late = await table.claim("s", "t1", owner="b", session="sb", now=now + 60, lease=5, body="B's event")
        assert not late.won and late.state == "handed"  # handed over once: never a second invocation

        await table.mark_redriven("purged-elsewhere", now)  # an entry another node purged meanwhile
        assert not await table.has_dead_letter("purged-elsewhere")
        assert {i["sk"]["S"] for i in cluster.ddb().scan(TableName=cluster.table)["Items"]} == {"t1", "y"}


def test_a_lost_or_recreated_table_is_joined_again_and_only_a_live_takeover_stops_a_node(make_cluster) -> None:
    from bridge.cluster.table import NODE, TTL_ATTRIBUTE, item

    cluster = make_cluster()
    n1, n2 = cluster.start_all(["n1", "n2"])
    ddb = cluster.ddb()

    def node_item(node: str) -> dict[str, Any] | None:
        return ddb.get_item(TableName=cluster.table, Key=item(pk=NODE, sk=node), ConsistentRead=True).get("Item")

    session = node_item("n1")["session"]["S"]
    ddb.delete_item(TableName=cluster.table, Key=item(pk=NODE, sk="n1"))  # TTL after a long pause, say
    [rejoined] = n1.wait_for("cluster.rejoined", timeout=30)
    assert rejoined["reason"] == "missing" and rejoined["session"] == session
    assert node_item("n1")["session"]["S"] == session  # the same process, the same session

    ddb.delete_table(TableName=cluster.table)  # all data lost; the table created again (empty)
    ddb.get_waiter("table_not_exists").wait(TableName=cluster.table)
    cluster.init()
    for daemon in (n1, n2):
        daemon.wait_for("cluster.rejoined", count=2 if daemon is n1 else 1, timeout=60)
    wait_until(lambda: node_item("n1") and node_item("n2"), timeout=30)
    assert n1.proc.poll() is None and n2.proc.poll() is None, n1.tail() + n2.tail()
    assert cluster.post("n2", {"n": 1}) == 202  # the cluster works on the new table
    wait_until(lambda: [r for r in records(cluster.sink) if r["event"] == {"n": 1}], timeout=30)

    now = time.time()  # a real takeover: another live process under n2's id
    ddb.put_item(TableName=cluster.table, Item=item(
        pk=NODE, sk="n2", session="another", host="elsewhere", pid=1, started_at=now, heartbeat_at=now,
        state="running", **{TTL_ATTRIBUTE: int(now + 3600)}))
    assert n2.proc.wait(30) == 2
    assert "cluster node id 'n2' was taken over by another daemon" in n2.tail()
    assert n1.proc.poll() is None


# --- MQTT: a shared subscription gives each message to one node ------------------------------------------


def test_mqtt_messages_go_to_one_node_each_and_survive_kills(tmp_path: Path, moto_url: str) -> None:
    from tests.integration.mosquitto import Mosquitto, Publisher

    with Mosquitto(tmp_path / "broker") as broker:
        source = {"name": "stream", "type": "mqtt", "broker": broker.url, "sql": "SELECT n FROM 'stream/#'",
                  "function": "sink"}
        cluster = Cluster(tmp_path, moto_url, sources=[source])
        cluster.init()
        try:
            names = ["n1", "n2", "n3"]
            for name in names:
                cluster.start(name).wait_for("mqtt.subscribed")
            assert all(d.find("mqtt.subscribed")[0]["topic_filter"] == "$share/lambda-bridge-stream/stream/#"
                       for d in cluster.nodes.values())
            with Publisher(broker.plain_port, client_id="stream") as pub:
                calm = _publish(pub, range(100))
                wait_until(lambda: _seen(cluster.sink) >= set(calm), timeout=60, interval=0.5)
                # Without the shared subscription every node would take every message: three invocations each.
                ids = _request_ids(cluster.sink)
                assert all(len(ids[n]) == 1 for n in calm), {n: ids[n] for n in calm if len(ids[n]) != 1}
                acknowledged = list(calm)
                for round_, victim in enumerate(["n1", "n2", "n3", "n1"], start=2):
                    acknowledged += _publish(pub, range(round_ * 50, round_ * 50 + 50))
                    cluster.nodes[victim].kill()  # messages in flight at the victim: redelivered, none lost
                    cluster.start(victim).wait_for("mqtt.subscribed")
            wait_until(lambda: _seen(cluster.sink) >= set(acknowledged), timeout=90, interval=0.5)
        finally:
            cluster.stop_all()
    twice = [n for n, rids in _request_ids(cluster.sink).items() if len(rids) > 1]
    print(f"{len(acknowledged)} published, 4 kills, {len(twice)} taken again after a kill")


def _publish(pub: Any, numbers: range) -> list[int]:
    for n in numbers:
        pub.publish("stream/data", json.dumps({"n": n})).wait_for_publish(timeout=10)
    return list(numbers)


def _seen(sink: Path) -> set[int]:
    return {r["event"]["n"] for r in records(sink)}


def _request_ids(sink: Path) -> dict[int, set[str]]:
    ids: dict[int, set[str]] = {}
    for r in records(sink):
        ids.setdefault(r["event"]["n"], set()).add(r["request_id"])
    return ids


# --- what stays per host ---------------------------------------------------------------------------------


def test_a_directory_stays_on_its_host_unless_shared(tmp_path: Path, make_cluster) -> None:
    here, shared = tmp_path / "here", tmp_path / "nfs"
    here.mkdir()
    shared.mkdir()
    cluster = make_cluster(sources=[
        {"name": "here", "type": "directory", "path": str(here), "function": "sink"},
        {"name": "nfs", "type": "directory", "path": str(shared), "function": "sink", "shared": True}])
    node = cluster.start("n1")
    node.wait_for("directory.ready", source="here", timeout=60)
    node.wait_for("directory.ready", source="nfs", timeout=60)
    (here / "a.txt").write_text("a")
    (shared / "b.txt").write_text("b")
    wait_until(lambda: len(records(cluster.sink)) == 2, timeout=30)
    by_key = {r["event"]["Records"][0]["s3"]["object"]["key"]: r["request_id"] for r in records(cluster.sink)}
    deliveries = {e["request_id"]: e for e in node.wait_for("delivery.succeeded", count=2)}
    assert "node" not in deliveries[by_key["a.txt"]]  # the local queue in this host's store
    assert deliveries[by_key["b.txt"]]["node"] == "n1"  # the shared queue: any node could have delivered it
