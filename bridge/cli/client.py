"""Invoke a function for the CLI: through the running daemon's Invoke API, or in this process."""

from __future__ import annotations

import base64
import json
import sys

import aiohttp
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_random_exponential

from bridge.cli.context import State, note
from bridge.config.model import Config
from bridge.delivery.deadletters import enqueue_offline
from bridge.errors import DaemonUnavailable, FunctionNotFound, PayloadTooLarge, Throttled, UsageError
from bridge.invokers.registry import Functions
from bridge.model import ASYNC_LIMIT, SYNC_LIMIT, Invocation, InvokeResult
from bridge.store import connect, store_path


async def invoke_command(state: State, name: str, payload: bytes, kind: str, tail: bool) -> int:
    """Run ``lambda-bridge invoke``: print the response; exit 1 on a function error."""
    _check_payload(payload, kind)
    api_url = state.api_url()
    result = None
    if api_url is not None:
        try:
            result = await invoke_via_daemon(api_url, name, payload, kind, tail)
        except DaemonUnavailable:
            result = None
    if result is None:
        result = await _without_daemon(state, name, payload, kind, tail, api_url)
    return _print_result(result, kind)


async def _without_daemon(state: State, name: str, payload: bytes, kind: str, tail: bool,
                          api_url: str | None) -> InvokeResult:
    """No daemon answers: say so on stderr, then queue the event (Event) or run the function here."""
    config = state.config()
    daemon = state.daemon()
    if daemon is not None and api_url is None:
        why = f"the daemon (pid {daemon.pid}) has no API (api.listen is not set)"
    else:
        why = "no daemon is running" + (f" (nothing answers at {api_url})" if api_url else "")
    if kind == "Event":
        when = "the running daemon delivers it within seconds" if daemon else "it is delivered when the daemon starts"
        note(f"{why}: queued the event in {config.state_dir}; {when}")
        return queue_offline(config, name, payload)
    note(f"{why}: running {name} in this process")
    return await invoke_in_process(config, name, payload, kind, tail)


def _check_payload(payload: bytes, kind: str) -> None:
    limit = SYNC_LIMIT if kind == "RequestResponse" else ASYNC_LIMIT
    if len(payload) > limit:
        raise PayloadTooLarge(len(payload), limit)
    if kind != "DryRun":
        try:
            json.loads(payload or b"{}")
        except ValueError as err:
            raise UsageError(f"the payload is not valid JSON: {err}") from None


async def invoke_via_daemon(api_url: str, name: str, payload: bytes, kind: str, tail: bool) -> InvokeResult:
    """POST to the daemon's Invoke API; raises DaemonUnavailable when nothing listens there."""
    url = f"{api_url}/2015-03-31/functions/{name}/invocations"
    headers = {"X-Amz-Invocation-Type": kind, "X-Amz-Log-Type": "Tail" if tail else "None"}
    retrying = AsyncRetrying(retry=retry_if_exception_type(Throttled), stop=stop_after_delay(60),
                             wait=wait_random_exponential(0.05, 2), reraise=True)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as session:
        async for attempt in retrying:
            with attempt:
                return await _post(session, url, payload, headers, name)
    raise AssertionError("unreachable")


async def _post(session: aiohttp.ClientSession, url: str, payload: bytes, headers: dict[str, str],
                name: str) -> InvokeResult:
    try:
        async with session.post(url, data=payload, headers=headers) as resp:
            body = await resp.read()
    except aiohttp.ClientConnectionError as err:
        raise DaemonUnavailable(str(err)) from None
    if resp.status == 429:
        raise Throttled(name, 0)
    if resp.status >= 400:
        raise UsageError(f"{resp.headers.get('x-amzn-ErrorType', resp.status)}: {_message(body)}")
    log_result = resp.headers.get("X-Amz-Log-Result")
    tail = base64.b64decode(log_result).decode(errors="replace") if log_result else None
    return InvokeResult(resp.headers.get("x-amzn-RequestId", ""), body,
                        resp.headers.get("X-Amz-Function-Error"), tail)


def _message(body: bytes) -> str:
    try:
        return str(json.loads(body).get("message", body.decode()))
    except (ValueError, AttributeError):
        return body.decode(errors="replace")


async def invoke_in_process(config: Config, name: str, payload: bytes, kind: str, tail: bool) -> InvokeResult:
    """No daemon: start the function's worker here, invoke once, stop it (like `sam local invoke`)."""
    functions = Functions(config)
    try:
        invoker = functions.get(name)
        if kind == "DryRun":
            return InvokeResult("", b"")
        return await invoker.invoke(Invocation(payload or b"{}", log_tail=tail), wait=True)
    finally:
        await functions.close()


def queue_offline(config: Config, name: str, payload: bytes) -> InvokeResult:
    """No daemon: put the Event invocation in the durable queue; the daemon delivers it when it starts."""
    if name not in config.functions:
        raise FunctionNotFound(name, list(config.functions))
    conn = connect(store_path(config.state_dir))
    try:
        event = enqueue_offline(conn, name, payload or b"{}")
    finally:
        conn.close()
    return InvokeResult(event.request_id, b"")


def _print_result(result: InvokeResult, kind: str) -> int:
    if result.log_tail:
        sys.stderr.write(result.log_tail)
    if kind == "Event":
        print(json.dumps({"StatusCode": 202, "RequestId": result.request_id}))
        return 0
    if kind == "DryRun":
        print(json.dumps({"StatusCode": 204}))
        return 0
    sys.stdout.write(result.payload.decode(errors="replace") + "\n")
    if result.function_error:
        print(f"function error ({result.function_error}): {_summary(result.payload)}", file=sys.stderr)
        return 1
    return 0


def _summary(payload: bytes) -> str:
    try:
        body = json.loads(payload)
        return f"{body.get('errorType', 'Error')}: {body.get('errorMessage', '')}"
    except (ValueError, AttributeError):
        return payload.decode(errors="replace")
