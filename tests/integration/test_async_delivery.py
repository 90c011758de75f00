"""Durable async delivery with the daemon as a subprocess: retries, event age, destinations, dead letters."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from botocore.config import Config as BotoConfig

from bridge.testing import Daemon, free_port, wait_until, write_config, write_handler

ARN_PREFIX = "arn:aws:lambda:us-east-1:000000000000:function:"
RECORDER = """
    import json, os, time
    def handler(event, context):
        line = json.dumps({"event": event, "time": time.time(), "request_id": context.aws_request_id})
        fd = os.open(os.environ["RECORD_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        os.write(fd, (line + "\\n").encode())
        os.close(fd)
        if os.environ.get("FAIL") == "yes":
            raise RuntimeError("always failing: " + str(event.get("n")))
        return {"ok": event.get("n")}
"""


def records(path: Path) -> list[dict]:
    """What a recorder handler saw, one dict per invocation."""
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``lambda-bridge ARGS --config config``."""
    return subprocess.run([sys.executable, "-m", "bridge.cli", *args, "--config", str(config)],
                          capture_output=True, text=True, check=False, timeout=60)


def recorder(root: Path, name: str, *, fail: bool = False, **extra: object) -> dict:
    code = write_handler(root, "recorder", RECORDER)
    env = {"RECORD_FILE": str(root / f"{name}.jsonl"), "FAIL": "yes" if fail else "no"}
    return {"handler": "app.handler", "code": str(code), "environment": env, **extra}


def lambda_client(port: int):
    return boto3.client("lambda", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                        config=BotoConfig(retries={"max_attempts": 0}))


def send_event(client, name: str, event: dict) -> str:
    response = client.invoke(FunctionName=name, InvocationType="Event", Payload=json.dumps(event))
    assert response["StatusCode"] == 202
    return response["ResponseMetadata"]["RequestId"]


@pytest.fixture
def setup(tmp_path: Path):
    """Write a config for ``functions`` and return (config path, port)."""

    def make(functions: dict) -> tuple[Path, int]:
        port = free_port()
        config = {"state_dir": str(tmp_path / "state"), "api": {"listen": f"127.0.0.1:{port}"},
                  "functions": functions}
        return write_config(tmp_path / "config.yaml", config), port

    return make


def test_retries_then_dead_letter_then_redrive(tmp_path: Path, setup) -> None:
    fn = recorder(tmp_path, "failing", fail=True,
                  **{"async": {"maximum_retry_attempts": 2, "retry_delays": [0.3, 0.6]}})
    config, port = setup({"failing": fn})
    with Daemon(config) as daemon:
        rid = send_event(lambda_client(port), "failing", {"n": 1})
        daemon.wait_for("delivery.failed", function="failing", timeout=30)
        seen = records(tmp_path / "failing.jsonl")
        assert len(seen) == 3, "1 + maximum_retry_attempts invocations"
        assert {s["request_id"] for s in seen} == {rid}, "retries keep the request id"
        gaps = [b["time"] - a["time"] for a, b in itertools.pairwise(seen)]
        assert gaps[0] >= 0.3 and gaps[1] >= 0.6

        listed = json.loads(cli(config, "dlq", "list", "--json").stdout)
        assert len(listed) == 1
        entry = listed[0]
        assert entry["function"] == "failing" and entry["condition"] == "RetriesExhausted"
        record = entry["record"]
        assert record["version"] == "1.0"
        assert record["requestContext"] == {"requestId": rid, "condition": "RetriesExhausted",
                                            "approximateInvokeCount": 3,
                                            "functionArn": ARN_PREFIX + "failing:$LATEST"}
        assert record["requestPayload"] == {"n": 1}
        assert record["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST",
                                             "functionError": "Unhandled"}
        assert record["responsePayload"]["errorMessage"] == "always failing: 1"
        shown = json.loads(cli(config, "dlq", "show", entry["id"]).stdout)
        assert shown == entry

        result = cli(config, "dlq", "redrive", entry["id"])
        assert result.returncode == 0, result.stderr
        daemon.wait_for("delivery.failed", count=2, function="failing", timeout=30)
        assert len(records(tmp_path / "failing.jsonl")) == 6
        ids = [e["id"] for e in json.loads(cli(config, "dlq", "list", "--json").stdout)]
        assert len(ids) == 1 and ids[0] != entry["id"], "the redriven entry left the list; the new failure is in"
        assert cli(config, "dlq", "purge", "--all").returncode == 0
        assert json.loads(cli(config, "dlq", "list", "--json").stdout) == []


def test_event_age_exceeded(tmp_path: Path, setup) -> None:
    fn = recorder(tmp_path, "aging", fail=True,
                  **{"async": {"maximum_retry_attempts": 2, "retry_delays": [5, 5], "maximum_event_age": 2}})
    config, port = setup({"aging": fn})
    with Daemon(config) as daemon:
        send_event(lambda_client(port), "aging", {"n": 7})
        daemon.wait_for("delivery.failed", function="aging", timeout=30)
    [entry] = json.loads(cli(config, "dlq", "list", "--json").stdout)
    assert entry["condition"] == "EventAgeExceeded"
    assert entry["record"]["requestContext"]["condition"] == "EventAgeExceeded"
    assert entry["record"]["requestContext"]["approximateInvokeCount"] == 1
    assert len(records(tmp_path / "aging.jsonl")) == 1


def test_reserved_concurrency_zero_goes_straight_to_failure_destination(tmp_path: Path, setup) -> None:
    config, port = setup({"off": recorder(tmp_path, "off", reserved_concurrency=0)})
    with Daemon(config) as daemon:
        send_event(lambda_client(port), "off", {"n": 3})
        daemon.wait_for("delivery.failed", function="off")
    [entry] = json.loads(cli(config, "dlq", "list", "--json").stdout)
    assert entry["record"]["requestContext"]["approximateInvokeCount"] == 0
    assert not (tmp_path / "off.jsonl").exists()


def test_function_destination_receives_the_record(tmp_path: Path, setup) -> None:
    failing = recorder(tmp_path, "failing", fail=True,
                       **{"async": {"maximum_retry_attempts": 0, "on_failure": "function:audit"}})
    audit = recorder(tmp_path, "audit")
    config, port = setup({"failing": failing, "audit": audit})
    with Daemon(config) as daemon:
        rid = send_event(lambda_client(port), "failing", {"n": 5})
        daemon.wait_for("delivery.succeeded", function="audit")
    [seen] = records(tmp_path / "audit.jsonl")
    record = seen["event"]
    assert record["requestContext"]["requestId"] == rid
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestPayload"] == {"n": 5}


def test_sqs_destinations_on_moto(tmp_path: Path, setup, sqs) -> None:
    ok_url = sqs.create_queue(QueueName="on-success")["QueueUrl"]
    bad_url = sqs.create_queue(QueueName="on-failure")["QueueUrl"]
    good = recorder(tmp_path, "good", **{"async": {"on_success": f"sqs:{ok_url}"}})
    bad = recorder(tmp_path, "bad", fail=True,
                   **{"async": {"maximum_retry_attempts": 0, "on_failure": f"sqs:{bad_url}"}})
    config, port = setup({"good": good, "bad": bad})
    with Daemon(config) as daemon:
        client = lambda_client(port)
        send_event(client, "good", {"n": 1})
        rid = send_event(client, "bad", {"n": 2})
        daemon.wait_for("delivery.succeeded", function="good")
        daemon.wait_for("delivery.failed", function="bad")
    [success] = sqs.receive_message(QueueUrl=ok_url, WaitTimeSeconds=1)["Messages"]
    body = json.loads(success["Body"])
    assert body["requestContext"]["condition"] == "Success" and body["responsePayload"] == {"ok": 1}
    [failure] = sqs.receive_message(QueueUrl=bad_url, WaitTimeSeconds=1,
                                    MessageAttributeNames=["All"])["Messages"]
    assert json.loads(failure["Body"])["requestPayload"] == {"n": 2}
    attrs = failure["MessageAttributes"]
    assert attrs["RequestID"] == {"StringValue": rid, "DataType": "String"}
    assert attrs["ErrorCode"]["DataType"] == "Number"
    assert attrs["ErrorMessage"]["StringValue"] == "always failing: 2"


def test_offline_event_is_delivered_when_the_daemon_starts(tmp_path: Path, setup) -> None:
    config, _ = setup({"sink": recorder(tmp_path, "sink")})
    result = cli(config, "invoke", "sink", "--invocation-type", "Event", "--payload", '{"n": 42}')
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["StatusCode"] == 202
    with Daemon(config) as daemon:
        daemon.wait_for("delivery.succeeded", function="sink")
    assert [r["event"] for r in records(tmp_path / "sink.jsonl")] == [{"n": 42}]


def test_pending_retry_survives_restart(tmp_path: Path, setup) -> None:
    fn = recorder(tmp_path, "flaky", fail=True, **{"async": {"maximum_retry_attempts": 1, "retry_delays": [1.5]}})
    config, port = setup({"flaky": fn})
    with Daemon(config) as daemon:
        send_event(lambda_client(port), "flaky", {"n": 9})
        daemon.wait_for("delivery.retrying", function="flaky")
    assert len(records(tmp_path / "flaky.jsonl")) == 1
    with Daemon(config) as daemon:
        daemon.wait_for("delivery.failed", function="flaky", timeout=30)
    seen = records(tmp_path / "flaky.jsonl")
    assert len(seen) == 2 and seen[1]["time"] - seen[0]["time"] >= 1.5
    wait_until(lambda: json.loads(cli(config, "dlq", "list", "--json").stdout))
