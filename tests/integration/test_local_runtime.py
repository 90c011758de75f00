"""Local functions through the daemon's Invoke API: real workers, real awslambdaric, boto3 as the client."""

from __future__ import annotations

import base64
import json
import re
import signal
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import pytest

from bridge.testing import Daemon, free_port, invoke, lambda_client, write_config, write_handler

HANDLERS = {
    "ok": """
        import os
        def handler(event, context):
            print("hello from the handler")
            keys = ["AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_FUNCTION_VERSION",
                    "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME", "AWS_REGION", "AWS_DEFAULT_REGION",
                    "LAMBDA_TASK_ROOT", "_HANDLER", "AWS_LAMBDA_RUNTIME_API", "TZ", "GREETING"]
            return {"event": event, "env": {k: os.environ.get(k) for k in keys},
                    "context": {"function_name": context.function_name,
                                "function_version": context.function_version,
                                "invoked_function_arn": context.invoked_function_arn,
                                "memory_limit_in_mb": context.memory_limit_in_mb,
                                "aws_request_id": context.aws_request_id,
                                "log_group_name": context.log_group_name,
                                "log_stream_name": context.log_stream_name,
                                "remaining": context.get_remaining_time_in_millis()}}
    """,
    "boom": """
        def handler(event, context):
            raise ValueError("boom: " + str(event.get("why")))
    """,
    "slow": """
        import time
        def handler(event, context):
            print("sleeping", event.get("seconds", 0))
            time.sleep(event.get("seconds", 0))
            return {"slept": event.get("seconds", 0)}
    """,
    "hog": """
        def handler(event, context):
            if event.get("size_mb"):
                blob = bytearray(event["size_mb"] * 1024 * 1024)
                return {"len": len(blob)}
            return {"ok": True}
    """,
    "badimport": """
        import module_that_does_not_exist
        def handler(event, context):
            return 1
    """,
    "crash": """
        import ctypes, os
        def handler(event, context):
            if event.get("how") == "exit":
                os._exit(3)
            if event.get("how") == "segv":
                ctypes.string_at(0)
            return {"alive": True}
    """,
}

BOOTSTRAP = """#!/bin/bash
# A custom runtime as in AWS's tutorial: poll next, answer with curl.
set -euo pipefail
API="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime"
while true; do
  HEADERS="$(mktemp)"
  EVENT=$(curl -sS -D "$HEADERS" "$API/invocation/next")
  REQUEST_ID=$(grep -Fi Lambda-Runtime-Aws-Request-Id "$HEADERS" | tr -d '[:space:]' | cut -d: -f2)
  rm -f "$HEADERS"
  BODY="{\\"echo\\": $EVENT, \\"runtime\\": \\"bash\\"}"
  curl -sS -X POST "$API/invocation/$REQUEST_ID/response" -d "$BODY" >/dev/null
done
"""


def _functions(root: Path) -> dict[str, dict]:
    code = {name: write_handler(root, name, src) for name, src in HANDLERS.items()}
    shell = root / "shell"
    shell.mkdir()
    (shell / "bootstrap").write_text(BOOTSTRAP)
    (shell / "bootstrap").chmod(stat.S_IRWXU)
    fn = {
        "ok": {"handler": "app.handler", "code": str(code["ok"]), "memory_size": 256,
               "environment": {"GREETING": "hi"}},
        "boom": {"handler": "app.handler", "code": str(code["boom"])},
        "slow": {"handler": "app.handler", "code": str(code["slow"]), "timeout": 1},
        "single": {"handler": "app.handler", "code": str(code["slow"]), "timeout": 10, "reserved_concurrency": 1},
        "zero": {"handler": "app.handler", "code": str(code["ok"]), "reserved_concurrency": 0},
        "hog": {"handler": "app.handler", "code": str(code["hog"]), "memory_size": 128},
        "badimport": {"handler": "app.handler", "code": str(code["badimport"])},
        "nohandler": {"handler": "app.missing", "code": str(code["ok"])},
        "crash": {"handler": "app.handler", "code": str(code["crash"])},
        "shell": {"handler": "function.handler", "code": str(shell), "runtime": "provided"},
    }
    return fn


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("runtime")
    port = free_port()
    config = {"region": "eu-west-1", "account_id": "123456789012", "state_dir": str(root / "state"),
              "api": {"listen": f"127.0.0.1:{port}"}, "functions": _functions(root)}
    with Daemon(write_config(root / "config.yaml", config)) as running:
        running.url = f"http://127.0.0.1:{port}"
        yield running


@pytest.fixture(scope="module")
def client(daemon: Daemon):
    return lambda_client(daemon.url, "eu-west-1")



def test_success_with_lambda_environment_and_context(client) -> None:
    response, body = invoke(client, "ok", {"a": 1})
    assert response["StatusCode"] == 200
    assert "FunctionError" not in response
    assert response["ExecutedVersion"] == "$LATEST"
    assert body["event"] == {"a": 1}
    ctx, env = body["context"], body["env"]
    assert ctx["function_name"] == "ok" and ctx["function_version"] == "$LATEST"
    assert ctx["invoked_function_arn"] == "arn:aws:lambda:eu-west-1:123456789012:function:ok"
    assert ctx["memory_limit_in_mb"] == "256"
    assert ctx["aws_request_id"] == response["ResponseMetadata"]["RequestId"]
    assert ctx["log_group_name"] == "/aws/lambda/ok"
    assert re.fullmatch(r"\d{4}/\d\d/\d\d/\[\$LATEST\][0-9a-f]{32}", ctx["log_stream_name"])
    assert 2000 < ctx["remaining"] <= 3000
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == "eu-west-1"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256" and env["_HANDLER"] == "app.handler"
    assert env["TZ"] == ":UTC" and env["GREETING"] == "hi"
    assert env["LAMBDA_TASK_ROOT"].endswith("/ok") and env["AWS_LAMBDA_RUNTIME_API"].startswith("127.0.0.1:")
    assert env["AWS_LAMBDA_LOG_STREAM_NAME"] == ctx["log_stream_name"]


def test_warm_worker_is_reused(client, daemon: Daemon) -> None:
    before = len(daemon.find("worker.started", function="ok"))
    for _ in range(5):
        invoke(client, "ok")
    assert len(daemon.find("worker.started", function="ok")) == max(before, 1)


def test_handler_exception_is_unhandled_error(client) -> None:
    response, body = invoke(client, "boom", {"why": "testing"})
    assert response["StatusCode"] == 200
    assert response["FunctionError"] == "Unhandled"
    assert body["errorType"] == "ValueError"
    assert body["errorMessage"] == "boom: testing"
    assert isinstance(body["stackTrace"], list) and body["stackTrace"]


def test_timeout_kills_worker_and_next_call_gets_a_fresh_one(client, daemon: Daemon) -> None:
    response, body = invoke(client, "slow", {"seconds": 30})
    assert response["FunctionError"] == "Unhandled"
    rid = response["ResponseMetadata"]["RequestId"]
    pattern = rf"\d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{{3}}Z {rid} Task timed out after 1\.00 seconds"
    assert re.fullmatch(pattern, body["errorMessage"])
    response, body = invoke(client, "slow", {"seconds": 0})
    assert body == {"slept": 0}
    assert len(daemon.find("worker.started", function="slow")) == 2


def test_memory_limit_is_enforced(client) -> None:
    response, body = invoke(client, "hog", {"size_mb": 400})
    assert response["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Runtime.OutOfMemory"
    rid = response["ResponseMetadata"]["RequestId"]
    assert body["errorMessage"] == f"RequestId: {rid} Error: Runtime exited with error: signal: killed"
    response, body = invoke(client, "hog", {"size_mb": 16})
    assert body == {"len": 16 * 1024 * 1024}


def test_import_error_is_reported_like_lambda(client, daemon: Daemon) -> None:
    response, body = invoke(client, "badimport")
    assert response["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Runtime.ImportModuleError"
    assert "Unable to import module 'app'" in body["errorMessage"]
    assert "module_that_does_not_exist" in body["errorMessage"]
    assert invoke(client, "ok")[0]["StatusCode"] == 200  # the daemon is unharmed


def test_missing_handler_function(client) -> None:
    response, body = invoke(client, "nohandler")
    assert response["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Runtime.HandlerNotFound"


@pytest.mark.parametrize(("how", "reason"), [("exit", "exit status 3"), ("segv", "signal: segmentation fault")])
def test_crash_mid_call_fails_that_call_and_worker_is_replaced(client, how: str, reason: str) -> None:
    response, body = invoke(client, "crash", {"how": how})
    assert response["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Runtime.ExitError"
    assert body["errorMessage"].endswith(f"Runtime exited with error: {reason}")
    assert invoke(client, "crash", {"how": "none"})[1] == {"alive": True}


def test_concurrency_limit_throttles_like_lambda(client, daemon: Daemon) -> None:
    started = len(daemon.find("function.output", function="single"))
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(invoke, client, "single", {"seconds": 1.5})
        daemon.wait_for("function.output", count=started + 1, function="single")  # "sleeping 1.5"
        with pytest.raises(client.exceptions.TooManyRequestsException) as err:
            invoke(client, "single", {"seconds": 0})
        assert err.value.response["Error"]["Code"] == "TooManyRequestsException"
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
        assert first.result()[1] == {"slept": 1.5}
    with pytest.raises(client.exceptions.TooManyRequestsException):
        invoke(client, "zero")


def test_provided_runtime_runs_a_shell_bootstrap(client) -> None:
    response, body = invoke(client, "shell", {"x": [1, 2]})
    assert response["StatusCode"] == 200 and "FunctionError" not in response
    assert body == {"echo": {"x": [1, 2]}, "runtime": "bash"}


def test_log_tail(client) -> None:
    response = client.invoke(FunctionName="ok", Payload=b"{}", LogType="Tail")
    rid = response["ResponseMetadata"]["RequestId"]
    log = base64.b64decode(response["LogResult"]).decode()
    lines = log.splitlines()
    assert lines[0] == f"START RequestId: {rid} Version: $LATEST"
    assert "hello from the handler" in lines
    assert f"END RequestId: {rid}" in lines
    assert re.match(rf"REPORT RequestId: {rid}\tDuration: [\d.]+ ms\tBilled Duration: \d+ ms\t"
                    r"Memory Size: 256 MB\tMax Memory Used: \d+ MB", lines[-1])


def test_payload_too_large_is_413(client) -> None:
    big = json.dumps({"blob": "x" * (6 * 1024 * 1024)})
    with pytest.raises(client.exceptions.RequestTooLargeException) as err:
        client.invoke(FunctionName="ok", Payload=big)
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413
    async_big = json.dumps({"blob": "x" * (1024 * 1024)})
    with pytest.raises(client.exceptions.RequestTooLargeException):
        client.invoke(FunctionName="ok", Payload=async_big, InvocationType="Event")


def test_unknown_function_is_404(client) -> None:
    with pytest.raises(client.exceptions.ResourceNotFoundException) as err:
        client.invoke(FunctionName="nope", Payload=b"{}")
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert "function:nope" in err.value.response["Error"]["Message"]


def test_function_arn_and_dry_run(client) -> None:
    arn = "arn:aws:lambda:eu-west-1:123456789012:function:ok"
    assert client.invoke(FunctionName=arn, InvocationType="DryRun")["StatusCode"] == 204
    assert client.invoke(FunctionName=arn, Payload=b'{"b": 2}')["StatusCode"] == 200


def test_graceful_sigterm_finishes_in_flight_invocation(tmp_path: Path) -> None:
    code = write_handler(tmp_path, "slow", HANDLERS["slow"])
    port = free_port()
    config = {"state_dir": str(tmp_path / "state"), "api": {"listen": f"127.0.0.1:{port}"},
              "functions": {"slow": {"handler": "app.handler", "code": str(code), "timeout": 10}}}
    daemon = Daemon(write_config(tmp_path / "config.yaml", config)).start()
    client = boto3.client("lambda", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                          aws_access_key_id="x", aws_secret_access_key="x")
    try:
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(invoke, client, "slow", {"seconds": 1})
            daemon.wait_for("function.output", function="slow")
            daemon.signal(signal.SIGTERM)
            daemon.wait_for("service.stopping")
            assert pending.result(timeout=20)[1] == {"slept": 1}
        assert daemon.proc.wait(20) == 0
        assert daemon.find("service.stopped")
    finally:
        daemon.kill()


def test_large_response_and_event_round_trip(client) -> None:
    blob = "y" * (5 * 1024 * 1024)
    response, body = invoke(client, "ok", {"blob": blob})
    assert "FunctionError" not in response
    assert body["event"]["blob"] == blob
