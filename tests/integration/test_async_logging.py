"""The daemon log at full rate (daemon as a subprocess, default info level): a summary instead of a line per
success, while retries, failures and dead letters stay visible at warning or error."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

from bridge.delivery.dispatcher import new_event
from bridge.store import connect, event_row, insert_events, store_path
from bridge.testing import Daemon, free_port, wait_until, write_config, write_handler

NOOP = """
    import os
    FD = os.open(os.environ["RECORD_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    def handler(event, context):
        os.write(FD, b"%d\\n" % event["n"])
"""
FAILING = """
    def handler(event, context):
        raise RuntimeError("always failing")
"""
BURST = 5000


def enqueue(state: Path, function: str, count: int) -> None:
    """Put ``count`` events in the store from outside, as an offline invoke does (the daemon rescans)."""
    conn = connect(store_path(state))
    conn.execute("BEGIN IMMEDIATE")
    insert_events(conn, [event_row(new_event(function, b'{"n": %d}' % n)) for n in range(count)])
    conn.execute("COMMIT")
    conn.close()


def queue_depth(url: str) -> int:
    with urllib.request.urlopen(f"{url}/bridge/status", timeout=10) as response:
        return json.loads(response.read())["queue"]["depth"]


def test_a_burst_of_successes_logs_a_summary_and_failures_stay_visible(tmp_path: Path) -> None:
    port, state, record = free_port(), tmp_path / "state", tmp_path / "record.txt"
    config = write_config(tmp_path / "config.yaml", {
        "state_dir": str(state), "api": {"listen": f"127.0.0.1:{port}"},
        "functions": {
            "ok": {"handler": "app.handler", "code": str(write_handler(tmp_path / "a", "ok", NOOP)),
                   "reserved_concurrency": 2, "environment": {"RECORD_FILE": str(record)}},
            "bad": {"handler": "app.handler", "code": str(write_handler(tmp_path / "b", "bad", FAILING)),
                    "async": {"maximum_retry_attempts": 1, "retry_delays": [0.2]}}}})
    with Daemon(config, env={"LAMBDA_BRIDGE_LOG_LEVEL": "info"}) as daemon:  # the default level, explicitly
        enqueue(state, "ok", BURST)
        enqueue(state, "bad", 1)
        wait_until(lambda: record.exists() and len(record.read_text().split()) >= BURST, timeout=300, interval=0.2)
        wait_until(lambda: queue_depth(f"http://127.0.0.1:{port}") == 0, timeout=60, interval=0.2)
        summaries = wait_until(lambda: _summed(daemon) >= BURST and daemon.find("delivery.summary"), timeout=90)
        retries, failures = daemon.find("delivery.retrying", function="bad"), daemon.find("delivery.failed")
    loud = [e for e in daemon.events if e.get("level") in ("info", "warning", "error", "critical")]
    not_json = len(daemon.raw) - len(daemon.events)
    assert len(loud) + not_json < 100, [e["event"] for e in loud]
    assert [e["level"] for e in retries] == ["warning"], "one retry of the failing function, at warning"
    assert [(e["function"], e["level"], e["destination"]) for e in failures] == [("bad", "error", "dlq")]
    assert not daemon.find("delivery.succeeded"), "successes are debug lines"
    assert all(s["level"] == "info" and "events_per_s" in s and "queue_depth" in s for s in summaries)


def _summed(daemon: Daemon) -> int:
    return sum(e.get("succeeded", 0) for e in daemon.find("delivery.summary"))
