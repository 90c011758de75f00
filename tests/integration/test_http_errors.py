"""The API's last line of defence, on a real aiohttp server: one 500 and one JSON line, never a traceback."""

from __future__ import annotations

import asyncio
import io
import json

import pytest
import structlog
from aiohttp import web

from bridge.daemon.http_errors import unexpected_errors
from bridge.daemon.invoke_api import serve
from bridge.log import configure


async def _broken(request: web.Request) -> web.Response:
    raise RuntimeError("a bug in a handler")  # stands in for any bug a handler may still have


@pytest.fixture
def log_lines():
    stream = io.StringIO()
    configure("debug", stream, json=True)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    structlog.reset_defaults()


async def _raw(url: str, request: bytes) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(request)
    await writer.drain()
    answer = await reader.read()
    writer.close()
    return answer


async def test_an_unexpected_exception_is_one_500_and_one_line(log_lines, capfd: pytest.CaptureFixture) -> None:
    app = web.Application(middlewares=[unexpected_errors])
    app.router.add_post("/broken", _broken)
    async with serve(app, "127.0.0.1", 0, 1.0) as url:
        answer = await _raw(url, b"POST /broken HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 500") and b"x-amzn-ErrorType: ServiceException" in head
    assert json.loads(body)["Type"] == "Service"
    [line] = [e for e in log_lines() if e["event"] == "api.unexpected_error"]
    assert line["error"] == "RuntimeError: a bug in a handler" and line["path"] == "/broken"
    assert "Traceback" not in capfd.readouterr().err


async def test_malformed_http_is_one_structured_line(log_lines, capfd: pytest.CaptureFixture) -> None:
    app = web.Application(middlewares=[unexpected_errors])
    async with serve(app, "127.0.0.1", 0, 1.0) as url:
        answer = await _raw(url, b"POST / HTTP/1.1\r\nHost: x\r\nX-Bad: a\x01b\r\nContent-Length: 0\r\n\r\n")
    assert answer.split(b" ", 2)[1] == b"400"
    assert [e["event"] for e in log_lines() if e["event"].startswith("http.")] == ["http.bad_request"]
    assert "Traceback" not in capfd.readouterr().err
