"""``sam-import`` for fan-out resources: AWS::Events::EventBus and AWS::SNS::Topic (with the queue and function
subscriptions a topic declares) become ``buses:`` and ``topics:``."""

from __future__ import annotations

from typing import Any

from bridge.sam.draft import Draft
from bridge.sam.events import embedded_queue
from bridge.sam.fanout import TOPIC_TYPE
from bridge.sam.template import Path_

BUS_TYPE = "AWS::Events::EventBus"


def map_resources(draft: Draft) -> None:
    """Every bus and topic of the template, with the subscriptions a topic declares itself."""
    for logical_id, resource in draft.template.resources.items():
        kind = resource.get("Type") if isinstance(resource, dict) else None
        if kind == BUS_TYPE:
            _bus(draft, logical_id)
        elif kind == TOPIC_TYPE:
            _topic_subscriptions(draft, logical_id)


def sections(draft: Draft) -> dict[str, Any]:
    """``buses:`` and ``topics:`` for the config (only those that have something)."""
    out: dict[str, Any] = {}
    if any(bus["rules"] for bus in draft.buses.values()) or set(draft.buses) - {"default"}:
        out["buses"] = draft.buses
    if draft.topics:
        out["topics"] = draft.topics
    return out


def _bus(draft: Draft, logical_id: str) -> None:
    name = draft.resolver.name_of(logical_id)
    if not isinstance(name, str):
        draft.report(("Resources", logical_id), "the bus's Name has no local value", "give it a literal Name")
        return
    draft.buses.setdefault(name, {"rules": []})


def _topic_subscriptions(draft: Draft, logical_id: str) -> None:
    name = draft.resolver.name_of(logical_id)
    if not isinstance(name, str):
        return
    topic = draft.topics.setdefault(name, {"subscriptions": []})
    path: Path_ = ("Resources", logical_id, "Properties", "Subscription")
    declared = draft.resolver.resolve((draft.template.resources[logical_id].get("Properties") or {})
                                      .get("Subscription") or [], path)
    for index, sub in enumerate(declared if isinstance(declared, list) else []):
        endpoint = draft.resolver.origin(sub.get("Endpoint")) if isinstance(sub, dict) else None
        kind = draft.template.resources[endpoint].get("Type") if endpoint else None
        if kind == "AWS::SQS::Queue" and str(sub.get("Protocol")).lower() == "sqs":
            queue = embedded_queue(draft, endpoint)  # type: ignore[arg-type]
            if queue:
                topic["subscriptions"].append({"queue": queue})
        elif kind == "AWS::Serverless::Function" and endpoint in draft.importable:
            topic["subscriptions"].append({"function": endpoint})
        else:
            draft.report((*path, index), "only subscriptions of this template's queues and functions are "
                         "imported", "subscribe the endpoint by hand under topics:")
