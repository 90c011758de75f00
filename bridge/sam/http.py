"""Api / HttpApi events and FunctionUrlConfig -> routes of an ``http`` source (one per API, docs/http.md)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bridge.sam.draft import Draft, Entry
from bridge.sam.intrinsics import find_unresolved
from bridge.sam.template import Path_

IMPLICIT_API = {"Api": "ServerlessRestApi", "HttpApi": "ServerlessHttpApi"}
FIRST_PORT = 3000  # `sam local start-api`'s port; each API gets the next one


def map_api_event(draft: Draft, path: Path_, props: dict[str, Any]) -> Entry | None:
    """Add the event's route to its API's http source (created on first use); returns None (no own source)."""
    kind = str(draft.template.data["Resources"][path[1]]["Properties"]["Events"][path[-1]]["Type"])
    api_id = _api_id(draft, kind, props)
    source = _api_source(draft, kind, api_id)
    route = api_route(kind, props)
    authorizer = (props.get("Auth") or {}).get("Authorizer")
    if authorizer and authorizer != _default_authorizer(draft, api_id):
        draft.report((*path, "Properties", "Auth"), f"a per-route authorizer ({authorizer}) has no place in the http "
                     "source's config; the route uses the API's default", "split the route into an API of its own")
    source.value["routes"].append({"route": route, "function": path[1]})
    source.comments.append(f"route {route!r} {draft.origin(path)}")
    return None


def _api_id(draft: Draft, kind: str, props: dict[str, Any]) -> str:
    reference = props.get("RestApiId" if kind == "Api" else "ApiId")
    return draft.resolver.origin(reference) or (reference if isinstance(reference, str) else IMPLICIT_API[kind])


def _default_authorizer(draft: Draft, api_id: str) -> Any:
    props = (draft.template.resources.get(api_id) or {}).get("Properties") or {}
    return (props.get("Auth") or {}).get("DefaultAuthorizer") if isinstance(props.get("Auth"), dict) else None


def map_function_url(draft: Draft, logical_id: str, config: dict[str, Any]) -> None:
    """FunctionUrlConfig -> an http source of format ``url`` with one catch-all route to the function."""
    path = ("Resources", logical_id, "Properties", "FunctionUrlConfig")
    port = FIRST_PORT + sum(1 for e in draft.sources if e.value.get("type") == "http")
    value: dict[str, Any] = {"name": f"{logical_id}-url", "type": "http",
                             "listen": draft.maps.apis.get(logical_id, f"127.0.0.1:{port}"), "format": "url"}
    cors = _cors(config.get("Cors"))
    if cors:
        value["cors"] = cors
    value["routes"] = [{"route": "$default", "function": logical_id}]
    draft.sources.append(Entry(value, [f"{draft.origin(path)}: function URL (AuthType "
                                       f"{config.get('AuthType', 'NONE')}: the bridge does not sign requests)"]))


def api_route(kind: str, props: dict[str, Any]) -> str:
    """``GET /items/{id}``; ``ANY`` for SAM's ``any``; an HttpApi event without a path is ``$default``."""
    if kind == "HttpApi" and not props.get("Path"):
        return "$default"
    method = str(props.get("Method", "any")).upper()
    return f"{method} {props.get('Path', '/')}"


def _api_source(draft: Draft, kind: str, api_id: str) -> Entry:
    name = f"{api_id}-http"
    for entry in draft.sources:
        if entry.value.get("name") == name:
            return entry
    resource = draft.template.resources.get(api_id) or {}
    props = draft.resolver.resolve(resource.get("Properties") or {}, ("Resources", api_id, "Properties"))
    port = FIRST_PORT + sum(1 for e in draft.sources if e.value.get("type") == "http")
    listen = draft.maps.apis.get(api_id, f"127.0.0.1:{port}")
    value = api_source_config(kind, props, name, listen, draft.resolver.origin)
    missing = find_unresolved(value)
    if missing is not None:
        draft.report(("Resources", api_id), f"the API's {missing.reason} has no local value",
                     f"edit the {name} source in the config")
    origin = draft.origin(("Resources", api_id)) if resource else f"the API SAM creates implicitly ({api_id})"
    entry = Entry(value, [f"{origin}: {kind}"])
    draft.sources.append(entry)
    return entry


def api_source_config(kind: str, props: dict[str, Any], name: str, listen: str,
                      origin: Callable[[Any], str | None] = lambda _: None) -> dict[str, Any]:
    """The http source for an AWS::Serverless::Api / HttpApi resource's properties (issue 16's shape).

    ``origin`` maps the authorizer's FunctionArn back to the function's logical id (its config name).
    """
    rest = kind == "Api"
    value: dict[str, Any] = {"name": name, "type": "http", "listen": listen, "format": "rest" if rest else "http",
                             "stage": str(props.get("StageName") or ("prod" if rest else "$default"))}
    cors = _cors(props.get("Cors") if rest else props.get("CorsConfiguration"))
    if cors:
        value["cors"] = cors
    authorizer = _authorizer(props.get("Auth") or {}, rest, origin)
    if authorizer:
        value["authorizer"] = authorizer
    if rest and props.get("BinaryMediaTypes"):
        value["binary_media_types"] = [str(t).replace("~1", "/") for t in props["BinaryMediaTypes"]]
    value["routes"] = []
    return value


def _cors(cors: Any) -> dict[str, Any] | None:
    if not cors:
        return None
    if isinstance(cors, str):  # REST: Cors: "'*'" (a quoted header value)
        return {"allow_origins": [cors.strip("'")]}
    if cors is True:
        return {"allow_origins": ["*"]}
    out: dict[str, Any] = {}
    for keys, target in ((("AllowOrigin", "AllowOrigins"), "allow_origins"),
                         (("AllowMethods",), "allow_methods"), (("AllowHeaders",), "allow_headers")):
        raw = next((cors[k] for k in keys if k in cors), None)
        if raw is not None:
            out[target] = _list(raw)
    if cors.get("MaxAge") is not None:
        out["max_age"] = int(str(cors["MaxAge"]).strip("'"))
    return out


def _list(raw: Any) -> list[str]:
    items = raw if isinstance(raw, list) else str(raw).strip("'").split(",")
    return [str(i).strip().strip("'") for i in items]


def _authorizer(auth: dict[str, Any], rest: bool, origin: Callable[[Any], str | None]) -> dict[str, Any] | None:
    name = auth.get("DefaultAuthorizer")
    spec = (auth.get("Authorizers") or {}).get(name) if name else None
    if not isinstance(spec, dict) or "FunctionArn" not in spec:
        return None
    function = origin(spec["FunctionArn"]) or str(spec["FunctionArn"]).rsplit(":", 1)[-1]
    identity = spec.get("Identity") or {}
    headers = [h.lower() for h in identity.get("Headers") or ([identity["Header"]] if "Header" in identity else [])]
    token = rest and str(spec.get("FunctionPayloadType", "TOKEN")).upper() == "TOKEN"
    out: dict[str, Any] = {"function": function, "type": "token" if token else "request",
                           "identity_source": headers or ["authorization"]}
    ttl = identity.get("ReauthorizeEvery", spec.get("AuthorizerResultTtlInSeconds"))
    if ttl is not None:
        out["ttl"] = int(ttl)
    return out
