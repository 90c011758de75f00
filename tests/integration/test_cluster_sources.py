"""Cluster mode's intake: backpressure on the shared queue, SQS event source mappings on several nodes,
and schedules catching up after the whole cluster was down. moto's server and daemons as subprocesses.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bridge.testing import wait_until
from tests.integration.cluster_kit import Cluster, atomic_moto, cluster_factory, records


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    with atomic_moto() as url:
        yield url


@pytest.fixture
def make_cluster(tmp_path: Path, moto_url: str) -> Iterator[Callable[..., Cluster]]:
    with cluster_factory(tmp_path, moto_url) as make:
        yield make


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
