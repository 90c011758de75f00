"""Remote functions over real HTTP: a second daemon as the remote, moto's Lambda, and fakes for RIE and SAM."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from bridge.config.model import RemoteFunctionConfig, parse_config
from bridge.errors import ConfigError, InvocationRejected, PayloadTooLarge, RemoteUnavailable, Throttled
from bridge.invokers.remote import RemoteFunction
from bridge.invokers.remote_backends import client_error, function_error
from bridge.model import ASYNC_LIMIT, SYNC_LIMIT, Invocation
from bridge.testing import Daemon, free_port, write_config, write_handler
from tests.integration.fake_lambda_backends import FakeRie, FakeSam, serving
from tests.integration.test_async_delivery import RECORDER, records

ACCOUNT = "000000000000"
# A handler for the remote daemon: records the event, then sleeps, raises or answers as the event asks.
ACTOR = """
    import json, os, time
    def handler(event, context):
        line = json.dumps({"event": event, "time": time.time(), "request_id": context.aws_request_id})
        fd = os.open(os.environ["RECORD_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        os.write(fd, (line + "\\n").encode())
        os.close(fd)
        marker = os.environ.get("STALL_ONCE")
        if marker and not os.path.exists(marker):
            open(marker, "w").close()
            time.sleep(120)
        time.sleep(event.get("sleep", 0))
        if "raise" in event:
            raise RuntimeError(event["raise"])
        return {"echo": event, "request_id": context.aws_request_id}
"""


def arn(name: str, account: str = ACCOUNT) -> str:
    return f"arn:aws:lambda:us-east-1:{account}:function:{name}"


def remote_config(**fields: Any) -> RemoteFunctionConfig:
    """A validated remote function config, as the daemon would build it."""
    text = json.dumps({"functions": {"fn": fields}})
    fn = parse_config(text).functions["fn"]
    assert isinstance(fn, RemoteFunctionConfig)
    return fn


def lambda_client(url: str):
    return boto3.client("lambda", endpoint_url=url, region_name="us-east-1",
                        config=BotoConfig(retries={"total_max_attempts": 1}))


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bridge.cli", *args, "--config", str(config)],
                          capture_output=True, text=True, check=False, timeout=60)


async def until(predicate: Callable[[], Any], timeout: float = 20.0) -> Any:
    """Poll ``predicate`` on the event loop until it is truthy; fail at the deadline."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.01)
    return value


class Remote:
    """A second lambda-bridge daemon whose Invoke API plays the remote Lambda endpoint."""

    def __init__(self, root: Path, functions: dict[str, dict], port: int | None = None) -> None:
        self.root = root
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        code = write_handler(root, "actor", ACTOR)
        recorder = write_handler(root, "recorder", RECORDER)
        built = {}
        for name, extra in functions.items():
            kind = extra.pop("kind", "actor")
            env = {"RECORD_FILE": str(self.record_file(name)), **extra.pop("environment", {})}
            built[name] = {"handler": "app.handler", "code": str(code if kind == "actor" else recorder),
                           "environment": env, **extra}
        config = {"state_dir": str(root / "state"), "api": {"listen": f"127.0.0.1:{self.port}"},
                  "functions": built}
        self.daemon = Daemon(write_config(root / "remote.yaml", config))

    def record_file(self, name: str) -> Path:
        return self.root / f"{name}.jsonl"

    def seen(self, name: str) -> list[dict]:
        """What the remote function ``name`` received."""
        return records(self.record_file(name))


@pytest.fixture
def remote(tmp_path: Path) -> Iterator[Callable[..., Remote]]:
    """Start a remote daemon with the given functions; stopped at the end of the test."""
    started: list[Remote] = []

    def start(functions: dict[str, dict], *, root: Path | None = None, port: int | None = None) -> Remote:
        where = root or tmp_path / f"remote{len(started)}"
        where.mkdir(exist_ok=True)
        made = Remote(where, functions, port)
        made.daemon.start()
        started.append(made)
        return made

    yield start
    for made in started:
        made.daemon.__exit__(None, None, None)


@pytest.fixture
async def functions() -> Any:
    """Build in-process RemoteFunctions; all are closed after the test."""
    made: list[RemoteFunction] = []

    def build(name: str = "fn", **fields: Any) -> RemoteFunction:
        fn = RemoteFunction(name, remote_config(**fields))
        made.append(fn)
        return fn

    yield build
    await asyncio.gather(*(fn.close() for fn in made))


# --- against a second daemon's Invoke API (the real Lambda REST protocol, aws backend) -------------------


async def test_success_function_error_and_log_tail(remote, functions) -> None:
    far = remote({"echo": {}})
    fn = functions(arn=arn("echo"), endpoint_url=far.url)
    result = await fn.invoke(Invocation(b'{"n": 1}', log_tail=True))
    assert result.ok
    body = json.loads(result.payload)
    assert body["echo"] == {"n": 1}
    assert result.request_id == body["request_id"], "the remote's request id, as the handler saw it"
    assert f"START RequestId: {result.request_id}" in (result.log_tail or "")

    failed = await fn.invoke(Invocation(b'{"raise": "boom"}'))
    assert failed.function_error == "Unhandled"
    assert json.loads(failed.payload)["errorMessage"] == "boom"
    await fn.dry_run()
    assert (fn.invocations, fn.errors, fn.retries) == (3, 1, 0)
    assert [r["event"] for r in far.seen("echo")] == [{"n": 1}, {"raise": "boom"}], "DryRun runs nothing"


async def test_throttling_is_retried_with_backoff(remote, functions) -> None:
    far = remote({"slow": {"reserved_concurrency": 1}})
    fn = functions(arn=arn("slow"), endpoint_url=far.url, max_concurrency=3, retry_timeout=60)
    started = time.monotonic()
    results = await asyncio.gather(*(fn.invoke(Invocation(json.dumps({"sleep": 0.5, "i": i}).encode()))
                                     for i in range(3)))
    assert all(r.ok for r in results)
    assert time.monotonic() - started >= 1.4, "one at a time on the remote"
    assert fn.retries >= 2, "the 429s were retried"
    assert sorted(r["event"]["i"] for r in far.seen("slow")) == [0, 1, 2], "each ran exactly once"


async def test_throttling_gives_up_after_retry_timeout(remote, functions) -> None:
    far = remote({"slow": {"reserved_concurrency": 1, "timeout": 10}})
    fn = functions(arn=arn("slow"), endpoint_url=far.url, max_concurrency=2, retry_timeout=0.5)
    busy = asyncio.create_task(fn.invoke(Invocation(b'{"sleep": 4}')))
    await until(lambda: far.seen("slow"))
    started = time.monotonic()
    with pytest.raises(RemoteUnavailable, match="TooManyRequestsException") as caught:
        await fn.invoke(Invocation(b'{"n": 2}'))
    assert time.monotonic() - started < 2.5, "gave up within about retry_timeout"
    assert "retry_timeout is 0.5 s" in str(caught.value)
    assert (await busy).ok


async def test_server_errors_are_retried_until_the_endpoint_recovers(remote, functions, tmp_path: Path) -> None:
    upstream_port = free_port()
    # The middle daemon proxies to a remote that is down: its Invoke API then answers HTTP 500.
    middle_root = tmp_path / "middle"
    middle_root.mkdir()
    middle = Daemon(write_config(middle_root / "config.yaml", {
        "state_dir": str(middle_root / "state"), "api": {"listen": f"127.0.0.1:{(middle_port := free_port())}"},
        "functions": {"echo": {"arn": arn("echo"), "endpoint_url": f"http://127.0.0.1:{upstream_port}",
                               "retry_timeout": 0.3}}}))
    with middle:
        fn = functions(arn=arn("echo"), endpoint_url=f"http://127.0.0.1:{middle_port}", retry_timeout=60)
        call = asyncio.create_task(fn.invoke(Invocation(b'{"n": 5}')))
        await asyncio.to_thread(middle.wait_for, "remote.unavailable", count=2, function="echo")
        await until(lambda: fn.retries >= 2)
        assert not call.done()
        far = await asyncio.to_thread(remote, {"echo": {}}, port=upstream_port)
        result = await call
    assert result.ok and json.loads(result.payload)["echo"] == {"n": 5}
    assert [r["event"] for r in far.seen("echo")] == [{"n": 5}]


async def test_final_4xx_is_rejected_without_retries(remote, functions) -> None:
    far = remote({"echo": {}})
    fn = functions(arn=arn("missing"), endpoint_url=far.url)
    with pytest.raises(InvocationRejected, match="ResourceNotFoundException") as caught:
        await fn.invoke(Invocation(b"{}"))
    assert (caught.value.status, caught.value.code) == (404, "ResourceNotFoundException")
    assert fn.retries == 0
    with pytest.raises(InvocationRejected):
        await fn.handover(Invocation(b"{}"))


async def test_payload_limits_are_checked_before_sending(remote, functions) -> None:
    far = remote({"echo": {}})
    fn = functions(arn=arn("echo"), endpoint_url=far.url)
    with pytest.raises(PayloadTooLarge):
        await fn.invoke(Invocation(b"x" * (SYNC_LIMIT + 1)))
    with pytest.raises(InvocationRejected) as caught:
        await fn.handover(Invocation(b"x" * (ASYNC_LIMIT + 1)))
    assert (caught.value.status, caught.value.code) == (413, "RequestTooLargeException")
    big = json.dumps({"blob": "x" * (ASYNC_LIMIT + 10)}).encode()
    assert (await fn.invoke(Invocation(big))).ok, "a sync call may carry up to 6 MB"
    assert len(far.seen("echo")) == 1


async def test_concurrency_limit(remote, functions) -> None:
    far = remote({"slow": {"reserved_concurrency": 2}})
    fn = functions(arn=arn("slow"), endpoint_url=far.url, max_concurrency=1)
    assert fn.limit == 1 and fn.has_capacity()
    first = asyncio.create_task(fn.invoke(Invocation(b'{"sleep": 1}')))
    await until(lambda: fn.in_flight == 1)
    assert not fn.has_capacity()
    with pytest.raises(Throttled, match="max_concurrency"):
        await fn.invoke(Invocation(b'{"n": 2}'))
    with pytest.raises(Throttled):
        await fn.handover(Invocation(b'{"n": 3}'))
    second = await fn.invoke(Invocation(b'{"n": 4}'), wait=True)
    assert first.done() and (await first).ok and second.ok
    assert [r["event"] for r in far.seen("slow")] == [{"sleep": 1}, {"n": 4}]


async def test_dropped_connection_is_retried_with_the_same_request(remote, functions, tmp_path: Path) -> None:
    root = tmp_path / "far"
    root.mkdir()
    stall = {"environment": {"STALL_ONCE": str(root / "stalled")}}
    far = remote({"once": dict(stall)}, root=root)
    fn = functions(arn=arn("once"), endpoint_url=far.url, retry_timeout=60)
    call = asyncio.create_task(fn.invoke(Invocation(b'{"order": 42}')))
    await until(lambda: far.seen("once"))
    far.daemon.kill()  # the request was sent and is running: the connection drops without an answer
    await asyncio.to_thread(remote, {"once": dict(stall)}, root=root, port=far.port)
    result = await call
    assert result.ok and json.loads(result.payload)["echo"] == {"order": 42}
    seen = far.seen("once")
    assert [r["event"] for r in seen] == [{"order": 42}, {"order": 42}], "at least once: the same event again"
    assert fn.retries >= 1


# --- end to end: the bridge daemon with a remote function ------------------------------------------------


def bridge_daemon(root: Path, functions: dict[str, dict]) -> tuple[Daemon, Path, str]:
    port = free_port()
    config = write_config(root / "bridge.yaml", {
        "state_dir": str(root / "bridge-state"), "api": {"listen": f"127.0.0.1:{port}"}, "functions": functions})
    return Daemon(config), config, f"http://127.0.0.1:{port}"


def test_cli_and_invoke_api_proxy_to_the_remote(remote, tmp_path: Path) -> None:
    far = remote({"echo": {}})
    daemon, config, url = bridge_daemon(tmp_path, {"billing": {"arn": arn("echo"), "endpoint_url": far.url}})
    with daemon:
        done = cli(config, "invoke", "billing", "--payload", '{"n": 1}')
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["echo"] == {"n": 1}
        failed = cli(config, "invoke", "billing", "--payload", '{"raise": "nope"}')
        assert failed.returncode == 1 and "nope" in failed.stderr
        answer = lambda_client(url).invoke(FunctionName="billing", Payload=b'{"n": 2}')
        assert answer["StatusCode"] == 200 and "FunctionError" not in answer
        assert json.loads(answer["Payload"].read())["echo"] == {"n": 2}
    assert [r["event"] for r in far.seen("echo")] == [{"n": 1}, {"raise": "nope"}, {"n": 2}]


def test_async_event_is_handed_over_to_the_remote_queue(remote, tmp_path: Path) -> None:
    far = remote({"sink": {"kind": "recorder"}})
    daemon, _, url = bridge_daemon(tmp_path, {"sink": {"arn": arn("sink"), "endpoint_url": far.url}})
    with daemon:
        answer = lambda_client(url).invoke(FunctionName="sink", InvocationType="Event", Payload=b'{"n": 7}')
        assert answer["StatusCode"] == 202
        daemon.wait_for("delivery.succeeded", function="sink")
        far.daemon.wait_for("delivery.succeeded", function="sink")
    assert [r["event"] for r in far.seen("sink")] == [{"n": 7}]


def test_request_response_handover_uses_the_bridge_retries(remote, tmp_path: Path) -> None:
    far = remote({"bad": {"kind": "recorder", "environment": {"FAIL": "yes"}}})
    fn = {"arn": arn("bad"), "endpoint_url": far.url, "invocation_type": "RequestResponse",
          "async": {"maximum_retry_attempts": 2, "retry_delays": [0.2, 0.2]}}
    daemon, config, url = bridge_daemon(tmp_path, {"bad": fn})
    with daemon:
        lambda_client(url).invoke(FunctionName="bad", InvocationType="Event", Payload=b'{"n": 3}')
        daemon.wait_for("delivery.failed", function="bad")
    [entry] = json.loads(cli(config, "dlq", "list", "--json").stdout)
    assert entry["condition"] == "RetriesExhausted"
    assert entry["record"]["requestContext"]["functionArn"].startswith(arn("bad"))
    assert entry["record"]["responsePayload"]["errorMessage"] == "always failing: 3"
    assert len(far.seen("bad")) == 3


# --- moto's Lambda (server mode): its wire protocol; it cannot run code without Docker ---------------------


def test_moto_not_found_goes_to_the_dead_letter_store_without_retries(moto_url: str, tmp_path: Path) -> None:
    fn = {"arn": arn("ghost", "123456789012"), "endpoint_url": moto_url}
    daemon, config, url = bridge_daemon(tmp_path, {"ghost": fn})
    with daemon:
        lambda_client(url).invoke(FunctionName="ghost", InvocationType="Event", Payload=b'{"n": 1}')
        daemon.wait_for("delivery.failed", function="ghost")
        assert daemon.find("remote.retrying") == [] and daemon.find("delivery.throttled") == []
        assert len(daemon.find("remote.rejected", function="ghost")) == 1, "one request, no retry storm"
    [entry] = json.loads(cli(config, "dlq", "list", "--json").stdout)
    assert "rejected by the endpoint (404)" in entry["reason"]
    assert "ResourceNotFoundException" in entry["reason"]
    assert entry["record"]["requestPayload"] == {"n": 1}


@pytest.fixture
def moto_function(moto_url: str) -> str:
    """A function created in moto (it stores it; running it would need Docker)."""
    kw = {"endpoint_url": moto_url, "region_name": "us-east-1"}
    role = boto3.client("iam", **kw).create_role(RoleName=f"r{time.time_ns()}", AssumeRolePolicyDocument="{}")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("app.py", "def handler(event, context):\n    return event\n")
    name = f"f{time.time_ns()}"
    created = boto3.client("lambda", **kw).create_function(
        FunctionName=name, Runtime="python3.12", Role=role["Role"]["Arn"], Handler="app.handler",
        Code={"ZipFile": buf.getvalue()})
    return created["FunctionArn"]


async def test_moto_wire_protocol(moto_url: str, moto_function: str, functions) -> None:
    fn = functions(arn=moto_function, endpoint_url=moto_url, backend="localstack")
    await fn.dry_run()
    handed = await fn.handover(Invocation(b'{"n": 1}'))
    assert handed.ok and handed.payload == b"", "202: the remote queue took the event"
    result = await fn.invoke(Invocation(b'{"n": 2}'))
    # moto answers 200 with X-Amz-Function-Error (it cannot start the Docker container): a function error.
    assert result.function_error and b"docker" in result.payload.lower()
    assert fn.retries == 0


# --- the Runtime Interface Emulator and sam local start-lambda (fakes of their documented behaviour) -------


async def test_rie_errors_are_read_from_the_body(functions) -> None:
    rie = FakeRie(timeout=3)
    async with serving(rie) as url:
        fn = functions(arn=arn("whatever"), endpoint_url=url, backend="rie")
        assert fn.limit == 1 and fn.cfg.invocation_type == "RequestResponse"
        assert (await fn.invoke(Invocation(b'{"n": 1}'))).payload == b'{"n": 1}'
        failed = await fn.invoke(Invocation(b'{"raise": "bad input"}'))
        assert failed.function_error == "Unhandled" and failed.error_type == "RuntimeError"
        timed_out = await fn.invoke(Invocation(b'{"timeout": true}'))
        assert timed_out.function_error == "Unhandled" and timed_out.error_type == "Sandbox.Timedout"
        assert json.loads(timed_out.payload)["errorMessage"].endswith("Task timed out after 3.00 seconds")
        handed = await fn.handover(Invocation(b'{"n": 2}'))
        assert handed.ok and handed.payload == b'{"n": 2}', "handed over as a sync call"


async def test_rie_busy_400_is_a_throttle(functions) -> None:
    rie = FakeRie()
    async with serving(rie) as url:
        fn = functions(arn=arn("whatever"), endpoint_url=url, backend="rie", max_concurrency=2, retry_timeout=30)
        results = await asyncio.gather(*(fn.invoke(Invocation(b'{"sleep": 0.3}')) for _ in range(2)))
        assert all(r.ok for r in results)
        assert rie.busy_answers >= 1 and fn.retries >= 1


async def test_sam_body_heuristic(functions) -> None:
    sam = FakeSam({"billing"})
    async with serving(sam) as url:
        fn = functions(arn=arn("billing") + ":prod", endpoint_url=url, backend="sam")
        ok = await fn.invoke(Invocation(b'{"n": 1}', log_tail=True))
        assert ok.ok and ok.payload == b'{"n": 1}', "no Qualifier query, no LogType: SAM refuses both"
        four_keys = await fn.invoke(Invocation(b'{"raise": "boom"}'))
        assert four_keys.function_error == "Unhandled", "SAM sent no header; the body keys tell"
        three = {"return": {"errorMessage": "x", "errorType": "E", "stackTrace": []}}
        assert (await fn.invoke(Invocation(json.dumps(three).encode()))).function_error == "Unhandled"
        missing = functions(arn=arn("other"), endpoint_url=url, backend="sam")
        with pytest.raises(InvocationRejected) as caught:
            await missing.invoke(Invocation(b"{}"))
        assert caught.value.status == 404 and missing.retries == 0


def test_sam_and_rie_cannot_take_event_invocations() -> None:
    with pytest.raises(ConfigError, match="invocation_type: RequestResponse"):
        remote_config(arn=arn("f"), backend="sam", invocation_type="Event")
    assert remote_config(arn=arn("f"), backend="aws").invocation_type == "Event"


# --- the sorting rules as a table ---------------------------------------------------------------------------

ERROR_BODY = b'{"errorMessage": "m", "errorType": "E"}'


@pytest.mark.parametrize(("backend", "header", "payload", "expected"), [
    ("aws", "Unhandled", b"{}", "Unhandled"),
    ("aws", "Handled", b"text", "Handled"),
    ("aws", None, ERROR_BODY, None),  # a function may return an error-shaped object on purpose
    ("localstack", None, ERROR_BODY, None),
    ("sam", None, ERROR_BODY, "Unhandled"),
    ("rie", None, ERROR_BODY, "Unhandled"),
    ("rie", None, b"Task timed out after 3.00 seconds", "Unhandled"),
    ("aws", None, b"Task timed out after 3.00 seconds", None),
])
def test_function_error_per_backend(backend: str, header: str | None, payload: bytes, expected: str | None) -> None:
    assert function_error(backend, header, payload, "rid")[0] == expected


@pytest.mark.parametrize(("backend", "status", "code", "message", "kind"), [
    ("aws", 429, "TooManyRequestsException", "Rate exceeded", "retry"),
    ("aws", 500, "ServiceException", "", "retry"),
    ("aws", 502, "EC2ThrottledException", "", "retry"),
    ("aws", 409, "ResourceConflictException", "Pending", "retry"),
    ("aws", 404, "ResourceNotFoundException", "Function not found", "rejected"),
    ("aws", 403, "AccessDeniedException", "not authorized", "rejected"),
    ("aws", 400, "InvalidParameterValueException", "bad", "rejected"),
    ("aws", 413, "RequestTooLargeException", "too large", "rejected"),
    ("rie", 400, "400", "", "retry"),  # busy
    ("rie", 502, "502", "", "function"),  # the runtime crashed
    ("sam", 501, "NotImplementedLocally", "no", "rejected"),
])
def test_client_errors_are_sorted(backend: str, status: int, code: str, message: str, kind: str) -> None:
    err = ClientError({"Error": {"Code": code, "Message": message},
                       "ResponseMetadata": {"HTTPStatusCode": status}}, "Invoke")
    assert client_error(backend, err).kind == kind
