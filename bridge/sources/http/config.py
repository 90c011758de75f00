"""The http source's config model: listen address, API format, routes, CORS, Lambda authorizer."""

from __future__ import annotations

import errno
import os
import socket
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from bridge.config.base import SourceBase, Strict
from bridge.sources.http.routes import DEFAULT, Route, parse_route

FORMATS = ("rest", "http", "url")
HEADER_NAME = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}$"


class RouteConfig(Strict):
    """One route: ``METHOD /path`` (``{name}``, greedy ``{name+}``) or ``$default``, and its function."""

    route: str
    function: str | None = None  # defaults to the source's ``function``

    @field_validator("route")
    @classmethod
    def _route(cls, value: str) -> str:
        parse_route(value, "")
        return value


class CorsConfig(Strict):
    """CORS as an HTTP API configures it; the source answers preflights and adds the headers."""

    allow_origins: list[str] = ["*"]
    allow_methods: list[str] = ["*"]
    allow_headers: list[Annotated[str, Field(pattern=HEADER_NAME)] | Literal["*"]] = []
    expose_headers: list[Annotated[str, Field(pattern=HEADER_NAME)]] = []
    allow_credentials: bool = False
    max_age: Annotated[int, Field(ge=0, le=86400)] | None = None


class AuthorizerConfig(Strict):
    """A Lambda authorizer: REQUEST (both formats) or TOKEN (REST); results cached ``ttl`` s per identity."""

    function: str
    type: Literal["request", "token"] = "request"
    identity_source: Annotated[list[Annotated[str, Field(pattern=HEADER_NAME)]], Field(min_length=1)] = [
        "authorization"]
    ttl: Annotated[int, Field(ge=0, le=3600)] = 300
    simple_responses: bool = True  # HTTP API 2.0: {"isAuthorized": bool}; False -> IAM policy responses


class HttpSourceConfig(SourceBase):
    """Local HTTP requests as API Gateway REST / HTTP API or function-URL events, invoked synchronously."""

    type: Literal["http"]
    function: str = ""  # default for routes without one; a URL source's only function
    listen: str = "127.0.0.1:8080"
    format: Literal["rest", "http", "url"] = "http"
    stage: str | None = None
    binary_media_types: list[str] = []
    cors: CorsConfig | None = None
    authorizer: AuthorizerConfig | None = None
    routes: list[RouteConfig] = []
    timeout: Annotated[float, Field(gt=0, le=900)] = 29.0
    max_body: Annotated[int, Field(ge=1, le=6 * 1024 * 1024)] = 6 * 1024 * 1024
    header_timeout: Annotated[float, Field(gt=0, le=300)] = 10.0  # slow clients (slowloris) are cut off
    stage_variables: dict[str, str] | None = None
    api_id: Annotated[str, Field(pattern=r"^[a-z0-9]{1,32}$")] = "bridgeapi0"

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        from bridge.config.model import parse_listen

        parse_listen(value)
        return value

    @model_validator(mode="before")
    @classmethod
    def _default_function(cls, data: Any) -> Any:
        """Without a source-level ``function``, the first route's function names the source (status, logs)."""
        if isinstance(data, dict) and not data.get("function") and isinstance(data.get("routes"), list):
            first = next((r.get("function") for r in data["routes"] if isinstance(r, dict) and r.get("function")), None)
            if isinstance(first, str):
                return {**data, "function": first}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> HttpSourceConfig:
        if not self.routes and not self.function:
            raise ValueError("give routes (each with a function) or a function for every request")
        for i, r in enumerate(self.routes):
            if not (r.function or self.function):
                raise ValueError(f"routes[{i}] ({r.route!r}) has no function and the source has no default function")
            if r.route == DEFAULT and self.format == "rest":
                raise ValueError("routes: '$default' is an HTTP API route; REST APIs use 'ANY /{proxy+}'")
        if self.format == "url" and any(r.route != DEFAULT for r in self.routes):
            raise ValueError("routes: a function URL has no routes; give only 'function' (or one '$default' route)")
        if self.authorizer and self.format == "url":
            raise ValueError("authorizer: function URLs have no Lambda authorizers (AWS_IAM or NONE only)")
        if self.authorizer and self.authorizer.type == "token" and self.format != "rest":
            raise ValueError("authorizer.type: 'token' authorizers exist only for format: rest; use 'request'")
        return self

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` to listen on."""
        from bridge.config.model import parse_listen

        return parse_listen(self.listen)

    @property
    def stage_name(self) -> str:
        """The stage events carry: REST ``prod``, HTTP API and URLs ``$default`` unless configured."""
        return self.stage or ("prod" if self.format == "rest" else "$default")

    def parsed_routes(self) -> list[Route]:
        """The routes, parsed; a source without routes catches everything with its function."""
        if not self.routes:
            if self.format == "rest":
                return [parse_route("ANY /", self.function), parse_route("ANY /{proxy+}", self.function)]
            return [parse_route(DEFAULT, self.function)]
        return [parse_route(r.route, r.function or self.function) for r in self.routes]

    def function_refs(self) -> list[tuple[str, str]]:
        """(config path, function name) of every function this source invokes, for the unknown-function rule."""
        refs = [("function", self.function)]
        refs += [(f"routes[{i}].function", r.function) for i, r in enumerate(self.routes) if r.function]
        if self.authorizer:
            refs.append(("authorizer.function", self.authorizer.function))
        return refs

    @classmethod
    def check(cls, indexed: list[tuple[int, Any]], queues: dict[str, Any]) -> list[str]:
        """Sources on one listen address form one API: one format, one ``header_timeout`` (it governs the
        connection before a request is routed to a source), and no two routes of the same shape."""
        problems: list[str] = []
        for (host, port), group in _by_address(indexed).items():
            first_i, first = group[0]
            for key, why in LISTENER_KEYS.items():
                problems += [f"sources[{i}].{key}: {getattr(s, key)!r} differs from sources[{first_i}].{key} "
                             f"({getattr(first, key)!r}, source {first.name!r}) on {host}:{port}; {why}"
                             for i, s in group[1:] if getattr(s, key) != getattr(first, key)]
            problems += _overlaps(group)
        return problems


# Settings of the listener, not of one source: sources sharing an address must agree on them.
LISTENER_KEYS = {
    "format": "sources sharing a listen address are one API of one format",
    "header_timeout": "it is the connection's deadline, before a request reaches a source: give the sources on "
                      "one address the same value (or different addresses)",
}


def _by_address(indexed: list[tuple[int, Any]]) -> dict[tuple[str, int], list[tuple[int, Any]]]:
    groups: dict[tuple[str, int], list[tuple[int, Any]]] = {}
    for i, source in indexed:
        groups.setdefault(source.address, []).append((i, source))
    return groups


LISTEN_HINTS = {
    errno.EADDRINUSE: "another program listens there (`ss -ltnp 'sport = :{port}'` names it): stop it, or give "
                      "this source another port",
    errno.EADDRNOTAVAIL: "it is not an address of this machine: give one of its addresses (127.0.0.1 for local use)",
    errno.EACCES: "ports below 1024 need privileges: give a port from 1024 up",
}


def listen_problem(index: int | None, source: Any, err: OSError) -> str:
    """The one line a user reads when a source's address cannot be listened on, naming its config path."""
    where = f"sources[{index}]" if index is not None else f"sources.{source.name}"
    reason = os.strerror(err.errno) if err.errno and err.errno > 0 else (err.strerror or str(err))
    hint = LISTEN_HINTS.get(err.errno or 0, "give this source another address").format(port=source.address[1])
    return f"{where}.listen: cannot listen on {source.listen} (source {source.name!r}): {reason.lower()}; {hint}"


def listen_problems(sources: list[Any], held: set[tuple[str, int]]) -> list[str]:
    """For ``check``: the http sources' addresses that cannot be bound now, except ``held`` ones (those the
    running daemon of this state_dir listens on: a reload keeps its listeners)."""
    indexed = [(i, s) for i, s in enumerate(sources) if isinstance(s, HttpSourceConfig)]
    problems = []
    for address, group in _by_address(indexed).items():
        if address not in held:
            i, first = group[0]
            problems += [listen_problem(i, first, err) for err in _bind_errors(*address)]
    return problems


def _bind_errors(host: str, port: int) -> list[OSError]:
    """Bind (not listen) every address ``host`` resolves to, as the listener binds them: the first error."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as err:
        return [err]
    for family, kind, proto, _, address in infos:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)  # as asyncio's create_server
            try:
                probe.bind(address)
            except OSError as err:
                return [err]
    return []


def _overlaps(group: list[tuple[int, Any]]) -> list[str]:
    """Two routes of one shape (``GET /a/{x}`` and ``GET /a/{y}``) on one address: API Gateway rejects them."""
    problems, seen = [], {}
    for i, source in group:
        for n, route in enumerate(source.parsed_routes()):
            where = f"sources[{i}].routes[{n}]" if source.routes else f"sources[{i}].function"
            other = seen.setdefault(route.shape, (where, route.key))
            if other[0] != where:
                problems.append(f"{where}: route {route.key!r} overlaps {other[0]} ({other[1]!r}); "
                                "each method and path shape may have one route per listen address")
    return problems


MODEL = HttpSourceConfig
