"""The SQS JSON request's parameters checked against the types SQS's API model gives them, before any action.

A wrong type (``MaxResults: "x"``, ``Attributes: ["a"]``, ``Entries: [5]``) is InvalidParameterValue naming the
parameter, never an exception deeper in the engine.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from bridge.queues.errors import InvalidParameterValue


def _string(value: Any) -> bool:
    return isinstance(value, str)


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _string_map(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())


def _attribute_value(value: Any) -> bool:
    return isinstance(value, dict) and all(
        _strings(v) if k.endswith("ListValues") else isinstance(v, str) for k, v in value.items())


def _attribute_map(value: Any) -> bool:
    return isinstance(value, dict) and all(_attribute_value(v) for v in value.values())


def _entries(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, dict) for v in value)


# Parameter -> (check, what the model says it is); names absent here are passed through (SQS ignores them).
TYPES: dict[str, tuple[Callable[[Any], bool], str]] = {
    **{name: (_string, "a string") for name in (
        "QueueName", "QueueUrl", "QueueNamePrefix", "NextToken", "MessageBody", "ReceiptHandle", "Id",
        "MessageDeduplicationId", "MessageGroupId", "ReceiveRequestAttemptId")},
    **{name: (_integer, "an integer") for name in (
        "MaxResults", "MaxNumberOfMessages", "WaitTimeSeconds", "VisibilityTimeout", "DelaySeconds")},
    **{name: (_strings, "a list of strings") for name in (
        "AttributeNames", "MessageSystemAttributeNames", "MessageAttributeNames")},
    "Attributes": (_string_map, "a map of attribute names to string values"),
    "tags": (_string_map, "a map of tag keys to string values"),
    "MessageAttributes": (_attribute_map, "a map of message attribute names to attribute values"),
    "MessageSystemAttributes": (_attribute_map, "a map of system attribute names to attribute values"),
    "Entries": (_entries, "a list of entry objects"),
}


def check_types(params: dict[str, Any], where: str = "") -> None:
    """Raise InvalidParameterValue for the first parameter (or batch entry field) of the wrong type."""
    for name, value in params.items():
        rule = TYPES.get(name)
        if value is None or rule is None:
            continue
        check, expected = rule
        if not check(value):
            raise InvalidParameterValue(f"Value {_show(value)} for parameter {where}{name} is invalid. "
                                        f"Reason: must be {expected}.")
        if name == "Entries":
            for index, entry in enumerate(value):
                check_types(entry, f"{where}Entries.{index + 1}.")


def _show(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 100 else text[:100] + "..."
