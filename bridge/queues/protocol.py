"""The SQS JSON protocol (AWS JSON 1.0, ``X-Amz-Target: AmazonSQS.<Action>``) over the embedded queue engine."""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from bridge.events import payload as bounded_json
from bridge.log import get_logger
from bridge.model import new_request_id
from bridge.queues.engine import QueueEngine, check_batch
from bridge.queues.errors import (
    BatchRequestTooLong,
    InternalError,
    InvalidParameterValue,
    MissingParameter,
    QueueDoesNotExist,
    RequestTooLarge,
    SqsError,
    UnsupportedOperation,
)
from bridge.queues.messages import batch_size, check_int
from bridge.queues.params import check_types

CONTENT_TYPE = "application/x-amz-json-1.0"
TARGET_PREFIX = "AmazonSQS."
MAX_REQUEST = 1_662_976  # bytes of HTTP body SQS takes ("HTTP content length exceeded 1662976 bytes.", a 413)
MAX_BATCH_BYTES = 262_144  # a SendMessageBatch's messages together (BatchRequestTooLong)
Handler = Callable[["SqsProtocol", dict[str, Any], web.Request], Awaitable[dict[str, Any]]]


def error_response(err: SqsError, request_id: str) -> web.Response:
    """An error as SQS sends it on the JSON protocol; botocore maps ``x-amzn-query-error`` to the modeled class."""
    body = {"__type": f"com.amazonaws.sqs#{err.code}", "message": err.message}
    fault = "Sender" if err.sender_fault else "Receiver"
    headers = {"x-amzn-query-error": f"{err.query_code};{fault}", "x-amzn-RequestId": request_id}
    return web.Response(status=err.status, text=json.dumps(body), content_type=CONTENT_TYPE, headers=headers)


def require(params: dict[str, Any], name: str) -> Any:
    """A required request parameter, else MissingParameter."""
    value = params.get(name)
    if value is None or value == "":
        raise MissingParameter(name)
    return value


class SqsProtocol:
    """Request handlers for the SQS actions, served on ``POST /`` of the api.listen address."""

    def __init__(self, engine: QueueEngine) -> None:
        self.engine = engine
        self.log = get_logger()

    def add_routes(self, app: web.Application) -> None:
        """Register the SQS endpoint (SDKs post to ``/``; some clients post to the queue URL)."""
        app.router.add_post("/", self.handle)
        app.router.add_post("/{account:\\d{12}}/{name}", self.handle)

    async def handle(self, request: web.Request) -> web.Response:
        """Dispatch one SQS action by its ``X-Amz-Target``."""
        rid = new_request_id()
        target = request.headers.get("X-Amz-Target", "")
        action = ACTIONS.get(target.removeprefix(TARGET_PREFIX)) if target.startswith(TARGET_PREFIX) else None
        try:
            if action is None:
                raise UnsupportedOperation(f"{target or 'no X-Amz-Target header'}: not an SQS action this "
                                           "endpoint serves")
            params = _params(await _read(request))
            result = await action(self, params, request)
        except SqsError as err:
            self.log.info("sqs_api.error", action=target, code=err.code, error=err.message, request_id=rid)
            return error_response(err, rid)
        except Exception as err:  # a bug, not a bad request: SQS's 500, logged once as one structured line
            self.log.error("sqs_api.unexpected_error", action=target, request_id=rid,
                           error=f"{type(err).__name__}: {err}"[:1024])
            return error_response(InternalError(), rid)
        return web.Response(text=json.dumps(result), content_type=CONTENT_TYPE, headers={"x-amzn-RequestId": rid})

    def url(self, request: web.Request, name: str) -> str:
        """``http://HOST:PORT/ACCOUNT/NAME`` as the client reached us."""
        return f"{request.scheme}://{request.host}/{self.engine.account}/{name}"

    def queue_name(self, params: dict[str, Any]) -> str:
        """The queue a ``QueueUrl`` names (its last path segment; the account, if given, must be ours)."""
        parts = [p for p in urlsplit(str(require(params, "QueueUrl"))).path.split("/") if p]
        if not parts or (len(parts) > 1 and parts[-2] != self.engine.account):
            raise QueueDoesNotExist(str(params["QueueUrl"]))
        self.engine.get(parts[-1])
        return parts[-1]

    # --- queues -------------------------------------------------------------------------------------

    async def create_queue(self, params: dict[str, Any], request: web.Request) -> dict[str, Any]:
        """CreateQueue."""
        queue = await self.engine.create_queue(str(require(params, "QueueName")), params.get("Attributes") or {})
        return {"QueueUrl": self.url(request, queue.name)}

    async def get_queue_url(self, params: dict[str, Any], request: web.Request) -> dict[str, Any]:
        """GetQueueUrl."""
        return {"QueueUrl": self.url(request, self.engine.get(str(require(params, "QueueName"))).name)}

    async def list_queues(self, params: dict[str, Any], request: web.Request) -> dict[str, Any]:
        """ListQueues with QueueNamePrefix, MaxResults and NextToken."""
        names = self.engine.names(params.get("QueueNamePrefix") or "")
        start = _token_offset(params.get("NextToken"))
        limit = params.get("MaxResults")
        if limit is not None:
            check_int("MaxResults", limit, 1, 1000)
        page = names[start:start + int(limit)] if limit else names[start:]
        result: dict[str, Any] = {"QueueUrls": [self.url(request, name) for name in page]}
        if limit and start + int(limit) < len(names):
            result["NextToken"] = base64.b64encode(str(start + int(limit)).encode()).decode()
        return result

    async def delete_queue(self, params: dict[str, Any], request: web.Request) -> dict[str, Any]:
        """DeleteQueue."""
        await self.engine.delete_queue(self.queue_name(params))
        return {}

    async def get_queue_attributes(self, params: dict[str, Any], request: web.Request) -> dict[str, Any]:
        """GetQueueAttributes."""
        found = await self.engine.get_attributes(self.queue_name(params), params.get("AttributeNames") or [])
        return {"Attributes": found} if found else {}

    async def set_queue_attributes(self, params: dict[str, Any], request: web.Request) -> dict[str, Any]:
        """SetQueueAttributes."""
        await self.engine.set_attributes(self.queue_name(params), require(params, "Attributes"))
        return {}

    async def purge_queue(self, params: dict[str, Any], request: web.Request) -> dict[str, Any]:
        """PurgeQueue."""
        await self.engine.purge(self.queue_name(params))
        return {}

    # --- messages -----------------------------------------------------------------------------------

    async def send_message(self, params: dict[str, Any], request: web.Request) -> dict[str, Any]:
        """SendMessage: answers once the message is on disk."""
        [result] = await self.engine.send(self.queue_name(params), [params])
        if isinstance(result, SqsError):
            raise result
        return result

    async def send_message_batch(self, params: dict[str, Any], request: web.Request) -> dict[str, Any]:
        """SendMessageBatch: one durable commit for every valid entry."""
        name = self.queue_name(params)
        entries = check_batch(params.get("Entries"))
        size = batch_size(entries)
        if size > MAX_BATCH_BYTES:
            raise BatchRequestTooLong(MAX_BATCH_BYTES, size)
        results = await self.engine.send(name, entries)
        return _batch_result(entries, results)

    async def receive_message(self, params: dict[str, Any], request: web.Request) -> dict[str, Any]:
        """ReceiveMessage with long polling, system and message attribute names."""
        system = [*(params.get("AttributeNames") or []), *(params.get("MessageSystemAttributeNames") or [])]
        found = await self.engine.receive(
            self.queue_name(params), max_messages=params.get("MaxNumberOfMessages", 1),
            wait=params.get("WaitTimeSeconds"), visibility=params.get("VisibilityTimeout"), system_names=system,
            attribute_names=params.get("MessageAttributeNames") or [])
        return {"Messages": found} if found else {}

    async def delete_message(self, params: dict[str, Any], request: web.Request) -> dict[str, Any]:
        """DeleteMessage."""
        [error] = await self.engine.delete(self.queue_name(params), [str(require(params, "ReceiptHandle"))])
        if error is not None:
            raise error
        return {}

    async def delete_message_batch(self, params: dict[str, Any], request: web.Request) -> dict[str, Any]:
        """DeleteMessageBatch."""
        name = self.queue_name(params)
        entries = check_batch(params.get("Entries"))
        errors = await self.engine.delete(name, [str(e.get("ReceiptHandle", "")) for e in entries])
        return _batch_result(entries, [err or {} for err in errors])

    async def change_message_visibility(self, params: dict[str, Any], request: web.Request) -> dict[str, Any]:
        """ChangeMessageVisibility."""
        name = self.queue_name(params)
        entry = (str(require(params, "ReceiptHandle")), require_int(params, "VisibilityTimeout"))
        [error] = await self.engine.change_visibility(name, [entry])
        if error is not None:
            raise error
        return {}

    async def change_message_visibility_batch(self, params: dict[str, Any], request: web.Request) -> dict[str, Any]:
        """ChangeMessageVisibilityBatch."""
        name = self.queue_name(params)
        entries = check_batch(params.get("Entries"))
        pairs = [(str(e.get("ReceiptHandle", "")), e.get("VisibilityTimeout", 0)) for e in entries]
        errors = await self.engine.change_visibility(name, pairs)
        return _batch_result(entries, [err or {} for err in errors])


def require_int(params: dict[str, Any], name: str) -> Any:
    """A required parameter that may be 0."""
    if params.get(name) is None:
        raise MissingParameter(name)
    return params[name]


async def _read(request: web.Request) -> bytes:
    """The body, refused (RequestTooLarge, a 413 no SDK retries) past MAX_REQUEST: from its Content-Length
    before a byte is read; a chunked one as it passes the app's own cap."""
    if request.content_length is not None and request.content_length > MAX_REQUEST:
        raise RequestTooLarge(MAX_REQUEST, request.content_length)
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise RequestTooLarge(MAX_REQUEST, None) from None
    if len(body) > MAX_REQUEST:
        raise RequestTooLarge(MAX_REQUEST, len(body))
    return body


def _params(body: bytes) -> dict[str, Any]:
    try:
        params = bounded_json.loads(body or b"{}")
    except bounded_json.TooDeep as err:
        raise InvalidParameterValue(f"The request body is {err}; no SQS request nests that deep") from None
    except ValueError:
        raise InvalidParameterValue("The request body is not valid JSON (AWS JSON 1.0 protocol)") from None
    if not isinstance(params, dict):
        raise InvalidParameterValue("The request body must be a JSON object")
    check_types(params)
    return params


def _token_offset(token: Any) -> int:
    if not token:
        return 0
    try:
        return int(base64.b64decode(str(token)).decode())
    except ValueError:
        raise InvalidParameterValue("Invalid NextToken value.") from None


def _batch_result(entries: list[Any], results: list[Any]) -> dict[str, Any]:
    successful, failed = [], []
    for entry, result in zip(entries, results, strict=True):
        if isinstance(result, SqsError):
            failed.append({"Id": entry["Id"], "SenderFault": result.sender_fault, "Code": result.code,
                           "Message": result.message})
        else:
            successful.append({"Id": entry["Id"], **result})
    return {"Successful": successful, "Failed": failed}


ACTIONS: dict[str, Handler] = {
    "CreateQueue": SqsProtocol.create_queue,
    "GetQueueUrl": SqsProtocol.get_queue_url,
    "ListQueues": SqsProtocol.list_queues,
    "DeleteQueue": SqsProtocol.delete_queue,
    "GetQueueAttributes": SqsProtocol.get_queue_attributes,
    "SetQueueAttributes": SqsProtocol.set_queue_attributes,
    "PurgeQueue": SqsProtocol.purge_queue,
    "SendMessage": SqsProtocol.send_message,
    "SendMessageBatch": SqsProtocol.send_message_batch,
    "ReceiveMessage": SqsProtocol.receive_message,
    "DeleteMessage": SqsProtocol.delete_message,
    "DeleteMessageBatch": SqsProtocol.delete_message_batch,
    "ChangeMessageVisibility": SqsProtocol.change_message_visibility,
    "ChangeMessageVisibilityBatch": SqsProtocol.change_message_visibility_batch,
}
