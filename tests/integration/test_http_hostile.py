"""The http source under hostile bytes (the daemon as a subprocess): compressed bodies pass through as sent and
stall nothing, malformed HTTP is one 4xx and one JSON log line, never a traceback."""

from __future__ import annotations

import base64
import json
import socket
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from aws_lambda_powertools.utilities.parser.models import APIGatewayProxyEventV2Model, LambdaFunctionUrlModel
from hypothesis import given
from hypothesis import strategies as st

from bridge.testing import Daemon, free_port, wait_until, write_config, write_handler

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "http"
ROUTES = [{"route": "ANY /raw/{proxy+}"}]  # any other path is answered 404 by the listener, no function called
MODELS = {"http": APIGatewayProxyEventV2Model, "url": LambdaFunctionUrlModel}


# A function that sends malformed HTTP to its own Runtime API (the one peer that listener admits).
ROGUE = """
    import os, socket

    def handler(event, context):
        host, port = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")
        answers = []
        for request in event["requests"]:
            with socket.create_connection((host, int(port)), timeout=10) as sock:
                sock.sendall(request.encode("latin-1"))
                answers.append(sock.recv(65536).split(b" ", 2)[1].decode())
        return answers
"""


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """An HTTP API, a function URL and a REST API on their own ports, all sending to the echo function."""
    root = tmp_path_factory.mktemp("http-hostile")
    ports = {name: free_port() for name in ("api", "http", "url", "rest")}
    echo = {"handler": "echo.handler", "code": str(EXAMPLES), "timeout": 30}
    rogue = {"handler": "app.handler", "code": str(write_handler(root, "rogue", ROGUE)), "timeout": 30}
    config = write_config(root / "config.yaml", {
        "state_dir": str(root / "state"), "api": {"listen": f"127.0.0.1:{ports['api']}"},
        "functions": {"echo": echo, "rogue": rogue}, "queues": {"jobs": {}},
        "sources": [
            {"name": "http", "type": "http", "listen": f"127.0.0.1:{ports['http']}", "function": "echo",
             "routes": ROUTES},
            {"name": "url", "type": "http", "format": "url", "listen": f"127.0.0.1:{ports['url']}",
             "function": "echo"},
            {"name": "rest", "type": "http", "format": "rest", "listen": f"127.0.0.1:{ports['rest']}",
             "function": "echo", "routes": ROUTES, "binary_media_types": ["application/octet-stream"]}]})
    # info: only what production logs, so that every line a request causes can be counted
    with Daemon(config, env={"LAMBDA_BRIDGE_LOG_LEVEL": "info"}) as running:
        running.ports = ports  # type: ignore[attr-defined]
        yield running
        assert running.proc is not None and running.proc.poll() is None, "alive after every request"
        assert [line for line in running.raw if not _is_json(line)] == [], "every log line is JSON"


def _is_json(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def _port(daemon: Daemon, name: str) -> int:
    return daemon.ports[name]  # type: ignore[attr-defined, no-any-return]


def exchange(port: int, request: bytes, timeout: float = 20.0) -> bytes:
    """Send raw bytes, read the answer until the server closes (every request here says Connection: close)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        return _read_all(sock)


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def post(path: str, body: bytes, headers: dict[str, str]) -> bytes:
    head = "".join(f"{k}: {v}\r\n" for k, v in {"Host": "x", "Connection": "close", **headers,
                                                   "Content-Length": str(len(body))}.items())
    return f"POST {path} HTTP/1.1\r\n{head}\r\n".encode() + body


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def event_of(answer: bytes) -> dict:
    """The event the echo function got, from its 200 answer."""
    head, _, body = answer.partition(b"\r\n\r\n")
    assert status_of(head) == 200, answer[:500]
    return json.loads(body)


def body_of(event: dict) -> bytes:
    """The body the function got, as bytes (an empty body: no ``body`` in 2.0, null in REST)."""
    body = event.get("body") or ""
    return base64.b64decode(body) if event["isBase64Encoded"] else body.encode()


def gzip_bomb(members: int = 4, member_mib: int = 256) -> bytes:
    """Valid gzip (RFC 1952 allows members one after another) of ``members`` x ``member_mib`` MiB of zeros."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(1 << 20)
    member = b"".join([packer.compress(zeros) for _ in range(member_mib)] + [packer.flush()])
    return member * members


@pytest.fixture(scope="module")
def bomb() -> bytes:
    return gzip_bomb()  # 1 MB that inflates to 1 GiB


# --- compressed bodies reach the function as sent ------------------------------------------------------------

def _probe(port: int, path: str) -> tuple[int, float]:
    started = time.monotonic()
    answer = exchange(port, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    return status_of(answer), time.monotonic() - started


def send_probing(daemon: Daemon, port: int, request: bytes) -> bytes:
    """Send ``request`` in slices; between two slices (the server is mid-body, so it cannot have answered yet)
    a request to the http source and one to the Invoke API's /healthz must be answered promptly."""
    probes: list[tuple[int, float]] = []
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        step = len(request) // 8
        for start in range(0, len(request), step):
            sock.sendall(request[start:start + step])
            if start + step < len(request):
                probes += [_probe(_port(daemon, "http"), "/elsewhere"), _probe(_port(daemon, "api"), "/healthz")]
        answer = _read_all(sock)
    assert {status for status, _ in probes} == {404, 200}
    assert max(seconds for _, seconds in probes) < 2.0, probes  # generous: a loaded machine, no inflating
    return answer


def test_a_gzip_bomb_reaches_the_function_as_sent_and_stalls_nothing(daemon: Daemon, bomb: bytes) -> None:
    headers = {"Content-Type": "application/octet-stream", "Content-Encoding": "gzip"}
    event = event_of(send_probing(daemon, _port(daemon, "http"), post("/raw/upload", bomb, headers)))
    assert event["headers"]["content-encoding"] == "gzip" and event["isBase64Encoded"] is True
    assert body_of(event) == bomb


@pytest.mark.parametrize(("path", "headers", "status"), [
    ("/", {"X-Amz-Target": "AmazonSQS.SendMessage", "Content-Type": "application/x-amz-json-1.0"}, 400),
    ("/2015-03-31/functions/echo/invocations", {"X-Amz-Invocation-Type": "DryRun"}, 204),
])
def test_the_api_does_not_inflate_a_gzip_bomb_either(daemon: Daemon, bomb: bytes, path: str,
                                                     headers: dict[str, str], status: int) -> None:
    """Neither Lambda's nor SQS's API inflates a body: the SQS endpoint sees bytes that are not JSON."""
    answer = send_probing(daemon, _port(daemon, "api"), post(path, bomb, {**headers, "Content-Encoding": "gzip"}))
    assert status_of(answer) == status, answer[:300]


@pytest.mark.parametrize("source", ["http", "url"])
@pytest.mark.parametrize(("encoding", "body"), [
    ("gzip", b"this is not gzip at all \xff\xfe"),
    ("gzip", zlib.compress(b"{}")[:-3]),  # truncated
    ("deflate", b"\x00\x01 not deflate"),
    ("br", b"\x8b\x02\x80hello\x03"),
    ("zstd", b"(\xb5/\xfd not zstd"),
    ("x-unknown, gzip", b"\x1f\x8b\x08 truncated"),
])
def test_any_content_encoding_passes_through(daemon: Daemon, source: str, encoding: str, body: bytes) -> None:
    answer = exchange(_port(daemon, source), post("/raw/x", body, {"Content-Type": "application/octet-stream",
                                                                   "Content-Encoding": encoding}))
    event = event_of(answer)
    assert event["headers"]["content-encoding"] == encoding and body_of(event) == body
    MODELS[source].model_validate(event)
    assert [name for name in event["headers"] if name != name.lower()] == []  # x-forwarded-for & co. too


def test_rest_passes_a_gzip_body_through_as_a_binary_media_type(daemon: Daemon) -> None:
    body = zlib.compress(b'{"a": 1}', wbits=31)
    answer = exchange(_port(daemon, "rest"), post("/raw/x", body, {"Content-Type": "application/octet-stream",
                                                                   "Content-Encoding": "gzip"}))
    event = event_of(answer)
    assert event["headers"]["Content-Encoding"] == "gzip" and event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == body


# --- malformed HTTP: one 4xx, one JSON line -------------------------------------------------------------------

HOSTILE = [
    b"GET / HTTP/9.9\r\nHost: x\r\n\r\n",
    b"GET /raw/x HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n",
    b"GET /raw/x HTTP/1.1\r\nHost: x\r\nX-Ctl: a\x01b\r\n\r\n",
    b"G@T /raw/x HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /raw/x HTTP/1.1\r\nHost: x\r\nX-Long: " + b"v" * 10_000 + b"\r\n\r\n",
    b"GET /raw/x HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(200)) + b"\r\n",
    b"POST /raw/x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
    b"POST /raw/x HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\nhello",
    b"POST /raw/x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"POST /raw/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
    b"POST /raw/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXX\r\n0\r\n\r\n",
    b"POST /raw/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked, identity\r\n\r\n0\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(32)) + b"\r\n\r\n",  # TLS to a plain port
]


def test_each_malformed_request_is_one_4xx_and_one_json_line(daemon: Daemon) -> None:
    port = _port(daemon, "http")
    for request in HOSTILE:
        before = len(daemon.raw)
        answer = exchange(port, request)
        assert 400 <= status_of(answer) < 500, (request[:80], answer[:200])
        wait_until(lambda before=before: len(daemon.raw) > before)
        lines = [json.loads(line) for line in daemon.raw[before:]]
        assert [line["event"] for line in lines] == ["http.bad_request"], (request[:80], lines)
    exchange(port, HOSTILE[0])  # one more: every line the previous ones could cause was written before its own
    wait_until(lambda: len(daemon.find("http.bad_request")) == len(HOSTILE) + 1)
    assert len(daemon.find("http.bad_request")) == len(HOSTILE) + 1


def test_a_client_gone_mid_body_is_one_json_line(daemon: Daemon) -> None:
    before = len(daemon.raw)
    with socket.create_connection(("127.0.0.1", _port(daemon, "http")), timeout=20) as sock:
        sock.sendall(b"POST /raw/x HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly part")
    wait_until(lambda: len(daemon.raw) > before)
    exchange(_port(daemon, "http"), HOSTILE[0])  # a second line marks the end of the first's
    wait_until(lambda: len(daemon.raw) > before + 1)
    assert [json.loads(line)["event"] for line in daemon.raw[before:]] == ["http.bad_request"] * 2


def test_malformed_http_to_the_runtime_api_is_one_json_line_too(daemon: Daemon) -> None:
    requests = [r.decode("latin-1") for r in (HOSTILE[0], HOSTILE[1], HOSTILE[10], HOSTILE[-1])]
    before = len(daemon.find("http.bad_request"))
    answer = exchange(_port(daemon, "api"), post("/2015-03-31/functions/rogue/invocations",
                                                 json.dumps({"requests": requests}).encode(), {}))
    assert json.loads(answer.partition(b"\r\n\r\n")[2]) == ["400"] * len(requests)
    wait_until(lambda: len(daemon.find("http.bad_request")) >= before + len(requests))


# --- fuzz: Content-Encoding values and bodies, raw request heads ----------------------------------------------

ENCODINGS = st.sampled_from(["gzip", "x-gzip", "deflate", "br", "zstd", "compress", "identity", "gzip, br",
                             "GZIP", " gzip ", "*"]) | st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7e),
                                                               min_size=1, max_size=12)
BODIES = (st.binary(max_size=300) | st.binary(max_size=200).map(lambda b: zlib.compress(b, wbits=31))
          | st.binary(max_size=200).map(lambda b: zlib.compress(b)[:-2]) | st.just(gzip_bomb(1, 8)))


@given(encoding=ENCODINGS, body=BODIES, content_type=st.sampled_from(["application/octet-stream", "text/plain",
                                                                     "application/json", "image/png"]))
def test_fuzz_content_encoding(daemon: Daemon, encoding: str, body: bytes, content_type: str) -> None:
    answer = exchange(_port(daemon, "http"), post("/raw/f", body, {"Content-Type": content_type,
                                                                   "Content-Encoding": encoding}))
    event = event_of(answer)
    assert event["headers"]["content-encoding"] == encoding.strip() and body_of(event) == body


TOKENS = st.binary(min_size=1, max_size=12).filter(lambda b: b"\r" not in b and b"\n" not in b)


@given(method=st.sampled_from([b"GET", b"POST", b"G\x00T", b""]) | TOKENS,
       target=st.sampled_from([b"/raw/x", b"/", b"*", b"http://x/raw/x", b"/raw/%ff"]) | TOKENS,
       version=st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/9.9", b"HTTP/1", b"http/1.1", b""]) | TOKENS,
       header=st.tuples(TOKENS, TOKENS))
def test_fuzz_request_heads(daemon: Daemon, method: bytes, target: bytes, version: bytes,
                            header: tuple[bytes, bytes]) -> None:
    request = b"%s %s %s\r\nHost: x\r\n%s: %s\r\nConnection: close\r\n\r\n" % (method, target, version, *header)
    answer = exchange(_port(daemon, "http"), request)
    assert status_of(answer) < 500, (request, answer[:300])
