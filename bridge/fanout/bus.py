"""The embedded EventBridge buses: PutEvents checked entry by entry, matched against every rule, fanned out."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bridge.config.fanout import RuleConfig, RuleTarget
from bridge.config.model import Config
from bridge.events import bus as shapes
from bridge.events.eventbridge import rule_arn
from bridge.events.filters import Matcher, compile_pattern
from bridge.fanout.deliver import Batch, Deliveries


class PutEventsTooLarge(ValueError):
    """The request's entries together are past PutEvents' limit (a ValidationException for the whole call)."""


@dataclass(frozen=True, slots=True)
class Rule:
    """A rule, compiled."""

    bus: str
    config: RuleConfig
    matcher: Matcher
    arn: str
    # Exact values the pattern requires of the envelope's string keys: most rules name their source and
    # detail-type, so most events are turned away by a set lookup before the full match.
    required: tuple[tuple[str, frozenset[str]], ...]

    def matches(self, event: dict[str, Any]) -> bool:
        """Whether the event matches the rule's pattern."""
        for key, values in self.required:
            if event[key] not in values:
                return False
        return self.matcher.matches(event)


class Buses:
    """PutEvents over the configured buses (the running config: a reload swaps rules)."""

    def __init__(self, config: Callable[[], Config], deliveries: Deliveries) -> None:
        self.config = config
        self.deliveries = deliveries
        self._compiled: tuple[Config | None, dict[str, list[Rule]]] = (None, {})
        self.counts: Counter[str] = Counter()  # "bus:NAME" events accepted, "rule:BUS/NAME" events matched

    def rules(self) -> dict[str, list[Rule]]:
        """Each bus's enabled rules, compiled once per config."""
        config = self.config()
        if self._compiled[0] is not config:
            table = {name: [_rule(config, name, r) for r in bus.rules if r.enabled]
                     for name, bus in config.buses.items()}
            self._compiled = (config, table)
        return self._compiled[1]

    async def put_events(self, entries: list[Any]) -> list[dict[str, str]]:
        """One result per entry (EventId, or ErrorCode and ErrorMessage); every accepted entry's deliveries
        are durable when this returns."""
        total = sum(shapes.entry_size(e) for e in entries if isinstance(e, dict))
        if total > shapes.MAX_REQUEST_BYTES:
            raise PutEventsTooLarge("Total size of the entries in the request is over the limit.")
        config, rules, batch = self.config(), self.rules(), Batch()
        now = datetime.now(UTC)
        results = [self._entry(entry, config, rules, batch, now) for entry in entries]
        await self.deliveries.commit(batch)
        return results

    def _entry(self, entry: Any, config: Config, rules: dict[str, list[Rule]], batch: Batch,
               now: datetime) -> dict[str, str]:
        detail = shapes.check_entry(entry)
        if isinstance(detail, shapes.EntryError):
            return detail.result()
        bus = shapes.bus_name(entry.get("EventBusName"))
        if bus not in rules:
            return shapes.EntryError("ResourceNotFoundException", f"Event bus {bus} does not exist.").result()
        event_id = str(uuid.uuid4())
        event = shapes.bus_event(entry, detail, event_id=event_id, account=config.account_id,
                                 region=config.region, now=now)
        self.counts[f"bus:{bus}"] += 1
        for rule in rules[bus]:
            if rule.matches(event):
                self.counts[f"rule:{bus}/{rule.config.name}"] += 1
                _fan_out(rule, event, batch, config)
        return {"EventId": event_id}

    def report(self) -> list[dict[str, Any]]:
        """Buses, their rules and counts since start, for ``status``."""
        return [{"name": bus, "events": self.counts[f"bus:{bus}"],
                 "rules": [{"name": r.config.name, "matched": self.counts[f"rule:{bus}/{r.config.name}"],
                            "targets": [t.target for t in r.config.targets]} for r in rules]}
                for bus, rules in self.rules().items()]


def _rule(config: Config, bus: str, rule: RuleConfig) -> Rule:
    name = rule.name if bus == "default" else f"{bus}/{rule.name}"
    return Rule(bus, rule, compile_pattern(rule.event_pattern),
                rule_arn(region=config.region, account=config.account_id, rule_name=name),
                _required(rule.event_pattern))


def _required(pattern: dict[str, Any]) -> tuple[tuple[str, frozenset[str]], ...]:
    """Envelope keys that always hold a string (``source``, ``detail-type``) whose pattern lists plain
    strings only: an event whose value is not among them cannot match (top-level fields are ANDed)."""
    found = []
    for key in ("source", "detail-type"):
        values = pattern.get(key)
        if isinstance(values, list) and values and all(isinstance(v, str) for v in values):
            found.append((key, frozenset(values)))
    return tuple(found)


def _fan_out(rule: Rule, event: dict[str, Any], batch: Batch, config: Config) -> None:
    for index, target in enumerate(rule.config.targets):
        payload = _input(target, event, rule)
        if target.kind == "queue":
            batch.to_queue(target.name, {"MessageBody": payload.decode()})
            continue
        handover = {"max_attempts": target.retry_policy.maximum_retry_attempts,
                    "max_age": target.retry_policy.maximum_event_age, "rule_arn": rule.arn,
                    "target_arn": config.function_arn(target.name)}
        batch.to_function(target.name, payload, event_id=f"{event['id']}:{rule.arn}:{index}", handover=handover)


def _input(target: RuleTarget, event: dict[str, Any], rule: Rule) -> bytes:
    transformer = target.input_transformer
    return shapes.target_input(
        event, constant=target.input, input_path=target.input_path,
        paths_map=transformer.input_paths_map if transformer else None,
        template=transformer.input_template if transformer else None,
        rule_name=rule.config.name, rule_arn=rule.arn)

