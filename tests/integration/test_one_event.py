"""One event can never stop the service: hostile payloads fail alone, the daemon (a subprocess) goes on."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.delivery.deadletters import list_entries
from bridge.store import store_path
from bridge.testing import Daemon, free_port, wait_until, write_config
from tests.integration.test_async_delivery import lambda_client, recorder, records, send_event
from tests.integration.test_sqs_source import Backend, bodies, body

DEEP = "[" * 5000 + "]" * 5000  # 10 KB; every recursive JSON decoder or encoder fails on it


def dead_letters(state: Path) -> list:
    conn = sqlite3.connect(store_path(state))
    try:
        return list_entries(conn)
    finally:
        conn.close()


def test_deep_async_payload_is_dead_lettered_and_the_daemon_goes_on(tmp_path: Path) -> None:
    port = free_port()
    fn = recorder(tmp_path, "seen", **{"async": {"maximum_retry_attempts": 0, "on_failure": "dlq"}})
    config = write_config(tmp_path / "config.yaml", {
        "state_dir": str(tmp_path / "state"), "api": {"listen": f"127.0.0.1:{port}"}, "functions": {"f": fn}})
    client = lambda_client(port)
    with Daemon(config) as daemon:
        response = client.invoke(FunctionName="f", InvocationType="Event", Payload=DEEP.encode())
        assert response["StatusCode"] == 202
        daemon.wait_for("delivery.failed", function="f", timeout=30)
        send_event(client, "f", {"n": 2})
        daemon.wait_for("delivery.succeeded", function="f", timeout=30)
        assert daemon.proc is not None and daemon.proc.poll() is None
        assert [r["event"] for r in records(tmp_path / "seen.jsonl")] == [{"n": 2}], "the deep one never parsed"
    [entry] = dead_letters(tmp_path / "state")
    assert entry.record["requestPayload"] == DEEP, "too deep to parse: carried as the text it was"
    assert "Runtime.UnmarshalError" in json.dumps(entry.record["responsePayload"])
    with Daemon(config) as again:  # nothing left queued: a restart does not crash on it again
        send_event(lambda_client(port), "f", {"n": 3})
        again.wait_for("delivery.succeeded", function="f", timeout=30)


def test_deep_body_through_a_body_filter(tmp_path: Path) -> None:
    backend = Backend("embedded", tmp_path, None)
    backend.queue("mixed", visibility_timeout=30)
    record = backend.source("orders", "mixed", filters=[{"body": {"type": ["order"]}}])
    daemon = backend.start()
    try:
        backend.send("mixed", {"MessageBody": DEEP}, body(type="order", n=1))
        wait_until(lambda: backend.depth("mixed") == 0, timeout=30)
        assert [json.loads(b)["n"] for b in bodies(record)] == [1], "the deep body is plain text: filtered out"
        assert daemon.proc is not None and daemon.proc.poll() is None
        assert daemon.stop() == 0, daemon.tail()
    finally:
        daemon.kill()


@pytest.mark.parametrize("target", ["function:f", "function:g"])
def test_check_refuses_a_destination_loop(tmp_path: Path, target: str) -> None:
    fn = {"handler": "app.handler", "code": str(tmp_path), "async": {"on_success": target}}
    g = {"handler": "app.handler", "code": str(tmp_path), "async": {"on_failure": "function:f"}}
    config = write_config(tmp_path / "config.yaml",
                          {"state_dir": str(tmp_path / "state"), "functions": {"f": fn, "g": g}})
    done = subprocess.run([sys.executable, "-m", "bridge.cli", "check", "--config", str(config)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2, done
    assert "functions.f.async.on_success" in done.stderr + done.stdout
