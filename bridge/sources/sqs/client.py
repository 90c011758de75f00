"""The small queue interface the SQS poller uses, for real SQS (aiobotocore) and for the embedded queue."""

from __future__ import annotations

import contextlib
from typing import Any, Protocol
from urllib.parse import urlsplit

from bridge.delivery.destinations import queue_region
from bridge.events.sqs import queue_arn

ALL = ("All",)


class QueueClient(Protocol):
    """What the poller needs from a queue; messages are in the ReceiveMessage (botocore) shape."""

    arn: str
    region: str

    async def visibility_timeout(self) -> int:
        """The queue's default visibility timeout in seconds."""
        ...

    async def receive(self, max_messages: int, wait: int) -> list[dict[str, Any]]:
        """Long-poll up to ``max_messages`` (1-10) for up to ``wait`` seconds, with every attribute."""
        ...

    async def delete(self, receipts: list[str]) -> list[str]:
        """Delete messages by receipt handle (up to 10); returns the handles that could not be deleted."""
        ...

    async def change_visibility(self, receipts: list[str], timeout: int) -> dict[str, str]:
        """Set the visibility timeout of received messages (up to 10); the handles that failed, with why."""
        ...


class SqsClients:
    """One aiobotocore session and one client per (endpoint, region), shared by every SQS source."""

    def __init__(self) -> None:
        self._session: Any = None
        self._stack = contextlib.AsyncExitStack()
        self._clients: dict[tuple[str | None, str], Any] = {}

    async def get(self, endpoint_url: str | None, region: str) -> Any:
        """The client for this endpoint and region; credentials come from the standard AWS chain."""
        key = (endpoint_url, region)
        if key not in self._clients:
            from aiobotocore.session import get_session  # heavy: imported only when a real queue is used
            from botocore.config import Config

            if self._session is None:
                self._session = get_session()
            # Our poller retries with its own logged, jittered backoff; botocore's retries would hide outages.
            config = Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=5, read_timeout=40)
            creator = self._session.create_client("sqs", region_name=region, endpoint_url=endpoint_url, config=config)
            self._clients[key] = await self._stack.enter_async_context(creator)
        return self._clients[key]

    async def close(self) -> None:
        """Close every client."""
        await self._stack.aclose()
        self._clients.clear()


def endpoint_for(url: str, endpoint_url: str | None) -> str | None:
    """The endpoint to call for a queue URL: the configured one, AWS's own (None) or the URL's host."""
    if endpoint_url:
        return endpoint_url
    parts = urlsplit(url)
    if (parts.hostname or "").endswith(".amazonaws.com"):
        return None
    return f"{parts.scheme}://{parts.netloc}"


class AwsQueueClient:
    """A queue reached over the SQS API (AWS, LocalStack, ElasticMQ, moto)."""

    def __init__(self, client: Any, url: str, region: str, account: str) -> None:
        self.client = client
        self.url = url
        self.region = region
        self.arn = queue_arn(url, region, account)

    @classmethod
    async def connect(cls, clients: SqsClients, url: str, endpoint_url: str | None, region: str | None,
                      default_region: str, account: str) -> AwsQueueClient:
        """A client for ``url``; the region is the configured one, the URL's, or the daemon's."""
        region = region or queue_region(url, default_region)
        return cls(await clients.get(endpoint_for(url, endpoint_url), region), url, region, account)

    async def visibility_timeout(self) -> int:
        """GetQueueAttributes VisibilityTimeout."""
        found = await self.client.get_queue_attributes(QueueUrl=self.url, AttributeNames=["VisibilityTimeout"])
        return int(found["Attributes"]["VisibilityTimeout"])

    async def receive(self, max_messages: int, wait: int) -> list[dict[str, Any]]:
        """ReceiveMessage with all system and message attributes."""
        found = await self.client.receive_message(
            QueueUrl=self.url, MaxNumberOfMessages=max_messages, WaitTimeSeconds=wait,
            MessageSystemAttributeNames=list(ALL), MessageAttributeNames=list(ALL))
        return found.get("Messages") or []

    async def delete(self, receipts: list[str]) -> list[str]:
        """DeleteMessageBatch."""
        entries = [{"Id": str(i), "ReceiptHandle": r} for i, r in enumerate(receipts)]
        found = await self.client.delete_message_batch(QueueUrl=self.url, Entries=entries)
        return [receipts[int(f["Id"])] for f in found.get("Failed") or []]

    async def change_visibility(self, receipts: list[str], timeout: int) -> dict[str, str]:
        """ChangeMessageVisibilityBatch; its per-message failures (handle -> code)."""
        entries = [{"Id": str(i), "ReceiptHandle": r, "VisibilityTimeout": timeout} for i, r in enumerate(receipts)]
        found = await self.client.change_message_visibility_batch(QueueUrl=self.url, Entries=entries)
        return {receipts[int(f["Id"])]: str(f.get("Code", "")) for f in found.get("Failed") or []}


class EmbeddedQueueClient:
    """A queue of the embedded engine, called in-process (no HTTP), with the same interface."""

    def __init__(self, engine: Any, name: str) -> None:
        self.engine = engine
        self.name = name
        self.region = engine.region
        self.arn = engine.arn(name)

    async def visibility_timeout(self) -> int:
        """The queue's VisibilityTimeout setting."""
        return self.engine.get(self.name).settings.visibility_timeout

    async def receive(self, max_messages: int, wait: int) -> list[dict[str, Any]]:
        """ReceiveMessage on the engine."""
        return await self.engine.receive(self.name, max_messages=max_messages, wait=wait, system_names=ALL,
                                         attribute_names=ALL)

    async def delete(self, receipts: list[str]) -> list[str]:
        """DeleteMessage for each handle, in one commit."""
        errors = await self.engine.delete(self.name, receipts)
        return [r for r, err in zip(receipts, errors, strict=True) if err is not None]

    async def change_visibility(self, receipts: list[str], timeout: int) -> dict[str, str]:
        """ChangeMessageVisibility for each handle, in one commit; the failures (handle -> code)."""
        errors = await self.engine.change_visibility(self.name, [(r, timeout) for r in receipts])
        return {r: err.code for r, err in zip(receipts, errors, strict=True) if err is not None}
