"""Lambda's SQS event source mapping: long-poll a queue, invoke synchronously per batch, delete what succeeded."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, wait_random_exponential

from bridge.errors import BridgeError
from bridge.events.filters import SQS_DATA_KEY, compile_filters, sqs_filter_view
from bridge.events.sqs import judge_batch_response, record_from_sqs_message, sqs_event
from bridge.log import get_logger
from bridge.model import SYNC_LIMIT, Invocation
from bridge.sources.base import SourceContext
from bridge.sources.sqs.client import AwsQueueClient, EmbeddedQueueClient, QueueClient, SqsClients
from bridge.sources.sqs.config import SqsSourceConfig

LONG_POLL = 20  # seconds: SQS's longest WaitTimeSeconds
RECEIVE_MAX = 10  # messages per ReceiveMessage
EVENT_OVERHEAD = 1024  # bytes kept free in a 6 MB batch for the event envelope
SETTLE_ATTEMPTS = 5  # tries for DeleteMessageBatch / ChangeMessageVisibilityBatch before giving up


def is_transient(err: BaseException) -> bool:
    """Errors of the queue endpoint (down, throttled, credentials, missing queue): retried, never fatal."""
    import aiohttp
    from botocore.exceptions import BotoCoreError, ClientError

    return isinstance(err, BotoCoreError | ClientError | aiohttp.ClientError | OSError | TimeoutError | BridgeError)


class SqsSource:
    """``maximum_concurrency`` lanes: one at a time collects a batch, then invokes and settles it meanwhile."""

    def __init__(self, config: SqsSourceConfig, ctx: SourceContext) -> None:
        self.name = config.name
        self.config = config
        self.ctx = ctx
        self.matches = compile_filters(config.filters, data_key=SQS_DATA_KEY)
        self.report_failures = "ReportBatchItemFailures" in config.function_response_types
        self.log = get_logger(source=config.name, function=config.function)
        self.client: QueueClient | None = None
        self.visibility = 30
        self._failing = False
        self._collecting = asyncio.Lock()
        ctx.stats.extra.update(batches=0, deleted=0, failed=0, filtered=0)

    async def run(self) -> None:
        """Connect, learn the visibility timeout, then run the lanes until cancelled."""
        self.client = await self._connect()
        self.ctx.ready()
        self.visibility = await self._retry("GetQueueAttributes", self.client.visibility_timeout)
        self.log.info("sqs.polling", queue=self.config.queue, visibility_timeout=self.visibility,
                      lanes=self.config.maximum_concurrency)
        async with asyncio.TaskGroup() as lanes:
            for _ in range(self.config.maximum_concurrency):
                lanes.create_task(self._lane())

    async def _connect(self) -> QueueClient:
        cfg, ctx = self.config, self.ctx
        if not cfg.is_url:
            return EmbeddedQueueClient(ctx.extensions["queues"], cfg.queue)
        clients: SqsClients = ctx.extensions["sqs_clients"]
        return await AwsQueueClient.connect(clients, cfg.queue, cfg.endpoint_url, cfg.region, ctx.config.region,
                                            ctx.config.account_id)

    # --- one lane ----------------------------------------------------------------------------------

    async def _lane(self) -> None:
        carry: list[dict[str, Any]] = []
        while True:
            held = list(carry)
            beat = asyncio.create_task(self._heartbeat(held))
            try:
                carry = await self._collect_turn(held)
                await self._process_to_end(held)
            finally:
                beat.cancel()
                await asyncio.wait({beat})  # unlike `await beat`, a cancellation of this lane is not swallowed

    async def _collect_turn(self, held: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Batches built from several receives are filled by one lane at a time, so they are not split
        between lanes; a batch that is one receive (no window) needs no turn, and receives run concurrently."""
        if self.config.maximum_batching_window <= 0:
            return await self._collect(held)
        async with self._collecting:
            return await self._collect(held)

    async def _collect(self, held: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Receive until the batch is full, its window has passed or 6 MB are reached; returns the overflow."""
        window, size, deadline = self.config.maximum_batching_window, self.config.batch_size, None
        while len(held) < size:
            if held and deadline is None:
                deadline = time.monotonic() + window
            remaining = LONG_POLL if deadline is None else deadline - time.monotonic()
            if held and remaining < 1:
                break  # SQS waits in whole seconds: a shorter rest of the window closes the batch now
            want = min(RECEIVE_MAX, size - len(held))
            held.extend(await self._retry("ReceiveMessage", self.client.receive, want, min(LONG_POLL, int(remaining))))
            overflow = _over_limit(held)
            if overflow:
                return overflow
        return []

    async def _heartbeat(self, held: list[dict[str, Any]]) -> None:
        """Extend the visibility of the messages held by this lane so none is handed out twice meanwhile."""
        if self.visibility <= 0:
            return
        interval = max(0.5, self.visibility / 3)
        lost: set[str] = set()  # handles SQS no longer renews: asked once, reported once
        while True:
            await asyncio.sleep(interval)  # a timer, not a poll: the batch's visibility must be renewed in time
            receipts = [m["ReceiptHandle"] for m in held if m["ReceiptHandle"] not in lost]
            for chunk in _chunks(receipts):
                try:
                    failed = await self._settle("ChangeMessageVisibilityBatch", self.client.change_visibility,
                                                chunk, self.visibility)
                except Exception as err:
                    if not is_transient(err):
                        raise  # a bug, not an outage
                    continue
                lost.update(failed)
                self._report_lost(held, failed)

    def _report_lost(self, held: list[dict[str, Any]], failed: dict[str, str]) -> None:
        """A message whose visibility could not be extended may be handed out again while its batch still runs."""
        for message in held:
            code = failed.get(message["ReceiptHandle"])
            if code is not None:
                self.log.warning("sqs.visibility_lost", queue=self.config.queue, message_id=message.get("MessageId"),
                                 code=code, fix="the message left this batch's hold (purged or deleted elsewhere, "
                                 "or its visibility ran out before a renewal) and may be delivered again; if "
                                 "batches are slow, raise the queue's VisibilityTimeout")

    async def _process_to_end(self, held: list[dict[str, Any]]) -> None:
        """Invoke and settle a batch; on stop, let it finish within shutdown_timeout (as async deliveries do).

        Receiving is cancelled at once on stop (the messages come back after their visibility timeout), but
        a batch being invoked runs to its end, so the function is not killed halfway; a second stop signal
        (or the deadline) cancels it.
        """
        task = asyncio.ensure_future(self._process(held))
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            self.log.info("sqs.draining", messages=len(held), shutdown_timeout=self.ctx.config.shutdown_timeout)
            try:
                await asyncio.wait({task}, timeout=self.ctx.config.shutdown_timeout)
            finally:
                if not task.done():
                    task.cancel()
                    await asyncio.wait({task})
            raise

    async def _process(self, held: list[dict[str, Any]]) -> None:
        records, verdicts = [], []
        for message in held:
            try:
                record = record_from_sqs_message(message, queue_arn=self.client.arn, region=self.client.region)
                verdicts.append(self.matches(sqs_filter_view(record)))
                records.append(record)
            except Exception as err:  # one message never stops the source: it returns to the queue (redrive policy)
                self.log.error("sqs.message_failed", message_id=message.get("MessageId"),
                               error=f"{type(err).__name__}: {err}"[:1024])
        passing = [r for r, ok in zip(records, verdicts, strict=True) if ok]
        dropped = [r for r, ok in zip(records, verdicts, strict=True) if not ok]
        if dropped:
            await self._delete(dropped)
            self.ctx.stats.extra["filtered"] += len(dropped)
            self.log.info("sqs.filtered", messages=len(dropped))
        if passing:
            await self._invoke(passing)

    async def _invoke(self, records: list[dict[str, Any]]) -> None:
        invocation = Invocation(json.dumps(sqs_event(records)).encode())
        ids = [r["messageId"] for r in records]
        log = self.log.bind(request_id=invocation.request_id, messages=len(records))
        try:
            result = await self.ctx.functions.get(self.config.function).invoke(invocation, wait=True)
        except BridgeError as err:  # throttled to zero, remote endpoint down: the messages come back later
            log.warning("sqs.invoke_failed", error=str(err))
            return
        verdict = judge_batch_response(function_error=not result.ok, payload=result.payload, message_ids=ids,
                                       report_batch_item_failures=self.report_failures)
        await self._delete([r for r in records if r["messageId"] not in verdict.failed])
        self._count(len(records), len(verdict.failed))
        event = "sqs.batch_failed" if verdict.failed else "sqs.batch"
        (log.warning if verdict.failed else log.info)(event, failed=sorted(verdict.failed), reason=verdict.reason,
                 attempt=max(int(r["attributes"].get("ApproximateReceiveCount", 1)) for r in records))

    def _count(self, total: int, failed: int) -> None:
        stats = self.ctx.stats
        stats.events += total
        stats.extra["batches"] += 1
        stats.extra["deleted"] += total - failed
        stats.extra["failed"] += failed

    async def _delete(self, records: list[dict[str, Any]]) -> None:
        for chunk in _chunks([r["receiptHandle"] for r in records]):
            try:
                failed = await self._settle("DeleteMessageBatch", self.client.delete, chunk)
            except Exception as err:
                if not is_transient(err):
                    raise
                self.log.warning("sqs.delete_failed", messages=len(chunk), error=_describe(err),
                                 consequence="the messages will be delivered again")
                continue
            if failed:
                self.log.warning("sqs.delete_failed", messages=len(failed), error="rejected by the queue",
                                 consequence="the messages will be delivered again")

    # --- endpoint errors ----------------------------------------------------------------------------

    async def _retry(self, action: str, call: Callable[..., Any], *args: Any) -> Any:
        """Call the endpoint until it answers: capped, jittered exponential backoff, one log line per failure."""
        retrying = AsyncRetrying(retry=retry_if_exception(is_transient), reraise=True,
                                 wait=wait_random_exponential(multiplier=0.5, max=30),
                                 before_sleep=self._failed(action))
        result = await retrying(call, *args)
        self._recovered(action)
        return result

    async def _settle(self, action: str, call: Callable[..., Any], *args: Any) -> Any:
        retrying = AsyncRetrying(retry=retry_if_exception(is_transient), reraise=True,
                                 stop=stop_after_attempt(SETTLE_ATTEMPTS),
                                 wait=wait_random_exponential(multiplier=0.2, max=5), before_sleep=self._failed(action))
        result = await retrying(call, *args)
        self._recovered(action)
        return result

    def _failed(self, action: str) -> Callable[[RetryCallState], None]:
        def log(state: RetryCallState) -> None:
            err = state.outcome.exception() if state.outcome else None
            self._failing = True
            self.ctx.stats.state = "retrying"
            self.ctx.stats.last_error = _describe(err)
            self.log.warning("sqs.endpoint_error", action=action, queue=self.config.queue, error=_describe(err),
                             attempt=state.attempt_number,
                             retry_in_s=round(state.next_action.sleep if state.next_action else 0, 2))
        return log

    def _recovered(self, action: str) -> None:
        if self._failing:
            self._failing = False
            self.ctx.stats.state = "running"
            self.log.info("sqs.endpoint_recovered", action=action, queue=self.config.queue)


def _describe(err: BaseException | None) -> str:
    return f"{type(err).__name__}: {err}" if err is not None else "unknown error"


def _chunks(items: list[str]) -> list[list[str]]:
    return [items[i:i + RECEIVE_MAX] for i in range(0, len(items), RECEIVE_MAX)]


def _over_limit(held: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Take the messages past Lambda's 6 MB payload out of ``held`` (at least one stays); returns them."""
    total = EVENT_OVERHEAD
    for index, message in enumerate(held):
        total += len(message["Body"].encode()) + 1024  # attributes and record keys: generous estimate
        if total > SYNC_LIMIT and index > 0:
            overflow = held[index:]
            del held[index:]
            return overflow
    return []


def create(config: SqsSourceConfig, ctx: SourceContext) -> SqsSource:
    """The SQS poller for one ``type: sqs`` source."""
    return SqsSource(config, ctx)
