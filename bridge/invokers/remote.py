"""Remote functions: invoke AWS Lambda (or any Lambda-API endpoint) through aiobotocore, with Lambda's semantics."""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

import aiohttp
from botocore import exceptions as boto
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_before_delay, wait_random_exponential

from bridge.config.model import RemoteFunctionConfig
from bridge.errors import InvocationRejected, PayloadTooLarge, RemoteUnavailable, Throttled
from bridge.invokers.inflight import InFlight
from bridge.invokers.remote_backends import Verdict, client_error, function_error, transport_error
from bridge.invokers.remote_clients import RemoteClients
from bridge.log import get_logger
from bridge.model import ASYNC_LIMIT, SYNC_LIMIT, Invocation, InvokeResult, error_body

BACKOFF_FIRST, BACKOFF_CAP = 0.05, 2.0  # seconds: jittered exponential backoff between attempts
HANDED_OVER = 202
LIMITS = {"RequestResponse": SYNC_LIMIT, "Event": ASYNC_LIMIT, "DryRun": SYNC_LIMIT}


class RemoteThrottled(Throttled):
    """``max_concurrency`` invocations toward the endpoint are in flight; retry later."""

    def __init__(self, function: str, limit: int) -> None:
        super().__init__(function, limit)
        self.args = (f"function {function!r} has max_concurrency ({limit}) invocations in flight toward its "
                     f"endpoint; retry later or raise functions.{function}.max_concurrency",)


class _Retry(Exception):
    """One attempt failed in a way worth retrying (throttle, 5xx, network); carries the verdict."""

    def __init__(self, verdict: Verdict) -> None:
        super().__init__(f"{verdict.code} ({verdict.status}): {verdict.message}" if verdict.status
                         else f"{verdict.code}: {verdict.message}")
        self.verdict = verdict


class RemoteFunction:
    """Invokes one remote function: bounded in-flight calls, retries inside a window, errors sorted."""

    staged = 0  # a remote delivery throttles whenever every slot is taken

    def __init__(self, name: str, cfg: RemoteFunctionConfig, clients: RemoteClients | None = None) -> None:
        self.name = name
        self.cfg = cfg
        self.limit = cfg.concurrency
        self.invocations = 0
        self.errors = 0
        self.retries = 0
        self._slots = asyncio.Semaphore(self.limit)
        self._clients = clients or RemoteClients()
        self._owns_clients = clients is None
        self._calls = InFlight()
        self.log = get_logger(function=name)

    @property
    def in_flight(self) -> int:
        """Invocations running now."""
        return self._calls.count

    def has_capacity(self) -> bool:
        """True when an invocation would start now instead of being throttled."""
        return not self._slots.locked()

    async def invoke(self, invocation: Invocation, *, wait: bool = False) -> InvokeResult:
        """RequestResponse: the function's answer. Raises Throttled (busy, ``wait`` False), PayloadTooLarge,
        RemoteUnavailable (retries exhausted) or InvocationRejected (a final 4xx)."""
        if len(invocation.payload) > SYNC_LIMIT:
            raise PayloadTooLarge(len(invocation.payload), SYNC_LIMIT)
        return await self._call(invocation, "RequestResponse", wait)

    async def handover(self, invocation: Invocation, *, staged: bool = False) -> InvokeResult:
        """One event of the async queue: an ``Event`` invoke (202: AWS's own queue takes it over) or, with
        ``invocation_type: RequestResponse``, a sync invoke whose failures the bridge's queue retries.
        (``staged`` is moot: ``staged`` is 0, so no lane has a delivery beyond the limit.)"""
        kind = self.cfg.invocation_type
        if len(invocation.payload) > LIMITS[kind]:
            raise InvocationRejected(str(PayloadTooLarge(len(invocation.payload), LIMITS[kind])), 413,
                                     "RequestTooLargeException")
        return await self._call(invocation, kind, wait=False)

    async def dry_run(self) -> None:
        """Check that the function exists and may be invoked (``DryRun``, 204), without running it."""
        await self._call(Invocation(b"{}"), "DryRun", wait=True)

    async def _call(self, invocation: Invocation, kind: str, wait: bool) -> InvokeResult:
        if self._slots.locked() and not wait:
            raise RemoteThrottled(self.name, self.limit)
        async with self._slots:
            with self._calls.call():
                result = await self._retrying(invocation, kind)
        self.invocations += 1
        self.errors += not result.ok
        return result

    async def _retrying(self, invocation: Invocation, kind: str) -> InvokeResult:
        """Retry throttles, 5xx and network failures with the same request until ``retry_timeout``."""
        started = time.monotonic()
        try:
            # The common case needs no retry machinery: tenacity's per-call set-up is measurable at 1,000/s.
            return await self._once(invocation, kind)
        except _Retry as first:
            failed: _Retry | None = first
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(_Retry), stop=stop_before_delay(self.cfg.retry_timeout),
            wait=wait_random_exponential(multiplier=BACKOFF_FIRST, max=BACKOFF_CAP),
            before_sleep=self._before_retry(invocation), reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    if failed is not None:  # attempt 1 already happened above: let tenacity judge it
                        error, failed = failed, None
                        raise error
                    return await self._once(invocation, kind)
        except _Retry as err:
            attempts = retrying.statistics.get("attempt_number", 1)
            self.log.warning("remote.unavailable", request_id=invocation.request_id, attempt=attempts,
                             code=err.verdict.code, status=err.verdict.status)
            raise RemoteUnavailable(
                f"function {self.name!r} at {self._where}: {err} (gave up after {attempts} attempt(s) in "
                f"{time.monotonic() - started:.1f} s; retry_timeout is {self.cfg.retry_timeout:g} s)"
            ) from err
        raise AssertionError("unreachable")

    def _before_retry(self, invocation: Invocation) -> Any:
        def log_retry(state: RetryCallState) -> None:
            self.retries += 1
            err = state.outcome.exception() if state.outcome else None
            verdict = err.verdict if isinstance(err, _Retry) else None
            self.log.warning("remote.retrying", request_id=invocation.request_id, attempt=state.attempt_number,
                          code=verdict and verdict.code, status=verdict and verdict.status,
                          in_s=round(state.upcoming_sleep, 3))
        return log_retry

    @property
    def _where(self) -> str:
        return self.cfg.endpoint_url or f"AWS Lambda in {self.cfg.region}"

    async def _once(self, invocation: Invocation, kind: str) -> InvokeResult:
        """One HTTP request; sorts every failure into retry, final rejection or function error."""
        started = time.perf_counter()
        try:
            client = await self._clients.get(self.cfg)
            response = await client.invoke(**self._request(invocation, kind))
            async with response["Payload"] as stream:
                payload = await stream.read()
        except boto.ClientError as err:
            return self._failed(invocation, client_error(self.cfg.backend, err))
        except boto.BotoCoreError as err:
            return self._failed(invocation, transport_error(err))
        except (aiohttp.ClientError, TimeoutError) as err:  # the answer's body was cut off
            raise _Retry(Verdict("retry", 0, type(err).__name__, str(err) or "response body cut off")) from err
        return self._result(invocation, response, payload, (time.perf_counter() - started) * 1000)

    def _request(self, invocation: Invocation, kind: str) -> dict[str, Any]:
        # sam and the RIE know functions by plain name and refuse query strings (so no Qualifier).
        local = self.cfg.backend in ("sam", "rie")
        request: dict[str, Any] = {"FunctionName": self.cfg.function_name if local else self.cfg.arn,
                                   "InvocationType": kind, "Payload": invocation.payload}
        if invocation.log_tail and kind == "RequestResponse" and self.cfg.backend != "sam":
            request["LogType"] = "Tail"
        if invocation.client_context:
            request["ClientContext"] = invocation.client_context
        return request

    def _failed(self, invocation: Invocation, verdict: Verdict) -> InvokeResult:
        if verdict.kind == "retry":
            raise _Retry(verdict)
        if verdict.kind == "function":
            return InvokeResult(invocation.request_id, error_body(verdict.code, verdict.message), "Unhandled")
        self.log.warning("remote.rejected", request_id=invocation.request_id, status=verdict.status,
                         code=verdict.code, error=verdict.message)
        message = f"function {self.name!r} at {self._where} refused the invocation: {verdict.code}"
        raise InvocationRejected(f"{message}: {verdict.message}" if verdict.message else message,
                                 verdict.status, verdict.code)

    def _result(self, invocation: Invocation, response: dict[str, Any], payload: bytes,
                duration: float) -> InvokeResult:
        remote_id = response.get("ResponseMetadata", {}).get("RequestId") or invocation.request_id
        if response.get("StatusCode") in (HANDED_OVER, 204):
            return InvokeResult(remote_id, b"", duration_ms=duration)
        error, payload = function_error(self.cfg.backend, response.get("FunctionError"), payload, remote_id)
        tail = response.get("LogResult")
        return InvokeResult(
            remote_id, payload, error, base64.b64decode(tail).decode(errors="replace") if tail else None,
            duration, response.get("ExecutedVersion") or "$LATEST",
        )

    async def close(self, drain_timeout: float = 0.0) -> None:
        """Let in-flight invocations finish (up to ``drain_timeout``), then close the client if it is ours."""
        await self._calls.drained(drain_timeout)
        if self._owns_clients:
            await self._clients.close()
