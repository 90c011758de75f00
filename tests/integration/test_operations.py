"""Operations with the daemon as a subprocess: sd_notify, live reload, metrics, status and logs."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import boto3
import pytest
import yaml
from botocore.config import Config as BotoConfig

from bridge.testing import Daemon, free_port, wait_until, write_config, write_handler
from tests.integration.test_async_delivery import RECORDER, records

ECHO = """
    import os
    def handler(event, context):
        print("echo", event.get("n"), os.environ.get("VERSION"))
        return {"n": event.get("n"), "version": os.environ.get("VERSION")}
"""


@pytest.fixture
def env(tmp_path: Path):
    port = free_port()
    echo = write_handler(tmp_path, "echo", ECHO)
    rec = write_handler(tmp_path, "recorder", RECORDER)
    config = {
        "state_dir": str(tmp_path / "state"), "api": {"listen": f"127.0.0.1:{port}"},
        "functions": {
            "echo": {"handler": "app.handler", "code": str(echo), "environment": {"VERSION": "1"}},
            "sink": {"handler": "app.handler", "code": str(rec), "reserved_concurrency": 2,
                     "environment": {"RECORD_FILE": str(tmp_path / "sink.jsonl")}},
            "doomed": {"handler": "app.handler", "code": str(echo)},
        },
    }
    path = write_config(tmp_path / "config.yaml", config)
    client = boto3.client("lambda", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                          config=BotoConfig(retries={"max_attempts": 0}))
    return path, config, port, client


def invoke(client, name: str, event: dict) -> dict:
    return json.loads(client.invoke(FunctionName=name, Payload=json.dumps(event))["Payload"].read())


def cli(config: Path, *args: str, **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bridge.cli", *args, "--config", str(config)],
                          capture_output=True, text=True, check=False, timeout=60, **kwargs)


def test_notify_sequence_and_reload_applies_only_the_difference(env) -> None:
    path, config, _, client = env
    with Daemon(path) as daemon:
        assert invoke(client, "echo", {"n": 1}) == {"n": 1, "version": "1"}
        config["functions"]["echo"]["environment"]["VERSION"] = "2"
        config["functions"]["added"] = dict(config["functions"]["doomed"])
        del config["functions"]["doomed"]
        write_config(path, config)  # the file watcher notices; no signal needed
        daemon.wait_for("reload.applied")
        assert invoke(client, "echo", {"n": 2}) == {"n": 2, "version": "2"}
        assert invoke(client, "added", {"n": 3})["n"] == 3
        with pytest.raises(client.exceptions.ResourceNotFoundException):
            invoke(client, "doomed", {})
        daemon.signal(signal.SIGHUP)
        daemon.wait_for("reload.applied", count=2)
        applied = daemon.find("reload.applied")
        assert applied[0]["functions_changed"] == ["echo"] and applied[0]["functions_added"] == ["added"]
        assert applied[0]["functions_removed"] == ["doomed"]
        assert "functions_changed" not in applied[1], "an unchanged file changes nothing"
        daemon.stop()
        daemon.wait_notified("STOPPING=1")
    sequence = [line for n in daemon.notifications for line in n.splitlines()
                if line in ("READY=1", "RELOADING=1", "STOPPING=1")]
    assert sequence == ["READY=1", "RELOADING=1", "READY=1", "RELOADING=1", "READY=1", "STOPPING=1"]
    reloading = next(n for n in daemon.notifications if "RELOADING=1" in n)
    assert re.search(r"^MONOTONIC_USEC=\d+$", reloading, re.M)


def test_invalid_edit_keeps_the_old_config_and_says_why(env) -> None:
    path, _config, _, client = env
    with Daemon(path) as daemon:
        good = path.read_text()
        path.write_text(good.replace("reserved_concurrency: 2", "reserved_concurrency: -4"))
        [problem] = daemon.wait_for("reload.invalid")
        assert "functions.sink.reserved_concurrency: -4 is below the minimum 0" in problem["problem"]
        status = wait_until(lambda: [n for n in daemon.notifications if "reload failed" in n])
        assert "reserved_concurrency" in status[0]
        assert invoke(client, "echo", {"n": 5})["n"] == 5


def test_reload_while_events_flow_loses_and_duplicates_nothing(env, tmp_path: Path) -> None:
    path, config, _port, client = env
    with Daemon(path) as daemon:
        sent: list[int] = []
        stop = threading.Event()

        def send() -> None:
            n = 0
            while not stop.is_set():
                response = client.invoke(FunctionName="sink", InvocationType="Event", Payload=json.dumps({"n": n}))
                assert response["StatusCode"] == 202
                sent.append(n)
                n += 1

        sender = threading.Thread(target=send)
        sender.start()
        for i in range(5):
            config["functions"]["sink"]["environment"]["ROUND"] = str(i)  # the function changes each time
            write_config(path, config)
            daemon.wait_for("reload.applied", count=i + 1)
        stop.set()
        sender.join()
        delivered = wait_until(lambda: (d := [r["event"]["n"] for r in records(tmp_path / "sink.jsonl")])
                               and set(d) >= set(sent) and d, timeout=60)
        assert sorted(delivered) == sorted(sent), "every event exactly once across 5 reloads"


def _metric(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    match = re.search(rf"^{name}\{{{re.escape(wanted)}\}} ([0-9.e+]+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def test_metrics_status_and_logs(env) -> None:
    path, _config, port, client = env
    with Daemon(path):
        follower = subprocess.Popen([sys.executable, "-m", "bridge.cli", "logs", "echo", "--follow", "--config",
                                     str(path)], stdout=subprocess.PIPE, text=True)
        try:
            url = f"http://127.0.0.1:{port}"
            before = urllib.request.urlopen(f"{url}/metrics").read().decode()
            for n in range(3):
                invoke(client, "echo", {"n": n})
            after = urllib.request.urlopen(f"{url}/metrics").read().decode()
            labels = {"function": "echo", "outcome": "success"}
            moved = _metric(after, "lambda_bridge_invocations_total", **labels)
            assert moved - _metric(before, "lambda_bridge_invocations_total", **labels) == 3
            assert "lambda_bridge_async_queue_depth 0.0" in after
            assert urllib.request.urlopen(f"{url}/healthz").status == 200
            assert urllib.request.urlopen(f"{url}/readyz").status == 200

            status = json.loads(cli(path, "status", "--json").stdout)
            echo = next(f for f in status["functions"] if f["name"] == "echo")
            assert echo["invocations"] == 3 and echo["workers"] == 1
            assert status["queue"]["depth"] == 0 and status["dead_letters"] == 0
            assert "FUNCTIONS" in cli(path, "status").stdout

            line = wait_until(lambda: _read_until(follower, "echo 2 1"), timeout=20)
            assert line.split(" ", 2)[2] == "echo 2 1"
        finally:
            follower.terminate()
            follower.wait(10)
        rid = re.search(r"^\S+ (\S+) echo 1 1$", cli(path, "logs", "echo").stdout, re.M).group(1)
        only = cli(path, "logs", "echo", "--request-id", rid).stdout.splitlines()
        assert next(line.split(" ", 2)[2] for line in only).startswith("START RequestId: " + rid)
        assert any(line.endswith("echo 1 1") for line in only)
        assert cli(path, "logs", "echo", "--since", "1h").stdout.count("REPORT RequestId") == 3


def _read_until(proc: subprocess.Popen[str], text: str) -> str | None:
    line = proc.stdout.readline()  # type: ignore[union-attr]
    return line.rstrip("\n") if line.rstrip("\n").endswith(text) else None


def test_status_when_the_daemon_is_down(env) -> None:
    path, *_ = env
    result = cli(path, "status")
    assert result.returncode == 1 and "NOT RUNNING" in result.stdout


def test_second_signal_skips_the_drain(env) -> None:
    path, config, _port, client = env
    busy = "import time\ndef handler(e, c):\n    print('busy')\n    time.sleep(30)\n"
    slow = write_handler(path.parent, "slow", busy)
    config["functions"]["slow"] = {"handler": "app.handler", "code": str(slow), "timeout": 60}
    write_config(path, config)
    daemon = Daemon(path).start()
    try:
        client.invoke(FunctionName="slow", InvocationType="Event", Payload=b"{}")
        daemon.wait_for("function.output", function="slow")
        daemon.signal(signal.SIGTERM)
        daemon.wait_notified("STOPPING=1")
        daemon.signal(signal.SIGTERM)
        assert daemon.proc.wait(15) == 0
        assert daemon.find("service.forced_stop")
    finally:
        daemon.kill()
    assert yaml.safe_load(path.read_text())["functions"]["slow"]


def test_one_shutdown_timeout_covers_async_deliveries_and_api_calls_together(env) -> None:
    """An async delivery and a synchronous Invoke both outlast shutdown_timeout: the stop takes one timeout
    (and a moment to cut them), not one for the drain and another for the API's requests; the cut call is
    answered 503 ServiceException, not dropped."""
    path, config, _port, client = env
    busy = "import time\ndef handler(e, c):\n    print('busy')\n    time.sleep(60)\n"
    slow = write_handler(path.parent, "slow", busy)
    config["functions"]["slow"] = {"handler": "app.handler", "code": str(slow), "timeout": 120,
                                   "reserved_concurrency": 2}
    config["shutdown_timeout"] = 3
    write_config(path, config)
    daemon = Daemon(path).start()
    try:
        client.invoke(FunctionName="slow", InvocationType="Event", Payload=b"{}")
        errors: list = []
        caller = threading.Thread(target=lambda: _error_of(errors, client.invoke, FunctionName="slow", Payload=b"{}"),
                                  daemon=True)
        caller.start()
        daemon.wait_for("function.output", count=2, function="slow")
        started = time.monotonic()
        daemon.signal(signal.SIGTERM)
        assert daemon.proc.wait(30) == 0
        took = time.monotonic() - started
        assert took < 3 + 1.5, f"stopped after {took:.1f} s; shutdown_timeout is 3 s:\n{daemon.tail(60)}"
        assert daemon.find("service.drain_timeout") and daemon.find("api.stop_timeout", in_flight=1)
        caller.join(10)
        [error] = errors
        assert error.response["Error"]["Code"] == "ServiceException", error.response
        assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    finally:
        daemon.kill()


def test_an_event_waiting_under_max_queued_events_at_stop_hears_503(env) -> None:
    """Intake waiting for room in the queue when the daemon stops: answered (not queued, send it again)."""
    path, config, port, client = env
    busy = "import time\ndef handler(e, c):\n    time.sleep(60)\n"
    slow = write_handler(path.parent, "slow", busy)
    config["functions"]["slow"] = {"handler": "app.handler", "code": str(slow), "timeout": 120,
                                   "reserved_concurrency": 1}
    config |= {"shutdown_timeout": 3, "max_queued_events": 2}
    write_config(path, config)
    daemon = Daemon(path).start()
    try:
        for _ in range(2):
            client.invoke(FunctionName="slow", InvocationType="Event", Payload=b"{}")
        url = f"http://127.0.0.1:{port}/2015-03-31/functions/slow/invocations"
        request = urllib.request.Request(url, data=b"{}", headers={"X-Amz-Invocation-Type": "Event"})
        answers: list = []
        waiting = threading.Thread(target=lambda: answers.append(_answer(request)), daemon=True)
        waiting.start()
        daemon.wait_for("queue.full")
        started = time.monotonic()
        daemon.signal(signal.SIGTERM)
        assert daemon.proc.wait(30) == 0
        assert time.monotonic() - started < 3 + 2
        waiting.join(10)
        [(status, error_type, body)] = answers
        assert status == 503 and error_type == "ServiceException" and "not queued" in body["message"], answers
        assert daemon.find("invoke.not_queued", function="slow")
    finally:
        daemon.kill()


def _answer(request: urllib.request.Request) -> tuple[int, str | None, dict]:
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, None, {}
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("x-amzn-ErrorType"), json.loads(err.read())


def _error_of(errors: list, call, **kwargs) -> None:
    """Run ``call``; keep the exception it raises (the call cut by the stop)."""
    try:
        call(**kwargs)
    except Exception as err:
        errors.append(err)


def test_reload_adding_changing_removing_sources_while_files_flow(tmp_path: Path) -> None:
    """Directory sources restart around a stream of files: every file is reported exactly once."""
    from tests.integration.test_directory_source import KEY_LOGGER

    inbox, other, gone = (tmp_path / d for d in ("inbox", "other", "gone"))
    for d in (inbox, other, gone):
        d.mkdir()
    code = write_handler(tmp_path, "keys", KEY_LOGGER)

    def fn(name: str) -> dict:
        return {"handler": "app.handler", "code": str(code), "reserved_concurrency": 2,
                "environment": {"RECORD_FILE": str(tmp_path / f"{name}.txt")}}

    config = {"state_dir": str(tmp_path / "state"), "functions": {"main": fn("main"), "side": fn("side")},
              "sources": [{"name": "inbox", "type": "directory", "path": str(inbox), "function": "main"},
                          {"name": "gone", "type": "directory", "path": str(gone), "function": "side"}]}
    path = write_config(tmp_path / "config.yaml", config)
    written: list[str] = []
    stop = threading.Event()

    def writer() -> None:
        n = 0
        while not stop.is_set() or n < 50:
            (inbox / f"f{n:05d}.txt").write_text(str(n))
            written.append(f"f{n:05d}.txt")
            n += 1
            stop.wait(0.005)  # a steady stream, not a burst

    with Daemon(path) as daemon:
        daemon.wait_for("directory.ready", source="inbox")
        thread = threading.Thread(target=writer)
        thread.start()
        changes = [
            lambda c: c["sources"].append({"name": "other", "type": "directory", "path": str(other),
                                           "function": "side"}),                       # added
            lambda c: c["sources"][0].update({"loop_threshold": 1000}),               # changed
            lambda c: c.update(sources=[s for s in c["sources"] if s["name"] != "gone"]),  # removed
            lambda c: c["functions"]["main"]["environment"].update({"ROUND": "4"}),   # its function changed
        ]
        for i, change in enumerate(changes):
            change(config)
            write_config(path, config)
            daemon.wait_for("reload.applied", count=i + 1)
        stop.set()
        thread.join()
        applied = daemon.find("reload.applied")
        assert applied[0]["sources_added"] == ["other"] and applied[1]["sources_changed"] == ["inbox"]
        assert applied[2]["sources_removed"] == ["gone"] and applied[3]["sources_changed"] == ["inbox"]

        def reported() -> list[str]:
            text = (tmp_path / "main.txt").read_text() if (tmp_path / "main.txt").exists() else ""
            return [line.split(" ", 1)[1] for line in text.splitlines() if line.startswith("ObjectCreated")]

        seen = wait_until(lambda: (r := reported()) and set(r) >= set(written) and r, timeout=60)
        assert sorted(seen) == sorted(written), "each file reported exactly once across 4 reloads"
        assert len(written) >= 50
