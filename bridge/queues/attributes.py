"""Queue attributes as SQS names them (strings) <-> the QueueConfig a queue runs with."""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from bridge.config.queues import QUEUE_NAME, QueueConfig
from bridge.events import payload as bounded_json
from bridge.queues.errors import InvalidAttributeName, InvalidAttributeValue, InvalidParameterValue

# SQS attribute name -> QueueConfig field, for the attributes that change how the queue behaves.
SETTABLE = {
    "VisibilityTimeout": "visibility_timeout",
    "MessageRetentionPeriod": "message_retention",
    "DelaySeconds": "delay",
    "ReceiveMessageWaitTimeSeconds": "receive_wait_time",
    "MaximumMessageSize": "maximum_message_size",
    "FifoQueue": "fifo",
    "ContentBasedDeduplication": "content_based_deduplication",
}
# Accepted and echoed back, without effect on a local queue (encryption, policies, throughput modes).
STORED_ONLY = ("Policy", "KmsMasterKeyId", "KmsDataKeyReusePeriodSeconds", "SqsManagedSseEnabled",
               "DeduplicationScope", "FifoThroughputLimit", "RedriveAllowPolicy")
COMPUTED = ("QueueArn", "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed", "CreatedTimestamp", "LastModifiedTimestamp")
ALL_NAMES = (*SETTABLE, "RedrivePolicy", *STORED_ONLY, *COMPUTED)


def check_name(name: str) -> None:
    """Raise InvalidParameterValue unless ``name`` is a valid queue name."""
    if not QUEUE_NAME.match(name):
        raise InvalidParameterValue("Can only include alphanumeric characters, hyphens, or underscores. "
                                    "1 to 80 in length (FIFO queue names end with .fifo)")


def apply(settings: QueueConfig, extra: dict[str, str], attributes: dict[str, str],
          arn_to_name: Any) -> tuple[QueueConfig, dict[str, str]]:
    """New (settings, stored-only extras) with SQS ``attributes`` applied; validates like SQS does."""
    changes: dict[str, Any] = {}
    extra = dict(extra)
    for name, value in attributes.items():
        if name in SETTABLE:
            changes[SETTABLE[name]] = _parse_value(name, value)
        elif name == "RedrivePolicy":
            changes["redrive_policy"] = _redrive(value, arn_to_name)
        elif name in STORED_ONLY:
            extra[name] = str(value)
        else:
            raise InvalidAttributeName(name)
    try:
        return QueueConfig.model_validate({**settings.model_dump(), **changes}), extra
    except ValidationError as err:
        first = err.errors()[0]
        raise InvalidAttributeValue(f"Invalid value for the parameter {'.'.join(map(str, first['loc']))}: "
                                    f"{first['msg']}") from None


def _parse_value(name: str, value: Any) -> Any:
    if name in ("FifoQueue", "ContentBasedDeduplication"):
        if str(value).lower() not in ("true", "false"):
            raise InvalidAttributeValue(f"Invalid value for the parameter {name}: expected true or false")
        return str(value).lower() == "true"
    try:
        return int(value)
    except (TypeError, ValueError):
        raise InvalidAttributeValue(f"Invalid value for the parameter {name}: expected an integer") from None


def _redrive(value: Any, arn_to_name: Any) -> dict[str, Any] | None:
    if value in ("", None):
        return None
    try:
        policy = bounded_json.loads(value) if isinstance(value, str) else value
        target, count = policy["deadLetterTargetArn"], int(policy["maxReceiveCount"])
    except (ValueError, KeyError, TypeError):
        raise InvalidAttributeValue("Invalid value for the parameter RedrivePolicy. Reason: Redrive policy is "
                                    'not a JSON object with "deadLetterTargetArn" and "maxReceiveCount".') from None
    return {"dead_letter_queue": arn_to_name(target), "max_receive_count": count}


def render(settings: QueueConfig, extra: dict[str, str], dlq_arn: str | None) -> dict[str, str]:
    """The settable and stored attributes of a queue, as SQS strings."""
    out: dict[str, str] = {}
    for name, field in SETTABLE.items():
        value = getattr(settings, field)
        if isinstance(value, bool):
            if name == "FifoQueue" and not value:
                continue  # SQS omits FifoQueue / ContentBasedDeduplication on standard queues
            if name == "ContentBasedDeduplication" and not settings.fifo:
                continue
            out[name] = "true" if value else "false"
        else:
            out[name] = str(value)
    if settings.redrive_policy is not None and dlq_arn is not None:
        out["RedrivePolicy"] = json.dumps({"deadLetterTargetArn": dlq_arn,
                                           "maxReceiveCount": settings.redrive_policy.max_receive_count})
    return out | extra


def select(available: dict[str, str], names: list[str]) -> dict[str, str]:
    """The requested attributes (``All`` = every one); unknown names are InvalidAttributeName."""
    if not names or "All" in names:
        return available if names else {}
    for name in names:
        if name not in ALL_NAMES:
            raise InvalidAttributeName(name)
    return {name: available[name] for name in names if name in available}
