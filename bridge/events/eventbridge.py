"""EventBridge scheduled-event shapes: the rule event, the Scheduler event, and Scheduler's Input templating."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from bridge.events import payload as bounded_json

__all__ = ["event_time", "rule_arn", "rule_event", "schedule_arn", "scheduler_event", "scheduler_input"]


def rule_arn(*, region: str, account: str, rule_name: str) -> str:
    """The ARN of an EventBridge rule on the default bus, as a scheduled event's ``resources`` lists it."""
    return f"arn:aws:events:{region}:{account}:rule/{rule_name}"


def schedule_arn(*, region: str, account: str, schedule_name: str, group: str = "default") -> str:
    """The ARN of an EventBridge Scheduler schedule in ``group``."""
    return f"arn:aws:scheduler:{region}:{account}:schedule/{group}/{schedule_name}"


def event_time(time: datetime) -> str:
    """``time`` as EventBridge writes it: UTC, whole seconds, ``Z`` (``2015-10-08T16:53:06Z``).

    Raises ``ValueError`` for a naive datetime, which could silently be off by the local UTC offset.
    """
    if time.tzinfo is None or time.utcoffset() is None:
        raise ValueError(f"event time {time.isoformat()} has no time zone; pass an aware datetime")
    return time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _scheduled_event(
    source: str, resource: str, detail: Any, *, account: str, region: str, time: datetime, event_id: str
) -> dict[str, Any]:
    # Key order as AWS's own samples show it, so logs and diffs read the same.
    return {
        "version": "0",
        "id": event_id,
        "detail-type": "Scheduled Event",
        "source": source,
        "account": account,
        "time": event_time(time),
        "region": region,
        "resources": [resource],
        "detail": detail,
    }


def rule_event(*, rule_name: str, region: str, account: str, time: datetime, event_id: str) -> dict[str, Any]:
    """The event an EventBridge scheduled rule sends its target (``source: aws.events``, ``detail: {}``).

    ``time`` is the scheduled time; ``event_id`` must be unique per fire (AWS uses a UUID).
    """
    arn = rule_arn(region=region, account=account, rule_name=rule_name)
    return _scheduled_event("aws.events", arn, {}, account=account, region=region, time=time, event_id=event_id)


def scheduler_event(
    *, schedule_name: str, region: str, account: str, time: datetime, event_id: str, group: str = "default"
) -> dict[str, Any]:
    """EventBridge Scheduler's default payload (``source: aws.scheduler``, ``detail`` the *string* ``"{}"``).

    Otherwise like :func:`rule_event`, with the schedule ARN in ``resources``.
    """
    arn = schedule_arn(region=region, account=account, schedule_name=schedule_name, group=group)
    return _scheduled_event("aws.scheduler", arn, "{}", account=account, region=region, time=time, event_id=event_id)


def scheduler_input(
    template: Any,
    *,
    schedule_arn: str,
    scheduled_time: datetime,
    execution_id: str,
    attempt_number: int,
) -> Any:
    """A Scheduler target ``Input`` with its ``<aws.scheduler.*>`` context attributes filled in.

    ``template`` is either the raw Input text (a ``str``, as AWS stores it) or a JSON value from the
    config, which is serialised to JSON text first. AWS substitutes in the text, so this does too;
    the result is parsed back if it is JSON (the function then gets an object) and returned as the
    string otherwise. ``scheduled_time`` is written like ``2022-03-22T18:59:43Z``.
    """
    text = template if isinstance(template, str) else json.dumps(template)
    values = {
        "schedule-arn": schedule_arn,
        "scheduled-time": event_time(scheduled_time),
        "execution-id": execution_id,
        "attempt-number": str(attempt_number),
    }
    for name, value in values.items():
        text = text.replace(f"<aws.scheduler.{name}>", value)
    try:
        return bounded_json.loads(text)
    except ValueError:  # not JSON (or too deep to carry as an object): the function gets the string
        return text
