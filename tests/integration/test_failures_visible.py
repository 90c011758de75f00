"""Failures are visible and whole: tracebacks in `logs`, `--follow` and Tail, timeouts and crashes in REPORT,
and the journal's priorities on the daemon's output. The daemon and the CLI run as subprocesses."""

from __future__ import annotations

import base64
import json
import os
import pty
import re
import signal
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import boto3
import pytest
from botocore.config import Config as BotoConfig

from bridge.testing import Daemon, free_port, wait_until, write_config, write_handler

HANDLER = """
    import os
    import time

    def inner(event):
        raise ValueError(f"boom {event['n']}")

    def handler(event, context):
        action = event.get("action")
        if action == "raise":
            inner(event)
        if action in ("sleep", "exit"):
            ballast = bytearray(40 * 1024 * 1024)  # touched, so it counts in the high-water mark
            for i in range(0, len(ballast), 4096):
                ballast[i] = 1
            if action == "exit":
                os._exit(3)
            time.sleep(30)
        print("ok", event.get("n"))
        return {"n": event.get("n")}
"""


@pytest.fixture
def env(tmp_path: Path):
    port = free_port()
    code = write_handler(tmp_path, "fn", HANDLER)
    fn = {"handler": "app.handler", "code": str(code), "timeout": 1, "memory_size": 256}
    config = {
        "state_dir": str(tmp_path / "state"), "api": {"listen": f"127.0.0.1:{port}"},
        "functions": {
            "fn": fn,
            "ok": fn,
            "single": {**fn, "reserved_concurrency": 1},
            "failing": {**fn, "async": {"maximum_retry_attempts": 1, "retry_delays": [0.1]}},
        },
    }
    path = write_config(tmp_path / "config.yaml", config)
    client = boto3.client("lambda", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                          aws_access_key_id="x", aws_secret_access_key="x",
                          config=BotoConfig(retries={"max_attempts": 0}, read_timeout=30))
    return path, client


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bridge.cli", *args, "--config", str(config)],
                          capture_output=True, text=True, check=False, timeout=60)


def expected_record(error: dict) -> str:
    """The runtime's error record as a person reads it, built from the error body the runtime returned
    (an independent oracle: the JSON the Invoke API answered, not our log)."""
    trace = "".join(error["stackTrace"]).rstrip("\n")
    return f"[ERROR] {error['errorType']}: {error['errorMessage']}\nTraceback (most recent call last):\n{trace}"


def test_a_failing_handlers_whole_traceback_in_logs_follow_and_tail(env) -> None:
    path, client = env
    with Daemon(path) as daemon:
        follower = subprocess.Popen([sys.executable, "-m", "bridge.cli", "logs", "fn", "--follow", "--config",
                                     str(path)], stdout=subprocess.PIPE, text=True)
        followed: list[str] = []
        threading.Thread(target=lambda: followed.extend(follower.stdout), daemon=True).start()  # type: ignore
        try:
            resp = client.invoke(FunctionName="fn", Payload=json.dumps({"action": "raise", "n": 7}), LogType="Tail")
            error = json.loads(resp["Payload"].read())
            assert resp["FunctionError"] == "Unhandled" and error["errorMessage"] == "boom 7"
            assert len(error["stackTrace"]) == 2, "handler and inner: a traceback of two frames"
            record = expected_record(error)
            assert '  File "' in record and "    raise ValueError" in record

            tail = base64.b64decode(resp["LogResult"]).decode()
            assert record in tail, "Tail: the record as lines, not \\r-joined"
            assert "\r" not in tail and "\xa0" not in tail

            via_cli = cli(path, "invoke", "fn", "--payload", '{"action": "raise", "n": 8}', "--log-type", "Tail")
            assert via_cli.returncode == 1
            assert record.replace("boom 7", "boom 8") in via_cli.stderr

            rid = resp["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
            shown = cli(path, "logs", "fn", "--request-id", rid).stdout
            assert f" {rid} {record}\n" in shown, shown
            wait_until(lambda: record in "".join(followed), timeout=20)

            [output] = [e for e in daemon.find("function.output", request_id=rid) if "Traceback" in e["line"]]
            assert output["line"] == record, "the daemon's log event holds the whole record"
            [report] = daemon.find("invoke.report", request_id=rid)
            assert report["level"] == "warning" and report["error_type"] == "ValueError"
            assert report["trace"] == "".join(error["stackTrace"]).rstrip("\n")
        finally:
            follower.terminate()
            follower.wait(10)


def report_of(config: Path, function: str, rid: str) -> tuple[list[str], str]:
    lines = cli(config, "logs", function, "--request-id", rid).stdout.splitlines()
    return lines, next(line for line in lines if "REPORT RequestId" in line)


def test_timeout_and_crash_write_lambdas_lines_and_the_real_high_water_mark(env) -> None:
    path, client = env
    with Daemon(path):
        resp = client.invoke(FunctionName="fn", Payload=json.dumps({"action": "sleep"}))
        rid = resp["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
        error = json.loads(resp["Payload"].read())
        assert error["errorType"] == "Sandbox.Timedout"
        lines, report = report_of(path, "fn", rid)
        timed_out = [line for line in lines if line.endswith("Task timed out after 1.00 seconds")]
        assert len(timed_out) == 1 and rid in timed_out[0].split(" ", 2)[2], lines
        assert report.endswith("\tStatus: timeout"), report
        assert int(re.search(r"Max Memory Used: (\d+) MB", report).group(1)) >= 40

        resp = client.invoke(FunctionName="fn", Payload=json.dumps({"action": "exit"}))
        rid = resp["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
        assert json.loads(resp["Payload"].read())["errorType"] == "Runtime.ExitError"
        _, report = report_of(path, "fn", rid)
        assert report.endswith("\tStatus: error\tError Type: Runtime.ExitError"), report
        assert int(re.search(r"Max Memory Used: (\d+) MB", report).group(1)) >= 40, "from the crashed one's rusage"

        resp = client.invoke(FunctionName="fn", Payload=json.dumps({"n": 1}))
        rid = resp["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
        _, report = report_of(path, "fn", rid)
        assert "Status" not in report and re.search(r"Max Memory Used: [1-9]\d* MB", report)


FAILURES = {"invoke.report", "invoke.timeout", "invoke.throttled", "delivery.retrying", "delivery.failed"}


def test_journal_priorities_show_exactly_the_failures(env) -> None:
    path, client = env
    with Daemon(path, journal=True) as daemon:
        assert all("priority" in e for e in daemon.events), "every line carries its priority"
        client.invoke(FunctionName="ok", Payload=json.dumps({"n": 1}))
        client.invoke(FunctionName="fn", Payload=json.dumps({"action": "raise", "n": 2}))
        client.invoke(FunctionName="fn", Payload=json.dumps({"action": "sleep"}))
        _throttle(client)
        client.invoke(FunctionName="failing", InvocationType="Event", Payload=json.dumps({"action": "raise", "n": 3}))
        daemon.wait_for("delivery.failed", function="failing", timeout=30)
        client.invoke(FunctionName="ok", Payload=json.dumps({"n": 4}))
        daemon.wait_for("invoke.report", count=2, function="ok")

    warnings = [e for e in daemon.events if e["priority"] <= 4]  # journalctl -p warning
    assert {e["event"] for e in warnings} == FAILURES, warnings
    assert not [e for e in warnings if e.get("function") == "ok"], "no success above info"
    by_name = {e["event"]: e["priority"] for e in warnings}
    assert by_name["delivery.failed"] == 3 and by_name["invoke.report"] == 4 and by_name["delivery.retrying"] == 4
    assert [e for e in daemon.events if e["priority"] <= 3] == daemon.find("delivery.failed"), "errors: given up"
    successes = daemon.find("invoke.report", function="ok")
    assert len(successes) == 2 and {e["priority"] for e in successes} == {7}, "a success's REPORT is debug"


def _throttle(client) -> None:
    """Two calls at once to a function with one worker: the second is refused with 429, as Lambda throttles."""
    url = f"{client.meta.endpoint_url}/bridge/status"

    def in_flight() -> bool:
        status = json.loads(urllib.request.urlopen(url, timeout=5).read())
        return any(f["name"] == "single" and f["in_flight"] == 1 for f in status["functions"])

    first = threading.Thread(target=client.invoke, kwargs={"FunctionName": "single",
                                                          "Payload": json.dumps({"action": "sleep"})})
    first.start()
    try:
        wait_until(in_flight, timeout=10)
        with pytest.raises(client.exceptions.TooManyRequestsException):
            client.invoke(FunctionName="single", Payload=b"{}")
    finally:
        first.join()


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def test_the_console_log_shows_the_traceback_as_lines(env) -> None:
    """On a terminal the daemon writes console lines: a traceback shows as indented lines, not \\r\\xa0 escapes."""
    path, client = env
    master, slave = pty.openpty()
    # handler output is a debug event in the daemon's log (the function's file has it at any level)
    proc = subprocess.Popen([sys.executable, "-m", "bridge.cli", "run", "--config", str(path)],
                            stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, start_new_session=True,
                            env={**os.environ, "LAMBDA_BRIDGE_LOG_LEVEL": "debug"})
    os.close(slave)
    screen: list[str] = []
    threading.Thread(target=_read_pty, args=(master, screen), daemon=True).start()
    try:
        url = f"{client.meta.endpoint_url}/readyz"
        wait_until(lambda: _answers(url), timeout=30)
        client.invoke(FunctionName="fn", Payload=json.dumps({"action": "raise", "n": 9}))
        wait_until(lambda: "invoke.report" in ANSI.sub("", "".join(screen)), timeout=20)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    text = ANSI.sub("", "".join(screen)).replace("\r\n", "\n")
    assert "\\r" not in text and "\\xa0" not in text and "\xa0" not in text
    shown = (r"function\.output .*\n  line:\n    \[ERROR\] ValueError: boom 9\n"
             r"    Traceback \(most recent call last\):\n      File \".*app\.py\", line \d+, in handler\n")
    assert re.search(shown, text), text


def _read_pty(fd: int, screen: list[str]) -> None:
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:  # EIO once the daemon closed its end
            return
        if not data:
            return
        screen.append(data.decode(errors="replace"))


def _answers(url: str) -> bool:
    try:
        return urllib.request.urlopen(url, timeout=2).status == 200
    except OSError:
        return False
