"""A full disk under state_dir (a 16 MB tmpfs), with the daemon as a subprocess: nothing lost, delivery goes on,
readiness tells the truth, stop works, and the log says it once each way."""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from bridge.testing import Daemon, free_port, wait_until, write_config, write_handler

# Records each event's n outside the small filesystem; holds while the gate file exists (a backlog builds up).
GATED = """
    import os, time
    def handler(event, context):
        while os.path.exists(os.environ["GATE"]):
            time.sleep(0.02)
        fd = os.open(os.environ["RECORD_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        os.write(fd, b"%d\\n" % event["n"])
        os.close(fd)
"""
PADDING = "x" * 150_000  # each event takes about 150 KB of the 16 MB


@pytest.fixture
def small_fs(tmp_path: Path):
    """A 16 MB tmpfs mounted at tmp_path/small (needs root, as CI runs), unmounted afterwards."""
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def start(tmp_path: Path, state: Path, *, shutdown_timeout: float = 30.0) -> tuple[Daemon, str]:
    port = free_port()
    code = write_handler(tmp_path, "gated", GATED)
    env = {"RECORD_FILE": str(tmp_path / "record.txt"), "GATE": str(tmp_path / "gate")}
    config = write_config(tmp_path / "config.yaml", {
        "state_dir": str(state), "api": {"listen": f"127.0.0.1:{port}"}, "shutdown_timeout": shutdown_timeout,
        "functions": {"gated": {"handler": "app.handler", "code": str(code), "reserved_concurrency": 2,
                                "environment": env}}})
    return Daemon(config, env={"LAMBDA_BRIDGE_LOG_LEVEL": "info"}), f"http://127.0.0.1:{port}"


def send(url: str, n: int) -> int:
    """One async invocation; the status code (blocks while intake is paused)."""
    body = json.dumps({"n": n, "padding": PADDING}).encode()
    request = urllib.request.Request(f"{url}/2015-03-31/functions/gated/invocations", data=body,
                                     headers={"X-Amz-Invocation-Type": "Event"})
    with urllib.request.urlopen(request, timeout=120) as response:
        return response.status


def get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def recorded(tmp_path: Path) -> list[int]:
    path = tmp_path / "record.txt"
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def fill_until_paused(daemon: Daemon, url: str, pool: concurrent.futures.Executor) -> dict[int, object]:
    """Send events one after another until the store says the disk is full; n -> its pending future."""
    sent: dict[int, object] = {}
    for n in range(400):
        sent[n] = pool.submit(send, url, n)
        try:
            sent[n].result(timeout=5)  # type: ignore[attr-defined]
        except concurrent.futures.TimeoutError:
            break  # intake is paused: this request waits for room
    daemon.wait_for("store.disk_full", timeout=30)
    return sent


def json_only(daemon: Daemon) -> list[str]:
    """Log lines that are not JSON (a plain-text traceback would be)."""
    bad = []
    for line in daemon.raw:
        try:
            json.loads(line)
        except ValueError:
            bad.append(line)
    return bad


def test_own_backlog_fills_the_disk_then_drains_and_intake_resumes(tmp_path: Path, small_fs: Path) -> None:
    (tmp_path / "gate").touch()
    daemon, url = start(tmp_path, small_fs / "state")
    with daemon, concurrent.futures.ThreadPoolExecutor(4) as pool:
        sent = fill_until_paused(daemon, url, pool)
        accepted = [n for n, f in sent.items() if f.done() and f.result() == 202]  # type: ignore[attr-defined]
        assert len(accepted) > 20, "the disk should hold a backlog before it fills"
        status, body = get(f"{url}/readyz")
        assert status == 503 and "disk full" in body["reason"], body
        assert get(f"{url}/healthz")[0] == 200, "alive: the loop answers; restarting would not free space"
        assert any("degraded: disk full" in n for n in daemon.notifications), daemon.notifications

        (tmp_path / "gate").unlink()  # delivery must go on and drain the backlog while intake is paused
        wait_until(lambda: set(accepted) <= set(recorded(tmp_path)), timeout=120, interval=0.2)
        for future in sent.values():  # the paused request is taken once the drained backlog left room
            assert future.result(timeout=60) == 202  # type: ignore[attr-defined]
        daemon.wait_for("store.disk_recovered", timeout=60)
        wait_until(lambda: get(f"{url}/readyz")[0] == 200, timeout=30)
        wait_until(lambda: set(sent) <= set(recorded(tmp_path)), timeout=60, interval=0.2)
    assert len(daemon.find("store.disk_full")) == 1 and daemon.find("store.disk_full")[0]["level"] == "error"
    assert len(daemon.find("store.disk_recovered")) == 1
    assert json_only(daemon) == [], "every line is one JSON event, no plain-text traceback"
    assert daemon.proc is not None and daemon.proc.returncode == 0


def test_sigterm_completes_while_the_disk_is_full(tmp_path: Path, small_fs: Path) -> None:
    (tmp_path / "gate").touch()
    daemon, url = start(tmp_path, small_fs / "state", shutdown_timeout=3.0)
    with daemon, concurrent.futures.ThreadPoolExecutor(4) as pool:
        filler = small_fs / "filler"
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=1M", "count=64"], capture_output=True,
                       check=False)  # someone else filled the disk: dd stops at ENOSPC
        paused = pool.submit(send, url, 1)
        daemon.wait_for("store.disk_full", timeout=30)
        assert not paused.done()
        started = time.monotonic()
        daemon.signal(signal.SIGTERM)
        assert daemon.proc is not None
        code = daemon.proc.wait(timeout=30)
        assert code == 0, daemon.tail()
        assert time.monotonic() - started < 20
        os.unlink(filler)
    assert json_only(daemon) == []


def send_answer(url: str, n: int) -> tuple[int, dict, dict]:
    """One async invocation: status, JSON body and headers, an error status included (a dropped connection
    raises)."""
    body = json.dumps({"n": n}).encode()
    request = urllib.request.Request(f"{url}/2015-03-31/functions/gated/invocations", data=body,
                                     headers={"X-Amz-Invocation-Type": "Event"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, {}, dict(response.headers)
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read()), dict(err.headers)


def test_sigterm_during_a_full_disk_takes_one_shutdown_timeout_and_the_waiting_client_hears_503(
        tmp_path: Path, small_fs: Path) -> None:
    """One shutdown_timeout covers the drain and the HTTP requests together; a request still waiting for room
    then is answered (Lambda's 503 ServiceException: nothing was queued, send it again), not dropped."""
    timeout, margin = 5.0, 2.0
    daemon, url = start(tmp_path, small_fs / "state", shutdown_timeout=timeout)
    with daemon, concurrent.futures.ThreadPoolExecutor(2) as pool:
        filler = small_fs / "filler"
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=1M", "count=64"], capture_output=True,
                       check=False)  # someone else filled the disk: dd stops at ENOSPC
        waiting = pool.submit(send_answer, url, 1)
        daemon.wait_for("store.disk_full", timeout=30)
        assert not waiting.done()
        started = time.monotonic()
        daemon.signal(signal.SIGTERM)
        assert daemon.proc is not None
        code = daemon.proc.wait(timeout=30)
        took = time.monotonic() - started
        status, body, headers = waiting.result(timeout=5)
        os.unlink(filler)
    assert code == 0, daemon.tail()
    assert took < timeout + margin, f"stopped after {took:.1f} s; shutdown_timeout is {timeout} s"
    assert status == 503 and headers["x-amzn-ErrorType"] == "ServiceException", (status, body, headers)
    assert body["Type"] == "Service" and "not queued" in body["message"] and "send it again" in body["message"]
    [line] = daemon.find("invoke.not_queued")
    assert line["request_id"] == headers["x-amzn-RequestId"] and line["function"] == "gated"
    assert json_only(daemon) == []
