"""Buses and topics end to end: an unchanged handler publishes with boto3; only matching rules and
subscriptions get it, in AWS's shapes (Powertools' models), through the daemon started as a subprocess."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
import pytest
from aws_lambda_powertools.utilities.parser.models import (
    EventBridgeModel,
    SnsModel,
    SnsNotificationModel,
    SqsModel,
)
from botocore.config import Config as BotoConfig

from bridge.testing import Daemon, free_port, wait_until, write_config, write_handler
from tests.integration.test_async_delivery import RECORDER, records

# An unchanged application handler: it only knows boto3 and the resources' names from its environment.
PUBLISHER = """
    import json, os
    import boto3

    events = boto3.client("events")
    topics = boto3.client("sns")

    def handler(event, context):
        events.put_events(Entries=[{"Source": "shop", "DetailType": "OrderPlaced",
                                    "Detail": json.dumps({"total": event["total"], "region": event["region"]})}])
        topics.publish(TopicArn=os.environ["TOPIC_ARN"], Message=json.dumps({"region": event["region"]}),
                       Subject="order", MessageAttributes={
                           "severity": {"DataType": "String", "StringValue": event["severity"]}})
        return {"published": True}
"""
TOPIC_ARN = "arn:aws:sns:us-east-1:000000000000:alerts"


def _config(tmp_path: Path, port: int) -> dict[str, Any]:
    sdk = {"TOPIC_ARN": TOPIC_ARN}  # the workers get AWS_ENDPOINT_URL_EVENTBRIDGE / _SNS and credentials
    functions: dict[str, Any] = {"publisher": {"handler": "app.handler", "code": str(write_handler(
        tmp_path, "publisher", PUBLISHER)), "environment": sdk}}
    for name in ("fulfil", "small", "pager", "eu-ops", "quiet", "relay"):
        functions[name] = {"handler": "app.handler", "code": str(write_handler(tmp_path, name, RECORDER)),
                           "environment": {"RECORD_FILE": str(tmp_path / f"{name}.jsonl")}}
    return {
        "state_dir": str(tmp_path / "state"), "api": {"listen": f"127.0.0.1:{port}"},
        "functions": functions, "queues": {"audit": {}, "alert-log": {}, "enveloped": {}, "relayed": {}},
        "sources": [{"type": "sqs", "name": "relay", "function": "relay", "queue": "relayed"}],
        "buses": {"default": {"rules": [
            {"name": "big-orders", "event_pattern": {"source": ["shop"], "detail-type": ["OrderPlaced"],
                                                     "detail": {"total": [{"numeric": [">", 100]}]}},
             "targets": ["function:fulfil", "queue:audit"]},
            {"name": "small-orders", "event_pattern": {"detail": {"total": [{"numeric": ["<=", 100]}]}},
             "targets": [{"target": "function:small", "input_transformer": {
                 "input_paths_map": {"total": "$.detail.total"},
                 "input_template": '{"order_total": <total>, "rule": "<aws.events.rule-name>"}'}}]},
        ]}},
        "topics": {"alerts": {"subscriptions": [
            {"function": "pager", "filter_policy": {"severity": ["critical"]}},
            {"queue": "alert-log", "raw_message_delivery": True},
            {"queue": "enveloped", "filter_policy": {"severity": [{"anything-but": "debug"}]}},
            {"function": "eu-ops", "filter_policy_scope": "MessageBody",
             "filter_policy": {"region": [{"prefix": "eu-"}]}},
            {"function": "quiet", "filter_policy": {"severity": ["nothing-sends-this"]}},
            {"queue": "relayed", "filter_policy": {"severity": ["critical"]}},
        ]}},
    }


def _client(service: str, port: int) -> Any:
    return boto3.client(service, endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                        aws_access_key_id="x", aws_secret_access_key="x",
                        config=BotoConfig(retries={"max_attempts": 1}))


def _events(tmp_path: Path, name: str) -> list[dict[str, Any]]:
    return [r["event"] for r in records(tmp_path / f"{name}.jsonl")]


def _status(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/bridge/status", timeout=10) as response:
        return json.loads(response.read())


def _receive(sqs: Any, queue: str, count: int) -> list[dict[str, Any]]:
    url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
    got: list[dict[str, Any]] = []

    def more() -> bool:
        got.extend(sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                       MessageAttributeNames=["All"], AttributeNames=["All"]).get("Messages", []))
        return len(got) >= count

    wait_until(more, timeout=20)
    return got


def test_a_handler_publishes_and_only_matching_rules_and_subscriptions_get_it(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path / "config.yaml", _config(tmp_path, port))
    with Daemon(config):
        lam = _client("lambda", port)
        for payload in ({"total": 250, "region": "eu-west-1", "severity": "critical"},
                        {"total": 40, "region": "us-east-1", "severity": "debug"}):
            answer = lam.invoke(FunctionName="publisher", Payload=json.dumps(payload).encode())
            assert "FunctionError" not in answer, answer["Payload"].read()
        fulfil = wait_until(lambda: _events(tmp_path, "fulfil"), timeout=20)
        small = wait_until(lambda: _events(tmp_path, "small"), timeout=20)
        pager = wait_until(lambda: _events(tmp_path, "pager"), timeout=20)
        eu_ops = wait_until(lambda: _events(tmp_path, "eu-ops"), timeout=20)
        [relayed] = wait_until(lambda: _events(tmp_path, "relay"), timeout=20)
        sqs = _client("sqs", port)
        audit = _receive(sqs, "audit", 1)
        raw = _receive(sqs, "alert-log", 2)
        enveloped = _receive(sqs, "enveloped", 1)
        status = _status(port)
        text = subprocess.run([sys.executable, "-m", "bridge.cli", "status", "--config", str(config)],
                              capture_output=True, text=True, timeout=60).stdout

    [default] = status["fanout"]["buses"]
    assert default["events"] == 2
    assert {r["name"]: r["matched"] for r in default["rules"]} == {"big-orders": 1, "small-orders": 1}
    [alerts] = status["fanout"]["topics"]
    assert alerts["published"] == 2
    assert [s["delivered"] for s in alerts["subscriptions"]] == [1, 2, 1, 1, 0, 1]
    assert "BUSES" in text and "big-orders" in text and "TOPICS" in text and "queue:alert-log" in text

    # the bus: the big order went to the big-orders rule's function and queue, the small one only to
    # small-orders, transformed
    [big] = fulfil
    EventBridgeModel.model_validate(big)
    assert (big["source"], big["detail-type"], big["detail"]) == ("shop", "OrderPlaced",
                                                                  {"total": 250, "region": "eu-west-1"})
    assert big["account"] == "000000000000" and big["region"] == "us-east-1"
    [audited] = audit
    assert json.loads(audited["Body"]) == big
    assert small == [{"order_total": 40, "rule": "small-orders"}]
    # the topic: pager got only the critical message, eu-ops only the eu- body, quiet nothing
    [paged] = pager
    record = SnsModel.model_validate(paged).Records[0].Sns
    assert record.Subject == "order" and json.loads(record.Message)["region"] == "eu-west-1"
    assert paged["Records"][0]["Sns"]["MessageAttributes"] == {"severity": {"Type": "String", "Value": "critical"}}
    assert str(record.TopicArn) == TOPIC_ARN and paged["Records"][0]["EventSource"] == "aws:sns"
    assert [json.loads(e["Records"][0]["Sns"]["Message"])["region"] for e in eu_ops] == ["eu-west-1"]
    assert _events(tmp_path, "quiet") == []
    # raw delivery: the message itself, attributes as SQS's; the envelope: SNS's notification JSON
    [via_queue] = SqsModel.model_validate(relayed).Records
    assert SnsNotificationModel.model_validate_json(via_queue.body).Subject == "order"
    assert sorted(json.loads(m["Body"])["region"] for m in raw) == ["eu-west-1", "us-east-1"]
    assert {m["MessageAttributes"]["severity"]["StringValue"] for m in raw} == {"critical", "debug"}
    [notice] = enveloped
    note = SnsNotificationModel.model_validate_json(notice["Body"])
    assert note.Type == "Notification" and note.Subject == "order" and str(note.TopicArn) == TOPIC_ARN
    assert note.MessageAttributes is not None and note.MessageAttributes["severity"].Value == "critical"


def test_put_events_answers_per_entry_and_refuses_oversized_requests(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path / "config.yaml", _config(tmp_path, port))
    with Daemon(config):
        events = _client("events", port)
        answer = events.put_events(Entries=[
            {"Source": "shop", "DetailType": "OrderPlaced", "Detail": '{"total": 500}'},
            {"DetailType": "x", "Detail": "{}"},
            {"Source": "shop", "DetailType": "x", "Detail": "[1, 2]"},
            {"Source": "shop", "DetailType": "x", "Detail": "{}", "EventBusName": "nope"},
        ])
        assert answer["FailedEntryCount"] == 3
        ok, missing, malformed, unknown = answer["Entries"]
        assert "EventId" in ok
        assert missing["ErrorCode"] == "InvalidArgument" and "Source" in missing["ErrorMessage"]
        assert malformed == {"ErrorCode": "MalformedDetail", "ErrorMessage": "Detail is malformed."}
        assert unknown["ErrorCode"] == "ResourceNotFoundException"
        with pytest.raises(botocore.exceptions.ClientError) as too_many:
            events.put_events(Entries=[{"Source": "s", "DetailType": "d", "Detail": "{}"}] * 11)
        assert too_many.value.response["Error"]["Code"] == "ValidationException"
        big = "x" * 140_000
        with pytest.raises(botocore.exceptions.ClientError) as too_large:
            events.put_events(Entries=[{"Source": "s", "DetailType": "d", "Detail": json.dumps({"a": big})}] * 2)
        assert "over the limit" in too_large.value.response["Error"]["Message"]
        wait_until(lambda: _events(tmp_path, "fulfil"), timeout=20)


def test_sns_read_calls_batch_and_errors_in_sns_shapes(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path / "config.yaml", _config(tmp_path, port))
    with Daemon(config):
        sns = _client("sns", port)
        assert [t["TopicArn"] for t in sns.list_topics()["Topics"]] == [TOPIC_ARN]
        assert sns.get_topic_attributes(TopicArn=TOPIC_ARN)["Attributes"]["SubscriptionsConfirmed"] == "6"
        subs = sns.list_subscriptions_by_topic(TopicArn=TOPIC_ARN)["Subscriptions"]
        assert [s["Protocol"] for s in subs] == ["lambda", "sqs", "sqs", "lambda", "lambda", "sqs"]
        assert sns.create_topic(Name="alerts")["TopicArn"] == TOPIC_ARN
        batch = sns.publish_batch(TopicArn=TOPIC_ARN, PublishBatchRequestEntries=[
            {"Id": "a", "Message": "one", "MessageAttributes": {"severity": {"DataType": "String",
                                                                              "StringValue": "critical"}}},
            {"Id": "b", "Message": "two", "MessageAttributes": {"n": {"DataType": "Number",
                                                                       "StringValue": "not-a-number"}}},
        ])
        assert [s["Id"] for s in batch["Successful"]] == ["a"]
        assert [(f["Id"], f["Code"]) for f in batch["Failed"]] == [("b", "ParameterValueInvalid")]
        for call, code in ((lambda: sns.publish(TopicArn=TOPIC_ARN + "x", Message="m"), "NotFound"),
                           (lambda: sns.publish(TopicArn=TOPIC_ARN, Message="m" * 262_145), "InvalidParameter"),
                           (lambda: sns.subscribe(TopicArn=TOPIC_ARN, Protocol="sqs", Endpoint="x"),
                            "InvalidAction")):
            with pytest.raises(botocore.exceptions.ClientError) as caught:
                call()
            assert caught.value.response["Error"]["Code"] == code
        [paged] = wait_until(lambda: _events(tmp_path, "pager"), timeout=20)
        assert paged["Records"][0]["Sns"]["Message"] == "one"
        # SQS still answers on the same POST /
        assert "QueueUrls" in _client("sqs", port).list_queues()


def test_a_reload_swaps_rules_and_subscriptions(tmp_path: Path) -> None:
    port = free_port()
    raw = _config(tmp_path, port)
    config = write_config(tmp_path / "config.yaml", raw)
    with Daemon(config) as daemon:
        events, sns = _client("events", port), _client("sns", port)
        raw["buses"]["default"]["rules"] = [{"name": "now-quiet", "event_pattern": {"source": ["shop"]},
                                             "targets": ["function:quiet"]}]
        raw["topics"]["alerts"]["subscriptions"] = [{"function": "quiet"}]
        write_config(config, raw)
        daemon.signal(signal.SIGHUP)
        daemon.wait_for("reload.applied")
        events.put_events(Entries=[{"Source": "shop", "DetailType": "OrderPlaced", "Detail": '{"total": 500}'}])
        sns.publish(TopicArn=TOPIC_ARN, Message="after the reload")
        got = wait_until(lambda: len(found := _events(tmp_path, "quiet")) >= 2 and found, timeout=20)
    assert sorted("Records" in e for e in got) == [False, True]
    assert _events(tmp_path, "fulfil") == [] and _events(tmp_path, "pager") == []


def test_target_retry_policy_and_dead_letters(tmp_path: Path) -> None:
    """A rule's target that cannot take the event: its retry_policy bounds the hand-over, then the dead-letter
    store gets it with EventBridge's attributes; a failing subscriber's message dead-letters per its async
    settings."""
    port, nobody = free_port(), free_port()  # nothing listens on nobody: every hand-over fails to connect
    arn = "arn:aws:lambda:us-east-1:123456789012:function:far"
    config = write_config(tmp_path / "config.yaml", {
        "state_dir": str(tmp_path / "state"), "api": {"listen": f"127.0.0.1:{port}"},
        "functions": {
            "far": {"arn": arn, "endpoint_url": f"http://127.0.0.1:{nobody}", "retry_timeout": 0.2},
            "failing": {"handler": "app.handler", "code": str(write_handler(tmp_path, "failing", RECORDER)),
                        "environment": {"RECORD_FILE": str(tmp_path / "failing.jsonl"), "FAIL": "yes"},
                        "async": {"maximum_retry_attempts": 0}}},
        "buses": {"default": {"rules": [{"name": "to-far", "event_pattern": {"source": ["shop"]}, "targets": [
            {"target": "function:far", "retry_policy": {"maximum_retry_attempts": 2, "maximum_event_age": 60}}]}]}},
        "topics": {"alerts": {"subscriptions": [{"function": "failing"}]}},
    })
    with Daemon(config) as daemon:
        _client("events", port).put_events(Entries=[{"Source": "shop", "DetailType": "x", "Detail": '{"n": 1}'}])
        _client("sns", port).publish(TopicArn=TOPIC_ARN, Message="doomed")
        daemon.wait_for("delivery.failed", function="far", timeout=60)
        daemon.wait_for("delivery.failed", function="failing", timeout=60)
    assert len(daemon.find("delivery.throttled", function="far")) == 3, "the first try and 2 retries"
    listed = json.loads(subprocess.run([sys.executable, "-m", "bridge.cli", "dlq", "list", "--json", "--config",
                                        str(config)], capture_output=True, text=True, timeout=60).stdout)
    by_function = {entry["function"]: entry for entry in listed}
    far = by_function["far"]
    assert far["attributes"]["RULE_ARN"] == "arn:aws:events:us-east-1:000000000000:rule/to-far"
    assert far["attributes"]["TARGET_ARN"] == arn and far["attributes"]["RETRY_ATTEMPTS"] == "2"
    EventBridgeModel.model_validate(far["record"]["requestPayload"])
    failing = by_function["failing"]
    assert failing["condition"] == "RetriesExhausted"
    assert SnsModel.model_validate(failing["record"]["requestPayload"]).Records[0].Sns.Message == "doomed"
