"""The http source end to end: the daemon as a subprocess, real apps as local functions, aiohttp as the client."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from aws_lambda_powertools.utilities.parser.models import (
    APIGatewayProxyEventModel,
    APIGatewayProxyEventV2Model,
    LambdaFunctionUrlModel,
)

from bridge.testing import Daemon, free_port, write_config

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "http"
PORTS = ("rest", "flask", "pt", "echo", "echorest", "url", "shared")


def _fn(handler: str, **extra: object) -> dict:
    return {"handler": handler, "code": str(EXAMPLES), **extra}


def _config(root: Path, ports: dict[str, int]) -> dict:
    at = {k: f"127.0.0.1:{p}" for k, p in ports.items()}
    return {
        "state_dir": str(root / "state"), "region": "eu-west-1", "account_id": "123456789012",
        "functions": {"fastapi": _fn("fastapi_app.handler"), "flask": _fn("flask_app.handler"),
                      "pt": _fn("powertools_app.handler"), "auth": _fn("authorizer.handler"),
                      "echo": _fn("echo.handler", timeout=10)},
        "sources": [
            {"name": "rest", "type": "http", "format": "rest", "listen": at["rest"], "binary_media_types": ["image/*"],
             "routes": [{"route": "ANY /{proxy+}", "function": "fastapi"}]},
            {"name": "flask", "type": "http", "listen": at["flask"], "function": "flask"},
            {"name": "pt", "type": "http", "listen": at["pt"],
             "cors": {"allow_origins": ["https://app.example"], "allow_methods": ["GET", "POST"],
                      "allow_headers": ["content-type", "authorization"], "max_age": 600},
             "authorizer": {"function": "auth", "identity_source": ["authorization"], "ttl": 300},
             "routes": [{"route": "GET /orders/{id}", "function": "pt"}]},
            {"name": "echo", "type": "http", "listen": at["echo"], "timeout": 1,
             "routes": [{"route": "GET /echo/{id}", "function": "echo"}, {"route": "ANY /raw/{proxy+}",
                                                                           "function": "echo"}]},
            {"name": "echorest", "type": "http", "format": "rest", "listen": at["echorest"],
             "authorizer": {"function": "auth", "type": "token", "identity_source": ["authorization"], "ttl": 0},
             "routes": [{"route": "GET /things/{id}", "function": "echo"}]},
            {"name": "url", "type": "http", "format": "url", "listen": at["url"], "function": "echo"},
            # two sources on one address, each with its own max_body, timeout and CORS
            {"name": "small", "type": "http", "listen": at["shared"], "function": "echo", "max_body": 64,
             "timeout": 1, "cors": {"allow_origins": ["https://small.example"], "allow_methods": ["GET"]},
             "routes": [{"route": "ANY /small/{proxy+}"}]},
            {"name": "big", "type": "http", "listen": at["shared"], "function": "echo", "timeout": 10,
             "cors": {"allow_origins": ["https://big.example"], "allow_methods": ["POST"]},
             "routes": [{"route": "ANY /big/{proxy+}"}]},
        ],
    }


@pytest.fixture(scope="module")
def urls(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("http")
    ports = {name: free_port() for name in PORTS}
    config = write_config(root / "config.yaml", _config(root, ports))
    # The apps' requirements.txt, installed before the daemon starts: the sources' 1 s timeouts must not
    # include the first build.
    subprocess.run([sys.executable, "-m", "bridge.cli", "build", "--config", str(config)], check=True, timeout=600)
    with Daemon(config):
        yield {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}


async def fetch(method: str, url: str, **kwargs: object) -> tuple[int, dict, bytes]:
    async with aiohttp.ClientSession() as session, session.request(method, url, **kwargs) as response:
        return response.status, dict(response.headers), await response.read()


# --- FastAPI through Mangum, REST format -----------------------------------------------------------------

async def test_fastapi_routing_path_and_query_parameters(urls) -> None:
    status, headers, body = await fetch("GET", urls["rest"] + "/items/42?q=x&tag=a&tag=b")
    assert status == 200, body
    assert json.loads(body) == {"item_id": 42, "q": "x", "tags": ["a", "b"]}
    assert headers["x-amzn-RequestId"]


async def test_fastapi_json_body_and_validation_error(urls) -> None:
    status, headers, body = await fetch("POST", urls["rest"] + "/items", json={"name": "pen", "price": 1.5})
    assert (status, json.loads(body), headers["x-item"]) == (201, {"created": {"name": "pen", "price": 1.5}}, "pen")
    status, _, body = await fetch("POST", urls["rest"] + "/items", json={"name": "pen"})
    assert status == 422 and json.loads(body)["detail"][0]["loc"] == ["body", "price"]


async def test_fastapi_binary_download(urls) -> None:
    pixel = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000") + bytes(range(256))
    status, headers, body = await fetch("GET", urls["rest"] + "/files/pixel.png", headers={"Accept": "image/png"})
    assert (status, headers["Content-Type"], body) == (200, "image/png", pixel)


async def test_rest_unmatched_is_403_missing_authentication_token(urls) -> None:
    status, _, body = await fetch("GET", urls["rest"] + "/")
    assert (status, json.loads(body)) == (403, {"message": "Missing Authentication Token"})


# --- Flask through apig-wsgi, HTTP API format ------------------------------------------------------------

async def test_flask_app_with_cookies_and_repeated_query(urls) -> None:
    status, _, body = await fetch("GET", urls["flask"] + "/hello/w%C3%B6rld?a=1&a=2",
                                  headers={"Cookie": "session=abc; other=1"})
    assert status == 200, body
    assert json.loads(body) == {"hello": "wörld", "args": {"a": ["1", "2"]}, "cookie": "abc"}


async def test_flask_binary_round_trip(urls) -> None:
    data = bytes(range(256)) * 4
    status, headers, body = await fetch("POST", urls["flask"] + "/echo", data=data,
                                        headers={"Content-Type": "application/octet-stream"})
    assert (status, body) == (200, data)
    assert headers["apigw-requestid"]


# --- Powertools resolver with a Lambda authorizer and CORS -------------------------------------------------

async def test_powertools_app_behind_authorizer(urls) -> None:
    status, _, body = await fetch("GET", urls["pt"] + "/orders/7?user=ann", headers={"Authorization": "allow-ann"})
    answer = json.loads(body)
    assert (status, answer["order"], answer["user"], answer["auth"]["user"]) == (200, "7", "ann", "allow-ann")


async def test_authorizer_deny_missing_and_cache(urls) -> None:
    assert (await fetch("GET", urls["pt"] + "/orders/7", headers={"Authorization": "nope"}))[0] == 403
    status, _, body = await fetch("GET", urls["pt"] + "/orders/7")
    assert (status, json.loads(body)) == (401, {"message": "Unauthorized"})
    first = await fetch("GET", urls["pt"] + "/orders/1", headers={"Authorization": "allow-cache"})
    second = await fetch("GET", urls["pt"] + "/orders/2", headers={"Authorization": "allow-cache"})
    assert first[0] == second[0] == 200
    # the authorizer ran once for this identity: the same context (its pid and call count) is reused
    assert json.loads(first[2])["auth"] == json.loads(second[2])["auth"]
    assert json.loads(first[2])["auth"]["user"] == "allow-cache"


async def test_rest_token_authorizer_policy(urls) -> None:
    status, _, body = await fetch("GET", urls["echorest"] + "/things/1", headers={"Authorization": "allow-bob"})
    assert status == 200, body
    event = json.loads(body)
    APIGatewayProxyEventModel.model_validate(event)
    assert event["requestContext"]["authorizer"]["principalId"] == "allow-bob"
    assert event["requestContext"]["authorizer"]["user"] == "allow-bob"
    status, _, body = await fetch("GET", urls["echorest"] + "/things/1", headers={"Authorization": "deny"})
    assert status == 403 and "explicit deny" in json.loads(body)["message"]


async def test_cors_preflight_and_response_headers(urls) -> None:
    status, headers, _ = await fetch("OPTIONS", urls["pt"] + "/orders/7", headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "GET"})
    assert status == 204
    assert headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert headers["Access-Control-Allow-Methods"] == "GET,POST"
    assert headers["Access-Control-Max-Age"] == "600"
    _, headers, _ = await fetch("GET", urls["pt"] + "/orders/7", headers={
        "Origin": "https://app.example", "Authorization": "allow-x"})
    assert headers["Access-Control-Allow-Origin"] == "https://app.example"
    _, headers, _ = await fetch("OPTIONS", urls["pt"] + "/orders/7", headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "GET"})
    assert "Access-Control-Allow-Origin" not in headers


async def test_sources_sharing_an_address_keep_their_own_limits(urls) -> None:
    body, text = b"x" * 100, {"Content-Type": "text/plain"}
    small, big, small_slow, big_slow = await asyncio.gather(
        fetch("POST", urls["shared"] + "/small/x", data=body, headers=text),
        fetch("POST", urls["shared"] + "/big/x", data=body, headers=text),
        fetch("GET", urls["shared"] + "/small/x?mode=sleep"), fetch("GET", urls["shared"] + "/big/x?mode=sleep"))
    assert (small[0], json.loads(small[2])) == (413, {"message": "Request Entity Too Large"})
    assert (big[0], json.loads(big[2])["body"]) == (200, "x" * 100)
    assert (small_slow[0], json.loads(small_slow[2])) == (504, {"message": "Endpoint request timed out"})
    assert big_slow[0] == 200


@pytest.mark.parametrize(("path", "origin", "methods"), [("/small/x", "https://small.example", "GET"),
                                                         ("/big/x", "https://big.example", "POST"),
                                                         ("/big/x", "https://small.example", None)])
async def test_preflight_answers_with_the_cors_of_the_route_s_source(urls, path: str, origin: str,
                                                                     methods: str | None) -> None:
    status, headers, _ = await fetch("OPTIONS", urls["shared"] + path, headers={
        "Origin": origin, "Access-Control-Request-Method": "POST"})
    assert status == 204
    assert headers.get("Access-Control-Allow-Methods") == methods
    assert headers.get("Access-Control-Allow-Origin") == (origin if methods else None)


# --- events as the function sees them, validated by Powertools' models ------------------------------------

async def test_http_api_event_validates(urls) -> None:
    status, _, body = await fetch("GET", urls["echo"] + "/echo/%C3%A9t%C3%A9?k=1&k=2&x=%20y",
                                  headers={"Cookie": "a=1; b=2", "X-Multi": "one"})
    assert status == 200, body
    event = json.loads(body)
    APIGatewayProxyEventV2Model.model_validate(event)
    assert event["routeKey"] == "GET /echo/{id}"
    assert event["pathParameters"] == {"id": "été"}
    assert event["queryStringParameters"] == {"k": "1,2", "x": " y"}
    assert event["cookies"] == ["a=1", "b=2"]
    assert event["rawPath"] == "/echo/%C3%A9t%C3%A9"


async def test_function_url_event_validates(urls) -> None:
    status, _, body = await fetch("POST", urls["url"] + "/any/path", data=b"\xff\x00binary",
                                  headers={"Content-Type": "application/octet-stream"})
    assert status == 200, body
    event = json.loads(body)
    LambdaFunctionUrlModel.model_validate(event)
    assert event["isBase64Encoded"] is True and event["routeKey"] == "$default"
    assert event["requestContext"]["domainName"].endswith(".lambda-url.eu-west-1.on.aws")


async def test_http_api_bare_dict_response(urls) -> None:
    status, headers, body = await fetch("GET", urls["echo"] + "/echo/1?mode=bare")
    assert (status, headers["Content-Type"], json.loads(body)) == (200, "application/json", {"just": "a dict"})


# --- failures as API Gateway answers them ----------------------------------------------------------------

@pytest.mark.parametrize("mode", ["raise", "malformed"])
async def test_function_error_and_malformed_response_are_502(urls, mode: str) -> None:
    status, _, body = await fetch("GET", urls["echo"] + f"/echo/1?mode={mode}")
    assert (status, json.loads(body)) == (502, {"message": "Internal Server Error"})


async def test_slow_function_is_504(urls) -> None:
    status, _, body = await fetch("GET", urls["echo"] + "/echo/1?mode=sleep")
    assert (status, json.loads(body)) == (504, {"message": "Endpoint request timed out"})


async def test_unmatched_is_404(urls) -> None:
    status, _, body = await fetch("GET", urls["echo"] + "/nothing/here")
    assert (status, json.loads(body)) == (404, {"message": "Not Found"})


async def test_body_over_6mb_is_413_before_it_is_read(urls) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", int(urls["echo"].rsplit(":", 1)[1]))
    writer.write(b"POST /raw/x HTTP/1.1\r\nHost: x\r\nContent-Length: 7000000\r\n\r\n")
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)  # answered without sending the body
    assert head.startswith(b"HTTP/1.1 413")
    writer.close()


async def test_slowloris_connection_is_cut(urls) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", int(urls["echo"].rsplit(":", 1)[1]))
    writer.write(b"GET /echo/1 HTTP/1.1\r\nHost: x\r\n")
    await writer.drain()
    assert await asyncio.wait_for(reader.read(), 30) == b""  # closed by the server, head never completed
    writer.close()


async def test_hostile_path_and_headers_get_an_answer(urls) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", int(urls["echo"].rsplit(":", 1)[1]))
    writer.write(b"GET /raw/%ff%fe/../..%2f%00?%ff=%fe HTTP/1.1\r\nHost: x\r\nX-Bin: \xff\xfe\r\n"
                 b"Connection: close\r\n\r\n")
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)
    assert answer.split(b" ", 2)[1] in (b"200", b"400", b"404")
    writer.close()
