"""Lambda authorizers: the event the authorizer gets, its answer (IAM policy or simple) as a decision, the cache."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Any

from bridge.sources.http.events import Api, HttpRequest, build_event, clean, decode_path


@dataclass(frozen=True)
class Verdict:
    """What an authorizer said: its policy (or simple yes/no), principal and context; evaluated per request."""

    allow_all: bool | None  # the simple (2.0) answer, or None when a policy decides
    statements: tuple[dict[str, Any], ...]
    principal: str | None
    context: dict[str, Any]

    def allows(self, method_arn: str) -> bool:
        """API Gateway's rule: an explicit Deny wins, then an Allow, else deny."""
        if self.allow_all is not None:
            return self.allow_all
        effects = [s.get("Effect") for s in self.statements if _covers(s, method_arn)]
        return "Deny" not in effects and "Allow" in effects


def _covers(statement: dict[str, Any], arn: str) -> bool:
    resources = statement.get("Resource", [])
    resources = [resources] if isinstance(resources, str) else resources
    return isinstance(resources, list) and any(isinstance(r, str) and _glob(r).fullmatch(arn) for r in resources)


def _glob(pattern: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part).replace(r"\?", ".") for part in pattern.split("*")))


def parse_verdict(payload: bytes, simple: bool) -> Verdict:
    """The authorizer's result; ValueError when it is not a valid answer (API Gateway then answers 500)."""
    result = json.loads(payload)
    if not isinstance(result, dict):
        raise ValueError("an authorizer must return a JSON object")
    context = result.get("context") or {}
    if not isinstance(context, dict):
        raise ValueError("the authorizer's context must be an object")
    if simple and "isAuthorized" in result:
        if not isinstance(result["isAuthorized"], bool):
            raise ValueError("isAuthorized must be true or false")
        return Verdict(result["isAuthorized"], (), None, context)
    policy = result.get("policyDocument")
    statements = policy.get("Statement") if isinstance(policy, dict) else None
    if not isinstance(statements, list) or not all(isinstance(s, dict) for s in statements):
        raise ValueError("an IAM policy response needs policyDocument.Statement as a list")
    principal = result.get("principalId")
    return Verdict(None, tuple(statements), principal if isinstance(principal, str) else None, context)


def method_arn(api: Api, method: str, path: str) -> str:
    """``arn:aws:execute-api:REGION:ACCOUNT:API/STAGE/METHOD/PATH`` for the request's decoded path."""
    return f"arn:aws:execute-api:{api.region}:{api.account_id}:{api.api_id}/{api.stage}/{method}{path}"


def identity(request: HttpRequest, sources: list[str]) -> tuple[str, ...] | None:
    """The identity-source header values, or None when one is missing (API Gateway answers 401 at once)."""
    values = tuple(request.header(name) or "" for name in sources)
    return None if any(not v for v in values) else values


def authorizer_event(api: Api, request: HttpRequest, kind: str, route_key: str, resource: str,
                     params: dict[str, str], ident: tuple[str, ...]) -> dict[str, Any]:
    """The event a REQUEST (1.0 or 2.0) or TOKEN (REST) authorizer receives."""
    arn = method_arn(api, request.method, decode_path(request.raw_path))
    if kind == "token":
        return {"type": "TOKEN", "authorizationToken": clean(ident[0]), "methodArn": arn}
    event = build_event(api, request, route_key, resource, params)
    event.pop("body", None)
    event.pop("isBase64Encoded", None)
    if api.format == "rest":
        return {"type": "REQUEST", "methodArn": arn, **event}
    return {**event, "type": "REQUEST", "routeArn": arn, "identitySource": list(ident)}


def request_context_authorizer(fmt: str, verdict: Verdict) -> dict[str, Any]:
    """What reaches ``requestContext.authorizer``: 1.0 flattens the context; 2.0 nests it under ``lambda``."""
    if fmt == "rest":
        return {**verdict.context, "principalId": verdict.principal, "integrationLatency": 0}
    return {"lambda": verdict.context}


class VerdictCache:
    """Authorizer answers per identity for ``ttl`` seconds (0: no caching), as API Gateway caches them."""

    def __init__(self, ttl: float, limit: int = 10_000) -> None:
        self.ttl, self.limit = ttl, limit
        self._entries: dict[tuple[str, ...], tuple[float, Verdict]] = {}

    def get(self, key: tuple[str, ...]) -> Verdict | None:
        """The cached verdict for ``key`` if still fresh."""
        entry = self._entries.get(key)
        if entry is None or entry[0] < time.monotonic():
            self._entries.pop(key, None)
            return None
        return entry[1]

    def put(self, key: tuple[str, ...], verdict: Verdict) -> None:
        """Remember ``verdict``; the oldest entry goes when full (hostile identities cannot grow it unbounded)."""
        if self.ttl <= 0:
            return
        if len(self._entries) >= self.limit:
            self._entries.pop(next(iter(self._entries)))
        self._entries[key] = (time.monotonic() + self.ttl, verdict)
