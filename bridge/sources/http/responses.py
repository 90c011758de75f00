"""Function results -> HTTP responses, exactly as API Gateway and function URLs map them; its error answers."""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any

from bridge.sources.http.events import media_matches

TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}$")  # an HTTP header name
HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "upgrade", "te",
                        "trailer", "proxy-connection"})


class MalformedResponse(ValueError):
    """The function's result is not a response API Gateway accepts (-> 502)."""


@dataclass
class HttpResponse:
    """Status, headers (in order, repeats allowed) and body bytes."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes


def gateway_error(fmt: str, status: int, message: str | None) -> HttpResponse:
    """An answer API Gateway gives itself: ``{"message": ...}`` as JSON (REST spells its keys its way)."""
    body = json.dumps({"message": message}).encode()
    return HttpResponse(status, [("Content-Type", "application/json")], body)


def internal_error(fmt: str) -> HttpResponse:
    """A function error or a malformed response: 502 with the body API Gateway (or the URL) sends."""
    return gateway_error(fmt, 502, "Internal server error" if fmt == "rest" else "Internal Server Error")


def map_response(fmt: str, payload: bytes, binary_media_types: tuple[str, ...] = (),
                 accept: str | None = None) -> HttpResponse:
    """The HTTP response for a successful invocation's ``payload``; MalformedResponse when AWS would 502."""
    try:
        result = json.loads(payload)
    except (ValueError, RecursionError):
        raise MalformedResponse("the function's result is not JSON") from None
    if fmt != "rest" and not (isinstance(result, dict) and "statusCode" in result):
        return HttpResponse(200, [("Content-Type", "application/json")], payload)  # 2.0's inferred response
    if not isinstance(result, dict):
        raise MalformedResponse("a proxy response must be a JSON object with statusCode")
    return _structured(fmt, result, binary_media_types, accept)


def _structured(fmt: str, result: dict[str, Any], binary_types: tuple[str, ...], accept: str | None) -> HttpResponse:
    status = result.get("statusCode")
    if isinstance(status, str) and status.isdigit():
        status = int(status)
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        raise MalformedResponse(f"statusCode {status!r} is not an HTTP status")
    headers = _headers(result.get("headers"), result.get("multiValueHeaders") if fmt == "rest" else None)
    if fmt != "rest":
        headers += [("Set-Cookie", _value(c)) for c in _list(result.get("cookies"), "cookies")]
    body = _body(result, fmt, headers, binary_types, accept)
    if fmt != "rest" and not any(k.lower() == "content-type" for k, _ in headers):
        headers.append(("Content-Type", "application/json"))
    return HttpResponse(status, headers, body)


def _headers(single: Any, multi: Any) -> list[tuple[str, str]]:
    """``multiValueHeaders`` first; a ``headers`` pair is added unless that name already came from it."""
    out: list[tuple[str, str]] = []
    for name, values in _dict(multi, "multiValueHeaders").items():
        out += [(_name(name), _value(v)) for v in _list(values, f"multiValueHeaders.{name}")]
    taken = {k.lower() for k, _ in out}
    out += [(_name(k), _value(v)) for k, v in _dict(single, "headers").items() if k.lower() not in taken]
    return [(k, v) for k, v in out if k.lower() not in HOP_BY_HOP]


def _dict(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MalformedResponse(f"{what} must be an object")
    return value


def _list(value: Any, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise MalformedResponse(f"{what} must be a list")
    return value


def _name(name: str) -> str:
    if not TOKEN.match(name):
        raise MalformedResponse(f"header name {name[:64]!r} is not a valid HTTP token")
    return name


def _value(value: Any) -> str:
    """A header value: strings, numbers and booleans as API Gateway renders them; no CR/LF (no injection)."""
    if isinstance(value, bool):
        value = "true" if value else "false"
    elif isinstance(value, int | float):
        value = str(value)
    if not isinstance(value, str) or any(c in value for c in "\r\n\0"):
        raise MalformedResponse("a header value must be a string without CR, LF or NUL")
    return value


def _body(result: dict[str, Any], fmt: str, headers: list[tuple[str, str]], binary_types: tuple[str, ...],
          accept: str | None) -> bytes:
    body = result.get("body")
    if body is None:
        return b""
    if not isinstance(body, str):
        if fmt == "rest":
            raise MalformedResponse("body must be a string")
        body = json.dumps(body)
    is_b64 = result.get("isBase64Encoded", False)
    if not isinstance(is_b64, bool):
        raise MalformedResponse("isBase64Encoded must be true or false")
    if is_b64 and (fmt != "rest" or _rest_binary(headers, binary_types, accept)):
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise MalformedResponse("isBase64Encoded is true but body is not base64") from None
    return body.encode("utf-8", "replace")


def _rest_binary(headers: list[tuple[str, str]], binary_types: tuple[str, ...], accept: str | None) -> bool:
    """REST decodes a base64 body only when the Accept header or the response's type is a binary media type."""
    content_type = next((v for k, v in headers if k.lower() == "content-type"), None)
    accepted = (accept or "").split(",")[0].strip() or None
    return media_matches(accepted, binary_types) or media_matches(content_type, binary_types)
