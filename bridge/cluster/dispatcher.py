"""Lambda's async queue on a shared SQS queue: every node accepts into it and every node delivers from it.

The same interface as ``bridge.delivery.dispatcher.Dispatcher`` (accept, accept_many, run, stop, apply,
depth), the same attempt and decisions (``bridge.delivery.attempt``, ``policy``) and the same containment
(an event the bridge fails on is dead-lettered alone); only where the events wait differs. An event is
durable once SendMessage returned; its delivery state (attempts, first-accepted time, request id) travels in
the message body. A retry is a new message sent with the remaining delay (at most SQS's 15 minutes: a longer
wait is re-sent in hops), and the old one is deleted after it. While an attempt runs, a heartbeat extends
the message's visibility; a node that dies mid-invocation stops extending it, and the message reappears for
another node after the visibility timeout. Delivery is at least once, as Lambda's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import sqlite3
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bridge.cluster import messages
from bridge.cluster.aws import describe, is_transient, unless_stopped, with_retries
from bridge.cluster.backlog import Backlog
from bridge.cluster.batcher import Batcher
from bridge.cluster.node import Node
from bridge.config.model import AsyncConfig, Config
from bridge.delivery import policy
from bridge.delivery.attempt import attempt_once, bridge_failure
from bridge.delivery.destinations import SqsSender, dlq_attributes
from bridge.delivery.dispatcher import Dispatcher, new_event
from bridge.errors import ClusterUnavailable, PayloadTooLarge
from bridge.events.invocation_record import invocation_record
from bridge.invokers.registry import Functions, Invoker
from bridge.log import get_logger
from bridge.metrics import Metrics
from bridge.store import DeadLetter, QueuedEvent, Store, StoreOp

ACCEPT_PATIENCE = 30.0  # seconds accept() keeps retrying an unreachable queue before the caller hears an error
SETTLE_PATIENCE = 60.0  # seconds an outcome is retried; after that the message reappears and is tried again
SEND_ATTEMPTS = 5
BATCH = 10  # SQS's batch limit for SendMessageBatch and ReceiveMessage
CONTAINED = uuid.UUID("0c4e3b1a-58d4-4f0e-9a52-7d3c1e6b2f90")  # dead-letter ids of events the bridge failed on


@dataclass(eq=False)
class Lane:
    """One function's share of this node: its invoker, policy and concurrency."""

    name: str
    invoker: Invoker
    cfg: AsyncConfig
    limit: int
    slots: asyncio.Semaphore
    staged: bool = False  # a delivery here holds an SQS message: throttled, never kept waiting for a slot


@dataclass(frozen=True, slots=True)
class Received:
    """A message taken from the queue: the event and the handle that deletes or extends it."""

    event: QueuedEvent
    handle: str
    message_id: str


class ClusterDispatcher:
    """Accepts async invocations into the shared SQS queue and delivers from it with Lambda's semantics."""

    def __init__(self, store: Store, functions: Functions, config: Config, rng: random.Random | None = None,
                 metrics: Metrics | None = None) -> None:
        assert config.cluster is not None, "ClusterDispatcher needs the cluster: section"
        self.store = store
        self.functions = functions
        self.config = config
        self.cluster = config.cluster
        self.metrics = metrics
        self.rng = rng or random.Random()
        self.node = Node(config.cluster, config.region)
        # Host-local sources (a directory not on shared storage) keep the single-box queue in the local store.
        self.local = Dispatcher(store, functions, config, rng=self.rng, metrics=metrics)
        self.sqs_sender = SqsSender(config.region)
        self.log = get_logger(node=self.cluster.node_id)
        self._stopping = asyncio.Event()
        self._handling = 0
        self._room = asyncio.Semaphore(self._capacity(config))
        self.lanes = {name: self._lane(name) for name in functions.names()}
        # A killed node's open long polls go on at SQS and may still take a message that reappears after
        # the visibility timeout: a poll shorter than a lease and than 2/3 of the visibility timeout ends
        # before that, so failover stays within one visibility timeout.
        self._sends = {p: Batcher(lambda items, p=p: self._flush_sends(items, p))
                       for p in (ACCEPT_PATIENCE, SETTLE_PATIENCE)}
        self._deletes: Batcher[str] = Batcher(self._flush_deletes)
        self._long_poll = max(1, min(20, int(self.cluster.lease_seconds), self.cluster.visibility_timeout * 2 // 3))
        self.backlog = Backlog(self._count_backlog, config.max_queued_events, self.log)

    async def _count_backlog(self) -> int:
        return await with_retries(self.node.backlog, what="backlog", give_up_after=ACCEPT_PATIENCE)

    @staticmethod
    def _capacity(config: Config) -> int:
        """Messages this node holds at once: the functions' concurrency, within SQS's batch sizes."""
        return max(1, min(256, sum(max(1, f.concurrency) for f in config.functions.values())))

    def _lane(self, name: str) -> Lane:
        cfg = self.config.functions[name]
        return Lane(name, self.functions.get(name), cfg.async_, cfg.concurrency,
                    asyncio.Semaphore(max(1, cfg.concurrency)))

    def for_source(self, source: Any) -> ClusterDispatcher | Dispatcher:
        """The queue a source hands its events to: a directory's files exist on this host only (unless shared)."""
        local = getattr(source, "type", None) == "directory" and not getattr(source, "shared", False)
        return self.local if local else self

    def apply(self, config: Config, changed: set[str], removed: set[str]) -> None:
        """Reload: removed functions' messages are left for other nodes; changed ones get a fresh lane."""
        self.local.apply(config, changed, removed)
        self.config = config
        for name in changed | removed:
            self.lanes.pop(name, None)
            if name in changed:
                self.lanes[name] = self._lane(name)

    @property
    def depth(self) -> int:
        """Events on the shared queue (SQS's approximate count at the last heartbeat), or those in hand."""
        shared = self.node.queue_depth if self.node.queue_depth is not None else self._handling
        return shared + self.local.depth

    # --- intake -------------------------------------------------------------------------------------

    async def accept(self, function: str, payload: bytes, *, event_id: str | None = None,
                     request_id: str | None = None) -> QueuedEvent:
        """Queue one async invocation; returns once SQS has it (so the origin may be acknowledged)."""
        event = new_event(function, payload, event_id=event_id, request_id=request_id)
        await self.accept_many([event])
        return event

    async def accept_many(self, events: list[QueuedEvent], *, also: StoreOp | None = None) -> int:
        """Send the events to the shared queue; ``also`` (a source's local record) runs once they are durable.

        Waits while the cluster's backlog is over ``max_queued_events`` (see backlog). Raises
        ClusterUnavailable when the queue stays unreachable for ACCEPT_PATIENCE: the caller must not
        acknowledge its origin then.
        """
        await self.node.joined.wait()
        bodies = [messages.encode(e) for e in events]
        for body in bodies:
            if len(body.encode()) > messages.MAX_BODY:
                raise PayloadTooLarge(len(body.encode()), messages.MAX_BODY)
        try:
            await self._send_events(events, bodies)
        except Exception as err:
            if isinstance(err, PayloadTooLarge):
                raise
            raise ClusterUnavailable(f"the shared queue is unreachable from node {self.cluster.node_id!r} "
                                     f"({describe(err, self.cluster)})") from err
        if also is not None:
            await self._record_locally(also)
        return len(events)

    async def _send_events(self, events: list[QueuedEvent], bodies: list[str]) -> None:
        """Wait for room under max_queued_events (the cluster's backlog), then send."""
        await self.backlog.reserve(len(events))
        try:
            await self._send_all(bodies, [messages.delay_for(e) for e in events], ACCEPT_PATIENCE)
        except BaseException:
            self.backlog.release(len(events))
            raise

    async def _record_locally(self, also: StoreOp) -> None:
        try:
            await self.store.call(also)
        except sqlite3.IntegrityError:
            # The shared table decided the hand-over; this node's own record is bookkeeping only.
            self.log.info("cluster.local_record_exists")

    async def _send_all(self, bodies: Sequence[str], delays: Sequence[int], patience: float) -> None:
        """Send each body; concurrent callers share SendMessageBatch requests (see batcher)."""
        batcher = self._sends[patience]
        await asyncio.gather(*(batcher.submit((b, d)) for b, d in zip(bodies, delays, strict=True)))

    async def _flush_sends(self, items: list[tuple[str, int]], patience: float) -> None:
        chunk = list(items)
        await with_retries(lambda: self._send_batch(chunk), what="send", give_up_after=patience)

    async def _send_batch(self, chunk: list[tuple[str, int]]) -> None:
        """SendMessageBatch; entries SQS failed on its side are raised as one transient error (retried)."""
        if sum(len(b) for b, _ in chunk) > messages.MAX_BODY:  # the batch limit is the message limit
            for body, delay in chunk:
                await self.node.sqs.send_message(QueueUrl=self.cluster.async_queue, MessageBody=body,
                                                 DelaySeconds=delay)
            return
        entries = [{"Id": str(i), "MessageBody": b, "DelaySeconds": d} for i, (b, d) in enumerate(chunk)]
        response = await self.node.sqs.send_message_batch(QueueUrl=self.cluster.async_queue, Entries=entries)
        failed = response.get("Failed", [])
        if failed:
            total = len(chunk)
            chunk[:] = [chunk[int(f["Id"])] for f in failed]  # the retry sends only what SQS did not take
            raise _PartialSend(f"{len(failed)} of {total} messages failed: {failed[0].get('Message')}")

    # --- delivery -----------------------------------------------------------------------------------

    async def run(self) -> None:
        """Long-poll and deliver until ``stop()``; in-flight deliveries finish unless this task is cancelled."""
        await self.node.joined.wait()
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self.node.keep_alive(self._stopping))
                group.create_task(self.local.run())
                for _ in range(self.cluster.pollers):
                    group.create_task(self._poll(group))
        finally:
            await self.sqs_sender.close()

    def stop_intake(self) -> None:
        """The daemon stops: this host's intake still waiting for room gives up (see Dispatcher)."""
        self.local.stop_intake()

    def stop(self) -> None:
        """Stop receiving; messages not in hand stay on the queue for the other nodes."""
        self._stopping.set()
        self.local.stop()

    async def _poll(self, group: asyncio.TaskGroup) -> None:
        while not self._stopping.is_set():
            room = await self._take_room()
            if room == 0:
                return
            try:
                received = await self._receive(room)
            except BaseException:
                self._give_room(room)
                raise
            self._give_room(room - len(received))
            for message in received:
                group.create_task(self._handle(message))

    async def _take_room(self) -> int:
        """Wait for one free slot (or stop), then take up to a batch of the free ones."""
        waiter = asyncio.ensure_future(self._room.acquire())
        stopper = asyncio.ensure_future(self._stopping.wait())
        await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if self._stopping.is_set():
            if waiter.done() and not waiter.cancelled():
                self._room.release()
            waiter.cancel()
            return 0
        room = 1
        while room < BATCH and not self._room.locked():
            await self._room.acquire()
            room += 1
        return room

    def _give_room(self, count: int) -> None:
        for _ in range(count):
            self._room.release()

    async def _receive(self, count: int) -> list[Received]:
        """One long poll, stopped early by ``stop()``; unreachable SQS is retried with backoff, for ever."""
        poll = with_retries(lambda: self._receive_once(count), what="receive", give_up_after=None)
        # Stopped mid-poll: whatever it had received reappears after the visibility timeout, nothing is lost.
        return await unless_stopped(poll, self._stopping) or []

    async def _receive_once(self, count: int) -> list[Received]:
        response = await self.node.sqs.receive_message(
            QueueUrl=self.cluster.async_queue, MaxNumberOfMessages=count, WaitTimeSeconds=self._long_poll,
            VisibilityTimeout=self.cluster.visibility_timeout)
        received = []
        for raw in response.get("Messages", []):
            try:
                event = messages.decode(raw.get("Body", ""))
            except messages.MalformedMessage as err:
                await self._drop_malformed(raw, err)
                continue
            received.append(Received(event, raw["ReceiptHandle"], raw.get("MessageId", "")))
        return received

    async def _drop_malformed(self, raw: dict[str, Any], err: Exception) -> None:
        """A message no bridge wrote can never be delivered: say so once and remove it."""
        self.log.warning("cluster.malformed_message", message_id=raw.get("MessageId"), error=str(err),
                         bytes=len(raw.get("Body", "")))
        with contextlib.suppress(Exception):
            await self.node.sqs.delete_message(QueueUrl=self.cluster.async_queue, ReceiptHandle=raw["ReceiptHandle"])

    async def _handle(self, message: Received) -> None:
        self._handling += 1
        heartbeat = asyncio.create_task(self._extend_visibility(message))
        try:
            await self._handle_event(message)
        except Exception as err:  # one event never stops the node: this one fails alone (see _contain)
            await self._contain(message, err)
        finally:
            heartbeat.cancel()
            self._handling -= 1
            self._room.release()

    async def _contain(self, message: Received, err: Exception) -> None:
        """An event the bridge failed on is dead-lettered in the table with the reason, then deleted.

        AWS out of reach beyond the settle patience is no fault of the event: it stays on the queue and
        reappears after the visibility timeout, as it does when even its dead letter cannot be written.
        """
        event = message.event
        log = self.log.bind(function=event.function, request_id=event.request_id, event_id=event.id)
        if is_transient(err):
            log.warning("cluster.settle_failed", error=f"{type(err).__name__}: {err}"[:1024],
                        consequence="the event reappears after the visibility timeout and is delivered again")
            return
        entry_id = uuid.uuid5(CONTAINED, f"{event.id}\n{message.message_id}").hex  # a repeat replaces itself
        entry = bridge_failure(event.function, self.config.function_arn(event.function), event, err,
                               entry_id=entry_id)
        log.error("delivery.event_failed", error=entry.reason)
        try:
            await self._put_dead_letter(entry)
            await self._delete(message)
        except Exception as again:
            log.error("cluster.contain_failed", error=f"{type(again).__name__}: {again}"[:1024],
                      consequence="the event reappears after the visibility timeout and is tried again")

    async def _handle_event(self, message: Received) -> None:
        event = message.event
        lane = self.lanes.get(event.function)
        if lane is None:  # this node's config lacks the function: leave it to a node that has it
            self.log.warning("cluster.unknown_function", function=event.function, request_id=event.request_id)
            await self._release_later(message, self.cluster.visibility_timeout)
            return
        if event.next_at > time.time() + 1:  # a wait longer than SQS's delay limit: another hop
            await self._resend_then_delete(message, event)
            return
        async with lane.slots:
            event, decision = await attempt_once(lane, event, self.rng, self.log)
        await self._settle(lane, message, event, decision)

    async def _extend_visibility(self, message: Received) -> None:
        """While the node works on a message, keep it invisible to the others."""
        timeout = self.cluster.visibility_timeout
        while True:
            await asyncio.sleep(timeout / 3)
            try:
                await self.node.sqs.change_message_visibility(QueueUrl=self.cluster.async_queue,
                                                              ReceiptHandle=message.handle, VisibilityTimeout=timeout)
            except Exception as err:  # the message may reappear elsewhere: at-least-once allows that
                self.log.warning("cluster.visibility_failed", request_id=message.event.request_id, error=str(err))

    async def _release_later(self, message: Received, seconds: int) -> None:
        with contextlib.suppress(Exception):
            await self.node.sqs.change_message_visibility(QueueUrl=self.cluster.async_queue,
                                                          ReceiptHandle=message.handle, VisibilityTimeout=seconds)

    # --- outcomes -----------------------------------------------------------------------------------

    async def _settle(self, lane: Lane, message: Received, event: QueuedEvent, decision: policy.Decision) -> None:
        log = self.log.bind(function=lane.name, request_id=event.request_id, event_id=event.id,
                            attempt=event.invoke_count)
        if isinstance(decision, policy.Retry):
            await self._resend_then_delete(message, event.after_attempt(decision.at))
            log.info("delivery.retrying", reason=decision.reason, in_s=round(decision.at - time.time(), 3))
            return
        await self._finish(lane, event, decision)
        await self._delete(message)
        if self.metrics is not None:
            self.metrics.count_async_outcome(lane.name, decision.condition)
        name = "delivery.succeeded" if decision.condition == policy.SUCCESS else "delivery.failed"
        log.info(name, condition=decision.condition, destination=decision.destination, reason=decision.reason)

    async def _resend_then_delete(self, message: Received, event: QueuedEvent) -> None:
        """The event's next step as a new message, then the old one deleted (a crash between: one repeat)."""
        await self._send_all([messages.encode(event)], [messages.delay_for(event)], SETTLE_PATIENCE)
        await self._delete(message)

    async def _delete(self, message: Received) -> None:
        await self._deletes.submit(message.handle)

    async def _flush_deletes(self, handles: list[str]) -> None:
        """DeleteMessageBatch; an entry SQS refuses (its handle expired) reappears and is delivered again."""
        entries = [{"Id": str(i), "ReceiptHandle": h} for i, h in enumerate(handles)]

        async def delete() -> dict[str, Any]:
            return await self.node.sqs.delete_message_batch(QueueUrl=self.cluster.async_queue, Entries=entries)

        response = await with_retries(delete, what="delete", give_up_after=SETTLE_PATIENCE)
        for failed in response.get("Failed", []):
            self.log.warning("cluster.delete_failed", code=failed.get("Code"), error=failed.get("Message"))

    async def _finish(self, lane: Lane, event: QueuedEvent, decision: policy.Finish) -> None:
        destination = decision.destination
        record = self._record(lane, event, decision) if destination else None
        if destination is None or record is None:
            return
        if destination == "dlq":
            await self._dead_letter(lane, decision, record)
        elif destination.startswith("function:"):
            follow_up = new_event(destination.removeprefix("function:"), json.dumps(record).encode())
            await self._send_all([messages.encode(follow_up)], [0], SETTLE_PATIENCE)
        else:
            await self._send_sqs(lane, event, decision, record)

    def _record(self, lane: Lane, event: QueuedEvent, decision: policy.Finish) -> dict:
        last = json.loads(event.last_response) if event.last_response else None
        return invocation_record(
            request_id=event.request_id, function_arn=self.config.function_arn(lane.name),
            condition=decision.condition, invoke_count=event.invoke_count, request_payload=event.payload,
            last_response=last, now=time.time())

    async def _dead_letter(self, lane: Lane, decision: policy.Finish, record: dict) -> None:
        """The dead letter in the shared table, where `lambda-bridge dlq` on any node finds it."""
        entry = DeadLetter(uuid.uuid4().hex, lane.name, time.time(), decision.condition, decision.reason, record,
                           decision.attributes)
        await self._put_dead_letter(entry)

    async def _put_dead_letter(self, entry: DeadLetter) -> None:
        table = self.node.table
        assert table is not None
        await with_retries(lambda: table.put_dead_letter(entry, self.cluster.node_id), what="dead_letter",
                           give_up_after=SETTLE_PATIENCE)
        self.log.info("cluster.dead_letter", function=entry.function, entry=entry.id, condition=entry.condition)

    async def _send_sqs(self, lane: Lane, event: QueuedEvent, decision: policy.Finish, record: dict) -> None:
        """Send the record to the destination queue; if it stays unreachable, keep a dead letter instead."""
        url = str(decision.destination).removeprefix("sqs:")
        error = (record.get("responsePayload") or {}) if decision.condition != policy.SUCCESS else {}
        message = error.get("errorMessage") if isinstance(error, dict) else None
        attributes = dlq_attributes(event.request_id, 200, message)
        if decision.attributes:  # the origin's own DLQ attributes (EventBridge) instead of Lambda's
            attributes = {k: {"DataType": "String", "StringValue": v} for k, v in decision.attributes.items()}
        for attempt in range(1, SEND_ATTEMPTS + 1):
            try:
                await self.sqs_sender.send(url, record, attributes)
                return
            except Exception as err:
                self.log.warning("destination.send_failed", function=lane.name, destination=url, attempt=attempt,
                                 error=str(err))
                await asyncio.sleep(min(30.0, 0.5 * 2**attempt) * self.rng.uniform(0.5, 1.0))
        reason = f"{decision.reason}; destination sqs:{url} unreachable after {SEND_ATTEMPTS} attempts"
        await self._dead_letter(lane, policy.Finish(decision.condition, "dlq", reason, decision.attributes), record)


class _PartialSend(OSError):
    """Some entries of a batch failed on SQS's side: an OSError, so the retry rule treats it as transient."""
