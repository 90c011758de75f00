"""The cluster tests' kit: one config on moto's server, the daemons (nodes) running it, what they recorded.

One config for every node; ``${NODE_ID}``, ``${STATE}`` and ``${PORT}`` differ per process, as they would
per host. moto runs with atomic DynamoDB writes (see moto_atomic: moto's own server races on them).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3

from bridge.config.model import Config, load_config
from bridge.testing import Daemon, free_port, moto_server, write_config, write_handler
from tests.conftest import FAKE_AWS
from tests.integration import moto_atomic

# Records every invocation; the first attempt of an event asking to "hang" sleeps (a node to kill mid-call);
# one with a "gate" waits until that file exists.
RECORDER = """
    import json, os, time
    def handler(event, context):
        line = json.dumps({"event": event, "time": time.time(), "request_id": context.aws_request_id,
                           "node": os.environ["NODE_ID"]})
        fd = os.open(os.environ["RECORD_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        os.write(fd, (line + "\\n").encode())
        os.close(fd)
        if isinstance(event, dict) and event.get("gate"):  # held until the test opens the gate (a file)
            deadline = time.time() + 60
            while not os.path.exists(event["gate"]) and time.time() < deadline:
                time.sleep(0.05)
        if isinstance(event, dict) and event.get("hang") and not os.path.exists(event["hang"]):
            with open(event["hang"], "w") as marker:
                marker.write(str(os.getpid()))
            time.sleep(120)
        if isinstance(event, dict) and event.get("fail"):
            raise RuntimeError("asked to fail: " + str(event.get("n")))
        keys = [r.get("s3", {}).get("object", {}).get("key", "") for r in event.get("Records", [])
                if isinstance(r, dict)] if isinstance(event, dict) else []
        if any("fail" in key for key in keys):
            raise RuntimeError("a file named to fail")
        return {"ok": True}
"""


def records(path: Path) -> list[dict]:
    """What the recorder saw, one dict per invocation (a line cut by a kill is skipped)."""
    if not path.exists():
        return []
    found = []
    for line in path.read_text().splitlines():
        try:
            found.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return found


class Cluster:
    """One config on moto's server, and the daemons (nodes) running it."""

    def __init__(self, tmp: Path, moto_url: str, *, lease: float = 2, visibility: int = 6,
                 sources: list[dict] | None = None, function: dict | None = None, endpoint: str | None = None,
                 cluster: dict | None = None, functions: dict | None = None, **top: Any) -> None:
        """``endpoint``: where the nodes reach SQS and DynamoDB (default moto itself; a FaultProxy in front of
        it); ``cluster``: more keys of the cluster section; ``functions``: more functions besides ``sink``;
        ``top``: more top-level config keys."""
        self.tmp = tmp
        self.moto_url = moto_url
        self.sink = tmp / "sink.jsonl"
        suffix = uuid.uuid4().hex[:8]
        self.queue_url = f"{moto_url}/123456789012/bridge-async-{suffix}"
        self.table = f"bridge-cluster-{suffix}"
        code = write_handler(tmp, "sink", RECORDER)
        sink = {"handler": "app.handler", "code": str(code), "reserved_concurrency": 4,
                "environment": {"RECORD_FILE": str(self.sink), "NODE_ID": "${NODE_ID}"}, **(function or {})}
        self.config_path = write_config(tmp / "config.yaml", {
            "state_dir": "${STATE}", "api": {"listen": "127.0.0.1:${PORT}"}, "log_level": "info",
            "functions": {"sink": sink, **(functions or {})}, "sources": sources or [],
            "cluster": {"node_id": "${NODE_ID}", "async_queue": self.queue_url, "table": self.table,
                        "endpoint_url": endpoint or moto_url, "lease_seconds": lease, "visibility_timeout": visibility,
                        **(cluster or {})},
            **top,
        })
        self.ports: dict[str, int] = {}
        self.nodes: dict[str, Daemon] = {}

    def env(self, node: str) -> dict[str, str]:
        """The variables that make this config node ``node``."""
        port = self.ports.setdefault(node, free_port())
        return {**FAKE_AWS, "NODE_ID": node, "STATE": str(self.tmp / f"state-{node}"), "PORT": str(port)}

    def config(self, node: str) -> Config:
        """The config as node ``node`` loads it (for a node run in the test's own process)."""
        return load_config(self.config_path, environ={**base_env(), **self.env(node)})

    def cli(self, node: str, *args: str) -> subprocess.CompletedProcess[str]:
        """``lambda-bridge ARGS`` as node ``node`` would run it."""
        return subprocess.run([sys.executable, "-m", "bridge.cli", *args, "--config", str(self.config_path)],
                              capture_output=True, text=True, timeout=60, env={**base_env(), **self.env(node)})

    def init(self) -> None:
        run = self.cli("n1", "cluster", "init")
        assert run.returncode == 0, run.stderr

    def start(self, node: str) -> Daemon:
        """Start (or restart) node ``node`` and wait for READY=1."""
        daemon = Daemon(self.config_path, env=self.env(node))
        self.nodes[node] = daemon.start(timeout=60)
        return daemon

    def start_all(self, names: Sequence[str]) -> list[Daemon]:
        """Start several nodes at once (hosts booting together) and wait for each one's READY=1."""
        daemons = [Daemon(self.config_path, env=self.env(name)) for name in names]
        self.nodes.update(zip(names, daemons, strict=True))  # stopped at the end even if one fails to start
        with ThreadPoolExecutor(len(daemons)) as pool:
            list(pool.map(lambda daemon: daemon.start(timeout=60), daemons))
        return daemons

    def post(self, node: str, payload: dict) -> int:
        """An Event invocation through node ``node``'s Invoke API; the HTTP status."""
        conn = http.client.HTTPConnection("127.0.0.1", self.ports[node], timeout=40)
        try:
            conn.request("POST", "/2015-03-31/functions/sink/invocations", body=json.dumps(payload),
                         headers={"X-Amz-Invocation-Type": "Event"})
            response = conn.getresponse()
            response.read()
            return response.status
        finally:
            conn.close()

    def ddb(self) -> Any:
        """A boto3 DynamoDB client on moto itself (never through a fault proxy)."""
        return boto3.client("dynamodb", endpoint_url=self.moto_url, region_name="us-east-1")

    def sqs(self) -> Any:
        """A boto3 SQS client on moto itself (never through a fault proxy)."""
        return boto3.client("sqs", endpoint_url=self.moto_url, region_name="us-east-1")

    def backlog(self) -> int:
        """The shared queue's messages: waiting, in flight and delayed (moto's counts are exact)."""
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                 "ApproximateNumberOfMessagesDelayed"]
        found = self.sqs().get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=names)["Attributes"]
        return sum(int(v) for v in found.values())

    def lambda_client(self, node: str) -> Any:
        """A boto3 Lambda client on node ``node``'s Invoke API, without botocore's own retries."""
        from botocore.config import Config as BotoConfig

        return boto3.client("lambda", endpoint_url=f"http://127.0.0.1:{self.ports[node]}", region_name="us-east-1",
                            config=BotoConfig(retries={"total_max_attempts": 1}, read_timeout=60))

    def ledger(self) -> list[dict]:
        """Every schedule claim in the table, as plain values."""
        items = self.ddb().scan(TableName=self.table)["Items"]
        plain = [{k: next(iter(v.values())) for k, v in i.items()} for i in items]
        return [i for i in plain if i["pk"].startswith("fire#")]

    def stop_all(self) -> None:
        for daemon in self.nodes.values():
            try:
                daemon.stop(timeout=30)
            finally:
                daemon.kill()


def base_env() -> dict[str, str]:
    """This process's environment (the nodes' variables are added on top)."""
    return dict(os.environ)


@contextlib.contextmanager
def atomic_moto(*, fifo_receives: bool = False) -> Iterator[str]:
    """moto's server (SQS and DynamoDB over HTTP) with DynamoDB's item writes atomic, as DynamoDB's own are
    (``fifo_receives``: and SQS's FIFO message-group guarantee across concurrent receives; see moto_atomic)."""
    command = moto_atomic.command(free_port(), fifo_receives=fifo_receives)
    with moto_server(command, cwd=Path(__file__).parents[2]) as url:
        yield url


@contextlib.contextmanager
def cluster_factory(tmp_path: Path, moto_url: str) -> Iterator[Callable[..., Cluster]]:
    """``make(**Cluster options)``: a cluster with its queue and table created; every node stopped at the end."""
    made: list[Cluster] = []

    def make(**kwargs: Any) -> Cluster:
        cluster = Cluster(tmp_path, moto_url, **kwargs)
        cluster.init()
        made.append(cluster)
        return cluster

    try:
        yield make
    finally:
        for cluster in made:
            cluster.stop_all()
