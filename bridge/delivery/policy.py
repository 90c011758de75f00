"""Lambda's async retry policy as pure decisions: retry at a time, or finish with a condition."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from bridge.config.model import AsyncConfig
from bridge.store import QueuedEvent

SUCCESS, RETRIES_EXHAUSTED, EVENT_AGE_EXCEEDED = "Success", "RetriesExhausted", "EventAgeExceeded"
BACKOFF_FIRST, BACKOFF_CAP = 1.0, 300.0  # throttles and system errors: 1 s doubling up to 5 min


@dataclass(frozen=True, slots=True)
class Retry:
    """Try again at ``at`` (epoch seconds), because of ``reason``."""

    at: float
    reason: str


@dataclass(frozen=True, slots=True)
class Finish:
    """The event has its outcome: ``condition`` and where its record goes (None: nowhere)."""

    condition: str
    destination: str | None
    reason: str
    attributes: dict[str, str] | None = None  # the origin's DLQ message attributes, when it defines them


Decision = Retry | Finish


def check_age(event: QueuedEvent, now: float, cfg: AsyncConfig) -> Finish | None:
    """Before an attempt: an event older than maximum_event_age is dropped to the failure destination."""
    age = now - event.received_at
    if age <= cfg.maximum_event_age:
        return None
    reason = f"event age {age:.0f} s exceeds maximum_event_age {cfg.maximum_event_age:g} s"
    return Finish(EVENT_AGE_EXCEEDED, cfg.on_failure, reason)


def after_success(cfg: AsyncConfig) -> Finish:
    """The function returned: the success destination, if any."""
    return Finish(SUCCESS, cfg.on_success, "the function returned")


def after_function_error(event: QueuedEvent, now: float, cfg: AsyncConfig) -> Decision:
    """``event.function_errors`` already counts this error: retry after the next delay, or give up."""
    errors = event.function_errors
    if errors > cfg.maximum_retry_attempts:
        reason = f"function error after {errors} attempt(s); maximum_retry_attempts is {cfg.maximum_retry_attempts}"
        return Finish(RETRIES_EXHAUSTED, cfg.on_failure, reason)
    return _retry_within_age(event, now + cfg.retry_delays[errors - 1], cfg, f"function error {errors}")


def after_throttle(event: QueuedEvent, now: float, cfg: AsyncConfig, rng: random.Random) -> Decision:
    """No capacity or a system error: exponential backoff from 1 s to 5 min, jittered, within the age."""
    ceiling = min(BACKOFF_CAP, BACKOFF_FIRST * 2 ** max(0, event.throttles - 1))
    delay = rng.uniform(ceiling / 2, ceiling)
    return _retry_within_age(event, now + delay, cfg, f"throttled {event.throttles} time(s)")


def after_handover_failure(event: QueuedEvent, now: float, handover: dict[str, Any], cfg: AsyncConfig,
                           rng: random.Random, error: str) -> Decision:
    """An origin's own hand-over policy (EventBridge Scheduler's RetryPolicy) for throttles and endpoint errors.

    ``event.throttles`` already counts this failure. Past ``max_attempts`` retries or ``max_age`` seconds the
    event ends with EventBridge's DLQ attributes; otherwise the usual backoff applies.
    """
    retries = event.throttles - 1
    if retries >= handover["max_attempts"]:
        return _handed_over_no_more(RETRIES_EXHAUSTED, "MaximumRetryAttempts", retries, handover, cfg, error)
    if now - event.received_at > handover["max_age"]:
        return _handed_over_no_more(EVENT_AGE_EXCEEDED, "MaximumEventAgeInSeconds", retries, handover, cfg, error)
    return after_throttle(event, now, cfg, rng)


def _handed_over_no_more(condition: str, exhausted: str, retries: int, handover: dict[str, Any],
                         cfg: AsyncConfig, error: str) -> Finish:
    attributes = {"RULE_ARN": handover["rule_arn"], "TARGET_ARN": handover["target_arn"],
                  "ERROR_CODE": error.split(":", 1)[0][:64] or "Throttled", "ERROR_MESSAGE": error[:1024],
                  "EXHAUSTED_RETRY_CONDITION": exhausted, "RETRY_ATTEMPTS": str(retries)}
    reason = f"could not hand the event over after {retries} retries ({exhausted}): {error}"
    return Finish(condition, cfg.on_failure, reason, attributes)


def throttled_forever(cfg: AsyncConfig) -> Finish:
    """reserved_concurrency 0: Lambda sends the event straight to the failure destination."""
    return Finish(RETRIES_EXHAUSTED, cfg.on_failure, "reserved_concurrency is 0: the function is throttled")


def rejected(cfg: AsyncConfig, status: int, message: str) -> Finish:
    """The endpoint refused the event for good (a 4xx): no retry storm, straight to the failure destination."""
    return Finish(RETRIES_EXHAUSTED, cfg.on_failure, f"rejected by the endpoint ({status}): {message}")


def _retry_within_age(event: QueuedEvent, at: float, cfg: AsyncConfig, reason: str) -> Decision:
    if at - event.received_at > cfg.maximum_event_age:
        why = f"{reason}; the next attempt would exceed maximum_event_age {cfg.maximum_event_age:g} s"
        return Finish(EVENT_AGE_EXCEEDED, cfg.on_failure, why)
    return Retry(at, reason)
