"""Lambda's internal async queue, made durable: accept, deliver with retries, settle to a destination."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
import uuid
from collections import deque
from collections.abc import Awaitable
from dataclasses import dataclass, field

from bridge.config.model import AsyncConfig, Config
from bridge.delivery import policy
from bridge.delivery.attempt import Attempted, attempt_once, bridge_failure
from bridge.delivery.destinations import SqsSender, dlq_attributes
from bridge.delivery.summary import Summary
from bridge.errors import IntakeStopped
from bridge.events.invocation_record import invocation_record
from bridge.invokers.registry import Functions, Invoker
from bridge.log import get_logger
from bridge.metrics import Metrics
from bridge.model import new_request_id
from bridge.store import DeadLetter, QueuedEvent, Store, StoreOp

FETCH = 256  # events read from the store per query for one function
RESCAN = 2.0  # seconds: how soon rows written by another process (dlq redrive, offline invoke) are seen
REFETCH = 0.5  # seconds: a lane fed from intake still reads the store this often (retries now due, RESCAN's rows)
SEND_ATTEMPTS = 5


@dataclass(eq=False)
class Lane:
    """One function's share of the queue: its invoker, its policy, the ids being handled now.

    ``width`` consumers deliver from one shared buffer (one per unit of concurrency, plus the invoker's
    ``staged``: an event ready for the first worker that frees up), so an event costs no task of its own;
    ``fetching`` lets one of them at a time refill the buffer from the store.

    ``caught_up``: the last read of the store found every due event, so fresh events go from intake
    straight into the buffer once they are committed, and the store is read again only when the buffer
    runs dry or every REFETCH seconds (for retries that became due meanwhile).
    """

    name: str
    invoker: Invoker
    cfg: AsyncConfig
    limit: int
    width: int
    staged: bool = True  # its extra consumers' deliveries wait for a slot the others free (LocalFunction.handover)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    fetching: asyncio.Lock = field(default_factory=asyncio.Lock)
    handling: set[str] = field(default_factory=set)
    buffer: deque[QueuedEvent] = field(default_factory=deque)
    stopped: bool = False
    caught_up: bool = False
    fetched_at: float = 0.0  # time.monotonic() of the last read of the store

    def take(self, event: QueuedEvent, now: float) -> None:
        """Buffer a freshly committed event when the store holds nothing older for this lane."""
        if not self.caught_up or event.next_at > now or len(self.buffer) >= FETCH:
            self.caught_up = False  # it waits in the store for the next read, in its turn
        elif event.id not in self.handling:
            self.handling.add(event.id)
            self.buffer.append(event)
        self.wake.set()


class Dispatcher:
    """Accepts async invocations durably and delivers them with Lambda's async semantics."""

    def __init__(self, store: Store, functions: Functions, config: Config, rng: random.Random | None = None,
                 metrics: Metrics | None = None) -> None:
        self.store = store
        self.metrics = metrics
        self.functions = functions
        self.config = config
        self.rng = rng or random.Random()
        self.sqs = SqsSender(config.region)
        self.log = get_logger()
        self._stopping = asyncio.Event()
        self._group: asyncio.TaskGroup | None = None
        self._depth = 0
        self._room = asyncio.Event()  # set when delivery removed events while intake waits for room
        self._paused = 0  # intake callers waiting for room: only then does a removal need to wake anyone
        self._intake_stopped = False  # the daemon stops: callers waiting for room give up (IntakeStopped)
        # Deletes of delivered events not yet committed: the store's future for a commit, and its events.
        self._settling: dict[asyncio.Future[None], list[tuple[Lane, QueuedEvent, policy.Finish]]] = {}
        self.summary = Summary(self.log, lambda: self._depth)
        self.lanes = {name: self._lane(name) for name in functions.names()}

    def _lane(self, name: str, previous: Lane | None = None) -> Lane:
        cfg = self.config.functions[name]
        invoker = self.functions.get(name)
        lane = Lane(name, invoker, cfg.async_, cfg.concurrency, max(1, cfg.concurrency) + invoker.staged)
        if previous is not None:  # events the old lane is still handling must not be fetched again
            lane.handling, lane.buffer = previous.handling, previous.buffer
        return lane

    def apply(self, config: Config, changed: set[str], removed: set[str]) -> None:
        """Reload: lanes of removed functions stop pulling; changed/added ones get a fresh lane."""
        self.config = config
        for name in changed | removed:
            old = self.lanes.pop(name, None)
            if old is not None:
                old.stopped = True
                old.wake.set()
            if name in changed:
                self.lanes[name] = self._lane(name, old)
                if self._group is not None and not self._stopping.is_set():
                    self._group.create_task(self._pull(self.lanes[name], self._group))

    # --- intake -------------------------------------------------------------------------------------

    async def accept(self, function: str, payload: bytes, *, event_id: str | None = None,
                     request_id: str | None = None) -> QueuedEvent:
        """Queue one async invocation; returns once it is on disk (so the origin may be acknowledged)."""
        event = new_event(function, payload, event_id=event_id, request_id=request_id)
        await self.accept_many([event])
        return event

    async def accept_many(self, events: list[QueuedEvent], *, also: StoreOp | None = None) -> int:
        """Queue several events in one group commit; duplicates (same id) are ignored.

        ``also`` runs in the same transaction (a source recording what it has handed over, e.g. a
        schedule's fire or a directory snapshot), so the record and the events are durable together.
        """
        await self._wait_for_room(len(events))
        added = await self.store.enqueue(events, also=also)
        self._depth += len(added)
        now = time.time()
        for event in added:
            if (lane := self.lanes.get(event.function)) is not None:
                lane.take(event, now)
        return len(added)

    async def _wait_for_room(self, count: int) -> None:
        """Backpressure: past max_queued_events, intake pauses (and says so) until delivery makes room."""
        cap = self.config.max_queued_events
        if self._depth + count <= cap:
            return
        self.log.warning("queue.full", depth=self._depth, max_queued_events=cap)
        self._paused += 1
        try:
            while self._depth + count > cap:
                if self._intake_stopped:
                    raise IntakeStopped(f"the daemon is stopping, and its async queue holds max_queued_events "
                                        f"({cap}) events")
                self._room.clear()
                await self._room.wait()
        finally:
            self._paused -= 1
        self.log.info("queue.resumed", depth=self._depth)

    def _removed(self, count: int = 1) -> None:
        self._depth -= count
        if self._paused:
            self._room.set()

    # --- delivery -----------------------------------------------------------------------------------

    @property
    def depth(self) -> int:
        """Events in the queue (as counted since start)."""
        return self._depth

    async def run(self) -> None:
        """Deliver until ``stop()``; in-flight deliveries finish unless this task is cancelled."""
        self._depth = (await self.store.depth())[0]
        summary = asyncio.get_running_loop().create_task(self.summary.run())
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                # Keeps the group open with no lane at all (no functions yet, or all removed by a reload):
                # a reload may add the first one; a finished group would refuse its task.
                group.create_task(self._stopping.wait())
                for lane in self.lanes.values():
                    group.create_task(self._pull(lane, group))
            await asyncio.gather(*self._settling)  # deliveries that finished: their outcome is committed
        finally:
            summary.cancel()
            await self.sqs.close()

    def stop_intake(self) -> None:
        """The daemon stops: intake still waiting for room (max_queued_events, a full disk) gives up."""
        self._intake_stopped = True
        self._room.set()
        self.store.stop_intake()

    def stop(self) -> None:
        """Stop taking events from the queue; what is not in flight stays queued on disk."""
        self._stopping.set()
        for lane in self.lanes.values():
            lane.wake.set()

    async def _pull(self, lane: Lane, group: asyncio.TaskGroup) -> None:
        """Run the lane's consumers until stop (or until a reload retires the lane)."""
        await asyncio.gather(*(self._consume(lane, group) for _ in range(lane.width)))

    async def _consume(self, lane: Lane, group: asyncio.TaskGroup) -> None:
        """Take the next due event, attempt it, hand its outcome to the store, and go on at once.

        The worker is free once the attempt is over: the next invocation need not wait for this outcome's
        commit, so settles pile up into one group commit while invocations continue.
        """
        while (event := await self._next(lane)) is not None:
            try:
                event, decision = await self._attempt(lane, event)
            except Exception as err:  # one event never stops the service: this one fails alone (see _contain)
                group.create_task(self._release_after(lane, event, self._contain(lane, event, err)))
                continue
            except BaseException:
                lane.handling.discard(event.id)
                raise
            if isinstance(decision, policy.Finish) and decision.destination is None:
                self._delete(lane, event, decision)
            else:
                group.create_task(self._settle_then_release(lane, event, decision))

    def _delete(self, lane: Lane, event: QueuedEvent, decision: policy.Finish) -> None:
        """The common outcome, with no task of its own: the delete's commit reports it (one callback a commit)."""
        done = self.store.delete_soon(event.id)
        waiting = self._settling.get(done)
        if waiting is None:
            waiting = self._settling[done] = []
            done.add_done_callback(self._deleted)
        waiting.append((lane, event, decision))

    def _deleted(self, future: asyncio.Future[None]) -> None:
        committed = not future.cancelled() and future.exception() is None
        for lane, event, decision in self._settling.pop(future):
            lane.handling.discard(event.id)
            if committed:  # otherwise the event stays queued and is delivered again
                self._removed()
                self._count(lane, decision)
                self._report(lane, event, decision)

    async def _settle_then_release(self, lane: Lane, event: QueuedEvent, decision: policy.Decision) -> None:
        async def settle() -> bool:
            try:
                await self._settle(lane, event, decision)
            except Exception as err:  # a destination or record that fails fails this event alone
                return await self._contain(lane, event, err)
            return True

        await self._release_after(lane, event, settle())

    @staticmethod
    async def _release_after(lane: Lane, event: QueuedEvent, outcome: Awaitable[bool]) -> None:
        """Forget the event once its outcome is stored; one that could not be stored stays set aside."""
        stored = False
        try:
            stored = await outcome
        finally:
            if stored:
                lane.handling.discard(event.id)

    async def _next(self, lane: Lane) -> QueuedEvent | None:
        """The next due event of this lane, waiting for one to become due, to arrive, or for stop."""
        while not (self._stopping.is_set() or lane.stopped):
            if lane.buffer and time.monotonic() - lane.fetched_at < REFETCH:
                return lane.buffer.popleft()
            async with lane.fetching:  # one consumer reads the store; the others find the buffer full after it
                if not lane.buffer or time.monotonic() - lane.fetched_at >= REFETCH:
                    await self._fetch(lane)
            if lane.buffer:
                return lane.buffer.popleft()
        return None

    async def _fetch(self, lane: Lane) -> None:
        lane.wake.clear()
        lane.fetched_at = time.monotonic()
        due = await self.store.due(lane.name, time.time(), lane.handling, FETCH)
        lane.caught_up = len(due) < FETCH
        # After a reload two lanes of one function may query at once: never take an event twice.
        due = [e for e in due if e.id not in lane.handling]
        if due:
            lane.handling.update(e.id for e in due)
            lane.buffer.extend(due)
        elif not (lane.buffer or self._stopping.is_set() or lane.stopped):
            await self._sleep_until_due(lane)

    async def _sleep_until_due(self, lane: Lane) -> None:
        next_at = await self.store.next_due(lane.name, lane.handling)
        delay = RESCAN if next_at is None else min(RESCAN, max(0.0, next_at - time.time()))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await lane.wake.wait()

    async def _contain(self, lane: Lane, event: QueuedEvent, err: Exception) -> bool:
        """Dead-letter an event the bridge failed on, with the reason; False when even that failed.

        An event that cannot be dead-lettered stays in ``lane.handling``: set aside until the next start
        instead of being fetched again and again.
        """
        entry = bridge_failure(lane.name, self.config.function_arn(lane.name), event, err)
        log = self.log.bind(function=lane.name, request_id=event.request_id, event_id=event.id)
        log.error("delivery.event_failed", error=entry.reason)
        try:
            await self.store.settle(event.id, dead_letter=entry)
        except Exception as again:
            log.error("delivery.event_set_aside", error=f"{type(again).__name__}: {again}"[:1024])
            return False
        self._removed()
        return True

    async def _attempt(self, lane: Lane, event: QueuedEvent) -> Attempted:
        return await attempt_once(lane, event, self.rng, self.log, self.summary.count)

    # --- outcomes -----------------------------------------------------------------------------------

    async def _settle(self, lane: Lane, event: QueuedEvent, decision: policy.Decision) -> None:
        """Store the outcome, then report it (log, metrics): never the other way round."""
        if isinstance(decision, policy.Retry):
            await self.store.settle(event.id, reschedule=event.after_attempt(decision.at))
            self.summary.count("retried")
            self.log.warning("delivery.retrying", function=lane.name, request_id=event.request_id,
                             event_id=event.id, attempt=event.invoke_count, reason=decision.reason,
                             in_s=round(decision.at - time.time(), 3))
            lane.wake.set()
            return
        await self._finish(lane, event, decision)
        self._removed()

    async def _finish(self, lane: Lane, event: QueuedEvent, decision: policy.Finish) -> None:
        destination = decision.destination
        record = self._record(lane, event, decision) if destination else None
        if destination is None or record is None:
            await self.store.settle(event.id)
        elif destination == "dlq":
            await self.store.settle(event.id, dead_letter=self._dead_letter(lane, event, decision, record))
        elif destination.startswith("function:"):
            target = destination.removeprefix("function:")
            await self.store.settle(event.id, follow_up=[_follow_up(target, record)])
            self._depth += 1
            if target in self.lanes:
                self.lanes[target].wake.set()
        else:
            await self._send_sqs(lane, event, decision, record)
        self._count(lane, decision)
        self._report(lane, event, decision)

    def _count(self, lane: Lane, decision: policy.Finish) -> None:
        if self.metrics is not None:
            self.metrics.count_async_outcome(lane.name, decision.condition)

    def _report(self, lane: Lane, event: QueuedEvent, decision: policy.Finish) -> None:
        """A success is a debug line (the summary counts it); a failure is an error, whatever became of it."""
        succeeded = decision.condition == policy.SUCCESS
        self.summary.count("succeeded" if succeeded else "failed")
        emit = self.log.debug if succeeded else self.log.error
        emit("delivery.succeeded" if succeeded else "delivery.failed", function=lane.name,
             request_id=event.request_id, event_id=event.id, attempt=event.invoke_count,
             condition=decision.condition, destination=decision.destination, reason=decision.reason)

    def _record(self, lane: Lane, event: QueuedEvent, decision: policy.Finish) -> dict:
        last = json.loads(event.last_response) if event.last_response else None
        return invocation_record(
            request_id=event.request_id, function_arn=self.config.function_arn(lane.name),
            condition=decision.condition, invoke_count=event.invoke_count, request_payload=event.payload,
            last_response=last, now=time.time(),
        )

    def _dead_letter(self, lane: Lane, event: QueuedEvent, decision: policy.Finish, record: dict) -> DeadLetter:
        return DeadLetter(uuid.uuid4().hex, lane.name, time.time(), decision.condition, decision.reason, record,
                          decision.attributes)

    async def _send_sqs(self, lane: Lane, event: QueuedEvent, decision: policy.Finish, record: dict) -> None:
        """Send the record; if the queue stays unreachable, keep it in the dead-letter store instead."""
        url = decision.destination.removeprefix("sqs:")  # type: ignore[union-attr]
        error = (record.get("responsePayload") or {}) if decision.condition != policy.SUCCESS else {}
        message = error.get("errorMessage") if isinstance(error, dict) else None
        attributes = dlq_attributes(event.request_id, 200, message)
        if decision.attributes:  # the origin's own DLQ attributes (EventBridge) instead of Lambda's
            attributes = {k: {"DataType": "String", "StringValue": v} for k, v in decision.attributes.items()}
        for attempt in range(1, SEND_ATTEMPTS + 1):
            try:
                await self.sqs.send(url, record, attributes)
                await self.store.settle(event.id)
                return
            except Exception as err:
                self.log.warning("destination.send_failed", function=lane.name, destination=url, attempt=attempt,
                                 error=str(err))
                await asyncio.sleep(min(30.0, 0.5 * 2**attempt) * self.rng.uniform(0.5, 1.0))
        reason = f"{decision.reason}; destination sqs:{url} unreachable after {SEND_ATTEMPTS} attempts"
        kept = policy.Finish(decision.condition, "dlq", reason, decision.attributes)
        entry = self._dead_letter(lane, event, kept, record)
        await self.store.settle(event.id, dead_letter=entry)


def new_event(function: str, payload: bytes, *, event_id: str | None = None, request_id: str | None = None,
              not_before: float | None = None, handover: dict | None = None) -> QueuedEvent:
    """A fresh async event; ``event_id`` is the origin's stable id (duplicates by id are dropped).

    ``handover``: the origin's own retry policy for throttles and endpoint errors (see policy.py).
    """
    now = time.time()
    rid = request_id or new_request_id()
    return QueuedEvent(event_id or rid, function, payload, rid, now, max(now, not_before or now),
                       handover=json.dumps(handover) if handover else None)


def _follow_up(function: str, record: dict) -> QueuedEvent:
    """The record as a new async event for a ``function:`` destination."""
    return new_event(function, json.dumps(record).encode())
