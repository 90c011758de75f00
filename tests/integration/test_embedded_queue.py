"""The embedded queue over the SQS JSON protocol (boto3 against the daemon), its CLI, and SIGKILL durability."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from bridge.testing import Daemon, free_port, wait_until, write_config, write_handler
from tests.integration.test_sqs_source import HANDLER, bodies


def client(port: int):
    return boto3.client("sqs", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                        config=BotoConfig(retries={"max_attempts": 0}, read_timeout=30))


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bridge.cli", "queue", *args, "--config", str(config)],
                          capture_output=True, text=True, check=False, timeout=60)


@pytest.fixture
def daemon(tmp_path: Path):
    port = free_port()
    config = write_config(tmp_path / "config.yaml", {
        "state_dir": str(tmp_path / "state"), "api": {"listen": f"127.0.0.1:{port}"},
        "queues": {"jobs": {"visibility_timeout": 30}, "orders.fifo": {"fifo": True}}})
    with Daemon(config) as running:
        running.port = port  # type: ignore[attr-defined]
        running.config = config  # type: ignore[attr-defined]
        yield running


def test_sdk_round_trip(daemon: Daemon) -> None:
    sqs = client(daemon.port)
    url = sqs.get_queue_url(QueueName="jobs")["QueueUrl"]
    assert url == f"http://127.0.0.1:{daemon.port}/000000000000/jobs"
    attrs = {"kind": {"DataType": "String", "StringValue": "order"},
             "blob": {"DataType": "Binary", "BinaryValue": b"\x01"}}
    sent = sqs.send_message(QueueUrl=url, MessageBody="hello", MessageAttributes=attrs)  # boto3 checks both MD5s
    batch = sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": "a", "MessageBody": "x"},
                                                          {"Id": "b", "MessageBody": "y", "DelaySeconds": 1}])
    assert [e["Id"] for e in batch["Successful"]] == ["a", "b"] and batch["Failed"] == []
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1, VisibilityTimeout=30,
                              MessageSystemAttributeNames=["All"], MessageAttributeNames=["All"])["Messages"]
    assert [m["Body"] for m in got] == ["hello", "x"], "the delayed one is not visible yet"
    assert got[0]["MessageId"] == sent["MessageId"] and got[0]["MessageAttributes"]["blob"]["BinaryValue"] == b"\x01"
    assert got[0]["Attributes"]["ApproximateReceiveCount"] == "1"
    late = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=5)["Messages"]  # long poll until the delay ends
    assert late[0]["Body"] == "y"
    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=late[0]["ReceiptHandle"], VisibilityTimeout=0)
    deleted = sqs.delete_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                                                              for i, m in enumerate(got)])
    assert len(deleted["Successful"]) == 2
    counts = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages",
                                                                     "ApproximateNumberOfMessagesNotVisible"])
    assert counts["Attributes"] == {"ApproximateNumberOfMessages": "1", "ApproximateNumberOfMessagesNotVisible": "0"}
    sqs.purge_queue(QueueUrl=url)
    assert "Messages" not in sqs.receive_message(QueueUrl=url)


def test_create_list_delete_and_fifo(daemon: Daemon) -> None:
    sqs = client(daemon.port)
    made = sqs.create_queue(QueueName="extra.fifo", Attributes={"FifoQueue": "true",
                                                                 "ContentBasedDeduplication": "true"})["QueueUrl"]
    assert sqs.list_queues(QueueNamePrefix="extra")["QueueUrls"] == [made]
    one = sqs.send_message(QueueUrl=made, MessageBody="same", MessageGroupId="g")
    two = sqs.send_message(QueueUrl=made, MessageBody="same", MessageGroupId="g")
    assert one["MessageId"] == two["MessageId"] and one["SequenceNumber"] == two["SequenceNumber"]
    [msg] = sqs.receive_message(QueueUrl=made, MaxNumberOfMessages=10, AttributeNames=["All"])["Messages"]
    assert msg["Attributes"]["MessageGroupId"] == "g" and "SequenceNumber" in msg["Attributes"]
    sqs.set_queue_attributes(QueueUrl=made, Attributes={"VisibilityTimeout": "5"})
    assert sqs.get_queue_attributes(QueueUrl=made, AttributeNames=["VisibilityTimeout"])["Attributes"] == {
        "VisibilityTimeout": "5"}
    sqs.delete_queue(QueueUrl=made)
    with pytest.raises(sqs.exceptions.QueueDoesNotExist):
        sqs.get_queue_url(QueueName="extra.fifo")


@pytest.mark.parametrize(("call", "code"), [
    (lambda s, u: s.get_queue_url(QueueName="missing"), "AWS.SimpleQueueService.NonExistentQueue"),
    (lambda s, u: s.send_message(QueueUrl=u.replace("jobs", "gone"), MessageBody="x"),
     "AWS.SimpleQueueService.NonExistentQueue"),
    (lambda s, u: s.delete_message(QueueUrl=u, ReceiptHandle="not-a-handle"), "ReceiptHandleIsInvalid"),
    (lambda s, u: s.send_message(QueueUrl=u.replace("jobs", "orders.fifo"), MessageBody="x"), "MissingParameter"),
    (lambda s, u: s.send_message(QueueUrl=u, MessageBody="x", DelaySeconds=901), "InvalidParameterValue"),
    (lambda s, u: s.receive_message(QueueUrl=u, MaxNumberOfMessages=11), "InvalidParameterValue"),
    (lambda s, u: s.send_message(QueueUrl=u, MessageBody="bad \x00 char"), "InvalidMessageContents"),
    (lambda s, u: s.get_queue_attributes(QueueUrl=u, AttributeNames=["Nope"]), "InvalidAttributeName"),
    (lambda s, u: s.create_queue(QueueName="jobs", Attributes={"VisibilityTimeout": "1"}), "QueueAlreadyExists"),
    (lambda s, u: s.send_message_batch(QueueUrl=u, Entries=[{"Id": "a", "MessageBody": "x"}] * 2),
     "AWS.SimpleQueueService.BatchEntryIdsNotDistinct"),
])
def test_aws_error_codes(daemon: Daemon, call, code: str) -> None:
    sqs = client(daemon.port)
    url = sqs.get_queue_url(QueueName="jobs")["QueueUrl"]
    with pytest.raises(ClientError) as err:
        call(sqs, url)
    assert err.value.response["Error"]["Code"] == code
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_aws_cli_style_queue_does_not_exist_class(daemon: Daemon) -> None:
    sqs = client(daemon.port)
    with pytest.raises(sqs.exceptions.QueueDoesNotExist):
        sqs.get_queue_url(QueueName="missing")


def test_cli_through_daemon_and_offline(daemon: Daemon, tmp_path: Path) -> None:
    config = daemon.config
    sent = cli(config, "send", "jobs", '{"a": 1}', "--attributes", '{"kind": "order", "n": 2}')
    assert sent.returncode == 0, sent.stderr
    assert "MessageId" in json.loads(sent.stdout)
    fifo = cli(config, "send", "orders.fifo", "x", "--group", "g", "--dedup-id", "d1")
    assert fifo.returncode == 0, fifo.stderr
    listed = cli(config, "list")
    assert listed.returncode == 0
    rows = {line.split()[0]: line.split()[1:] for line in listed.stdout.splitlines()[1:]}
    assert rows["jobs"] == ["1", "0", "0"] and rows["orders.fifo"] == ["1", "0", "0"]
    assert cli(config, "purge", "jobs").returncode == 0
    daemon.stop()
    offline = cli(config, "send", "jobs", "while stopped")
    assert offline.returncode == 0, offline.stderr
    rows = {line.split()[0]: line.split()[1:] for line in cli(config, "list").stdout.splitlines()[1:]}
    assert rows["jobs"] == ["1", "0", "0"], "written to the store file directly"
    bad = cli(config, "send", "nope", "x")
    assert bad.returncode != 0 and "does not exist" in bad.stderr


def test_sigkill_loses_nothing_acknowledged(tmp_path: Path) -> None:
    port = free_port()
    code = write_handler(tmp_path, "handler", HANDLER)
    record = tmp_path / "seen.jsonl"
    config = write_config(tmp_path / "config.yaml", {
        "state_dir": str(tmp_path / "state"), "api": {"listen": f"127.0.0.1:{port}"},
        "queues": {"jobs": {"visibility_timeout": 2}},
        "functions": {"worker": {"handler": "app.handler", "code": str(code), "reserved_concurrency": 2,
                                 "environment": {"RECORD_FILE": str(record), "MODE": "ok", "RESPONSE": "null"}}},
        "sources": [{"name": "jobs", "type": "sqs", "queue": "jobs", "function": "worker", "batch_size": 5}]})
    daemon = Daemon(config).start()
    acknowledged: set[str] = set()
    try:
        sqs = client(port)
        url = sqs.get_queue_url(QueueName="jobs")["QueueUrl"]
        for i in range(300):
            # The second half takes the handler 20 ms a message, so the kill surely comes mid-consumption
            # however fast the daemon consumes (the first half alone once kept pace with the sender).
            body = f"m{i}" if i <= 150 else json.dumps({"m": i, "sleep": 0.02})
            sqs.send_message(QueueUrl=url, MessageBody=body)
            acknowledged.add(body)
            if i == 150:
                wait_until(lambda: bodies(record), timeout=30)
        daemon.kill()  # SIGKILL, mid-consumption
        assert len(set(bodies(record))) < 300, "the kill happened before everything was handled"
        daemon = Daemon(config).start()
        wait_until(lambda: set(bodies(record)) >= acknowledged, timeout=60)
    finally:
        daemon.stop()
        daemon.kill()


def test_a_renewal_the_queue_refuses_is_reported_once(tmp_path: Path) -> None:
    """The heartbeat renews a running batch's visibility; a message the queue no longer knows (purged meanwhile)
    cannot be renewed and may be handed out again: that is said once, with what to do, not swallowed."""
    port = free_port()
    record = tmp_path / "seen.jsonl"
    config = write_config(tmp_path / "config.yaml", {
        "state_dir": str(tmp_path / "state"), "api": {"listen": f"127.0.0.1:{port}"},
        "queues": {"jobs": {"visibility_timeout": 2}},
        "functions": {"worker": {"handler": "app.handler", "code": str(write_handler(tmp_path, "h", HANDLER)),
                                 "environment": {"RECORD_FILE": str(record), "MODE": "ok", "RESPONSE": "null"}}},
        "sources": [{"name": "jobs", "type": "sqs", "queue": "jobs", "function": "worker"}]})
    with Daemon(config) as daemon:
        sqs = client(port)
        url = sqs.get_queue_url(QueueName="jobs")["QueueUrl"]
        sent = sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"sleep": 2.5}))["MessageId"]
        wait_until(lambda: bodies(record), timeout=30)  # the handler runs (for 2.5 s: within its 3 s timeout)
        sqs.purge_queue(QueueUrl=url)
        [lost] = daemon.wait_for("sqs.visibility_lost", timeout=10)
        assert lost["message_id"] == sent and lost["queue"] == "jobs" and "VisibilityTimeout" in lost["fix"]
        daemon.wait_for("sqs.batch", timeout=10)  # the batch ends: heartbeats went on every 0.67 s meanwhile
        assert len(daemon.find("sqs.visibility_lost")) == 1
