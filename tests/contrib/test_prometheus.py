"""Debian's Prometheus scrapes a daemon under load: the alert rules check and fire and resolve, every dashboard
panel's query returns data (contrib/prometheus/alerts.yml, contrib/grafana/lambda-bridge.json)."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from bridge.testing import Daemon, free_port, wait_until, write_config, write_handler
from tests.integration.mosquitto import Mosquitto

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "contrib" / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "contrib" / "grafana" / "lambda-bridge.json"
FAILING = """
    def handler(event, context):
        raise RuntimeError("always fails")
"""
QUICK = """
    def handler(event, context):
        return {"ok": True}
"""
GATED = """
    import os, time
    def handler(event, context):
        while os.path.exists(os.environ["GATE"]):  # the test opens the gate by removing the file
            time.sleep(0.05)
        return {"done": True}
"""
# The live copy of the rules runs on seconds instead of minutes: every window 10 s, every `for:` 1 s, and the
# queue's age threshold 3 s instead of 300 s. promtool's unit tests (alerts_test.yml) check the real timings.
WINDOW, FOR, AGE = "[10s]", "1s", "> 3"


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is not installed; install it with: apt-get install prometheus"
    return path


def test_rules_pass_promtool_check_and_unit_tests() -> None:
    check = subprocess.run([tool("promtool"), "check", "rules", str(RULES)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    unit = subprocess.run([tool("promtool"), "test", "rules", "alerts_test.yml"], cwd=Path(__file__).parent,
                          capture_output=True, text=True)
    assert unit.returncode == 0, unit.stdout + unit.stderr


def fast_rules(path: Path) -> Path:
    """The alert rules with seconds for minutes (see WINDOW, FOR, AGE)."""
    doc = yaml.safe_load(RULES.read_text())
    for rule in doc["groups"][0]["rules"]:
        rule["expr"] = re.sub(r"\[\d+m\]", WINDOW, rule["expr"]).replace("> 300", AGE)
        rule["for"] = FOR
    path.write_text(yaml.safe_dump(doc))
    return path


class Prometheus:
    """Debian's prometheus on a free port, scraping ``target`` every second and evaluating ``rules`` every second."""

    def __init__(self, directory: Path, target: str, rules: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"}, "rule_files": [str(rules)],
                  "scrape_configs": [{"job_name": "lambda-bridge", "static_configs": [{"targets": [target]}]}]}
        directory.mkdir(parents=True, exist_ok=True)
        self.config = write_config(directory / "prometheus.yml", config)
        self.directory = directory
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Prometheus:
        self.log = (self.directory / "prometheus.log").open("wb")
        self.proc = subprocess.Popen([tool("prometheus"), f"--config.file={self.config}",
                                      f"--storage.tsdb.path={self.directory / 'data'}",
                                      f"--web.listen-address=127.0.0.1:{self.port}"],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        wait_until(lambda: self._ready(), timeout=30, interval=0.1)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        self.proc.terminate()
        self.proc.wait(20)
        self.log.close()

    def _ready(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, (self.directory / "prometheus.log").read_text()
        with contextlib.suppress(OSError), urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as resp:
            return resp.status == 200
        return False

    def get(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=10) as resp:
            body = json.load(resp)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        return self.get("/api/v1/query", query=expr)["result"]

    def firing(self) -> dict[str, list[dict[str, str]]]:
        """Firing alerts by name, each with its labels."""
        found: dict[str, list[dict[str, str]]] = {}
        for alert in self.get("/api/v1/alerts")["alerts"]:
            if alert["state"] == "firing":
                found.setdefault(alert["labels"]["alertname"], []).append(alert["labels"])
        return found


def invoke(port: int, function: str, kind: str = "RequestResponse") -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/2015-03-31/functions/{function}/invocations",
                                     data=b"{}", headers={"X-Amz-Invocation-Type": kind})
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code


@contextlib.contextmanager
def load(port: int) -> Iterator[list[int]]:
    """A failing function, a quick one and a throttled one called until the block ends; yields the statuses."""
    stop, statuses = threading.Event(), []

    def run() -> None:
        while not stop.wait(0.05):  # the load's pace, not a synchronisation
            statuses.extend([invoke(port, "failing", "Event"), invoke(port, "quick"), invoke(port, "gated")])

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield statuses
    finally:
        stop.set()
        thread.join(30)


def panel_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every dashboard panel, with Grafana's variables filled in as Grafana would."""
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [(p["title"], t["expr"].replace("$__rate_interval", "10s").replace('=~"$instance"', '=~".*"'))
            for p in panels if p["type"] != "row" for t in p["targets"]]


@pytest.fixture
def setup(tmp_path: Path) -> dict[str, Any]:
    gate = tmp_path / "gate"
    gate.touch()
    port = free_port()
    broker = Mosquitto(tmp_path / "mosquitto")  # not started yet: the mqtt source cannot connect
    config = {
        "state_dir": str(tmp_path / "state"), "api": {"listen": f"127.0.0.1:{port}"}, "shutdown_timeout": 5,
        "functions": {
            "failing": {"handler": "app.handler", "code": str(write_handler(tmp_path, "failing", FAILING)),
                        "async": {"maximum_retry_attempts": 0}},
            "quick": {"handler": "app.handler", "code": str(write_handler(tmp_path, "quick", QUICK))},
            "gated": {"handler": "app.handler", "code": str(write_handler(tmp_path, "gated", GATED)),
                      "reserved_concurrency": 1, "timeout": 120, "environment": {"GATE": str(gate)}},
        },
        "sources": [{"name": "devices", "type": "mqtt", "broker": broker.url, "function": "quick",
                     "sql": "SELECT * FROM 'devices/#'"}],
    }
    path = write_config(tmp_path / "config.yaml", config)
    return {"port": port, "gate": gate, "broker": broker, "config": config, "path": path, "dir": tmp_path}


def test_alerts_fire_and_resolve_and_every_panel_has_data(setup: dict[str, Any]) -> None:
    port, path = setup["port"], setup["path"]
    rules = fast_rules(setup["dir"] / "rules.yml")
    with Daemon(path, {"LAMBDA_BRIDGE_LOG_LEVEL": "info"}) as daemon, contextlib.ExitStack() as stack, \
            Prometheus(setup["dir"] / "prometheus", f"127.0.0.1:{port}", rules) as prom:
        # A source that cannot run: its broker is down. Alerts at once; the broker comes up as soon as it did.
        wait_until(lambda: "LambdaBridgeSourceNotRunning" in prom.firing(), timeout=30, interval=0.2)
        stack.enter_context(setup["broker"])  # started now, stopped at the end whatever happens
        with load(port) as statuses:
            for _ in range(5):  # a queue that cannot drain: the gated function holds its one worker
                assert invoke(port, "gated", "Event") == 202
            expected = {"LambdaBridgeDeadLettersGrowing", "LambdaBridgeFunctionErrors", "LambdaBridgeThrottling",
                        "LambdaBridgeAsyncQueueStuck"}
            wait_until(lambda: expected <= set(prom.firing()), timeout=45, interval=0.2)
            firing = prom.firing()
            assert {a["function"] for a in firing["LambdaBridgeFunctionErrors"]} == {"failing"}
            assert {a["function"] for a in firing["LambdaBridgeThrottling"]} == {"gated"}
            assert 429 in statuses
            empty = [(title, q) for title, q in panel_queries() if not prom.query(q)]
            assert not empty, f"dashboard panels without data: {empty}"
        # A config that cannot load: the reload is refused and the alert fires; fixed, it resolves.
        path.write_text("functions: [this is not a mapping\n")
        wait_until(lambda: "LambdaBridgeReloadFailed" in prom.firing(), timeout=30, interval=0.2)
        write_config(path, setup["config"])
        setup["gate"].unlink()  # the queue drains
        everything = expected | {"LambdaBridgeSourceNotRunning", "LambdaBridgeReloadFailed"}
        wait_until(lambda: not everything & set(prom.firing()), timeout=60, interval=0.2)
        assert daemon.find("reload.applied")
        # The daemon gone (a crashed source takes it down; systemd restarts it): the instance alert.
        daemon.stop()
        wait_until(lambda: "LambdaBridgeDown" in prom.firing(), timeout=30, interval=0.2)
        daemon.start()
        wait_until(lambda: "LambdaBridgeDown" not in prom.firing(), timeout=30, interval=0.2)
