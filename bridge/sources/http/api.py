"""One http source's API: request -> (authorizer) -> event -> synchronous invoke -> API Gateway's response."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from multidict import CIMultiDict

from bridge.errors import BridgeError
from bridge.log import get_logger
from bridge.model import SYNC_LIMIT, Invocation, InvokeResult
from bridge.sources.base import SourceContext
from bridge.sources.http import auth
from bridge.sources.http.config import HttpSourceConfig
from bridge.sources.http.events import Api, HttpRequest, build_event, decode_path
from bridge.sources.http.responses import HttpResponse, MalformedResponse, gateway_error, internal_error, map_response
from bridge.sources.http.routes import Route

STANDARD_METHODS = frozenset({"DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT"})


class TooLarge(Exception):
    """The request body is over the limit (-> 413, without reading the rest)."""


class Rejected(Exception):
    """Lambda refused the invocation itself (unknown function, throttled, payload refused) -> 500, as AWS."""


class HttpApi:
    """The routes of one ``type: http`` source and how its requests become invocations."""

    def __init__(self, config: HttpSourceConfig, ctx: SourceContext) -> None:
        self.name, self.fmt, self.config, self.ctx = config.name, config.format, config, ctx
        self.routes = config.parsed_routes()
        self.api = Api(config.format, config.api_id, config.stage_name, ctx.config.region, ctx.config.account_id,
                       tuple(config.binary_media_types), config.stage_variables)
        self.verdicts = auth.VerdictCache(config.authorizer.ttl if config.authorizer else 0)
        self.background: set[asyncio.Task[Any]] = set()  # invocations that outlived their 504
        self.log = get_logger(source=config.name)

    # --- the listener's calls ---------------------------------------------------------------------------

    async def handle(self, request: web.BaseRequest, route: Route, params: dict[str, str]) -> web.StreamResponse:
        """Answer one request matched to ``route``: every failure becomes API Gateway's own answer."""
        if request.method not in STANDARD_METHODS:
            return self.unmatched(request)
        try:
            body = await self._read_body(request)
        except TooLarge:
            return self._send(request, gateway_error(self.fmt, 413, "Request Entity Too Large"), None)
        except (TimeoutError, ConnectionError, ValueError, HttpProcessingError) as err:  # bad chunked framing too
            self.log.warning("http.bad_request", path=request.raw_path[:200], error=type(err).__name__)
            return self._send(request, gateway_error(self.fmt, 400, "Bad Request"), None)
        req = self._request(request, body)
        response = await self._answer(req, route, params)
        self.ctx.stats.events += 1
        return self._send(request, response, req)

    async def preflight(self, request: web.BaseRequest) -> web.StreamResponse | None:
        """HTTP API's CORS preflight: 204 with the allowed origin, methods, headers and max age."""
        cors = self.config.cors
        if cors is None:
            return None
        headers = CIMultiDict(self._cors_headers(request.headers.get("Origin")))
        if "Access-Control-Allow-Origin" in headers:
            headers["Access-Control-Allow-Methods"] = ",".join(cors.allow_methods)
            if cors.allow_headers:
                headers["Access-Control-Allow-Headers"] = ",".join(cors.allow_headers)
            if cors.max_age is not None:
                headers["Access-Control-Max-Age"] = str(cors.max_age)
        return web.Response(status=204, headers=headers)

    def unmatched(self, request: web.BaseRequest) -> web.StreamResponse:
        """REST: 403 Missing Authentication Token; HTTP API and URLs: 404 Not Found."""
        if self.fmt == "rest":
            return self._send(request, gateway_error(self.fmt, 403, "Missing Authentication Token"), None)
        return self._send(request, gateway_error(self.fmt, 404, "Not Found"), None)

    # --- reading ------------------------------------------------------------------------------------------

    async def _read_body(self, request: web.BaseRequest) -> bytes:
        """The body, at most ``max_body`` bytes: a larger Content-Length is refused before reading a byte."""
        limit = self.config.max_body
        if request.content_length is not None and request.content_length > limit:
            raise TooLarge
        chunks, size = [], 0
        async with asyncio.timeout(self.config.header_timeout):  # a trickling body is cut off too
            while chunk := await request.content.read(65536):
                size += len(chunk)
                if size > limit:
                    raise TooLarge
                chunks.append(chunk)
        return b"".join(chunks)

    def _request(self, request: web.BaseRequest, body: bytes) -> HttpRequest:
        raw_path, _, raw_query = request.raw_path.partition("?")
        peer = request.transport.get_extra_info("peername") if request.transport else None
        version = request.version
        return HttpRequest(request.method, raw_path, raw_query, _headers(request), body,
                           peer[0] if peer else "127.0.0.1", f"HTTP/{version.major}.{version.minor}")

    # --- answering ----------------------------------------------------------------------------------------

    async def _answer(self, req: HttpRequest, route: Route, params: dict[str, str]) -> HttpResponse:
        authorizer: dict[str, Any] | None = None
        if self.config.authorizer is not None:
            verdict_or_answer = await self._authorize(req, route, params)
            if isinstance(verdict_or_answer, HttpResponse):
                return verdict_or_answer
            authorizer = auth.request_context_authorizer(self.fmt, verdict_or_answer)
        event = build_event(self.api, req, route.key, route.resource, params, authorizer)
        payload = json.dumps(event, separators=(",", ":")).encode()
        if len(payload) > SYNC_LIMIT:
            return gateway_error(self.fmt, 413, "Request Entity Too Large")
        try:
            result = await self._invoke(route.function, payload)
        except Rejected:
            return gateway_error(self.fmt, 500, "Internal server error" if self.fmt == "rest" else
                                 "Internal Server Error")
        if result is None:
            return gateway_error(self.fmt, 504, "Endpoint request timed out")
        if not result.ok:
            self.log.warning("http.function_error", function=route.function, request_id=result.request_id,
                             error_type=result.error_type)
            return internal_error(self.fmt)
        try:
            return map_response(self.fmt, result.payload, self.api.binary_media_types, req.header("accept"))
        except MalformedResponse as err:
            self.log.warning("http.malformed_response", function=route.function, request_id=result.request_id,
                             error=str(err))
            return internal_error(self.fmt)

    async def _invoke(self, function: str, payload: bytes) -> InvokeResult | None:
        """Invoke and wait at most ``timeout``; None at the deadline (the invocation finishes on its own)."""
        try:
            invoker = self.ctx.functions.get(function)
        except BridgeError as err:
            self.log.warning("http.invoke_rejected", function=function, error=str(err))
            raise Rejected from err
        task = asyncio.ensure_future(invoker.invoke(Invocation(payload), wait=True))
        try:
            return await asyncio.wait_for(asyncio.shield(task), self.config.timeout)
        except TimeoutError:
            self.background.add(task)
            task.add_done_callback(self.background.discard)
            self.log.warning("http.timeout", function=function, timeout_s=self.config.timeout)
            return None
        except BridgeError as err:
            self.log.warning("http.invoke_rejected", function=function, error=str(err))
            raise Rejected from err

    async def _authorize(self, req: HttpRequest, route: Route, params: dict[str, str]) -> auth.Verdict | HttpResponse:
        """Run (or reuse) the authorizer's verdict; 401 without identity, 403 on deny, 500 when it fails."""
        spec = self.config.authorizer
        assert spec is not None
        ident = auth.identity(req, spec.identity_source)
        if ident is None:
            return gateway_error(self.fmt, 401, "Unauthorized")
        verdict = self.verdicts.get(ident)
        if verdict is None:
            event = auth.authorizer_event(self.api, req, spec.type, route.key, route.resource, params, ident)
            try:
                result = await self._invoke(spec.function, json.dumps(event).encode())
                if result is None or not result.ok:
                    raise ValueError("the authorizer failed")
                verdict = auth.parse_verdict(result.payload, self.fmt != "rest" and spec.simple_responses)
            except (ValueError, RecursionError, Rejected) as err:
                self.log.warning("http.authorizer_failed", function=spec.function, error=str(err))
                return gateway_error(self.fmt, 500, None)
            self.verdicts.put(ident, verdict)
        if verdict.allows(auth.method_arn(self.api, req.method, decode_path(req.raw_path))):
            return verdict
        if self.fmt == "rest":
            return gateway_error(self.fmt, 403, "User is not authorized to access this resource with an explicit deny")
        return gateway_error(self.fmt, 403, "Forbidden")

    # --- sending ------------------------------------------------------------------------------------------

    def _send(self, request: web.BaseRequest, response: HttpResponse, req: HttpRequest | None) -> web.Response:
        headers: CIMultiDict[str] = CIMultiDict(response.headers)
        if req is not None:
            if self.fmt == "http":
                headers["apigw-requestid"] = req.request_id
            else:
                headers["x-amzn-RequestId"] = req.request_id
        for key, value in self._cors_headers(request.headers.get("Origin")):
            headers[key] = value  # as HTTP API: the configured CORS headers override the function's
        return web.Response(status=response.status, headers=headers, body=response.body)

    def _cors_headers(self, origin: str | None) -> list[tuple[str, str]]:
        cors = self.config.cors
        if cors is None or not origin:
            return []
        if "*" in cors.allow_origins and not cors.allow_credentials:
            allowed = "*"
        elif origin in cors.allow_origins or "*" in cors.allow_origins:
            allowed = origin
        else:
            return []
        out = [("Access-Control-Allow-Origin", allowed)]
        if cors.allow_credentials:
            out.append(("Access-Control-Allow-Credentials", "true"))
        if cors.expose_headers:
            out.append(("Access-Control-Expose-Headers", ",".join(cors.expose_headers)))
        return out



def _headers(request: web.BaseRequest) -> tuple[tuple[str, str], ...]:
    """The headers as sent, in order; bytes that are not UTF-8 become U+FFFD."""
    return tuple((k.decode("utf-8", "replace"), v.decode("utf-8", "replace")) for k, v in request.raw_headers)
