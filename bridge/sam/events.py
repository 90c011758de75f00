"""A function's Events (S3, SQS, Schedule, ScheduleV2, IoTRule, CloudWatchLogs; Api/HttpApi in sam.http) -> sources."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from bridge.sam.draft import Draft, Entry
from bridge.sam.intrinsics import Unresolved, find_unresolved
from bridge.sam.template import Path_

UNSUPPORTED_FIX = {
    "Kinesis": "replay the stream into an SQS queue, or invoke the function remotely",
    "DynamoDB": "there is no local stream source; invoke with `lambda-bridge invoke` and a recorded event",
    "SNS": "subscribe an SQS queue to the topic and map that queue",
    "Cognito": "invoke with `lambda-bridge invoke` and a recorded trigger event",
}
QUEUE_PROPERTIES = (("VisibilityTimeout", "visibility_timeout"), ("MessageRetentionPeriod", "message_retention"),
                    ("DelaySeconds", "delay"), ("ReceiveMessageWaitTimeSeconds", "receive_wait_time"),
                    ("MaximumMessageSize", "maximum_message_size"))


def map_events(draft: Draft, logical_id: str) -> None:
    """Each event of the function becomes a source (or an Unmapped entry saying why not)."""
    events = (draft.template.resources[logical_id].get("Properties") or {}).get("Events") or {}
    if not isinstance(events, dict):
        draft.report(("Resources", logical_id, "Properties", "Events"), "Events is not a mapping", "fix its shape")
        return
    for event_id, event in events.items():
        path: Path_ = ("Resources", logical_id, "Properties", "Events", event_id)
        kind = event.get("Type") if isinstance(event, dict) else None
        props = draft.resolver.resolve(event.get("Properties") or {}, (*path, "Properties")) if kind else {}
        mapper = _mapper(kind)
        with draft.malformed_at(path):
            source = mapper(draft, path, props) if mapper else _unsupported(draft, path, str(kind))
        missing = find_unresolved(source.value) if source is not None else None
        if missing is not None:
            draft.report(path, f"{missing.reason} has no local value", "replace it in the template or map it")
        elif source is not None:
            name = re.sub(r"[^A-Za-z0-9_.-]", "-", f"{logical_id}-{event_id}")[:64]
            comments = [f"{draft.origin(path)}: {kind} event", *source.comments]
            draft.sources.append(Entry({"name": name, **source.value, "function": logical_id}, comments))


def _mapper(kind: Any) -> Any:
    from bridge.sam.http import map_api_event

    return {"S3": s3_event, "SQS": sqs_event, "Schedule": schedule_event, "ScheduleV2": schedule_v2_event,
            "IoTRule": iot_rule_event, "Api": map_api_event, "HttpApi": map_api_event,
            "CloudWatchLogs": cloudwatch_logs_event}.get(kind)


def _unsupported(draft: Draft, path: Path_, kind: str) -> None:
    fix = UNSUPPORTED_FIX.get(kind, "no local source exists for it; invoke the function with `lambda-bridge "
                                    "invoke` and a recorded event")
    draft.report(path, f"{kind} events are not supported by lambda-bridge", fix)


def s3_event(draft: Draft, path: Path_, props: dict[str, Any]) -> Entry | None:
    """S3 -> a directory source on the mapped folder, with the event names and key rules."""
    bucket = props.get("Bucket")
    logical_id = draft.resolver.origin(bucket) or (bucket if bucket in draft.template.resources else None)
    if logical_id is None or logical_id not in draft.maps.buckets:
        draft.report((*path, "Properties", "Bucket"), f"bucket {logical_id or bucket} has no local folder",
                     f"add --map bucket:{logical_id or 'LOGICAL_ID'}=./some/folder")
        return None
    draft.used_maps.add(f"bucket:{logical_id}")
    events = props.get("Events") or ["s3:ObjectCreated:*"]
    value: dict[str, Any] = {"type": "directory", "path": draft.relative(draft.maps.buckets[logical_id]),
                             "bucket": bucket, "events": [events] if isinstance(events, str) else list(events)}
    for rule in ((props.get("Filter") or {}).get("S3Key") or {}).get("Rules") or []:
        name = str(rule.get("Name", "")).lower()
        if name in ("prefix", "suffix"):
            value[name] = str(rule.get("Value", ""))
    return Entry(value)


def sqs_event(draft: Draft, path: Path_, props: dict[str, Any]) -> Entry | None:
    """SQS -> an sqs source on the embedded queue of the template's queue resource, or on a mapped URL."""
    if props.get("Enabled") is False:
        draft.report(path, "the event source mapping is disabled (Enabled: false)", "enable it to import it")
        return None
    queue = queue_reference(draft, (*path, "Properties", "Queue"), props.get("Queue"))
    if queue is None:
        return None
    value: dict[str, Any] = {"type": "sqs", "queue": queue}
    for key, target in (("BatchSize", "batch_size"), ("MaximumBatchingWindowInSeconds", "maximum_batching_window"),
                        ("FunctionResponseTypes", "function_response_types")):
        if props.get(key) is not None:
            value[target] = props[key]
    concurrency = (props.get("ScalingConfig") or {}).get("MaximumConcurrency")
    if concurrency is not None:
        value["maximum_concurrency"] = int(concurrency)
    filters = [_pattern(f.get("Pattern")) for f in (props.get("FilterCriteria") or {}).get("Filters") or []]
    if filters:
        value["filters"] = filters
    return Entry(value)


def _pattern(pattern: Any) -> Any:
    return json.loads(pattern) if isinstance(pattern, str) else pattern


def queue_reference(draft: Draft, path: Path_, target: Any) -> str | None:
    """A queue named by ARN/URL/name: a mapped URL, else the embedded queue of a template resource."""
    logical_id = draft.resolver.origin(target)
    for key in (logical_id, target):
        if isinstance(key, str) and key in draft.maps.queues:
            draft.used_maps.add(f"queue:{key}")
            return draft.maps.queues[key]
    if logical_id is None or draft.template.resources[logical_id].get("Type") != "AWS::SQS::Queue":
        reason = target.reason if isinstance(target, Unresolved) else f"{target}"
        draft.report(path, f"queue {reason} is not a queue of this template",
                     f"add --map queue:{target if isinstance(target, str) else 'ARN'}=QUEUE_URL")
        return None
    return embedded_queue(draft, logical_id)


def embedded_queue(draft: Draft, logical_id: str) -> str | None:
    """Add the embedded queue for an AWS::SQS::Queue resource (and its dead-letter queue); returns its name."""
    name = draft.resolver.name_of(logical_id)
    if name in draft.queues:
        return name
    path: Path_ = ("Resources", logical_id, "Properties")
    props = draft.resolver.resolve(draft.template.resources[logical_id].get("Properties") or {}, path)
    missing = find_unresolved([name, props])
    if missing is not None:
        draft.report(path, f"the queue's {missing.reason} has no local value", "give the queue literal properties")
        return None
    value: dict[str, Any] = {key: int(props[prop]) for prop, key in QUEUE_PROPERTIES if prop in props}
    if str(props.get("FifoQueue", "")).lower() == "true":
        value["fifo"] = True
    if str(props.get("ContentBasedDeduplication", "")).lower() == "true":
        value["content_based_deduplication"] = True
    draft.queues[name] = Entry(value, [draft.origin(("Resources", logical_id))])
    redrive = props.get("RedrivePolicy")
    redrive = json.loads(redrive) if isinstance(redrive, str) else redrive
    if isinstance(redrive, dict):
        dead_letter = queue_reference(draft, (*path, "RedrivePolicy", "deadLetterTargetArn"),
                                      redrive.get("deadLetterTargetArn"))
        if dead_letter and not dead_letter.startswith(("http://", "https://")):
            value["redrive_policy"] = {"dead_letter_queue": dead_letter,
                                       "max_receive_count": int(redrive.get("maxReceiveCount", 10))}
    return name


def schedule_event(draft: Draft, path: Path_, props: dict[str, Any]) -> Entry | None:
    """Schedule (an EventBridge rule) -> a schedule source of style rule."""
    value: dict[str, Any] = {"type": "schedule", "schedule": props.get("Schedule"), "style": "rule"}
    return _schedule_common(draft, path, props, value)


def schedule_v2_event(draft: Draft, path: Path_, props: dict[str, Any]) -> Entry | None:
    """ScheduleV2 (EventBridge Scheduler) -> a schedule source of style scheduler."""
    value: dict[str, Any] = {"type": "schedule", "schedule": props.get("ScheduleExpression"), "style": "scheduler"}
    if props.get("ScheduleExpressionTimezone"):
        value["timezone"] = props["ScheduleExpressionTimezone"]
    window = props.get("FlexibleTimeWindow") or {}
    if str(window.get("Mode", "OFF")).upper() == "FLEXIBLE":
        value["flexible_time_window"] = int(window.get("MaximumWindowInMinutes", 0))
    for key, target in (("StartDate", "start_date"), ("EndDate", "end_date")):
        if props.get(key):
            value[target] = str(props[key])
    return _schedule_common(draft, path, props, value)


def _schedule_common(draft: Draft, path: Path_, props: dict[str, Any], value: dict[str, Any]) -> Entry | None:
    missing = find_unresolved(props)
    if missing is not None or not value["schedule"]:
        draft.report(path, f"the schedule has {missing or 'no expression'}", "give it a literal expression")
        return None
    if props.get("Input") is not None:
        value["input"] = props["Input"]
    state = props.get("State")
    if props.get("Enabled") is False or str(state).upper() == "DISABLED":
        value["enabled"] = False
    retry = props.get("RetryPolicy") or {}
    policy = {target: int(retry[key]) for key, target in (("MaximumRetryAttempts", "maximum_retry_attempts"),
                                                          ("MaximumEventAgeInSeconds", "maximum_event_age"))
              if key in retry}
    if policy:
        value["retry_policy"] = policy
    comments = []
    if props.get("DeadLetterConfig"):
        comments.append("DeadLetterConfig: handing a fire to the bridge is durable, so it never fails over; "
                        "failed invocations follow the function's async.on_failure")
    return Entry(value, comments)


def iot_rule_event(draft: Draft, path: Path_, props: dict[str, Any]) -> Entry | None:
    """IoTRule -> an mqtt source on the mapped broker, running the rule's SQL."""
    if not draft.maps.broker:
        draft.report(path, "IoT rules need a local MQTT broker", "add --map broker=mqtt://HOST:PORT")
        return None
    draft.used_maps.add("broker")
    comments = []
    version = props.get("AwsIotSqlVersion")
    if version and version != "2016-03-23":
        comments.append(f"AwsIotSqlVersion {version}: the bridge evaluates SQL version 2016-03-23")
    return Entry({"type": "mqtt", "broker": draft.maps.broker, "sql": props.get("Sql")}, comments)


def cloudwatch_logs_event(draft: Draft, path: Path_, props: dict[str, Any]) -> Entry | None:
    """CloudWatchLogs (a subscription filter) -> a logs source on the mapped file, glob or journal unit."""
    group = str(props.get("LogGroupName", ""))
    where = draft.maps.log_groups.get(group) or draft.maps.log_groups.get(draft.resolver.origin(group) or "")
    if where is None:
        draft.report((*path, "Properties", "LogGroupName"), f"log group {group or '?'} has no local log",
                     f"add --map loggroup:{group or 'NAME'}=/var/log/app.log (or =journal:UNIT)")
        return None
    draft.used_maps.add(f"loggroup:{group}")
    value: dict[str, Any] = {"type": "logs", "log_group": group, "filter_pattern": props.get("FilterPattern", "")}
    if where.startswith("journal:"):
        value["journal"] = {"unit": where.removeprefix("journal:")}
    else:
        value["path"] = draft.relative(Path(where).expanduser())
    return Entry(value)
