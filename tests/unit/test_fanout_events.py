"""Bus and topic shapes (validated with Powertools' models), input transformers, Publish and PutEvents checks,
and the buses:/topics: config errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel, SnsModel, SnsNotificationModel

from bridge.config.model import parse_config
from bridge.errors import ConfigError, UsageError
from bridge.events import bus, sns

NOW = datetime(2026, 1, 2, 3, 4, 5, 678_000, tzinfo=UTC)


def _message(**kw: Any) -> sns.Message:
    base: dict[str, Any] = {"topic_arn": "arn:aws:sns:us-east-1:000000000000:alerts", "message": "hello",
                            "subject": None, "attributes": {}, "timestamp": NOW}
    return sns.Message(**(base | kw))


def test_the_lambda_event_is_sns_own() -> None:
    message = _message(subject="hi", attributes={"a": {"DataType": "String", "StringValue": "x"},
                                                 "b": {"DataType": "Binary", "BinaryValue": "AAE="}})
    event = sns.lambda_event(message, region="us-east-1", subscription=message.topic_arn + ":sub")
    record = SnsModel.model_validate(event).Records[0]
    assert record.EventSubscriptionArn == message.topic_arn + ":sub"
    raw = event["Records"][0]["Sns"]
    assert raw["Timestamp"] == "2026-01-02T03:04:05.678Z" and raw["Type"] == "Notification"
    assert raw["MessageAttributes"] == {"a": {"Type": "String", "Value": "x"}, "b": {"Type": "Binary", "Value": "AAE="}}
    assert set(raw) >= {"SigningCertUrl", "UnsubscribeUrl", "Signature", "SignatureVersion"}


def test_no_subject_is_null_for_lambda_and_absent_from_the_queue_envelope() -> None:
    message = _message()
    assert sns.lambda_event(message, region="us-east-1", subscription="s")["Records"][0]["Sns"]["Subject"] is None
    body = json.loads(sns.queue_body(message, region="us-east-1", subscription="s"))
    assert "Subject" not in body and "MessageAttributes" not in body
    assert {"SigningCertURL", "UnsubscribeURL"} <= set(body)
    SnsNotificationModel.model_validate(body)


def test_message_structure_json_gives_each_protocol_its_own_text() -> None:
    text, _, _, structure = sns.check_publish({"Message": json.dumps({"default": "d", "lambda": "l"}),
                                               "MessageStructure": "json"})
    message = _message(message=text, structure=structure)
    assert message.text_for("lambda") == "l" and message.text_for("sqs") == "d"
    with pytest.raises(sns.PublishError, match="No default entry"):
        sns.check_publish({"Message": '{"lambda": "l"}', "MessageStructure": "json"})


@pytest.mark.parametrize(("params", "code"), [
    ({"Message": ""}, "InvalidParameter"),
    ({"Message": "m", "Subject": "two\nlines"}, "InvalidParameter"),
    ({"Message": "m", "Subject": "s" * 101}, "InvalidParameter"),
    ({"Message": "m" * 262_145}, "InvalidParameter"),
    ({"Message": "m", "MessageAttributes": {"n": {"DataType": "Number", "StringValue": "ten"}}},
     "ParameterValueInvalid"),
    ({"Message": "m", "MessageAttributes": {"l": {"DataType": "String.Array", "StringValue": "[1,"}}},
     "ParameterValueInvalid"),
    ({"Message": "m", "MessageAttributes": {"s": {"DataType": "String"}}}, "ParameterValueInvalid"),
])
def test_publish_is_checked_as_sns_does(params: dict[str, Any], code: str) -> None:
    with pytest.raises(sns.PublishError) as caught:
        sns.check_publish(params)
    assert caught.value.code == code


def test_the_bus_event_is_eventbridge_own() -> None:
    entry = {"Source": "shop", "DetailType": "OrderPlaced", "Detail": '{"total": 3}', "Resources": ["arn:x"],
             "Time": 1767322800}
    detail = bus.check_entry(entry)
    assert detail == {"total": 3}
    event = bus.bus_event(entry, detail, event_id="id-1", account="123456789012", region="eu-west-1", now=NOW)
    EventBridgeModel.model_validate(event)
    assert list(event) == ["version", "id", "detail-type", "source", "account", "time", "region", "resources",
                           "detail"]
    assert event["time"] == "2026-01-02T03:00:00Z"
    no_time = bus.bus_event({**entry, "Time": None}, detail, event_id="i", account="1" * 12, region="r", now=NOW)
    assert no_time["time"] == "2026-01-02T03:04:05Z"


@pytest.mark.parametrize(("entry", "code"), [
    ({"DetailType": "d", "Detail": "{}"}, "InvalidArgument"),
    ({"Source": "s", "Detail": "{}"}, "InvalidArgument"),
    ({"Source": "s", "DetailType": "d"}, "InvalidArgument"),
    ({"Source": "s", "DetailType": "d", "Detail": "[1]"}, "MalformedDetail"),
    ({"Source": "s", "DetailType": "d", "Detail": "{nope"}, "MalformedDetail"),
    ({"Source": "s", "DetailType": "d", "Detail": "{\"a\": NaN}"}, "MalformedDetail"),
    ("not an entry", "InvalidArgument"),
])
def test_put_events_entries_are_checked_as_eventbridge_does(entry: Any, code: str) -> None:
    result = bus.check_entry(entry)
    assert isinstance(result, bus.EntryError) and result.code == code


def test_entry_size_counts_as_aws_documents() -> None:
    assert bus.entry_size({"Time": 1, "Source": "ab", "DetailType": "c", "Detail": "{}", "Resources": ["é"]}) == 21


EVENT = {"id": "e1", "time": "2026-01-02T03:04:05Z", "detail": {"order": {"id": "o-1", "total": 9.5},
                                                               "tags": ["a", "b"], "note": 'say "hi"'}}


@pytest.mark.parametrize(("kwargs", "expected"), [
    ({}, EVENT),
    ({"constant": {"fixed": True}}, {"fixed": True}),
    ({"input_path": "$.detail.order"}, {"id": "o-1", "total": 9.5}),
    ({"input_path": "$.detail.tags[1]"}, "b"),
    ({"paths_map": {"id": "$.detail.order.id", "total": "$.detail.order.total", "note": "$.detail.note"},
      "template": '{"order": "<id>", "total": <total>, "text": "<note> for <id>", "rule": "<aws.events.rule-name>"}'},
     {"order": "o-1", "total": 9.5, "text": 'say "hi" for o-1', "rule": "r1"}),
    ({"paths_map": {"missing": "$.detail.nothing"}, "template": '{"m": <missing>}'}, {"m": None}),
    ({"template": '{"whole": <aws.events.event>}'}, {"whole": EVENT}),
])
def test_target_input_as_eventbridge_applies_it(kwargs: dict[str, Any], expected: Any) -> None:
    assert json.loads(bus.target_input(EVENT, rule_name="r1", **kwargs)) == expected


def _config(extra: dict[str, Any]) -> Any:
    base = {"functions": {"f": {"handler": "app.handler", "code": "."}}, "queues": {"q": {}}}
    return parse_config(yaml.safe_dump(base | extra), source="config.yaml")


def test_the_default_bus_always_exists() -> None:
    assert list(_config({}).buses) == ["default"]
    assert list(_config({"buses": {"orders": {}}}).buses) == ["default", "orders"]


@pytest.mark.parametrize(("extra", "says"), [
    ({"buses": {"default": {"rules": [{"name": "r", "event_pattern": {"source": ["s"]},
                                       "targets": ["function:nope"]}]}}},
     "buses.default.rules[0].targets[0]: 'function:nope' names no configured function; configured functions: f"),
    ({"buses": {"default": {"rules": [{"name": "r", "event_pattern": {"source": [{"prefx": "s"}]},
                                       "targets": ["queue:q"]}]}}}, "event_pattern"),
    ({"buses": {"default": {"rules": [{"name": "r", "event_pattern": {"source": ["s"]},
                                       "targets": [{"target": "queue:q", "input_path": "detail"}]}]}}},
     "is not a JSON path"),
    ({"buses": {"default": {"rules": [{"name": "r", "event_pattern": {"source": ["s"]},
                                       "targets": [{"target": "queue:q", "input": 1, "input_path": "$"}]}]}}},
     "one of input, input_path or input_transformer"),
    ({"topics": {"t": {"subscriptions": [{"queue": "nope"}]}}},
     "topics.t.subscriptions[0]: 'queue:nope' names no configured queue"),
    ({"topics": {"t": {"subscriptions": [{"function": "f", "filter_policy": {"a": [{"wildcard": "*"}]}}]}}},
     "topics.t.subscriptions[0].filter_policy: a[0]: 'wildcard' is not an SNS filter operator"),
    ({"topics": {"t": {"subscriptions": [{"function": "f", "raw_message_delivery": True}]}}},
     "raw_message_delivery"),
    ({"topics": {"t.fifo": {}}}, "FIFO topics are not served"),
    ({"queues": {"q.fifo": {"fifo": True}}, "topics": {"t": {"subscriptions": [{"queue": "q.fifo"}]}}},
     "topics.t.subscriptions[0]: 'queue:q.fifo' is a FIFO queue"),
])
def test_config_mistakes_name_their_path(extra: dict[str, Any], says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _config(extra)
    assert says in str(caught.value)
    assert caught.value.exit_code == 2


def test_generate_event_prints_sns_and_eventbridge_events() -> None:
    from click.testing import CliRunner

    from bridge.cli.main import cli

    runner = CliRunner()
    sent = runner.invoke(cli, ["generate-event", "sns", "--topic", "alerts", "--subject", "s",
                               "--attributes", '{"severity": "critical"}', "--account-id", "123456789012"])
    record = SnsModel.model_validate_json(sent.output).Records[0].Sns
    assert str(record.TopicArn) == "arn:aws:sns:us-east-1:123456789012:alerts" and record.Subject == "s"
    assert json.loads(sent.output)["Records"][0]["Sns"]["MessageAttributes"]["severity"]["Value"] == "critical"
    put = runner.invoke(cli, ["generate-event", "eventbridge", "--source", "shop", "--detail", '{"a": 1}'])
    event = EventBridgeModel.model_validate_json(put.output)
    assert event.source == "shop" and event.detail == {"a": 1}
    refused = runner.invoke(cli, ["generate-event", "eventbridge", "--detail", "[1]"])
    assert isinstance(refused.exception, UsageError) and refused.exception.exit_code == 2
    assert "Detail is malformed" in str(refused.exception)
