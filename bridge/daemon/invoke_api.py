"""The local Lambda Invoke API (POST /2015-03-31/functions/{name}/invocations), as boto3 and the CLI expect."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web

from bridge.daemon.http_errors import aws_error
from bridge.errors import (
    BridgeError,
    ClusterUnavailable,
    FunctionNotFound,
    IntakeStopped,
    InvocationRejected,
    PayloadTooLarge,
    RemoteUnavailable,
    Throttled,
)
from bridge.events import payload as bounded_json
from bridge.http_log import server_logger
from bridge.invokers.registry import Functions
from bridge.log import get_logger
from bridge.model import ASYNC_LIMIT, SYNC_LIMIT, Invocation, InvokeResult, new_request_id

AcceptAsync = Callable[[str, Invocation], Awaitable[None]]
INVOKE_PATH = "/2015-03-31/functions/{name}/invocations"
# Seconds a request cut at the shutdown deadline has to end, and aiohttp to write answers out in each of its
# two steps (wait, then cancel): the one shutdown_timeout is spent before, by serve.
WRITE_GRACE = 0.5


# Lambda's own pattern for FunctionName (API reference, Invoke): name, name:qualifier, partial or full ARN.
FUNCTION_NAME = re.compile(r"(arn:(aws[a-zA-Z-]*)?:lambda:)?([a-z]{2}(-gov)?-[a-z]+-\d{1}:)?(\d{12}:)?(function:)?"
                           r"(?P<name>[a-zA-Z0-9-_.]+)(:(?P<qualifier>\$LATEST|[a-zA-Z0-9-_]+))?")
QUALIFIER = re.compile(r"\$LATEST|[a-zA-Z0-9-_]{1,128}")
CLIENT_CONTEXT_LIMIT = 3583  # bytes of base64, as Lambda documents
BAD_CLIENT_CONTEXT = "Client context must be a valid Base64-encoded JSON object."


class BadRequest(BridgeError):
    """A request Lambda would refuse with a 4xx: ``status``, ``code`` and the message botocore shows."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code = status, code


def _invalid(field: str, value: str, pattern: str) -> BadRequest:
    shown = value if len(value) <= 256 else value[:256] + "..."
    message = (f"1 validation error detected: Value '{shown}' at '{field}' failed to satisfy constraint: "
               f"Member must satisfy regular expression pattern: {pattern}")
    return BadRequest(400, "ValidationException", message)


def function_name(raw: str, qualifier: str | None) -> tuple[str, str | None]:
    """Accept ``name``, ``name:qualifier``, ``ACCOUNT:function:name`` or a full function ARN (AWS's pattern).

    Raises BadRequest (ValidationException) for anything else, as Lambda does.
    """
    found = FUNCTION_NAME.fullmatch(raw) if len(raw) <= 170 else None
    if found is None:
        raise _invalid("functionName", raw, FUNCTION_NAME.pattern)
    if qualifier is not None and not QUALIFIER.fullmatch(qualifier):
        raise _invalid("qualifier", qualifier, QUALIFIER.pattern)
    return found["name"], qualifier or found["qualifier"]


def client_context(value: str | None) -> str | None:
    """``X-Amz-Client-Context`` checked as Lambda checks it: base64 of a JSON object, at most 3583 bytes."""
    if value is None:
        return None
    if len(value) > CLIENT_CONTEXT_LIMIT:
        raise BadRequest(400, "InvalidRequestContentException",
                         f"Client context must be at most {CLIENT_CONTEXT_LIMIT} bytes of Base64-encoded JSON.")
    try:
        decoded = bounded_json.loads(base64.b64decode(value, validate=True).decode("utf-8"))
    except ValueError:  # not ASCII, not base64, not UTF-8, not JSON, too deep: binascii.Error is a ValueError
        raise BadRequest(400, "InvalidRequestContentException", BAD_CLIENT_CONTEXT) from None
    if not isinstance(decoded, dict):
        raise BadRequest(400, "InvalidRequestContentException", BAD_CLIENT_CONTEXT)
    return value


async def _read(request: web.Request, limit: int) -> bytes | None:
    """The payload, or None past ``limit``: from its Content-Length before a byte is read, or past the app's
    own cap (aiohttp's 413 would be plain text, not Lambda's RequestTooLargeException)."""
    if request.content_length is not None and request.content_length > limit:
        return None
    try:
        payload = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return None
    return payload if len(payload) <= limit else None


class InvokeApi:
    """Request handlers for the Invoke operation, over the configured functions."""

    def __init__(self, functions: Functions, accept_async: AcceptAsync) -> None:
        self.functions = functions
        self.accept_async = accept_async
        self.log = get_logger()

    def add_routes(self, app: web.Application) -> None:
        """Register the Invoke route on ``app``."""
        app.router.add_post(INVOKE_PATH, self.invoke)

    async def invoke(self, request: web.Request) -> web.Response:
        """Handle one Invoke call: RequestResponse (200), Event (202) or DryRun (204); a bad request gets a 4xx."""
        rid = new_request_id()
        try:
            return await self._invoke(request, rid)
        except BadRequest as err:
            self.log.info("invoke.bad_request", request_id=rid, code=err.code, status=err.status, error=str(err))
            return aws_error(err.status, err.code, str(err), rid)

    async def _invoke(self, request: web.Request, rid: str) -> web.Response:
        name, qualifier = function_name(request.match_info["name"], request.query.get("Qualifier"))
        arn = self.functions.config.function_arn(name)
        if name not in self.functions.names() or qualifier not in (None, "$LATEST"):
            shown = f"{arn}:{qualifier}" if qualifier else arn
            return aws_error(404, "ResourceNotFoundException", f"Function not found: {shown}", rid)
        kind = request.headers.get("X-Amz-Invocation-Type", "RequestResponse")
        if kind not in ("RequestResponse", "Event", "DryRun"):
            return aws_error(400, "InvalidParameterValueException", f"unknown invocation type {kind!r}", rid)
        limit = SYNC_LIMIT if kind == "RequestResponse" else ASYNC_LIMIT
        payload = await _read(request, limit)
        if payload is None:
            message = f"Request must be smaller than {limit} bytes for the InvokeFunction operation"
            return aws_error(413, "RequestTooLargeException", message, rid)
        if kind == "DryRun":
            return web.Response(status=204, headers={"x-amzn-RequestId": rid})
        invocation = Invocation(
            payload or b"{}", rid, client_context(request.headers.get("X-Amz-Client-Context")),
            request.headers.get("X-Amz-Log-Type") == "Tail",
        )
        if kind == "Event":
            return await self._event(name, invocation)
        return await self._sync(name, invocation)

    async def _event(self, name: str, invocation: Invocation) -> web.Response:
        """202 once the event is durable; 503 (Lambda's service unavailable) when the shared queue is not."""
        try:
            await self.accept_async(name, invocation)
        except ClusterUnavailable as err:  # cluster mode: nothing was queued, the caller must send it again
            self.log.error("invoke.queue_unavailable", function=name, request_id=invocation.request_id,
                           error=str(err))
            message = (f"The event was not queued (send it again): {err}. Check the cluster's queue and this "
                       "node's access to it with `lambda-bridge cluster check`.")
            return aws_error(503, "ServiceException", message, invocation.request_id)
        except IntakeStopped as err:  # it waited for room (a full disk, max_queued_events) at the stop
            self.log.warning("invoke.not_queued", function=name, request_id=invocation.request_id, error=str(err))
            message = (f"The event was not queued (send it again): {err}. Lambda's SDKs retry this 503 by "
                       "themselves; a restarted daemon takes the event once there is room.")
            return aws_error(503, "ServiceException", message, invocation.request_id)
        return web.Response(status=202, headers={"x-amzn-RequestId": invocation.request_id})

    async def _sync(self, name: str, invocation: Invocation) -> web.Response:
        try:
            result = await self.functions.get(name).invoke(invocation)
        except Throttled as err:
            reason = "ReservedFunctionConcurrentInvocationLimitExceeded"
            self.log.warning("invoke.throttled", function=name, request_id=invocation.request_id, error=str(err))
            return aws_error(429, "TooManyRequestsException", str(err), invocation.request_id, Reason=reason)
        except FunctionNotFound as err:  # removed by a reload while the request was in flight
            return aws_error(404, "ResourceNotFoundException", str(err), invocation.request_id)
        except InvocationRejected as err:  # a remote function's endpoint refused it: pass its answer on
            code = err.code or "InvalidRequestContentException"
            return aws_error(err.status, code, str(err), invocation.request_id)
        except RemoteUnavailable as err:
            return aws_error(502, "ServiceException", str(err), invocation.request_id)
        except PayloadTooLarge as err:
            return aws_error(413, "RequestTooLargeException", str(err), invocation.request_id)
        return web.Response(body=result.payload, headers=result_headers(result), content_type="application/json")


def result_headers(result: InvokeResult) -> dict[str, str]:
    """The response headers Lambda sets on a synchronous invoke."""
    headers = {"x-amzn-RequestId": result.request_id, "X-Amz-Executed-Version": result.executed_version}
    if result.function_error:
        headers["X-Amz-Function-Error"] = result.function_error
    if result.log_tail is not None:
        headers["X-Amz-Log-Result"] = base64.b64encode(result.log_tail.encode()).decode()
    return headers


@contextlib.asynccontextmanager
async def serve(app: web.Application, host: str, port: int, shutdown_timeout: float,
                stop_by: Callable[[], float | None] = lambda: None) -> AsyncIterator[str]:
    """Listen on host:port while the context is open; on exit, stop listening and let the requests in flight
    finish until the loop time ``stop_by()`` (the daemon's one shutdown deadline; None: ``shutdown_timeout``
    from now), then cut the ones still running."""
    # auto_decompress=False: neither Lambda's nor SQS's API inflates a Content-Encoding body, and aiohttp would
    # do it on the event loop (a small gzip bomb held every listener of the daemon for 10 s).
    in_flight = InFlight()
    app.middlewares.insert(0, in_flight.middleware)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=WRITE_GRACE,
                           logger=server_logger(), auto_decompress=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        yield f"http://{host}:{runner.addresses[0][1]}"
    finally:
        for site in list(runner.sites):
            await site.stop()  # nothing new comes in
        deadline = stop_by()
        try:
            if not await in_flight.idle(deadline or asyncio.get_running_loop().time() + shutdown_timeout):
                get_logger().warning("api.stop_timeout", in_flight=in_flight.count)
                await in_flight.cut()
        finally:
            await runner.cleanup()  # writes the answers out (aiohttp waits at most WRITE_GRACE, twice)


class InFlight:
    """The requests being handled: ``idle(by)`` waits until there are none (or the loop time ``by``); ``cut()``
    then ends the ones still running, each answered 503 ServiceException (send it again), not dropped."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._cut: set[asyncio.Task[Any]] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def count(self) -> int:
        """Requests being handled now."""
        return len(self._tasks)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Track the request while its handler runs (aiohttp runs each in a task of its own)."""
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._idle.clear()
        try:
            return await handler(request)
        except asyncio.CancelledError:
            if task not in self._cut:
                raise
            task.uncancel()
            return aws_error(503, "ServiceException", "The daemon stopped (its shutdown_timeout ran out) before "
                             "this call finished; send it again.")
        finally:
            self._tasks.discard(task)
            if not self._tasks:
                self._idle.set()

    async def idle(self, by: float) -> bool:
        """True once no request is being handled; False when ``by`` came first."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(by):
                await self._idle.wait()
        return self._idle.is_set()

    async def cut(self) -> None:
        """End every request still being handled (each is answered 503) and wait for them."""
        self._cut |= self._tasks
        for task in self._cut:
            task.cancel()
        await self.idle(asyncio.get_running_loop().time() + WRITE_GRACE)


def parse_json_or_text(payload: bytes) -> Any:
    """Decode a payload for display: JSON when it is (not too deep) JSON, else text."""
    return bounded_json.json_or_text(payload)
