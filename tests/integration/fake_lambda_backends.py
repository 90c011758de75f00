"""Small HTTP servers imitating the two Lambda-API backends that cannot run here (they need Docker).

Each imitates only the behaviour the bridge must recognise, as documented by the backend's own source; what
the function "does" is chosen by the request payload: ``{"sleep": s}``, ``{"raise": "msg"}``,
``{"timeout": true}``, ``{"return": value}``; anything else is echoed back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

INVOKE_PATH = "/2015-03-31/functions/{name}/invocations"


def _error(message: str) -> dict[str, Any]:
    """What awslambdaric posts for an exception (note ``requestId``: four keys, not three)."""
    return {"errorMessage": message, "errorType": "RuntimeError", "requestId": "",
            "stackTrace": ['  File "/var/task/app.py", line 3, in handler\n']}


async def _run(event: Any) -> tuple[Any, bool]:
    """Play the function: (its output, whether it timed out)."""
    if not isinstance(event, dict):
        return event, False
    if "sleep" in event:
        await asyncio.sleep(float(event["sleep"]))
    if event.get("timeout"):
        return None, True
    if "raise" in event:
        return _error(str(event["raise"])), False
    return event.get("return", event), False


class FakeRie:
    """Imitates the Lambda Runtime Interface Emulator (aws-lambda-runtime-interface-emulator,
    cmd/aws-lambda-rie/handlers.go): one invocation at a time, a second concurrent one gets a bare HTTP 400
    (ErrAlreadyReserved); a function error is the runtime's error JSON with status 200 and NO
    X-Amz-Function-Error header; a timeout is status 200 with the plain text "Task timed out after N.00
    seconds". It ignores the function name, invocation type and signature."""

    def __init__(self, timeout: int = 3) -> None:
        self.timeout = timeout
        self.requests = 0
        self.busy_answers = 0
        self._busy = False

    async def invoke(self, request: web.Request) -> web.Response:
        """One POST to the invoke path."""
        self.requests += 1
        body = await request.read()
        if self._busy:
            self.busy_answers += 1
            return web.Response(status=400)
        self._busy = True
        try:
            output, timed_out = await _run(json.loads(body or b"{}"))
        finally:
            self._busy = False
        if timed_out:
            return web.Response(text=f"Task timed out after {self.timeout}.00 seconds")
        return web.Response(body=json.dumps(output).encode())


class FakeSam:
    """Imitates ``sam local start-lambda`` (aws-sam-cli, samcli/local/lambda_service/
    local_lambda_invoke_service.py): it refuses query strings, non-JSON bodies and content types,
    ``X-Amz-Log-Type`` other than None and invocation types other than RequestResponse (501); the function's
    output gets ``X-Amz-Function-Error: Unhandled`` only when SAM's body heuristic fires: a JSON object with
    ``errorMessage`` and ``errorType`` whose keys are all among errorMessage/errorType/stackTrace/cause, or
    exactly three keys. A Python error with ``requestId`` (four keys) slips through without the header."""

    def __init__(self, functions: set[str]) -> None:
        self.functions = functions
        self.requests = 0

    async def invoke(self, request: web.Request) -> web.Response:
        """One POST to the invoke path."""
        self.requests += 1
        body = await request.read() or b"{}"
        refused = self._refusal(request, body)
        if refused is not None:
            return refused
        name = request.match_info["name"]
        if name not in self.functions:
            return _sam_error(404, "ResourceNotFound", f"function not found: {name}")
        output, _ = await _run(json.loads(body))
        headers = {"Content-Type": "application/json"}
        if _sam_thinks_error(output):
            headers["x-amz-function-error"] = "Unhandled"
        return web.Response(body=json.dumps(output).encode(), headers=headers)

    def _refusal(self, request: web.Request, body: bytes) -> web.Response | None:
        try:
            json.loads(body)
        except ValueError:
            return _sam_error(400, "InvalidRequestContent", "Could not parse request body into json")
        if request.query:
            return _sam_error(400, "InvalidRequestContent", "Query Parameters are not supported")
        if "Content-Type" in request.headers and request.content_type != "application/json":
            return _sam_error(415, "UnsupportedMediaType", f"Unsupported content type: {request.content_type}")
        if request.headers.get("X-Amz-Log-Type", "None") != "None":
            return _sam_error(501, "NotImplementedLocally", "log-type is not supported. None is only supported.")
        if request.headers.get("X-Amz-Invocation-Type", "RequestResponse") != "RequestResponse":
            return _sam_error(501, "NotImplementedLocally", "invocation-type is not supported")
        return None


def _sam_thinks_error(output: Any) -> bool:
    if not isinstance(output, dict) or not {"errorMessage", "errorType"} <= output.keys():
        return False
    return output.keys() <= {"errorMessage", "errorType", "stackTrace", "cause"} or len(output) == 3


def _sam_error(status: int, code: str, message: str) -> web.Response:
    """SAM's error shape: the code in x-amzn-errortype and the body."""
    body = {"Type": "User" if status < 500 else "LocalService", "message": message}
    return web.json_response(body, status=status, headers={"x-amzn-errortype": code})


@contextlib.asynccontextmanager
async def serving(backend: FakeRie | FakeSam) -> AsyncIterator[str]:
    """Serve ``backend`` on an ephemeral loopback port; yields its endpoint URL."""
    app = web.Application(client_max_size=7 * 1024 * 1024)
    app.router.add_post(INVOKE_PATH, backend.invoke)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()
