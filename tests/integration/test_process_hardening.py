"""The daemon's process boundaries, as a subprocess: its Runtime API, its state_dir lock and files, its workers."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.config import Config as BotoConfig

from bridge.store import store_path
from bridge.testing import Daemon, free_port, wait_until, write_config, write_handler
from tests.integration.test_sqs_source import HANDLER as SQS_HANDLER

# Real python, not the venv's wrapper: `nobody` runs only the standard library.
PYTHON = os.path.realpath(sys.executable)
AS_NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]

# in CI (root) these run; a missing root there is a failure, not a skip
needs_root = pytest.mark.skipif(os.geteuid() != 0 and not os.environ.get("CI"),
                                reason="switching to a second uid (nobody) needs root, as in CI")

GATE = """
    import json, os, time
    def handler(event, context):
        with open(os.environ["RID_FILE"], "w") as f:
            f.write(context.aws_request_id)
        deadline = time.monotonic() + 30
        while not os.path.exists(os.environ["GO_FILE"]) and time.monotonic() < deadline:
            time.sleep(0.02)
        return {"real": True}
"""

SLEEPER = """
    import os, time
    def handler(event, context):
        with open(os.environ["PID_FILE"], "w") as f:
            f.write(str(os.getpid()))
        time.sleep(60)
        return "too late"
"""

# A Runtime API client in a few lines of the standard library: what a local attacker would run.
ATTACK = """
import http.client, json, sys
port, rid = int(sys.argv[1]), sys.argv[2]
def attempt(method, path, body=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=3)
    try:
        conn.request(method, path, body=body)
        response = conn.getresponse()
        return {"status": response.status, "body": response.read().decode(errors="replace")}
    except (OSError, http.client.HTTPException) as err:
        return {"refused": type(err).__name__}
    finally:
        conn.close()
print(json.dumps({
    "forge": attempt("POST", f"/2018-06-01/runtime/invocation/{rid}/response", b'{"forged": true}'),
    "next": attempt("GET", "/2018-06-01/runtime/invocation/next"),
}))
"""


@pytest.fixture
def shared_base() -> Iterator[Path]:
    """A directory every user can traverse (tmp_path is 0700 root: it would hide files by itself)."""
    base = Path(tempfile.mkdtemp(prefix="lb-perm-", dir="/tmp"))
    os.chmod(base, 0o755)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def attack(port: int, rid: str, as_nobody: bool) -> dict:
    cmd = [*(AS_NOBODY if as_nobody else []), PYTHON, "-c", ATTACK, str(port), rid]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=30, cwd="/", check=True)
    return json.loads(done.stdout)


def runtime_port(pid: int) -> int:
    """The worker's AWS_LAMBDA_RUNTIME_API port, as any local user can find it with `ss -ltn`."""
    env = dict(v.split("=", 1) for v in Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in v)
    return int(env["AWS_LAMBDA_RUNTIME_API"].rsplit(":", 1)[1])


def invoke_in_thread(port: int, name: str, out: dict) -> threading.Thread:
    def call() -> None:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/2015-03-31/functions/{name}/invocations",
                                         data=b"{}", method="POST")
        with urllib.request.urlopen(request, timeout=60) as response:
            out["body"] = json.loads(response.read())
    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    return thread


@needs_root
def test_runtime_api_admits_only_its_worker(tmp_path: Path) -> None:
    port = free_port()
    code = write_handler(tmp_path, "gate", GATE)
    rid_file, go_file = tmp_path / "rid", tmp_path / "go"
    config = write_config(tmp_path / "config.yaml", {
        "state_dir": str(tmp_path / "state"), "api": {"listen": f"127.0.0.1:{port}"},
        "functions": {"gate": {"handler": "app.handler", "code": str(code), "timeout": 60,
                               "environment": {"RID_FILE": str(rid_file), "GO_FILE": str(go_file)}}}})
    with Daemon(config) as daemon:
        result: dict = {}
        caller = invoke_in_thread(port, "gate", result)
        rid = wait_until(lambda: rid_file.exists() and rid_file.read_text(), timeout=30)
        api_port = runtime_port(daemon.wait_for("worker.started", function="gate")[0]["pid"])
        stranger = attack(api_port, rid, as_nobody=True)
        same_uid = attack(api_port, rid, as_nobody=False)  # our uid, but not the worker's process tree
        go_file.touch()
        caller.join(60)
        assert stranger == {"forge": {"refused": stranger["forge"].get("refused")},
                            "next": {"refused": stranger["next"].get("refused")}}, stranger
        assert all("refused" in v for v in same_uid.values()), same_uid
        assert result["body"] == {"real": True}, "the worker's own answer reached the caller"
        reasons = [e["reason"] for e in daemon.find("runtime_api.refused")]
        assert "connection from uid 65534" in reasons
        assert "connection from a process outside the worker's process tree" in reasons
        # and the worker keeps working on its kept-alive connection
        again: dict = {}
        invoke_in_thread(port, "gate", again).join(60)
        assert again["body"] == {"real": True}


def test_reload_rejects_an_empty_file_and_adds_a_first_function(tmp_path: Path) -> None:
    port = free_port()
    code = write_handler(tmp_path, "echo", "def handler(event, context):\n    return event\n")
    empty = {"state_dir": str(tmp_path / "state"), "api": {"listen": f"127.0.0.1:{port}"}, "functions": {}}
    config = write_config(tmp_path / "config.yaml", empty)
    client = boto3.client("lambda", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                          config=BotoConfig(retries={"max_attempts": 0}))
    with Daemon(config) as daemon:
        config.write_text("# everything commented out\n# functions:\n")
        daemon.wait_for("reload.invalid")
        assert "the file is empty" in daemon.find("reload.invalid")[0]["problem"]
        write_config(config, {**empty, "functions": {"echo": {"handler": "app.handler", "code": str(code)}}})
        daemon.wait_for("reload.applied")
        sync = client.invoke(FunctionName="echo", Payload=b'{"n": 1}')
        assert json.loads(sync["Payload"].read()) == {"n": 1}
        client.invoke(FunctionName="echo", InvocationType="Event", Payload=b'{"n": 2}')
        daemon.wait_for("delivery.succeeded", function="echo")
        config.write_text("")
        daemon.wait_for("reload.invalid", count=2)
        assert json.loads(client.invoke(FunctionName="echo", Payload=b'{"n": 3}')["Payload"].read()) == {"n": 3}
        write_config(config, empty)  # every function removed on purpose (valid), then one added back
        daemon.wait_for("reload.applied", count=2)
        write_config(config, {**empty, "functions": {"echo": {"handler": "app.handler", "code": str(code)}}})
        daemon.wait_for("reload.applied", count=3)
        client.invoke(FunctionName="echo", InvocationType="Event", Payload=b'{"n": 4}')
        daemon.wait_for("delivery.succeeded", count=2, function="echo")
        assert daemon.stop() == 0


def test_second_daemon_on_a_state_dir_refuses_to_start(tmp_path: Path) -> None:
    state = {"state_dir": str(tmp_path / "state"), "functions": {}}
    first = write_config(tmp_path / "first.yaml", {**state, "api": {"listen": f"127.0.0.1:{free_port()}"}})
    second = write_config(tmp_path / "second.yaml", {**state, "api": {"listen": f"127.0.0.1:{free_port()}"}})
    with Daemon(first) as daemon:
        assert daemon.proc is not None
        run = subprocess.run([sys.executable, "-m", "bridge.cli", "run", "--config", str(second)],
                             capture_output=True, text=True, timeout=60, check=False)
        assert run.returncode == 2, run.stderr
        assert f"in use by another lambda-bridge (pid {daemon.proc.pid})" in run.stderr
        assert daemon.proc.poll() is None
    Daemon(second).start().stop()  # released when the first one stopped


def test_sigterm_lets_an_sqs_batch_in_flight_finish(tmp_path: Path) -> None:
    port = free_port()
    code = write_handler(tmp_path, "worker", SQS_HANDLER)
    record = tmp_path / "record.jsonl"
    config = write_config(tmp_path / "config.yaml", {
        "state_dir": str(tmp_path / "state"), "api": {"listen": f"127.0.0.1:{port}"}, "shutdown_timeout": 20,
        "queues": {"jobs": {"visibility_timeout": 30}},
        "functions": {"worker": {"handler": "app.handler", "code": str(code), "timeout": 30,
                                 "environment": {"RECORD_FILE": str(record), "MODE": "ok", "RESPONSE": "null"}}},
        "sources": [{"name": "jobs", "type": "sqs", "queue": "jobs", "function": "worker", "batch_size": 1}]})
    daemon = Daemon(config).start()
    try:
        sqs = boto3.client("sqs", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1")
        url = sqs.get_queue_url(QueueName="jobs")["QueueUrl"]
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"sleep": 2}))
        wait_until(record.exists, timeout=30)  # the handler has started its 2 s
        daemon.signal(signal.SIGTERM)
        assert daemon.proc is not None and daemon.proc.wait(30) == 0
        batches = daemon.find("sqs.batch", source="jobs")
        assert len(batches) == 1 and batches[0]["failed"] == [], daemon.tail()
        assert daemon.find("sqs.draining", source="jobs")
    finally:
        daemon.kill()


def test_workers_die_with_a_killed_daemon(tmp_path: Path) -> None:
    port = free_port()
    code = write_handler(tmp_path, "sleeper", SLEEPER)
    pid_file = tmp_path / "pid"
    config = write_config(tmp_path / "config.yaml", {
        "state_dir": str(tmp_path / "state"), "api": {"listen": f"127.0.0.1:{port}"},
        "functions": {"sleeper": {"handler": "app.handler", "code": str(code), "timeout": 120,
                                  "environment": {"PID_FILE": str(pid_file)}}}})
    daemon = Daemon(config).start()
    worker = 0
    try:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/2015-03-31/functions/sleeper/invocations",
                                         data=b"{}", headers={"X-Amz-Invocation-Type": "Event"}, method="POST")
        urllib.request.urlopen(request, timeout=10).close()
        worker = int(wait_until(lambda: pid_file.exists() and pid_file.read_text(), timeout=30))
        assert daemon.proc is not None
        os.kill(daemon.proc.pid, signal.SIGKILL)  # the daemon alone, not its process group
        daemon.proc.wait()
        wait_until(lambda: not _running(worker), timeout=10)
    finally:
        daemon.kill()
        if worker and _running(worker):
            os.kill(worker, signal.SIGKILL)
    restarted = Daemon(config).start()  # the lock the worker shared is free: the event is retried
    try:
        wait_until(lambda: pid_file.read_text() != str(worker), timeout=30)
    finally:
        restarted.kill()
        os.kill(int(pid_file.read_text()), signal.SIGKILL)


def _running(pid: int) -> bool:
    """Alive and not a zombie waiting for a reaper."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@needs_root
def test_state_dir_store_and_logs_are_private(shared_base: Path) -> None:
    port = free_port()
    code = write_handler(shared_base, "echo", "def handler(event, context):\n    print('secret', event)\n")
    state = shared_base / "state"
    config = write_config(shared_base / "config.yaml", {
        "state_dir": str(state), "api": {"listen": f"127.0.0.1:{port}"},
        "functions": {"echo": {"handler": "app.handler", "code": str(code)}}})
    old = os.umask(0o022)  # what a shell usually has: the daemon must not rely on it
    try:
        with Daemon(config) as daemon:
            boto3.client("lambda", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1").invoke(
                FunctionName="echo", Payload=b'{"card": "4111"}')
            log = state / "logs" / "echo.log"
            wait_until(lambda: log.exists() and "secret" in log.read_text(), timeout=10)
            store = store_path(state)
            files = [store, store.with_name(store.name + "-wal"), state / "daemon.lock", log]
            assert _mode(state) == 0o700 and _mode(state / "logs") == 0o700
            assert {str(f): oct(_mode(f)) for f in files} == {str(f): "0o600" for f in files}
            read = subprocess.run([*AS_NOBODY, PYTHON, "-c", "import sys; open(sys.argv[1]).read()", str(store)],
                                  capture_output=True, text=True, timeout=30, cwd="/", check=False)
            assert read.returncode != 0 and "PermissionError" in read.stderr
            daemon.stop()
        # an older state_dir, world-readable: its store files and logs are tightened on start
        os.chmod(state, 0o755)
        for path in [*files, state / "logs"]:
            if path.exists():  # a clean stop removed the -wal file
                os.chmod(path, 0o755 if path.is_dir() else 0o644)
        with Daemon(config):
            assert {str(f): oct(_mode(f)) for f in files} == {str(f): "0o600" for f in files}
            assert _mode(state / "logs") == 0o700
    finally:
        os.umask(old)
