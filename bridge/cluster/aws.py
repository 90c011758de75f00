"""The cluster's AWS clients (aiobotocore SQS and DynamoDB on one endpoint) and the retry rule for their errors."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from tenacity import AsyncRetrying, retry_if_exception, stop_after_delay, wait_exponential_jitter

from bridge.cluster.config import ClusterConfig
from bridge.delivery.destinations import queue_region
from bridge.errors import ClusterUnavailable
from bridge.log import get_logger

T = TypeVar("T")
# Answers that say "later", not "no": throttling and the service's own trouble. Retried with backoff.
TRANSIENT_CODES = frozenset({
    "ThrottlingException", "ProvisionedThroughputExceededException", "RequestLimitExceeded", "Throttling",
    "InternalServerError", "InternalFailure", "ServiceUnavailable", "RequestThrottled", "KMS.ThrottlingException",
    "TransactionInProgressException", "AWS.SimpleQueueService.RequestThrottled",
})
MISSING_CODES = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist",
                           "ResourceNotFoundException"})


def error_code(err: BaseException) -> str:
    """A botocore ClientError's code ('' for anything else)."""
    response = getattr(err, "response", None)
    return str((response or {}).get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


def is_transient(err: BaseException) -> bool:
    """Worth retrying: the endpoint is unreachable, throttles, or failed on its side (5xx)."""
    from botocore.exceptions import BotoCoreError, ClientError

    if isinstance(err, ClientError):
        status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return error_code(err) in TRANSIENT_CODES or int(status or 0) >= 500
    return isinstance(err, BotoCoreError | OSError | TimeoutError)


def transient_or_table_missing(err: BaseException) -> bool:
    """A running node waits out a missing table too (being restored or created again) rather than stop: its
    start checked that the table exists, so the table is gone for a while, not misconfigured."""
    return is_transient(err) or error_code(err) == "ResourceNotFoundException"


def describe(err: BaseException, config: ClusterConfig) -> str:
    """What went wrong, said so that the user knows what to do."""
    code = error_code(err)
    where = config.endpoint_url or "AWS"
    if code in MISSING_CODES:
        return (f"the cluster's queue {config.async_queue} or table {config.table!r} does not exist at {where}; "
                "create them with `lambda-bridge cluster init` (or see docs/cluster.md)")
    if code in ("AccessDenied", "AccessDeniedException", "UnrecognizedClientException", "InvalidClientTokenId"):
        return f"{where} refused the credentials ({code}); docs/cluster.md lists the IAM actions a node needs"
    return f"cannot reach the cluster's queue or table at {where}: {type(err).__name__}: {err}"


async def with_retries(call: Callable[[], Awaitable[T]], *, what: str, give_up_after: float | None,
                       transient: Callable[[BaseException], bool] = is_transient) -> T:
    """Run ``call``; ``transient`` errors are retried with jittered exponential backoff (1 s .. 30 s).

    ``give_up_after`` seconds (None: never) bound the retrying; then the last error is raised.
    """
    log = get_logger()

    def before_sleep(state: Any) -> None:
        err = state.outcome.exception()
        log.warning("cluster.retrying", operation=what, attempt=state.attempt_number, error=str(err),
                    in_s=round(state.upcoming_sleep, 2))

    stop = stop_after_delay(give_up_after) if give_up_after is not None else (lambda _state: False)
    retrying = AsyncRetrying(retry=retry_if_exception(transient), wait=wait_exponential_jitter(1, 30),
                             stop=stop, before_sleep=before_sleep, reraise=True)
    async for attempt in retrying:
        with attempt:
            return await call()
    raise AssertionError("unreachable")  # pragma: no cover - tenacity returns or raises above


async def unless_stopped(call: Awaitable[T], stopping: asyncio.Event) -> T | None:
    """``call``'s result, or None once ``stopping`` is set first (``call`` is cancelled then).

    A node that is told to stop while AWS is out of reach must not wait out the backoff of a retry loop.
    """
    task = asyncio.ensure_future(call)
    stopper = asyncio.ensure_future(stopping.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return None
    return task.result()


class Clients:
    """One aiobotocore SQS client and one DynamoDB client, opened together and closed together."""

    def __init__(self, config: ClusterConfig, region: str) -> None:
        self.config = config
        self.region = queue_region(config.async_queue, region)
        self.sqs: Any = None
        self.ddb: Any = None
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> Clients:
        from aiobotocore.config import AioConfig
        from aiobotocore.session import get_session  # heavy: imported only in cluster mode

        session = get_session()
        # Short timeouts: a node that cannot reach AWS must notice within seconds (long polls set their own).
        options = AioConfig(connect_timeout=5, read_timeout=30, retries={"max_attempts": 2, "mode": "standard"},
                            max_pool_connections=50)
        where = {"region_name": self.region, "endpoint_url": self.config.endpoint_url, "config": options}
        self.sqs = await self._stack.enter_async_context(session.create_client("sqs", **where))
        self.ddb = await self._stack.enter_async_context(session.create_client("dynamodb", **where))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    async def check(self) -> dict[str, Any]:
        """Both exist and answer: the queue's attributes and the table's description, or ClusterUnavailable."""
        try:
            queue = await self.sqs.get_queue_attributes(QueueUrl=self.config.async_queue, AttributeNames=["All"])
            table = await self.ddb.describe_table(TableName=self.config.table)
        except Exception as err:
            if error_code(err) or is_transient(err):
                raise ClusterUnavailable(describe(err, self.config)) from err
            raise
        return {"queue": queue.get("Attributes", {}), "table": table["Table"]}
