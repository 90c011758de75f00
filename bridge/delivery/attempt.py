"""One async delivery attempt and its verdict, and the dead letter for an event the bridge failed on.

Written once for both queues: the single-box ``Dispatcher`` (SQLite) and the cluster's ``ClusterDispatcher``
(shared SQS) differ only in where the event waits and where its outcome is stored.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol

from bridge.config.model import AsyncConfig
from bridge.delivery import policy
from bridge.errors import InvocationRejected, RemoteUnavailable, Throttled
from bridge.events.invocation_record import HANDLING_FAILED, unhandled_record
from bridge.invokers.registry import Invoker
from bridge.model import Invocation, InvokeResult
from bridge.store import DeadLetter, QueuedEvent

Attempted = tuple[QueuedEvent, policy.Decision]


class Lane(Protocol):
    """What an attempt needs of a function's lane (both dispatchers' lanes have it)."""

    name: str
    invoker: Invoker
    cfg: AsyncConfig
    limit: int
    staged: bool  # the lane keeps the invoker's ``staged`` events ready beyond its concurrency


async def attempt_once(lane: Lane, event: QueuedEvent, rng: random.Random, log: Any,
                  count: Callable[[str], None] | None = None) -> Attempted:
    """Invoke ``event`` once (unless it is too old or the function has no concurrency) and decide what next.

    Returns the event as updated by the attempt and the decision. ``count`` hears ``"throttled"``.
    """
    expired = policy.check_age(event, time.time(), lane.cfg)
    if expired is not None:
        return event, expired
    if lane.limit == 0:
        return event, policy.throttled_forever(lane.cfg)
    try:
        result = await lane.invoker.handover(Invocation(event.payload, event.request_id), staged=lane.staged)
    except (Throttled, RemoteUnavailable) as err:
        event = event.after_attempt(event.next_at, throttles=event.throttles + 1)
        if count is not None:
            count("throttled")
        log.warning("delivery.throttled", function=lane.name, request_id=event.request_id,
                    attempt=event.invoke_count, error=str(err))
        if event.handover:
            error = f"{type(err).__name__}: {err}"
            return event, policy.after_handover_failure(event, time.time(), json.loads(event.handover), lane.cfg,
                                                        rng, error)
        return event, policy.after_throttle(event, time.time(), lane.cfg, rng)
    except InvocationRejected as err:
        return event, policy.rejected(lane.cfg, err.status, str(err))
    return judge(lane.cfg, event, result)


def judge(cfg: AsyncConfig, event: QueuedEvent, result: InvokeResult) -> Attempted:
    """The function answered: count the attempt, keep its response when a record will need it, decide."""
    response = None
    if not result.ok or cfg.on_success:  # only a record needs it; skip the work on the common path
        response = json.dumps({"statusCode": 200, "functionError": result.function_error,
                               "payload": result.payload.decode(errors="replace")})
    event = event.after_attempt(event.next_at, invoke_count=event.invoke_count + 1, last_response=response,
                                function_errors=event.function_errors + (not result.ok))
    if result.ok:
        return event, policy.after_success(cfg)
    return event, policy.after_function_error(event, time.time(), cfg)


def bridge_failure(function: str, function_arn: str, event: QueuedEvent, err: BaseException, *,
                   entry_id: str | None = None) -> DeadLetter:
    """The dead letter for an event the bridge itself failed on (an exception in our code, not the function's).

    Its reason names the error; its record is built without parsing anything, so it cannot fail on the
    input that made the normal path fail. ``entry_id``: a stable id, so a repeated write replaces itself.
    """
    reason = f"the bridge failed on this event: {type(err).__name__}: {err}"[:1024]
    now = time.time()
    record = unhandled_record(request_id=event.request_id, function_arn=function_arn,
                              invoke_count=event.invoke_count, request_payload=event.payload, reason=reason, now=now)
    return DeadLetter(entry_id or uuid.uuid4().hex, function, now, HANDLING_FAILED, reason, record, None)
