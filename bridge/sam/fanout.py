"""``sam-import`` for fan-out events: EventBridgeRule / CloudWatchEvent become bus rules, SNS topic subscriptions
(the bus and topic resources: ``sam/fanout_resources.py``)."""

from __future__ import annotations

import json
import re
from typing import Any

from bridge.sam.draft import Draft
from bridge.sam.intrinsics import find_unresolved
from bridge.sam.template import Path_

TOPIC_TYPE = "AWS::SNS::Topic"
TARGET_KEYS = (("Input", "input"), ("InputPath", "input_path"))


def rule_event(draft: Draft, path: Path_, props: dict[str, Any]) -> None:
    """EventBridgeRule / CloudWatchEvent -> a rule on its bus whose target is the function."""
    function = path[1]
    pattern = props.get("Pattern")
    pattern = json.loads(pattern) if isinstance(pattern, str) else pattern
    if not isinstance(pattern, dict) or find_unresolved(props) is not None:
        draft.report(path, f"the rule has {find_unresolved(props) or 'no Pattern'}", "give it a literal Pattern")
        return
    bus = _bus_name(draft, props.get("EventBusName"))
    name = props.get("RuleName") or re.sub(r"[^A-Za-z0-9_.-]", "-", f"{function}-{path[-1]}")[:64]
    target: dict[str, Any] = {"target": f"function:{function}"}
    target |= {key: props[prop] for prop, key in TARGET_KEYS if props.get(prop) is not None}
    transformer = props.get("InputTransformer")
    if isinstance(transformer, dict):
        target["input_transformer"] = {"input_paths_map": transformer.get("InputPathsMap") or {},
                                       "input_template": transformer.get("InputTemplate", "")}
    retry = props.get("RetryPolicy") or {}
    policy = {key: int(retry[prop]) for prop, key in (("MaximumRetryAttempts", "maximum_retry_attempts"),
                                                      ("MaximumEventAgeInSeconds", "maximum_event_age"))
              if prop in retry}
    if policy:
        target["retry_policy"] = policy
    rule: dict[str, Any] = {"name": name, "event_pattern": pattern, "targets": [target]}
    if props.get("Enabled") is False or str(props.get("State", "")).upper() == "DISABLED":
        rule["enabled"] = False
    draft.buses.setdefault(bus, {"rules": []})["rules"].append(rule)


def sns_event(draft: Draft, path: Path_, props: dict[str, Any]) -> None:
    """SNS -> a subscription of the function to the topic (with its filter policy)."""
    topic = _topic_name(draft, (*path, "Properties", "Topic"), props.get("Topic"))
    if topic is None:
        return
    subscription: dict[str, Any] = {"function": path[1]}
    policy = props.get("FilterPolicy")
    if policy is not None:
        subscription["filter_policy"] = json.loads(policy) if isinstance(policy, str) else policy
    if props.get("FilterPolicyScope"):
        subscription["filter_policy_scope"] = props["FilterPolicyScope"]
    if props.get("SqsSubscription"):
        draft.report((*path, "Properties", "SqsSubscription"), "SAM's queue between the topic and the function "
                     "is not created: the function is subscribed directly", "nothing to do, or subscribe an "
                     "embedded queue and add an sqs source by hand")
    draft.topics.setdefault(topic, {"subscriptions": []})["subscriptions"].append(subscription)


def _bus_name(draft: Draft, value: Any) -> str:
    if not isinstance(value, str) or not value:
        return "default"
    logical_id = draft.resolver.origin(value)
    name = draft.resolver.name_of(logical_id) if logical_id else value
    return str(name).split(":event-bus/", 1)[-1]


def _topic_name(draft: Draft, path: Path_, value: Any) -> str | None:
    logical_id = draft.resolver.origin(value)
    if logical_id is None or draft.template.resources[logical_id].get("Type") != TOPIC_TYPE:
        draft.report(path, f"topic {value} is not a topic of this template", "declare the topic in the template "
                     "(AWS::SNS::Topic) or add it to topics: by hand")
        return None
    name = draft.resolver.name_of(logical_id)
    if not isinstance(name, str):
        draft.report(path, "the topic's TopicName has no local value", "give it a literal TopicName")
        return None
    return name
