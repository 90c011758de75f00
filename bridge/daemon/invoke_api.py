"""The local Lambda Invoke API (POST /2015-03-31/functions/{name}/invocations), as boto3 and the CLI expect."""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web

from bridge.errors import FunctionNotFound, InvocationRejected, PayloadTooLarge, RemoteUnavailable, Throttled
from bridge.invokers.registry import Functions
from bridge.log import get_logger
from bridge.model import ASYNC_LIMIT, SYNC_LIMIT, Invocation, InvokeResult, new_request_id

AcceptAsync = Callable[[str, Invocation], Awaitable[None]]
INVOKE_PATH = "/2015-03-31/functions/{name}/invocations"


def aws_error(status: int, code: str, message: str, request_id: str = "", **extra: Any) -> web.Response:
    """An error in the rest-json shape botocore parses (code from x-amzn-ErrorType, ``message``)."""
    body = {"Type": "User" if status < 500 else "Service", "message": message, **extra}
    headers = {"x-amzn-ErrorType": code, "x-amzn-RequestId": request_id or new_request_id()}
    return web.json_response(body, status=status, headers=headers)


def function_name(raw: str, qualifier: str | None) -> tuple[str, str | None]:
    """Accept ``name``, ``name:qualifier``, ``ACCOUNT:function:name`` or a full function ARN."""
    parts = raw.split(":")
    if "function" in parts:
        parts = parts[parts.index("function") + 1 :]
    name = parts[0]
    if len(parts) > 1:
        qualifier = qualifier or parts[1]
    return name, qualifier


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
        """Handle one Invoke call: RequestResponse (200), Event (202) or DryRun (204)."""
        rid = new_request_id()
        name, qualifier = function_name(request.match_info["name"], request.query.get("Qualifier"))
        arn = self.functions.config.function_arn(name)
        if name not in self.functions.names() or qualifier not in (None, "$LATEST"):
            shown = f"{arn}:{qualifier}" if qualifier else arn
            return aws_error(404, "ResourceNotFoundException", f"Function not found: {shown}", rid)
        kind = request.headers.get("X-Amz-Invocation-Type", "RequestResponse")
        if kind not in ("RequestResponse", "Event", "DryRun"):
            return aws_error(400, "InvalidParameterValueException", f"unknown invocation type {kind!r}", rid)
        payload = await request.read()
        limit = SYNC_LIMIT if kind == "RequestResponse" else ASYNC_LIMIT
        if len(payload) > limit:
            message = f"Request must be smaller than {limit} bytes for the InvokeFunction operation"
            return aws_error(413, "RequestTooLargeException", message, rid)
        if kind == "DryRun":
            return web.Response(status=204, headers={"x-amzn-RequestId": rid})
        invocation = Invocation(
            payload or b"{}", rid, request.headers.get("X-Amz-Client-Context"),
            request.headers.get("X-Amz-Log-Type") == "Tail",
        )
        if kind == "Event":
            await self.accept_async(name, invocation)
            return web.Response(status=202, headers={"x-amzn-RequestId": rid})
        return await self._sync(name, invocation)

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
async def serve(app: web.Application, host: str, port: int, shutdown_timeout: float) -> AsyncIterator[str]:
    """Listen on host:port while the context is open; on exit, wait for in-flight requests."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, shutdown_timeout=shutdown_timeout)
        await site.start()
        yield f"http://{host}:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def parse_json_or_text(payload: bytes) -> Any:
    """Decode a payload for display: JSON when it is JSON, else text."""
    try:
        return json.loads(payload)
    except ValueError:
        return payload.decode(errors="replace")
