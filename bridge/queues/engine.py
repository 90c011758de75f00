"""The embedded queue: SQS semantics (visibility, receive count, retention, delay, redrive, FIFO) on the store."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from bridge.config.queues import QueueConfig
from bridge.log import get_logger
from bridge.queues import attributes as attrs
from bridge.queues import messages, storage
from bridge.queues.errors import (
    BatchEntryIdsNotDistinct,
    EmptyBatchRequest,
    InvalidBatchEntryId,
    InvalidParameterValue,
    MessageNotInflight,
    QueueDoesNotExist,
    QueueNameExists,
    SqsError,
    TooManyEntriesInBatchRequest,
)
from bridge.store import Store

DEDUP_WINDOW = 300.0  # seconds: FIFO deduplication interval
MAX_BATCH = 10
BATCH_ID = re.compile(r"^[A-Za-z0-9_-]{1,80}$")


@dataclass(eq=False)
class Queue:
    """One queue's definition, plus the event its long-polling receivers wait on."""

    name: str
    settings: QueueConfig
    extra: dict[str, str] = field(default_factory=dict)
    created: float = field(default_factory=time.time)
    modified: float = field(default_factory=time.time)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def notify(self) -> None:
        """Wake every receiver waiting on this queue (each re-checks the store)."""
        self.changed.set()
        self.changed = asyncio.Event()


class QueueEngine:
    """Durable SQS-compatible queues: every state change is committed before the call returns."""

    def __init__(self, store: Store, *, region: str, account: str) -> None:
        self.store = store
        self.region = region
        self.account = account
        self.queues: dict[str, Queue] = {}
        self.log = get_logger()

    # --- queues -------------------------------------------------------------------------------------

    async def start(self, configured: Mapping[str, QueueConfig]) -> None:
        """Load persisted queues; queues from the config are created or take the config's settings."""
        rows = await self.store.call(lambda conn: (storage.ensure_schema(conn), storage.load_queues(conn))[1])
        for name, settings, extra, created, modified in rows:
            self.queues[name] = Queue(name, QueueConfig.model_validate(settings), extra, created, modified)
        for name, settings in configured.items():
            known = self.queues.get(name)
            if known is None or known.settings != settings:
                queue = Queue(name, settings, known.extra if known else {}, known.created if known else time.time())
                await self._save(queue)
                self.queues[name] = queue
        self.log.info("queues.started", queues=sorted(self.queues))

    def get(self, name: str) -> Queue:
        """The queue ``name``; QueueDoesNotExist otherwise."""
        try:
            return self.queues[name]
        except KeyError:
            raise QueueDoesNotExist(name) from None

    def names(self, prefix: str = "") -> list[str]:
        """Queue names starting with ``prefix``, sorted."""
        return sorted(name for name in self.queues if name.startswith(prefix))

    def arn(self, name: str) -> str:
        """``arn:aws:sqs:REGION:ACCOUNT:NAME``."""
        return f"arn:aws:sqs:{self.region}:{self.account}:{name}"

    def name_from_arn(self, arn: str) -> str:
        """The queue a (dead-letter target) ARN names; it must exist."""
        name = str(arn).rsplit(":", 1)[-1]
        if name not in self.queues:
            raise attrs.InvalidAttributeValue(f"Value {arn} for parameter RedrivePolicy is invalid. Reason: "
                                              "Dead letter target does not exist.")
        return name

    async def create_queue(self, name: str, attributes: Mapping[str, str]) -> Queue:
        """CreateQueue: idempotent with the same attributes; QueueNameExists with different ones."""
        attrs.check_name(name)
        given = dict(attributes)
        fifo = name.endswith(".fifo")
        if given.get("FifoQueue", "false").lower() == "true" and not fifo:
            raise InvalidParameterValue("The name of a FIFO queue can only include alphanumeric characters, "
                                        "hyphens, or underscores, must end with .fifo suffix")
        base = QueueConfig(fifo=fifo)
        settings, extra = attrs.apply(base, {}, given, self.name_from_arn)
        known = self.queues.get(name)
        if known is not None:
            if (known.settings, known.extra) != (settings, extra):
                raise QueueNameExists(f"A queue already exists with the same name and a different value for "
                                      f"attribute(s) {', '.join(sorted(given)) or 'defaults'}")
            return known
        queue = Queue(name, settings, extra)
        await self._save(queue)
        self.queues[name] = queue
        self.log.info("queue.created", queue=name, fifo=settings.fifo)
        return queue

    async def delete_queue(self, name: str) -> None:
        """DeleteQueue: the queue and its messages are gone for good."""
        queue = self.get(name)
        await self.store.call(partial(storage.drop_queue, name=name))
        del self.queues[name]
        queue.notify()
        self.log.info("queue.deleted", queue=name)

    async def set_attributes(self, name: str, attributes: Mapping[str, str]) -> None:
        """SetQueueAttributes (FifoQueue cannot change)."""
        queue = self.get(name)
        settings, extra = attrs.apply(queue.settings, queue.extra, dict(attributes), self.name_from_arn)
        if settings.fifo != queue.settings.fifo:
            raise InvalidParameterValue("FifoQueue cannot be changed after the queue is created")
        queue.settings, queue.extra, queue.modified = settings, extra, time.time()
        await self._save(queue)
        queue.notify()

    async def get_attributes(self, name: str, names: Iterable[str]) -> dict[str, str]:
        """GetQueueAttributes: configured and computed attributes."""
        queue = self.get(name)
        visible, in_flight, delayed = await self.counts(name)
        dlq = queue.settings.redrive_policy
        available = attrs.render(queue.settings, queue.extra, self.arn(dlq.dead_letter_queue) if dlq else None) | {
            "QueueArn": self.arn(name), "ApproximateNumberOfMessages": str(visible),
            "ApproximateNumberOfMessagesNotVisible": str(in_flight),
            "ApproximateNumberOfMessagesDelayed": str(delayed),
            "CreatedTimestamp": str(int(queue.created)), "LastModifiedTimestamp": str(int(queue.modified))}
        return attrs.select(available, list(names))

    async def counts(self, name: str) -> tuple[int, int, int]:
        """(visible, in flight, delayed) messages."""
        self.get(name)
        return await self.store.call(partial(storage.counts, queue=name, now=time.time()))

    async def purge(self, name: str) -> int:
        """PurgeQueue: delete every message; returns how many."""
        self.get(name)
        purged = await self.store.call(partial(storage.purge, queue=name))
        self.log.info("queue.purged", queue=name, messages=purged)
        return purged

    async def _save(self, queue: Queue) -> None:
        settings = queue.settings.model_dump(mode="json")
        await self.store.call(partial(storage.save_queue, name=queue.name, settings=settings, extra=queue.extra,
                                      created=queue.created, modified=queue.modified))

    # --- messages -----------------------------------------------------------------------------------

    async def send(self, name: str, entries: list[Mapping[str, Any]]) -> list[dict[str, Any] | SqsError]:
        """Store messages in one durable commit; per entry a SendMessage result or the error it met."""
        queue = self.get(name)
        now = time.time()
        prepared: list[storage.NewMessage | SqsError] = []
        for entry in entries:
            try:
                prepared.append(messages.new_message(queue.settings, entry, now))
            except SqsError as err:
                prepared.append(err)
        valid = [m for m in prepared if isinstance(m, storage.NewMessage)]
        stored = await self.store.call(partial(_insert_all, queue=name, batch=valid)) if valid else []
        queue.notify()
        results = iter(stored)
        return [m if isinstance(m, SqsError) else _send_result(m, next(results), queue.settings.fifo)
                for m in prepared]

    async def receive(self, name: str, *, max_messages: int = 1, wait: int | None = None,
                      visibility: int | None = None, system_names: Iterable[str] = (),
                      attribute_names: Iterable[str] = ()) -> list[dict[str, Any]]:
        """ReceiveMessage with long polling: waits up to ``wait`` s for messages, woken by sends (no polling)."""
        queue = self.get(name)
        limit = messages.check_int("MaxNumberOfMessages", max_messages, 1, MAX_BATCH)
        wait = messages.check_int("WaitTimeSeconds", queue.settings.receive_wait_time if wait is None else wait, 0, 20)
        if visibility is not None:
            messages.check_int("VisibilityTimeout", visibility, 0, 43200)
        deadline = time.monotonic() + wait
        while True:
            taken, next_at = await self._receive_once(queue, limit, visibility)
            remaining = deadline - time.monotonic()
            if taken or remaining <= 0:
                fifo, names = queue.settings.fifo, list(system_names)
                return [messages.render(m, fifo=fifo, sender=self.account, system_names=names,
                                        attribute_names=attribute_names) for m in taken]
            await self._wait(queue, remaining if next_at is None else min(remaining, next_at - time.time()))
            queue = self.get(name)

    async def _receive_once(self, queue: Queue, limit: int,
                            visibility: int | None) -> tuple[list[storage.StoredMessage], float | None]:
        changed = queue.changed
        policy = queue.settings.redrive_policy
        dlq = self.queues.get(policy.dead_letter_queue) if policy else None
        spec = storage.ReceiveSpec(queue.name, queue.settings.fifo, limit,
                                   queue.settings.visibility_timeout if visibility is None else visibility,
                                   dlq.name if dlq else None, policy.max_receive_count if policy else 0,
                                   self.arn(queue.name))
        taken, moved, next_at = await self.store.call(partial(_receive_op, spec=spec, now=time.time()))
        if moved and dlq is not None:
            self.log.info("queue.redriven", queue=queue.name, dead_letter_queue=dlq.name, messages=moved)
            dlq.notify()
        if not taken and changed is not queue.changed:
            next_at = time.time()  # something changed while we read: look again at once
        return taken, next_at

    @staticmethod
    async def _wait(queue: Queue, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, timeout)):
                await queue.changed.wait()

    async def delete(self, name: str, handles: list[str]) -> list[SqsError | None]:
        """DeleteMessage(Batch): per handle None (deleted, or already gone) or the error."""
        queue = self.get(name)
        parsed: list[tuple[str, str] | SqsError] = []
        for handle in handles:
            try:
                parsed.append(messages.parse_receipt(handle))
            except SqsError as err:
                parsed.append(err)
        valid = [p for p in parsed if not isinstance(p, SqsError)]
        if valid:
            await self.store.call(partial(_delete_all, queue=name, receipts=valid))
            if queue.settings.fifo:
                queue.notify()  # a group whose message was in flight may be free now
        return [p if isinstance(p, SqsError) else None for p in parsed]

    async def change_visibility(self, name: str, entries: list[tuple[str, Any]]) -> list[SqsError | None]:
        """ChangeMessageVisibility(Batch): per (handle, timeout) None or the error."""
        queue = self.get(name)
        checked: list[tuple[str, str, int] | SqsError] = []
        for handle, timeout in entries:
            try:
                checked.append((*messages.parse_receipt(handle),
                                messages.check_int("VisibilityTimeout", timeout, 0, 43200)))
            except SqsError as err:
                checked.append(err)
        valid = [c for c in checked if not isinstance(c, SqsError)]
        outcomes = iter(await self.store.call(partial(_change_all, queue=name, entries=valid, now=time.time())))
        results = [c if isinstance(c, SqsError) else _visibility_error(next(outcomes)) for c in checked]
        queue.notify()
        return results


def check_batch(entries: Any) -> list[Mapping[str, Any]]:
    """The entries of a batch call: 1-10, distinct valid Ids."""
    if not entries:
        raise EmptyBatchRequest()
    if len(entries) > MAX_BATCH:
        raise TooManyEntriesInBatchRequest(len(entries))
    seen: set[str] = set()
    for entry in entries:
        entry_id = str(entry.get("Id", ""))
        if not BATCH_ID.match(entry_id):
            raise InvalidBatchEntryId()
        if entry_id in seen:
            raise BatchEntryIdsNotDistinct(entry_id)
        seen.add(entry_id)
    return entries


def _send_result(message: storage.NewMessage, stored: tuple[str, int], fifo: bool) -> dict[str, Any]:
    message_id, seq = stored
    result: dict[str, Any] = {"MessageId": message_id, "MD5OfMessageBody": message.md5_body}
    if message.md5_attributes:
        result["MD5OfMessageAttributes"] = message.md5_attributes
    if fifo:
        result["SequenceNumber"] = storage.sequence_number(seq)
    return result


def _visibility_error(outcome: str) -> SqsError | None:
    if outcome == "ok":
        return None
    if outcome == "not_in_flight":
        return MessageNotInflight()
    return InvalidParameterValue("Value for parameter ReceiptHandle is invalid. Reason: Message does not exist "
                                 "or is not available for visibility timeout change.")


# --- store operations (run in the store thread, inside one group commit) -------------------------------


def _insert_all(conn: Any, queue: str, batch: list[storage.NewMessage]) -> list[tuple[str, int]]:
    return [storage.insert(conn, queue, message, DEDUP_WINDOW) for message in batch]


def _receive_op(conn: Any, spec: storage.ReceiveSpec, now: float) -> tuple[list[storage.StoredMessage], int,
                                                                             float | None]:
    taken, moved = storage.receive(conn, spec, now)
    next_at = None if taken else storage.next_visible(conn, spec.queue, now)
    return taken, moved, next_at


def _delete_all(conn: Any, queue: str, receipts: list[tuple[str, str]]) -> None:
    for message_id, token in receipts:
        storage.delete(conn, queue, message_id, token)


def _change_all(conn: Any, queue: str, entries: list[tuple[str, str, int]], now: float) -> list[str]:
    return [storage.change_visibility(conn, queue, message_id, token, now, timeout)
            for message_id, token, timeout in entries]
