"""The http source's pure parts: routes, config rules, events (Powertools models as the oracle), responses."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import yaml
from aws_lambda_powertools.utilities.parser.models import (
    APIGatewayProxyEventModel,
    APIGatewayProxyEventV2Model,
    LambdaFunctionUrlModel,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.config.model import parse_config
from bridge.errors import ConfigError
from bridge.sources.http import auth
from bridge.sources.http.config import HttpSourceConfig
from bridge.sources.http.events import Api, HttpRequest, build_event, sample_event
from bridge.sources.http.responses import MalformedResponse, map_response
from bridge.sources.http.routes import Router, parse_route

MODELS = {"rest": APIGatewayProxyEventModel, "http": APIGatewayProxyEventV2Model, "url": LambdaFunctionUrlModel}


# --- routes ------------------------------------------------------------------------------------------------

def test_most_specific_route_wins() -> None:
    routes = [parse_route(k, k) for k in ("ANY /{proxy+}", "GET /items/{id}", "GET /items/special",
                                          "ANY /items/{id}", "$default", "GET /items/{id}/{rest+}")]
    router = Router([(r, r.function) for r in routes])

    def pick(method: str, path: str) -> tuple[str, dict[str, str]]:
        route, _, params = router.match(method, path)
        return route.key, params

    assert pick("GET", "/items/special") == ("GET /items/special", {})
    assert pick("GET", "/items/7") == ("GET /items/{id}", {"id": "7"})
    assert pick("POST", "/items/7") == ("ANY /items/{id}", {"id": "7"})
    assert pick("GET", "/items/7/a/b") == ("GET /items/{id}/{rest+}", {"id": "7", "rest": "a/b"})
    assert pick("DELETE", "/x/y") == ("ANY /{proxy+}", {"proxy": "x/y"})
    assert pick("GET", "/") == ("$default", {})


@pytest.mark.parametrize("key", ["FETCH /x", "GET x", "GET /a//b", "GET /{p+}/x", "GET /a/", "GET /{a}/{a}",
                                 "GET /a b", "GET /{bad name}", "GET /a%2f"])
def test_bad_route_syntax_is_rejected(key: str) -> None:
    with pytest.raises(ValueError, match="route"):
        parse_route(key, "f")


# --- config rules ------------------------------------------------------------------------------------------

@pytest.fixture
def base(tmp_path: Path) -> Path:
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "app.py").write_text("def handler(e, c):\n    return e\n")
    return tmp_path


def _config(base: Path, *sources: dict) -> str:
    fn = {"handler": "app.handler", "code": str(base / "code")}
    return yaml.safe_dump({"functions": {"app": fn, "other": fn}, "sources": list(sources)})


def _problems(base: Path, *sources: dict) -> str:
    with pytest.raises(ConfigError) as err:
        parse_config(_config(base, *sources), base_dir=base)
    return err.value.render()


def test_valid_config_and_defaults(base: Path) -> None:
    assert HttpSourceConfig.model_fields["listen"].default == "127.0.0.1:8080"
    config = parse_config(_config(base, {"name": "api", "type": "http", "listen": "127.0.0.1:9199", "routes": [
        {"route": "GET /items/{id}", "function": "app"}, {"route": "$default", "function": "other"}]}), base_dir=base)
    source = config.sources[0]
    assert (source.function, source.stage_name, source.address) == ("app", "$default", ("127.0.0.1", 9199))


def test_unknown_function_names_its_path(base: Path) -> None:
    text = _problems(base, {"name": "api", "type": "http", "listen": "127.0.0.1:9198", "routes": [
        {"route": "GET /a", "function": "app"}, {"route": "GET /b", "function": "nope"}],
        "authorizer": {"function": "missing"}})
    assert "sources[0].routes[1].function: 'nope' is not a configured function" in text
    assert "sources[0].authorizer.function: 'missing'" in text


def test_overlapping_routes_across_sources_on_one_address(base: Path) -> None:
    text = _problems(base, {"name": "a", "type": "http", "listen": "127.0.0.1:9100", "function": "app",
                            "routes": [{"route": "GET /items/{id}"}]},
                     {"name": "b", "type": "http", "listen": "127.0.0.1:9100", "function": "app",
                      "routes": [{"route": "GET /items/{key}"}]})
    assert "sources[1].routes[0]: route 'GET /items/{key}' overlaps sources[0].routes[0]" in text
    # the same routes on another address are another API: fine
    parse_config(_config(base, {"name": "a", "type": "http", "listen": "127.0.0.1:9100", "function": "app"},
                         {"name": "b", "type": "http", "listen": "127.0.0.1:9101", "function": "app"}), base_dir=base)


def test_bad_route_and_listen_and_format_rules(base: Path) -> None:
    text = _problems(base, {"name": "a", "type": "http", "function": "app", "listen": "127.0.0.1:9197",
                            "routes": [{"route": "GET /{p+}/x"}]})
    assert "sources.0" in text or "sources[0]" in text
    assert "greedy variable" in text
    assert "not HOST:PORT" in _problems(base, {"name": "a", "type": "http", "function": "app", "listen": "x:99999"})
    assert "'$default' is an HTTP API route" in _problems(base, {"name": "a", "type": "http", "format": "rest",
                                                                 "listen": "127.0.0.1:9197",
                                                                 "routes": [{"route": "$default", "function": "app"}]})
    assert "function URLs have no Lambda authorizers" in _problems(
        base, {"name": "a", "type": "http", "format": "url", "function": "app", "listen": "127.0.0.1:9197",
               "authorizer": {"function": "app"}})
    assert "function URL has no routes" in _problems(base, {"name": "a", "type": "http", "format": "url",
                                                            "listen": "127.0.0.1:9197",
                                                            "routes": [{"route": "GET /x", "function": "app"}]})


def test_listener_settings_must_agree_on_one_address(base: Path) -> None:
    """header_timeout is the connection's deadline before a request reaches a source: one per address."""
    a = {"name": "a", "type": "http", "listen": "127.0.0.1:9100", "function": "app", "routes": [{"route": "GET /a"}]}
    b = {"name": "b", "type": "http", "listen": "127.0.0.1:9100", "function": "app", "routes": [{"route": "GET /b"}],
         "header_timeout": 30}
    text = _problems(base, a, b)
    assert ("sources[1].header_timeout: 30.0 differs from sources[0].header_timeout (10.0, source 'a') on "
            "127.0.0.1:9100") in text
    assert "give the sources on one address the same value (or different addresses)" in text
    # per source: each request gets its own source's max_body and timeout
    parse_config(_config(base, a, {**b, "header_timeout": 10, "max_body": 100, "timeout": 3}), base_dir=base)
    parse_config(_config(base, a, {**b, "listen": "127.0.0.1:9101"}), base_dir=base)  # another address: fine


def test_a_source_on_the_api_address_is_refused(base: Path) -> None:
    text = yaml.safe_load(_config(base, {"name": "a", "type": "http", "listen": "127.0.0.1:9001", "function": "app"}))
    text["api"] = {"listen": "127.0.0.1:9001"}
    with pytest.raises(ConfigError) as err:
        parse_config(yaml.safe_dump(text), base_dir=base)
    assert "sources[0].listen: 127.0.0.1:9001 is api.listen, where the daemon's own API listens" in err.value.render()


# --- events ------------------------------------------------------------------------------------------------

def _api(fmt: str) -> Api:
    return Api(format=fmt, stage="prod" if fmt == "rest" else "$default", binary_media_types=("image/*",))


CASES = [
    ("GET", "/items/42", "a=1&a=2&b=%20x", (("Cookie", "s=1; t=2"),), b""),
    ("POST", "/items", "", (("Content-Type", "application/json"),), b'{"name": "pen"}'),
    ("POST", "/upload", "", (("Content-Type", "image/png"),), bytes(range(256))),
    ("GET", "/%C3%A9t%C3%A9/%E2%9C%93", "q=%E2%9C%93", (("X-Multi", "1"), ("x-multi", "2")), b""),
]


@pytest.mark.parametrize("fmt", ["rest", "http", "url"])
@pytest.mark.parametrize(("method", "path", "query", "headers", "body"), CASES)
def test_events_validate_with_powertools_models(fmt: str, method: str, path: str, query: str,
                                                headers: tuple, body: bytes) -> None:
    request = HttpRequest(method, path, query, (("Host", "localhost:8080"), ("User-Agent", "t"), *headers), body)
    event = build_event(_api(fmt), request, "ANY /{proxy+}", "/{proxy+}", {"proxy": path[1:]})
    MODELS[fmt].model_validate(json.loads(json.dumps(event)))
    if body:
        decoded = base64.b64decode(event["body"]) if event["isBase64Encoded"] else event["body"].encode()
        assert decoded == body


def test_rest_event_shape() -> None:
    request = HttpRequest("GET", "/items/%C3%A9", "a=1&a=2", (("Host", "h"), ("X-A", "1"), ("X-A", "2")), b"")
    event = build_event(_api("rest"), request, resource="/items/{id}", params={"id": "é"})
    assert event["path"] == "/items/é" and event["resource"] == "/items/{id}"
    assert event["multiValueQueryStringParameters"] == {"a": ["1", "2"]}
    assert event["queryStringParameters"] == {"a": "2"}
    assert event["multiValueHeaders"]["X-A"] == ["1", "2"] and event["headers"]["X-A"] == "2"
    assert event["body"] is None and event["stageVariables"] is None
    ctx = event["requestContext"]
    assert ctx["path"] == "/prod/items/é" and ctx["resourcePath"] == "/items/{id}"
    assert ctx["requestTime"][2] == "/" and ctx["requestTime"].endswith(" +0000")


def test_v2_event_shape() -> None:
    request = HttpRequest("GET", "/a", "x=1&x=2", (("Host", "h"), ("X-A", "1"), ("X-A", "2"), ("Cookie", "c=1")))
    event = build_event(_api("http"), request, "GET /a")
    assert event["headers"]["x-a"] == "1,2" and "cookie" not in event["headers"]
    assert event["cookies"] == ["c=1"] and event["queryStringParameters"] == {"x": "1,2"}
    assert event["rawQueryString"] == "x=1&x=2" and "body" not in event


# The headers API Gateway adds, as AWS's documented example events spell them: REST's "Input format of a Lambda
# function for proxy integration" capitalises them; the function URL and HTTP API (2.0) examples lower-case every
# header name ("x-amzn-trace-id", "x-forwarded-for", "x-forwarded-port", "x-forwarded-proto").
ADDED = ("X-Amzn-Trace-Id", "X-Forwarded-For", "X-Forwarded-Port", "X-Forwarded-Proto")


@pytest.mark.parametrize("fmt", ["http", "url"])
def test_v2_header_names_are_all_lower_case(fmt: str) -> None:
    request = HttpRequest("GET", "/a", "", (("Host", "h"), ("User-Agent", "t"), ("X-Mixed-Case", "1")))
    headers = build_event(_api(fmt), request, "GET /a")["headers"]
    assert [k for k in headers if k != k.lower()] == []
    assert {name.lower() for name in ADDED} <= set(headers) and headers["x-forwarded-proto"] == "https"


def test_rest_keeps_the_case_of_header_names() -> None:
    request = HttpRequest("GET", "/a", "", (("Host", "h"), ("X-Mixed-Case", "1")))
    event = build_event(_api("rest"), request, resource="/a")
    assert set(ADDED) <= set(event["headers"]) and set(ADDED) <= set(event["multiValueHeaders"])
    assert event["headers"]["X-Mixed-Case"] == "1" and event["headers"]["X-Forwarded-Port"] == "443"


def test_sample_event_for_generate_event() -> None:
    for fmt in MODELS:
        MODELS[fmt].model_validate(sample_event(fmt, "POST", "/orders/1", "a=b", b"{}",
                                                (("Content-Type", "application/json"),)))


# --- responses -----------------------------------------------------------------------------------------------

def test_rest_response_mapping() -> None:
    payload = json.dumps({"statusCode": 201, "headers": {"X-One": "1", "Set-Cookie": "a=1"},
                          "multiValueHeaders": {"Set-Cookie": ["b=2", "c=3"]}, "body": "made"}).encode()
    response = map_response("rest", payload)
    assert response.status == 201 and response.body == b"made"
    assert [v for k, v in response.headers if k == "Set-Cookie"] == ["b=2", "c=3"]


def test_rest_base64_body_needs_a_binary_media_type() -> None:
    payload = json.dumps({"statusCode": 200, "headers": {"Content-Type": "image/png"},
                          "body": base64.b64encode(b"\x89PNG").decode(), "isBase64Encoded": True}).encode()
    assert map_response("rest", payload, ("image/*",)).body == b"\x89PNG"
    assert map_response("rest", payload, ()).body == base64.b64encode(b"\x89PNG")


def test_v2_inferred_and_cookies() -> None:
    assert map_response("http", b'{"a": 1}').status == 200
    response = map_response("http", json.dumps({"statusCode": 200, "cookies": ["a=1", "b=2"]}).encode())
    assert [v for k, v in response.headers if k == "Set-Cookie"] == ["a=1", "b=2"]


@pytest.mark.parametrize("payload", [b"not json", b'"just a string"', b'{"statusCode": "x"}', b'{"statusCode": 99}',
                                     b'{"statusCode": 200, "headers": {"X": "a\\r\\nInjected: 1"}}'])
def test_malformed_rest_responses(payload: bytes) -> None:
    with pytest.raises(MalformedResponse):
        map_response("rest", payload)
    with pytest.raises(MalformedResponse):
        map_response("http", b'{"statusCode": 200, "body": "!!", "isBase64Encoded": true}')


def test_authorizer_policy_evaluation() -> None:
    api = _api("rest")
    arn = auth.method_arn(api, "GET", "/items/1")
    allow = auth.parse_verdict(json.dumps({"principalId": "u", "policyDocument": {"Statement": [
        {"Effect": "Allow", "Resource": [arn.rsplit("/", 2)[0] + "/*"]},
        {"Effect": "Deny", "Resource": "*/DELETE/*"}]}}).encode(), simple=False)
    assert allow.allows(arn) and not allow.allows(auth.method_arn(api, "DELETE", "/items/1"))
    assert auth.parse_verdict(b'{"isAuthorized": false}', simple=True).allows(arn) is False


# --- fuzz: every byte hostile --------------------------------------------------------------------------------

TEXT = st.lists(st.characters() | st.sampled_from(["\udcff", "\ud800", "%", "%ff", "..", "/", "%2e%2e"]),
                max_size=20).map("".join)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fmt=st.sampled_from(["rest", "http", "url"]), method=st.sampled_from(["GET", "POST", "PUT"]),
       path=TEXT, query=TEXT, headers=st.lists(st.tuples(TEXT, TEXT), max_size=5), body=st.binary(max_size=64),
       content_type=st.sampled_from(["", "text/plain", "application/json", "image/png", "x/\udcff"]),
       encoding=st.sampled_from(["gzip", "deflate", "br", "zstd", "x-gzip", "gzip, br", "identity"]) | TEXT)
def test_fuzz_request_to_event(fmt: str, method: str, path: str, query: str, headers: list, body: bytes,
                               content_type: str, encoding: str) -> None:
    request = HttpRequest(method, "/" + path, query, (*headers, ("Content-Type", content_type),
                                                      ("Content-Encoding", encoding)), body)
    event = build_event(_api(fmt), request, "ANY /{proxy+}", "/{proxy+}", {"proxy": path or "x"})
    wire = json.dumps(event, ensure_ascii=False).encode("utf-8")  # raises on a lone surrogate
    MODELS[fmt].model_validate(json.loads(wire))
    if fmt != "rest":  # 2.0: every name lower-case; the body as sent (Content-Encoding is only passed on)
        assert [k for k in event["headers"] if k != k.lower()] == []
        assert event["headers"]["content-encoding"].endswith(request.header("content-encoding") or "")
        sent = base64.b64decode(event["body"]) if event["isBase64Encoded"] else event.get("body", "").encode()
        assert sent == body


@settings(max_examples=300, deadline=None)
@given(fmt=st.sampled_from(["rest", "http", "url"]),
       result=st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=10),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
                               st.sampled_from(["statusCode", "headers", "multiValueHeaders", "body", "cookies",
                                                "isBase64Encoded", "X", "x"]), inner, max_size=5), max_leaves=12))
def test_fuzz_response_mapping(fmt: str, result: object) -> None:
    try:
        response = map_response(fmt, json.dumps(result).encode())
    except MalformedResponse:
        return
    assert 100 <= response.status <= 599
    assert all("\r" not in k + v and "\n" not in k + v for k, v in response.headers)
    assert isinstance(response.body, bytes)
