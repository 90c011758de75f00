"""EventBridge scheduled events match AWS's shape and parse with Powertools' EventBridgeModel."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel

from bridge.events.eventbridge import (
    event_time,
    rule_arn,
    rule_event,
    schedule_arn,
    scheduler_event,
    scheduler_input,
)

FIRE = datetime(2015, 10, 8, 16, 53, 6, tzinfo=UTC)
EVENT_ID = "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa"

# The documented rule event (AWS_SEMANTICS.md section 4), field for field.
AWS_RULE_SAMPLE = {
    "version": "0",
    "id": EVENT_ID,
    "detail-type": "Scheduled Event",
    "source": "aws.events",
    "account": "123456789012",
    "time": "2015-10-08T16:53:06Z",
    "region": "us-east-1",
    "resources": ["arn:aws:events:us-east-1:123456789012:rule/NAME"],
    "detail": {},
}


def _rule() -> dict:
    return rule_event(rule_name="NAME", region="us-east-1", account="123456789012", time=FIRE, event_id=EVENT_ID)


def _scheduler(group: str = "default") -> dict:
    return scheduler_event(
        schedule_name="nightly",
        region="eu-central-1",
        account="123456789012",
        time=FIRE,
        event_id=EVENT_ID,
        group=group,
    )


def test_rule_event_is_the_documented_sample() -> None:
    event = _rule()
    assert event == AWS_RULE_SAMPLE
    assert list(event) == list(AWS_RULE_SAMPLE)
    assert json.loads(json.dumps(event)) == event


def test_rule_event_parses_with_powertools() -> None:
    model = EventBridgeModel.model_validate(_rule())
    assert (model.source, model.detail_type, model.detail) == ("aws.events", "Scheduled Event", {})
    assert model.time == FIRE
    assert model.resources == ["arn:aws:events:us-east-1:123456789012:rule/NAME"]


def test_scheduler_event_shape() -> None:
    event = _scheduler()
    assert event["source"] == "aws.scheduler"
    assert event["detail"] == "{}"  # a string, as Scheduler sends it
    assert event["resources"] == ["arn:aws:scheduler:eu-central-1:123456789012:schedule/default/nightly"]
    assert {key: value for key, value in event.items() if key not in ("source", "detail", "resources", "region")} == {
        key: value for key, value in AWS_RULE_SAMPLE.items() if key not in ("source", "detail", "resources", "region")
    }


def test_scheduler_event_parses_with_powertools() -> None:
    model = EventBridgeModel.model_validate(_scheduler())
    assert (model.source, model.detail_type, model.detail) == ("aws.scheduler", "Scheduled Event", {})
    assert model.time == FIRE


def test_scheduler_event_names_its_group() -> None:
    assert _scheduler(group="ops")["resources"] == ["arn:aws:scheduler:eu-central-1:123456789012:schedule/ops/nightly"]


def test_arns() -> None:
    assert rule_arn(region="us-east-1", account="123456789012", rule_name="r") == (
        "arn:aws:events:us-east-1:123456789012:rule/r"
    )
    assert schedule_arn(region="us-east-1", account="123456789012", schedule_name="s") == (
        "arn:aws:scheduler:us-east-1:123456789012:schedule/default/s"
    )


def test_event_time_is_utc_whole_seconds_with_z() -> None:
    berlin = datetime(2025, 3, 30, 3, 0, 0, 999_999, tzinfo=ZoneInfo("Europe/Berlin"))
    assert event_time(berlin) == "2025-03-30T01:00:00Z"


def test_event_time_refuses_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="no time zone"):
        event_time(datetime(2025, 1, 1))


CONTEXT = {
    "schedule_arn": "arn:aws:scheduler:us-east-1:123456789012:schedule/default/nightly",
    "scheduled_time": datetime(2022, 3, 22, 18, 59, 43, tzinfo=UTC),
    "execution_id": "d32c5kddcf5bb8c3",
    "attempt_number": 1,
}


def test_input_object_gets_every_context_attribute() -> None:
    template = {
        "arn": "<aws.scheduler.schedule-arn>",
        "when": "<aws.scheduler.scheduled-time>",
        "nested": [{"id": "<aws.scheduler.execution-id>", "try": "<aws.scheduler.attempt-number>"}],
        "mode": "full",
    }
    assert scheduler_input(template, **CONTEXT) == {
        "arn": "arn:aws:scheduler:us-east-1:123456789012:schedule/default/nightly",
        "when": "2022-03-22T18:59:43Z",
        "nested": [{"id": "d32c5kddcf5bb8c3", "try": "1"}],
        "mode": "full",
    }


def test_raw_json_text_is_substituted_then_parsed() -> None:
    text = '{"MessageBody": "<aws.scheduler.scheduled-time>", "attempt": <aws.scheduler.attempt-number>}'
    assert scheduler_input(text, **CONTEXT) == {"MessageBody": "2022-03-22T18:59:43Z", "attempt": 1}


def test_raw_text_that_is_not_json_stays_a_string() -> None:
    assert scheduler_input("run <aws.scheduler.execution-id>", **CONTEXT) == "run d32c5kddcf5bb8c3"


def test_input_without_placeholders_is_unchanged() -> None:
    assert scheduler_input({"mode": "full"}, **CONTEXT) == {"mode": "full"}
    assert scheduler_input([1, 2, 3], **CONTEXT) == [1, 2, 3]
