"""The ``buses:`` and ``topics:`` sections: EventBridge buses with rules and targets, SNS topics with subscriptions."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from bridge.config.base import Strict, error_at
from bridge.errors import ExpressionError
from bridge.events.bus import check_path
from bridge.events.filters import compile_pattern
from bridge.events.sns_filter import compile_policy

BUS_NAME = re.compile(r"^[A-Za-z0-9/_.-]{1,256}$")
RULE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
TOPIC_NAME = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
TARGET = re.compile(r"^(function|queue):(.+)$")
MAX_TARGETS = 5  # EventBridge: targets per rule


class RetryPolicy(Strict):
    """EventBridge's retry policy for handing an event to a target (RetryPolicy)."""

    maximum_retry_attempts: Annotated[int, Field(ge=0, le=185)] = 185
    maximum_event_age: Annotated[float, Field(ge=60, le=86400)] = 86400


class InputTransformer(Strict):
    """EventBridge's InputTransformer: values picked by JSON path, put into a template by ``<name>``."""

    input_paths_map: dict[str, str] = {}
    input_template: str

    @field_validator("input_paths_map")
    @classmethod
    def _paths(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > 100:
            raise ValueError("at most 100 input paths (EventBridge's limit)")
        for name, path in value.items():
            if name.startswith("aws.events."):
                raise ValueError(f"{name!r}: names starting aws.events. are EventBridge's reserved variables")
            check_path(path, f"input_paths_map.{name}")
        return value


class RuleTarget(Strict):
    """One target of a rule: ``function:NAME`` or ``queue:NAME``, and what it gets (one of input,
    input_path, input_transformer; the whole event without them)."""

    target: str
    input: Any = None
    input_path: str | None = None
    input_transformer: InputTransformer | None = None
    retry_policy: RetryPolicy = RetryPolicy()

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, data: Any) -> Any:
        return {"target": data} if isinstance(data, str) else data

    @field_validator("target")
    @classmethod
    def _target(cls, value: str) -> str:
        if not TARGET.match(value):
            raise ValueError(f"{value!r} is not a target; expected function:NAME or queue:NAME")
        return value

    @field_validator("input_path")
    @classmethod
    def _input_path(cls, value: str | None) -> str | None:
        if value is not None:
            check_path(value, "input_path")
        return value

    @model_validator(mode="after")
    def _one_input(self) -> RuleTarget:
        given = [k for k in ("input", "input_path", "input_transformer") if getattr(self, k) is not None]
        if len(given) > 1:
            raise error_at(given[1], f"a target takes one of input, input_path or input_transformer; "
                                     f"it has {', '.join(given)}")
        return self

    @property
    def kind(self) -> str:
        """``function`` or ``queue``."""
        return self.target.split(":", 1)[0]

    @property
    def name(self) -> str:
        """The function's or the queue's name."""
        return self.target.split(":", 1)[1]


class RuleConfig(Strict):
    """An EventBridge rule on a bus: an event pattern and up to five targets."""

    name: str
    event_pattern: dict[str, Any]
    targets: Annotated[list[RuleTarget], Field(min_length=1, max_length=MAX_TARGETS)]
    enabled: bool = True

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not RULE_NAME.match(value):
            raise ValueError(f"{value!r}: a rule name is 1-64 letters, digits, '.', '-' or '_'")
        return value

    @field_validator("event_pattern")
    @classmethod
    def _pattern(cls, value: dict[str, Any]) -> dict[str, Any]:
        compile_pattern(value)  # ExpressionError is a ValueError: reported at event_pattern's path
        return value


class BusConfig(Strict):
    """An event bus: its rules."""

    rules: list[RuleConfig] = []

    @field_validator("rules")
    @classmethod
    def _unique(cls, value: list[RuleConfig]) -> list[RuleConfig]:
        names = [r.name for r in value]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"rule name {name!r} is used twice on this bus; names are unique per bus")
        return value


class Subscription(Strict):
    """A topic's subscription: a function or a queue, with an optional filter policy."""

    function: str | None = None
    queue: str | None = None
    raw_message_delivery: bool = False
    filter_policy: dict[str, Any] | None = None
    filter_policy_scope: Literal["MessageAttributes", "MessageBody"] = "MessageAttributes"

    @model_validator(mode="after")
    def _endpoint(self) -> Subscription:
        if (self.function is None) == (self.queue is None):
            raise ValueError("a subscription names one endpoint: function: NAME or queue: NAME")
        if self.raw_message_delivery and self.function is not None:
            raise error_at("raw_message_delivery", "only queue subscriptions take raw message delivery "
                                                   "(Lambda always gets SNS's event)")
        if self.filter_policy is not None:
            try:
                compile_policy(self.filter_policy, self.filter_policy_scope)
            except ExpressionError as err:
                raise error_at("filter_policy", str(err).removeprefix("filter_policy: ")) from None
        return self

    @property
    def target(self) -> str:
        """``function:NAME`` or ``queue:NAME``."""
        return f"function:{self.function}" if self.function is not None else f"queue:{self.queue}"


class TopicConfig(Strict):
    """An SNS topic: its subscriptions."""

    subscriptions: list[Subscription] = []


def default_buses(value: Any) -> Any:
    """``buses:`` always has ``default`` (EventBridge's account bus), given or not."""
    if value is None:
        return {"default": {}}
    if isinstance(value, dict) and "default" not in value:
        return {"default": {}, **value}
    return value


def check_fanout(buses: dict[str, BusConfig], topics: dict[str, TopicConfig], functions: Any,
                 queues: Any) -> list[str]:
    """Names: bus and topic names, and the functions and queues that targets and subscriptions name."""
    problems = [f"buses.{n}: a bus name is 1-256 letters, digits, '/', '.', '-' or '_'"
                for n in buses if not BUS_NAME.match(n)]
    problems += [f"topics.{n}: a topic name is 1-256 letters, digits, '-' or '_' (FIFO topics are not served)"
                 for n in topics if not TOPIC_NAME.match(n)]
    for bus_name, bus in buses.items():
        for i, rule in enumerate(bus.rules):
            for j, target in enumerate(rule.targets):
                problems += _missing(f"buses.{bus_name}.rules[{i}].targets[{j}]", target.target, functions, queues)
    for topic_name, topic in topics.items():
        for i, sub in enumerate(topic.subscriptions):
            problems += _missing(f"topics.{topic_name}.subscriptions[{i}]", sub.target, functions, queues)
    return problems


def _missing(path: str, target: str, functions: Any, queues: Any) -> list[str]:
    kind, name = target.split(":", 1)
    known = functions if kind == "function" else queues
    if name in known and kind == "queue" and getattr(known[name], "fifo", False):
        return [f"{path}: {target!r} is a FIFO queue; buses and topics deliver to standard queues only"]
    if name in known:
        return []
    section = "functions" if kind == "function" else "queues"
    return [f"{path}: {target!r} names no configured {kind}; configured {section}: "
            f"{', '.join(known) or '(none)'}"]
