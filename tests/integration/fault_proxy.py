"""The cluster tests' one fake boundary: an HTTP proxy in front of moto's server that injects AWS's answers
moto never gives.

AWS throttles (SQS ``RequestThrottled`` / ``ThrottlingException``, DynamoDB
``ProvisionedThroughputExceededException`` / ``ThrottlingException``) and refuses actions an IAM policy
lacks; moto does neither, and real AWS cannot be reached from the tests. So the proxy answers a share of the
requests itself, with the status, headers and JSON bodies AWS sends (botocore parses them as it parses
AWS's), and forwards everything else to moto unchanged. A throttled request never reaches moto, as a
throttled request never reaches DynamoDB's or SQS's storage.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import ClientSession, ClientTimeout, web

from bridge.testing import free_port

SERVICES = {"AmazonSQS": "sqs", "DynamoDB_20120810": "dynamodb"}  # X-Amz-Target prefixes


@dataclass(frozen=True)
class Answer:
    """An error as AWS's JSON protocol sends it: status, ``__type``, message, and SQS's query-error header."""

    status: int
    type: str
    message: str
    query_error: str | None = None

    @property
    def code(self) -> str:
        """The error code botocore shows (the query-error header's, else the ``__type``'s last part)."""
        return self.query_error.split(";")[0] if self.query_error else self.type.rsplit("#", 1)[-1]

    def response(self) -> web.Response:
        headers = {"x-amzn-RequestId": "fault-proxy"}
        if self.query_error:
            headers["x-amzn-query-error"] = self.query_error
        return web.json_response({"__type": self.type, "message": self.message}, status=self.status,
                                 headers=headers, content_type="application/x-amz-json-1.0")


# AWS's own throttling answers (status 400), as each service documents and sends them.
THROTTLES = {
    "sqs": (
        Answer(400, "com.amazonaws.sqs#RequestThrottled", "The request was denied due to request throttling.",
               "RequestThrottled;Sender"),
        Answer(400, "com.amazonaws.sqs#ThrottlingException", "Rate exceeded", "ThrottlingException;Sender"),
    ),
    "dynamodb": (
        Answer(400, "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
               "The level of configured provisioned throughput for the table was exceeded. Consider increasing "
               "your provisioning level with the UpdateTable API."),
        Answer(400, "com.amazonaws.dynamodb.v20120810#ThrottlingException",
               "Rate of requests exceeds the allowed throughput."),
    ),
}


def access_denied(action: str) -> Answer:
    """SQS's answer when the caller's IAM policy lacks ``action`` (e.g. ``sqs:SendMessage``)."""
    return Answer(403, "com.amazon.coral.service#AccessDeniedException",
                  f"User: arn:aws:iam::123456789012:user/node is not authorized to perform: {action} because no "
                  "identity-based policy allows the action", "AccessDenied;Sender")


Refuse = Callable[[str, str], Answer | None]  # (service, operation) -> the answer instead of moto's, or None


class FaultProxy:
    """``with FaultProxy(moto_url) as proxy:`` listens on ``proxy.url`` in a thread of its own.

    ``throttle`` (0..1): the share of SQS and DynamoDB requests answered with THROTTLES (each service's
    answers in turn; the operations in ``spare`` never are). ``refuse``: a hook answering chosen operations itself.
    ``throttled`` counts the answers given per (service, code); ``forwarded`` the requests moto got.
    """

    def __init__(self, upstream: str, *, throttle: float = 0.0, seed: int = 18,
                 spare: frozenset[str] = frozenset()) -> None:
        self.upstream = upstream.rstrip("/")
        self.throttle = throttle
        self.spare = spare
        self.refuse: Refuse | None = None
        self.throttled: Counter[tuple[str, str]] = Counter()
        self.forwarded: Counter[tuple[str, str]] = Counter()
        self.url = ""
        # One random stream per service, and the answers taken in turn: whatever the order in which the
        # nodes' requests arrive, the n-th request to a service meets the same fate in every run.
        self._rngs = {service: random.Random(f"{seed}/{service}") for service in THROTTLES}
        self._turns = dict.fromkeys(THROTTLES, 0)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="fault-proxy")
        self._runner: web.AppRunner | None = None
        self._session: ClientSession | None = None

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        self.url = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _start(self) -> str:
        self._session = ClientSession(timeout=ClientTimeout(total=120), auto_decompress=False)
        server = web.Server(self._handle)
        self._runner = web.ServerRunner(server, handle_signals=False)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        return f"http://127.0.0.1:{port}"

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        body = await request.read()
        service, operation = _operation(request.headers.get("X-Amz-Target", ""))
        answer = self._answer(service, operation)
        if answer is not None:
            self.throttled[(service, answer.code)] += 1
            return answer.response()
        self.forwarded[(service, operation)] += 1
        return await self._forward(request, body)

    def _answer(self, service: str, operation: str) -> Answer | None:
        if not service:
            return None
        if self.refuse is not None and (refused := self.refuse(service, operation)) is not None:
            return refused
        if operation in self.spare or self._rngs[service].random() >= self.throttle:
            return None
        self._turns[service] += 1
        answers = THROTTLES[service]
        return answers[self._turns[service] % len(answers)]

    async def _forward(self, request: web.BaseRequest, body: bytes) -> web.Response:
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        async with self._session.request(request.method, self.upstream + request.path_qs, headers=headers,
                                         data=body) as upstream:
            payload = await upstream.read()
            kept = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_HEADERS}
            return web.Response(status=upstream.status, body=payload, headers=kept)


HOP_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection", "keep-alive"})


def _operation(target: str) -> tuple[str, str]:
    prefix, _, operation = target.partition(".")
    return SERVICES.get(prefix, ""), operation


__all__ = ["THROTTLES", "Answer", "FaultProxy", "access_denied"]
