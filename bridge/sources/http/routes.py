"""API Gateway route keys: parsing (``GET /items/{id}``, ``ANY /{proxy+}``, ``$default``) and matching."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "ANY")
DEFAULT = "$default"
LITERAL = re.compile(r"^[A-Za-z0-9._~:@!$&'()*,;=+-]+$")  # RFC 3986 pchar minus '%' and '/'
VARIABLE = re.compile(r"^\{([A-Za-z0-9._-]{1,128})(\+?)\}$")
# per-segment specificity ranks: a literal beats a variable, which beats a greedy variable
RANK_LITERAL, RANK_VARIABLE, RANK_GREEDY = 0, 1, 2


@dataclass(frozen=True)
class Segment:
    """One path segment of a route: a literal, or a ``{name}`` / greedy ``{name+}`` variable."""

    text: str
    variable: str | None = None
    greedy: bool = False

    @property
    def rank(self) -> int:
        """How specific the segment is (lower wins)."""
        return RANK_GREEDY if self.greedy else RANK_VARIABLE if self.variable else RANK_LITERAL


@dataclass(frozen=True)
class Route:
    """A parsed route key with the function it invokes."""

    key: str  # as configured, e.g. "GET /items/{id}" (also the 2.0 event's routeKey)
    method: str  # one of METHODS, or "" for $default
    segments: tuple[Segment, ...]
    function: str

    @property
    def is_default(self) -> bool:
        """True for the ``$default`` catch-all."""
        return self.key == DEFAULT

    @property
    def resource(self) -> str:
        """The REST resource path (``/items/{id}``), as in the 1.0 event's ``resource``."""
        return "/" + "/".join(s.text for s in self.segments)

    @property
    def shape(self) -> tuple[str, tuple[str, ...]]:
        """Method and path with variable names erased: two routes of the same shape conflict."""
        return self.method, tuple("{+}" if s.greedy else "{}" if s.variable else s.text for s in self.segments)

    def specificity(self) -> tuple[Any, ...]:
        """Sort key, most specific first: literal segments, then variables, then greedy; a method before ANY."""
        if self.is_default:
            return ((RANK_GREEDY + 1,), 1)
        return ((*(s.rank for s in self.segments), -1), self.method == "ANY")

    def match(self, method: str, parts: list[str]) -> dict[str, str] | None:
        """Path parameters when ``method`` and the decoded path ``parts`` match this route, else None."""
        if self.is_default:
            return {}
        if self.method not in ("ANY", method):
            return None
        params: dict[str, str] = {}
        for i, segment in enumerate(self.segments):
            if segment.greedy:
                rest = parts[i:]
                if not rest or not rest[0]:
                    return None
                params[segment.variable or ""] = "/".join(rest)
                return params
            if i >= len(parts) or not parts[i]:
                return None
            if segment.variable:
                params[segment.variable] = parts[i]
            elif segment.text != parts[i]:
                return None
        return params if len(parts) == len(self.segments) else None


def parse_route(key: str, function: str) -> Route:
    """Parse ``METHOD /path`` or ``$default``; ValueError names what is wrong and the valid form."""
    if key == DEFAULT:
        return Route(key, "", (), function)
    method, _, path = key.partition(" ")
    if method not in METHODS:
        raise ValueError(f"route {key!r}: method {method!r} is not one of {', '.join(METHODS)} "
                         "(write 'METHOD /path' or '$default')")
    if not path.startswith("/") or "//" in path or " " in path:
        raise ValueError(f"route {key!r}: the path must start with '/' and have no empty segments (e.g. 'GET /items')")
    texts = [t for t in path[1:].split("/")] if path != "/" else []
    if texts and texts[-1] == "":
        raise ValueError(f"route {key!r}: drop the trailing '/'")
    segments = tuple(_segment(key, t, last=i == len(texts) - 1) for i, t in enumerate(texts))
    names = [s.variable for s in segments if s.variable]
    if len(names) != len(set(names)):
        raise ValueError(f"route {key!r}: a path variable name is used twice")
    return Route(f"{method} {path}", method, segments, function)


def _segment(key: str, text: str, *, last: bool) -> Segment:
    variable = VARIABLE.match(text)
    if variable:
        if variable.group(2) and not last:
            raise ValueError(f"route {key!r}: a greedy variable {{{variable.group(1)}+}} must be the last segment")
        return Segment(text, variable.group(1), bool(variable.group(2)))
    if not LITERAL.match(text) or "{" in text or "}" in text:
        raise ValueError(f"route {key!r}: segment {text!r} must be a literal (letters, digits, ._~-) "
                         "or a {name} / {name+} variable")
    return Segment(text)


def split_path(path: str) -> list[str]:
    """A decoded request path as segments (``/a/b`` -> ["a", "b"], ``/`` -> [])."""
    return path[1:].split("/") if path not in ("", "/") else []


class Router:
    """The routes of one listener, most specific first; immutable, so a reload swaps in a new one whole."""

    def __init__(self, routes: list[tuple[Route, Any]]) -> None:
        self.routes = sorted(routes, key=lambda item: item[0].specificity())

    def match(self, method: str, path: str) -> tuple[Route, Any, dict[str, str]] | None:
        """The most specific route for ``method`` and decoded ``path``, its owner and its path parameters."""
        parts = split_path(path)
        for route, owner in self.routes:
            params = route.match(method, parts)
            if params is not None:
                return route, owner, params
        return None
