"""Async destinations outside the store: SQS queues, reached with aiobotocore, one client per endpoint."""

from __future__ import annotations

import contextlib
import json
from typing import Any
from urllib.parse import urlsplit

ERROR_MESSAGE_LIMIT = 1024


def queue_region(url: str, default: str) -> str:
    """``https://sqs.eu-west-1.amazonaws.com/...`` -> eu-west-1; other hosts use ``default``."""
    host = urlsplit(url).hostname or ""
    parts = host.split(".")
    return parts[1] if len(parts) > 3 and parts[0] == "sqs" else default


def dlq_attributes(request_id: str, status: int, error_message: str | None) -> dict[str, Any]:
    """The message attributes Lambda's dead-letter queue sets: RequestID, ErrorCode, ErrorMessage."""
    attrs: dict[str, Any] = {
        "RequestID": {"DataType": "String", "StringValue": request_id},
        "ErrorCode": {"DataType": "Number", "StringValue": str(status)},
    }
    if error_message:
        attrs["ErrorMessage"] = {"DataType": "String", "StringValue": error_message[:ERROR_MESSAGE_LIMIT]}
    return attrs


class SqsSender:
    """Sends records to SQS queue URLs; the client for each endpoint is created once and reused."""

    def __init__(self, region: str) -> None:
        self.region = region
        self._session: Any = None
        self._stack = contextlib.AsyncExitStack()
        self._clients: dict[tuple[str, str], Any] = {}

    async def _client(self, url: str) -> Any:
        parts = urlsplit(url)
        endpoint = f"{parts.scheme}://{parts.netloc}"
        region = queue_region(url, self.region)
        key = (endpoint, region)
        if key not in self._clients:
            if self._session is None:
                from aiobotocore.session import get_session  # heavy: imported only when a queue is used

                self._session = get_session()
            creator = self._session.create_client("sqs", region_name=region, endpoint_url=endpoint)
            self._clients[key] = await self._stack.enter_async_context(creator)
        return self._clients[key]

    async def send(self, url: str, body: dict[str, Any], attributes: dict[str, Any]) -> str:
        """SendMessage; returns the MessageId. Raises botocore errors to the caller's retry policy."""
        client = await self._client(url)
        response = await client.send_message(QueueUrl=url, MessageBody=json.dumps(body),
                                             MessageAttributes=attributes)
        return response["MessageId"]

    async def close(self) -> None:
        """Close every client."""
        await self._stack.aclose()
        self._clients.clear()
