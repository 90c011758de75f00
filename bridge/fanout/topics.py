"""The embedded SNS topics: Publish and PublishBatch checked as SNS does, each subscription's filter policy
applied, the message fanned out to functions (SNS's Lambda event) and queues (SNS's envelope or raw)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from bridge.config.fanout import Subscription
from bridge.config.model import Config
from bridge.events import sns
from bridge.events.sns_filter import FilterPolicy, attribute_view, compile_policy
from bridge.fanout.deliver import Batch, Deliveries


class TopicNotFound(LookupError):
    """No configured topic has that ARN."""


@dataclass(frozen=True, slots=True)
class Subscriber:
    """A subscription, compiled."""

    config: Subscription
    arn: str
    policy: FilterPolicy | None

    def accepts(self, message: sns.Message, view: dict[str, Any]) -> bool:
        """Whether the filter policy lets the message through (no policy: every message); ``view``: the
        message's attributes as filter policies see them."""
        if self.policy is None:
            return True
        protocol = "lambda" if self.config.function is not None else "sqs"
        return self.policy.accepts_view(message.text_for(protocol), view)


@dataclass(frozen=True, slots=True)
class Topic:
    """A topic, compiled."""

    name: str
    arn: str
    subscribers: tuple[Subscriber, ...]


class Topics:
    """Publish over the configured topics (the running config: a reload swaps subscriptions)."""

    def __init__(self, config: Callable[[], Config], deliveries: Deliveries) -> None:
        self.config = config
        self.deliveries = deliveries
        self._compiled: tuple[Config | None, dict[str, Topic]] = (None, {})
        self.counts: Counter[str] = Counter()  # "topic:ARN" published, "sub:ARN" delivered

    def topics(self) -> dict[str, Topic]:
        """Topics by ARN, compiled once per config."""
        config = self.config()
        if self._compiled[0] is not config:
            self._compiled = (config, {t.arn: t for t in (_topic(config, n, c.subscriptions)
                                                          for n, c in config.topics.items())})
        return self._compiled[1]

    def get(self, arn: Any) -> Topic:
        """The topic an ARN names, else TopicNotFound."""
        topic = self.topics().get(arn) if isinstance(arn, str) else None
        if topic is None:
            raise TopicNotFound(arn)
        return topic

    async def publish(self, topic: Topic, messages: list[sns.Message]) -> None:
        """Fan the (checked) messages out; durable when this returns."""
        batch = Batch()
        region = self.config().region
        for message in messages:
            self.counts[f"topic:{topic.arn}"] += 1
            view = attribute_view(message.attributes)
            for subscriber in topic.subscribers:
                if subscriber.accepts(message, view):
                    self.counts[f"sub:{subscriber.arn}"] += 1
                    _deliver(subscriber, message, batch, region)
        await self.deliveries.commit(batch)

    def report(self) -> list[dict[str, Any]]:
        """Topics, their subscriptions and counts since start, for ``status``."""
        return [{"name": t.name, "arn": t.arn, "published": self.counts[f"topic:{t.arn}"],
                 "subscriptions": [{"endpoint": s.config.target, "filtered": s.policy is not None,
                                    "delivered": self.counts[f"sub:{s.arn}"]} for s in t.subscribers]}
                for t in self.topics().values()]


def _topic(config: Config, name: str, subscriptions: list[Subscription]) -> Topic:
    arn = sns.topic_arn(region=config.region, account=config.account_id, topic=name)
    subscribers = tuple(
        Subscriber(sub, sns.subscription_arn(arn, sub.target, i),
                   compile_policy(sub.filter_policy, sub.filter_policy_scope) if sub.filter_policy else None)
        for i, sub in enumerate(subscriptions))
    return Topic(name, arn, subscribers)


def _deliver(subscriber: Subscriber, message: sns.Message, batch: Batch, region: str) -> None:
    sub = subscriber.config
    if sub.function is not None:
        event = sns.lambda_event(message, region=region, subscription=subscriber.arn)
        batch.to_function(sub.function, _json(event), event_id=f"{message.message_id}:{subscriber.arn}")
    elif sub.raw_message_delivery:
        batch.to_queue(str(sub.queue), sns.raw_queue_message(message))
    else:
        batch.to_queue(str(sub.queue), {"MessageBody": sns.queue_body(message, region=region,
                                                                       subscription=subscriber.arn)})


def _json(value: Mapping[str, Any]) -> bytes:
    return json.dumps(value).encode()


def attributes(topic: Topic, config: Config) -> dict[str, str]:
    """GetTopicAttributes' answer for a configured topic."""
    return {"TopicArn": topic.arn, "Owner": config.account_id, "DisplayName": "",
            "SubscriptionsConfirmed": str(len(topic.subscribers)), "SubscriptionsPending": "0",
            "SubscriptionsDeleted": "0", "EffectiveDeliveryPolicy": "{}", "Policy": "{}"}
