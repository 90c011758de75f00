"""Pure builders of the events API Gateway and function URLs send: REST (payload 1.0), HTTP API (2.0), URL.

No I/O and no aiohttp here: ``build_event(api, request, route_key, resource, params)`` takes plain values,
so ``generate-event`` and the tests build the same events the running source sends.
"""

from __future__ import annotations

import base64
import fnmatch
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote

TEXT_TYPES = ("text/*", "application/json", "application/*+json", "application/javascript", "application/xml",
              "application/*+xml", "application/yaml", "application/x-yaml")
Headers = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Api:
    """What an API (or function URL) is: its format and the identifiers its events carry."""

    format: str = "http"  # rest | http | url
    api_id: str = "bridgeapi0"
    stage: str = "$default"
    region: str = "us-east-1"
    account_id: str = "000000000000"
    binary_media_types: tuple[str, ...] = ()
    stage_variables: dict[str, str] | None = None

    @property
    def domain(self) -> str:
        """The AWS domain of the API: ``<id>.execute-api.<region>.amazonaws.com`` or the function-URL shape."""
        if self.format == "url":
            return f"{self.api_id}.lambda-url.{self.region}.on.aws"
        return f"{self.api_id}.execute-api.{self.region}.amazonaws.com"


@dataclass(frozen=True)
class HttpRequest:
    """One HTTP request as received: every string here may be hostile and is cleaned before use."""

    method: str
    raw_path: str  # percent-encoded, as sent, without the query
    raw_query: str = ""
    headers: Headers = ()  # in order, names as sent
    body: bytes = b""
    source_ip: str = "127.0.0.1"
    protocol: str = "HTTP/1.1"
    epoch: float = field(default_factory=time.time)
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def header(self, name: str) -> str | None:
        """The last value of header ``name`` (case-insensitive), or None."""
        name = name.lower()
        found = [v for k, v in self.headers if k.lower() == name]
        return clean(found[-1]) if found else None


def clean(text: str) -> str:
    """Valid Unicode for JSON: undecodable bytes (surrogate escapes) become U+FFFD."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def decode_path(raw_path: str) -> str:
    """The percent-decoded path (invalid UTF-8 -> U+FFFD), as API Gateway routes on and reports it."""
    return clean(unquote(raw_path, errors="replace")) or "/"


def media_matches(content_type: str | None, patterns: tuple[str, ...]) -> bool:
    """True when the media type (parameters ignored) matches one of ``patterns`` (``image/*``, ``*/*``)."""
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return any(fnmatch.fnmatchcase(media, p.lower()) for p in patterns)


def api_time(epoch: float) -> str:
    """API Gateway's ``dd/MMM/yyyy:HH:mm:ss +0000`` request time."""
    return time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(epoch))


def _body(api: Api, request: HttpRequest) -> tuple[str | None, bool]:
    """(body, isBase64Encoded): REST base64-encodes binary media types; 2.0 everything that is not text."""
    if not request.body:
        return None, False
    content_type = request.header("content-type")
    if api.format == "rest":
        if media_matches(content_type, api.binary_media_types):
            return base64.b64encode(request.body).decode(), True
        return request.body.decode("utf-8", "replace"), False
    if media_matches(content_type, TEXT_TYPES):
        try:
            return request.body.decode("utf-8"), False
        except UnicodeDecodeError:
            pass
    return base64.b64encode(request.body).decode(), True


def _query(raw_query: str) -> list[tuple[str, str]]:
    return [(clean(k), clean(v)) for k, v in parse_qsl(clean(raw_query), keep_blank_values=True, errors="replace")]


def _source_ip(request: HttpRequest) -> str:
    return clean(request.source_ip) or "127.0.0.1"


def _forwarded(request: HttpRequest, headers: list[tuple[str, str]], lower: bool = False) -> list[tuple[str, str]]:
    """The X-Forwarded-* and trace headers API Gateway adds to the caller's: capitalised in REST's events
    (AWS's example event), lower-cased with every other name in payload 2.0 (``lower``)."""
    names = {k.lower() for k, _ in headers}
    added = [("X-Forwarded-For", _source_ip(request)), ("X-Forwarded-Proto", "https"), ("X-Forwarded-Port", "443"),
             ("X-Amzn-Trace-Id", f"Root=1-{int(request.epoch):08x}-{secrets.token_hex(12)}")]
    return headers + [(k.lower() if lower else k, v) for k, v in added if k.lower() not in names]


def rest_event(api: Api, request: HttpRequest, resource: str, params: dict[str, str],
               authorizer: dict[str, Any] | None = None) -> dict[str, Any]:
    """The REST API (payload 1.0) proxy event."""
    headers = _forwarded(request, [(clean(k), clean(v)) for k, v in request.headers])
    query = _query(request.raw_query)
    path = decode_path(request.raw_path)
    body, is_b64 = _body(api, request)
    return {
        "resource": resource,
        "path": path,
        "httpMethod": request.method,
        "headers": {k: v for k, v in headers} or None,
        "multiValueHeaders": _multi(headers) or None,
        "queryStringParameters": {k: v for k, v in query} or None,
        "multiValueQueryStringParameters": _multi(query) or None,
        "pathParameters": params or None,
        "stageVariables": api.stage_variables or None,
        "requestContext": _rest_context(api, request, resource, path, authorizer),
        "body": body,
        "isBase64Encoded": is_b64,
    }


def _multi(pairs: list[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for k, v in pairs:
        out.setdefault(k, []).append(v)
    return out


def _rest_context(api: Api, request: HttpRequest, resource: str, path: str,
                  authorizer: dict[str, Any] | None) -> dict[str, Any]:
    context: dict[str, Any] = {
        "accountId": api.account_id, "apiId": api.api_id, "resourceId": _resource_id(resource),
        "resourcePath": resource, "stage": api.stage, "requestId": request.request_id,
        "extendedRequestId": _short_id(request.request_id), "requestTime": api_time(request.epoch),
        "requestTimeEpoch": int(request.epoch * 1000), "httpMethod": request.method,
        "path": f"/{api.stage}{path}", "protocol": clean(request.protocol),
        "domainName": clean(request.header("host") or api.domain), "domainPrefix": api.api_id,
        "identity": {"sourceIp": _source_ip(request), "userAgent": request.header("user-agent"),
                     **dict.fromkeys(("accessKey", "accountId", "apiKey", "apiKeyId", "caller",
                                      "cognitoAuthenticationProvider", "cognitoAuthenticationType",
                                      "cognitoIdentityId", "cognitoIdentityPoolId", "principalOrgId",
                                      "user", "userArn"))},
    }
    if authorizer is not None:
        context["authorizer"] = authorizer
    return context


def _resource_id(resource: str) -> str:
    return uuid.uuid5(uuid.NAMESPACE_URL, resource).hex[:6]


def _short_id(request_id: str) -> str:
    """A 16-character id in the style of API Gateway's extended request ids (``JKJaXmPLvHcESHA=``)."""
    return base64.b64encode(uuid.UUID(request_id).bytes[:11]).decode() if _is_uuid(request_id) else request_id


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def v2_event(api: Api, request: HttpRequest, route_key: str, params: dict[str, str],
             authorizer: dict[str, Any] | None = None) -> dict[str, Any]:
    """The HTTP API (payload 2.0) or function-URL event."""
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for k, v in _forwarded(request, [(clean(k).lower(), clean(v)) for k, v in request.headers], lower=True):
        if k == "cookie":
            cookies += [c.strip() for c in v.split(";") if c.strip()]
        else:
            headers[k] = f"{headers[k]},{v}" if k in headers else v
    query: dict[str, str] = {}
    for k, v in _query(request.raw_query):
        query[k] = f"{query[k]},{v}" if k in query else v
    body, is_b64 = _body(api, request)
    event: dict[str, Any] = {
        "version": "2.0", "routeKey": route_key, "rawPath": clean(request.raw_path) or "/",
        "rawQueryString": clean(request.raw_query), "headers": headers,
        "requestContext": _v2_context(api, request, route_key, authorizer),
        "isBase64Encoded": is_b64,
    }
    if cookies:
        event["cookies"] = cookies
    if query:
        event["queryStringParameters"] = query
    if params and api.format == "http":
        event["pathParameters"] = params
    if api.stage_variables and api.format == "http":
        event["stageVariables"] = api.stage_variables
    if body is not None:
        event["body"] = body
    return event


def _v2_context(api: Api, request: HttpRequest, route_key: str, authorizer: dict[str, Any] | None) -> dict[str, Any]:
    url = api.format == "url"
    context: dict[str, Any] = {
        "accountId": "anonymous" if url else api.account_id, "apiId": api.api_id,
        "domainName": api.domain if url else clean(request.header("host") or api.domain),
        "domainPrefix": api.api_id,
        "http": {"method": request.method, "path": decode_path(request.raw_path), "protocol": clean(request.protocol),
                 "sourceIp": _source_ip(request), "userAgent": request.header("user-agent") or ""},
        "requestId": request.request_id if url else _short_id(request.request_id),
        "routeKey": route_key, "stage": api.stage,
        "time": api_time(request.epoch), "timeEpoch": int(request.epoch * 1000),
    }
    if authorizer is not None:
        context["authorizer"] = authorizer
    return context


def build_event(api: Api, request: HttpRequest, route_key: str = "$default", resource: str = "/{proxy+}",
                params: dict[str, str] | None = None, authorizer: dict[str, Any] | None = None) -> dict[str, Any]:
    """The event ``api`` sends for ``request`` matched to ``route_key`` (2.0) / ``resource`` (1.0)."""
    params = {clean(k): clean(v) for k, v in (params or {}).items()}
    if api.format == "rest":
        return rest_event(api, request, resource, params or {}, authorizer)
    return v2_event(api, request, "$default" if api.format == "url" else route_key, params or {}, authorizer)


def sample_event(fmt: str = "http", method: str = "GET", path: str = "/items/1", query: str = "",
                 body: bytes = b"", headers: Headers = ()) -> dict[str, Any]:
    """A ready event of format ``fmt`` for a request (for ``generate-event`` and examples); catch-all route."""
    api = Api(format=fmt, stage="prod" if fmt == "rest" else "$default")
    request = HttpRequest(method, path, query, (("Host", api.domain), ("User-Agent", "lambda-bridge"), *headers),
                          body)
    proxy = path.lstrip("/")
    return build_event(api, request, "$default", "/{proxy+}", {"proxy": decode_path(path)[1:]} if proxy else {})
