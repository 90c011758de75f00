"""Node.js functions through the daemon (a subprocess): unchanged handlers under the real aws-lambda-ric.

Each outcome is checked against what Lambda's Node.js runtime produces, as AWS documents it: the error
document (errorType, errorMessage, trace; nodejs-exceptions.html), Runtime.ImportModuleError and
Runtime.HandlerNotFound at init, the timeout and exit messages, the ``timestamp\\trequestId\\tINFO\\tmessage``
log format, the context object.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import pytest
import yaml
from aws_lambda_powertools.utilities.parser.models import SqsRecordModel
from botocore.config import Config as BotoConfig

from bridge.testing import Daemon, free_port, invoke, lambda_client, wait_until, write_config, write_handler
from tests.integration.mosquitto import Mosquitto, Publisher
from tests.integration.nodejs_kit import link_runtime, log_lines, node_runtime_cache, write_node
from tests.integration.test_sam_import import sam_import

__all__ = ["node_runtime_cache"]  # the session fixture, used by the daemon fixture below

# The session's first test builds aws-lambda-ric (node_runtime_cache): over 5 minutes on a loaded machine.
pytestmark = pytest.mark.timeout(1200)

NODE_MEMORY = 128  # Lambda's default: memory_size limits resident memory, not V8's address-space reservations

CONTEXT = """
    const keys = ["AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_REGION", "LAMBDA_TASK_ROOT",
                  "_HANDLER", "TZ", "AWS_EXECUTION_ENV", "GREETING"];
    const describe = (event, context) => ({
      event,
      env: Object.fromEntries(keys.map((k) => [k, process.env[k]])),
      context: {functionName: context.functionName, functionVersion: context.functionVersion,
                invokedFunctionArn: context.invokedFunctionArn, memoryLimitInMB: context.memoryLimitInMB,
                awsRequestId: context.awsRequestId, logGroupName: context.logGroupName,
                logStreamName: context.logStreamName, remaining: context.getRemainingTimeInMillis(),
                callbackWaitsForEmptyEventLoop: context.callbackWaitsForEmptyEventLoop},
    });
"""

FUNCTIONS: dict[str, dict[str, str | dict]] = {
    # CommonJS, async, in a nested folder (handler src/handlers/app.handler), the SDK by require().
    "cjs": {"src/handlers/app.js": CONTEXT + """
        const { SQSClient } = require("@aws-sdk/client-sqs");
        exports.handler = async (event, context) => {
          console.log("hello from node", JSON.stringify({n: event.n}));
          return {...describe(event, context), sdk: typeof SQSClient};
        };
    """},
    # An ES module (.mjs) importing the runtime's SDK clients, which it does not list.
    "esm": {"index.mjs": """
        import { S3Client, GetObjectCommand } from "@aws-sdk/client-s3";
        import { LambdaClient } from "@aws-sdk/client-lambda";
        export const handler = async (event) => (console.info("esm", {k: event.k}), {
          module: typeof require === "undefined" ? "esm" : "cjs",
          sdk: [typeof S3Client, typeof GetObjectCommand, typeof LambdaClient], event,
        });
    """},
    # "type": "module" in package.json makes app.js an ES module.
    "esmpkg": {"package.json": {"name": "esmpkg", "type": "module"}, "app.js": """
        import { SQSClient } from "@aws-sdk/client-sqs";
        export async function handler(event) { return {module: typeof require, sdk: typeof SQSClient}; }
    """},
    "callback": {"index.js": """
        exports.handler = function (event, context, callback) {
          if (event.fail) return callback(new Error("nope: " + event.fail));
          setTimeout(() => callback(null, {called: "back", left: context.getRemainingTimeInMillis() > 0}), 5);
        };
    """},
    # AWS's example (nodejs-exceptions.html): a ReferenceError.
    "boom": {"index.js": """
        exports.handler = async function() {
          return x + 10
        }
    """},
    "badimport": {"index.js": """
        const gone = require("module-that-does-not-exist");
        exports.handler = async () => gone;
    """},
    "slow": {"index.js": """
        exports.handler = async (event) => {
          console.log("sleeping", event.ms);
          await new Promise((resolve) => setTimeout(resolve, event.ms));
          return {slept: event.ms};
        };
    """},
    "hog": {"index.js": """
        const kept = [];
        exports.handler = async (event) => {
          if (event.heap) for (;;) kept.push(new Array(1 << 17).fill(1.5));  // until V8's heap limit
          return {ok: true};
        };
    """},
    "crash": {"index.js": """
        exports.handler = async (event) => {
          if (event.how === "exit") process.exit(3);
          if (event.how === "uncaught") {
            setTimeout(() => { throw new TypeError("thrown outside the handler's promise"); }, 0);
            await new Promise((resolve) => setTimeout(resolve, 2000));
          }
          return {alive: true};
        };
    """},
}


def _functions(root: Path) -> dict[str, dict]:
    code = {name: str(write_node(root, name, files)) for name, files in FUNCTIONS.items()}
    common = {"runtime": "nodejs", "memory_size": NODE_MEMORY}
    return {
        "cjs": {**common, "handler": "src/handlers/app.handler", "code": code["cjs"],
                "environment": {"GREETING": "hi"}},
        "esm": {**common, "handler": "index.handler", "code": code["esm"],
                "environment": {"AWS_LAMBDA_LOG_FORMAT": "JSON"}},
        "esmpkg": {**common, "handler": "app.handler", "code": code["esmpkg"]},
        "callback": {**common, "handler": "index.handler", "code": code["callback"]},
        "boom": {**common, "handler": "index.handler", "code": code["boom"]},
        "badimport": {**common, "handler": "index.handler", "code": code["badimport"]},
        "nohandler": {**common, "handler": "index.missing", "code": code["boom"]},
        "slow": {**common, "handler": "index.handler", "code": code["slow"], "timeout": 1},
        "single": {**common, "handler": "index.handler", "code": code["slow"], "timeout": 10,
                   "reserved_concurrency": 1},
        "crash": {**common, "handler": "index.handler", "code": code["crash"]},
        "hog": {**common, "handler": "index.handler", "code": code["hog"], "timeout": 60},
    }


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, node_runtime_cache: Path):
    root = tmp_path_factory.mktemp("nodejs")
    port = free_port()
    state = link_runtime(node_runtime_cache, root / "state")
    config = {"region": "eu-west-1", "account_id": "123456789012", "state_dir": str(state),
              "api": {"listen": f"127.0.0.1:{port}"}, "functions": _functions(root)}
    with Daemon(write_config(root / "config.yaml", config)) as running:
        running.url = f"http://127.0.0.1:{port}"
        running.state = state
        yield running


@pytest.fixture(scope="module")
def client(daemon: Daemon):
    return lambda_client(daemon.url, "eu-west-1")



def tail(response) -> str:
    import base64

    return base64.b64decode(response["LogResult"]).decode()


def test_commonjs_nested_handler_with_lambda_context_env_and_log_format(client) -> None:
    response, body = invoke(client, "cjs", {"n": 1}, LogType="Tail")
    assert "FunctionError" not in response and body["event"] == {"n": 1}
    ctx, env, rid = body["context"], body["env"], response["ResponseMetadata"]["RequestId"]
    assert ctx["functionName"] == "cjs" and ctx["functionVersion"] == "$LATEST"
    assert ctx["invokedFunctionArn"] == "arn:aws:lambda:eu-west-1:123456789012:function:cjs"
    assert ctx["memoryLimitInMB"] == str(NODE_MEMORY) and ctx["awsRequestId"] == rid
    assert ctx["logGroupName"] == "/aws/lambda/cjs" and ctx["callbackWaitsForEmptyEventLoop"] is True
    assert re.fullmatch(r"\d{4}/\d\d/\d\d/\[\$LATEST\][0-9a-f]{32}", ctx["logStreamName"])
    assert 2000 < ctx["remaining"] <= 3000
    assert env["_HANDLER"] == "src/handlers/app.handler" and env["TZ"] == ":UTC" and env["GREETING"] == "hi"
    assert env["AWS_EXECUTION_ENV"].startswith("AWS_Lambda_nodejs") and env["LAMBDA_TASK_ROOT"].endswith("/cjs")
    assert body["sdk"] == "function"
    # Lambda's Node.js text log format, written by the ric itself: timestamp, request id, level, message.
    [line] = [fields for fields in log_lines(tail(response)) if fields[-1].startswith("hello from node")]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line[0])
    assert line[1:] == [rid, "INFO", 'hello from node {"n":1}']
    assert re.search(rf"^REPORT RequestId: {rid}\tDuration: [\d.]+ ms\tBilled Duration: \d+ ms\t"
                     rf"Memory Size: {NODE_MEMORY} MB\tMax Memory Used: \d+ MB", tail(response), re.M)


def test_es_modules_import_the_runtime_sdk(client) -> None:
    response, body = invoke(client, "esm", {"k": "v"}, LogType="Tail")
    assert "FunctionError" not in response
    assert body == {"module": "esm", "sdk": ["function", "function", "function"], "event": {"k": "v"}}
    # AWS_LAMBDA_LOG_FORMAT=JSON: Lambda's JSON log lines, from the ric too.
    [line] = [json.loads(text) for text in tail(response).splitlines() if text.startswith("{")]
    assert line["level"] == "INFO" and line["requestId"] == response["ResponseMetadata"]["RequestId"]
    assert line["message"] == "esm { k: 'v' }" and line["timestamp"].endswith("Z")
    response, body = invoke(client, "esmpkg")
    assert "FunctionError" not in response and body == {"module": "undefined", "sdk": "function"}


def test_callback_handler_result_and_error(client) -> None:
    response, body = invoke(client, "callback")
    assert "FunctionError" not in response and body == {"called": "back", "left": True}
    response, body = invoke(client, "callback", {"fail": "why"})
    assert response["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Error" and body["errorMessage"] == "nope: why"
    assert body["trace"][0] == "Error: nope: why" and "index.js" in body["trace"][1]


def test_warm_worker_is_reused(client, daemon: Daemon) -> None:
    for _ in range(5):
        invoke(client, "callback")
    assert len(daemon.find("worker.started", function="callback")) == 1


def test_handler_error_as_lambda_documents_it(client, daemon: Daemon) -> None:
    response, body = invoke(client, "boom", LogType="Tail")
    assert response["StatusCode"] == 200 and response["FunctionError"] == "Unhandled"
    # nodejs-exceptions.html: {"errorType": "ReferenceError", "errorMessage": "x is not defined",
    #   "trace": ["ReferenceError: x is not defined", " at Runtime.exports.handler (/var/task/index.js:2:3)", ...]}
    assert set(body) == {"errorType", "errorMessage", "trace"}
    assert body["errorType"] == "ReferenceError" and body["errorMessage"] == "x is not defined"
    assert body["trace"][0] == "ReferenceError: x is not defined"
    assert re.fullmatch(r"\s+at .*index\.js:2:\d+\)?", body["trace"][1])
    rid = response["ResponseMetadata"]["RequestId"]
    # The ric logs the error too: timestamp, request id, ERROR, "Invoke Error", the same document.
    [error] = [fields for fields in log_lines(tail(response)) if fields[2] == "ERROR"]
    assert error[1] == rid and error[3].startswith("Invoke Error")
    assert "Status: error" not in tail(response)  # a handler's exception leaves REPORT as it is


def test_init_errors_import_module_and_handler_not_found(client) -> None:
    response, body = invoke(client, "badimport")
    assert response["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Runtime.ImportModuleError"
    assert body["errorMessage"].startswith("Error: Cannot find module 'module-that-does-not-exist'")
    response, body = invoke(client, "nohandler", LogType="Tail")
    assert body["errorType"] == "Runtime.HandlerNotFound"
    assert body["errorMessage"] == "index.missing is undefined or not exported"
    assert "Status: error\tError Type: Runtime.HandlerNotFound" in tail(response)
    assert invoke(client, "callback")[1] == {"called": "back", "left": True}  # the daemon is unharmed


def test_timeout_kills_the_worker_and_the_next_call_gets_a_fresh_one(client, daemon: Daemon) -> None:
    response, body = invoke(client, "slow", {"ms": 30000}, LogType="Tail")
    assert response["FunctionError"] == "Unhandled" and body["errorType"] == "Sandbox.Timedout"
    rid = response["ResponseMetadata"]["RequestId"]
    assert re.fullmatch(rf"\d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{{3}}Z {rid} Task timed out after 1\.00 seconds",
                        body["errorMessage"])
    assert "Status: timeout" in tail(response)
    assert invoke(client, "slow", {"ms": 1})[1] == {"slept": 1}
    assert len(daemon.find("worker.started", function="slow")) == 2


def test_worker_exit_mid_call_and_uncaught_exception(client, daemon: Daemon) -> None:
    response, body = invoke(client, "crash", {"how": "exit"})
    rid = response["ResponseMetadata"]["RequestId"]
    assert body == {"errorType": "Runtime.ExitError",
                    "errorMessage": f"RequestId: {rid} Error: Runtime exited with error: exit status 3"}
    assert invoke(client, "crash")[1] == {"alive": True}  # a fresh worker
    # An exception thrown outside the handler's promise fails the call with that error; the ric then exits
    # (code 129) and the next call gets a fresh worker.
    response, body = invoke(client, "crash", {"how": "uncaught"})
    assert response["FunctionError"] == "Unhandled"
    assert body["errorType"] == "TypeError" and body["errorMessage"] == "thrown outside the handler's promise"
    assert invoke(client, "crash")[1] == {"alive": True}
    assert len(daemon.find("worker.started", function="crash")) == 3


def test_out_of_memory_at_the_default_128_mb_as_on_lambda(client, daemon: Daemon) -> None:
    # A handler filling its heap at Lambda's default memory_size: the worker's resident memory passes 128 MB
    # before V8's own heap limit (sized from memory_size as Lambda's bootstrap sizes it), and it is killed,
    # as Lambda's sandbox kills it (README: {"errorType": "Runtime.OutOfMemory", ... "signal: killed"}).
    response, body = invoke(client, "hog", {"heap": True}, LogType="Tail")
    rid = response["ResponseMetadata"]["RequestId"]
    assert body == {"errorType": "Runtime.OutOfMemory",
                    "errorMessage": f"RequestId: {rid} Error: Runtime exited with error: signal: killed"}
    report = re.search(rf"REPORT RequestId: {rid}\t.*\tMemory Size: 128 MB\tMax Memory Used: (\d+) MB.*"
                       r"\tStatus: error\tError Type: Runtime.OutOfMemory", tail(response))
    assert report and int(report.group(1)) >= 128
    assert invoke(client, "hog")[1] == {"ok": True}  # a fresh worker


def test_reserved_concurrency_throttles_as_for_python(client, daemon: Daemon) -> None:
    log = daemon.state / "logs" / "single.log"
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(invoke, client, "single", {"ms": 2500})
        wait_until(lambda: log.exists() and "sleeping 2500" in log.read_text(), timeout=20)
        with pytest.raises(client.exceptions.TooManyRequestsException):
            invoke(client, "single", {"ms": 1})
        assert first.result()[1] == {"slept": 2500}


DEPS_CJS = {"package.json": {"name": "deps-cjs", "version": "1.0.0", "dependencies": {"ms": "2.1.3"}},
            "index.js": """
                const ms = require("ms");
                exports.handler = async () => ({twoDays: ms("2 days"), where: require.resolve("ms")});
            """}
DEPS_ESM = {"package.json": {"name": "deps-esm", "version": "1.0.0", "type": "module",
                             "dependencies": {"ms": "2.1.3"}},
            "index.js": """
                import ms from "ms";
                import { S3Client } from "@aws-sdk/client-s3";
                export const handler = async () => ({oneHour: ms("1h"), sdk: typeof S3Client});
            """}


@contextlib.contextmanager
def started(config: Path, timeout: float) -> Iterator[Daemon]:
    """The daemon, given ``timeout`` to come up (it builds what is missing first)."""
    daemon = Daemon(config)
    daemon.start(timeout=timeout)
    try:
        yield daemon
    finally:
        daemon.__exit__()


def test_package_json_dependencies_built_outside_the_code_and_reused(tmp_path: Path, node_runtime_cache: Path) -> None:
    cjs, esm = write_node(tmp_path, "cjs", DEPS_CJS), write_node(tmp_path, "esm", DEPS_ESM)
    locked = subprocess.run(["npm", "install", "--package-lock-only", "--no-audit", "--no-fund"], cwd=esm,
                            capture_output=True, text=True, check=False)
    assert locked.returncode == 0, locked.stderr  # esm gets a lock file: it is built with npm ci
    state, port = link_runtime(node_runtime_cache, tmp_path / "state"), free_port()
    functions = {name: {"runtime": "nodejs", "memory_size": NODE_MEMORY, "handler": "index.handler",
                        "code": str(code)} for name, code in (("cjs", cjs), ("esm", esm))}
    config = write_config(tmp_path / "config.yaml", {"state_dir": str(state), "api": {"listen": f"127.0.0.1:{port}"},
                                                     "functions": functions})
    client = boto3.client("lambda", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                          config=BotoConfig(retries={"max_attempts": 0}))
    with started(config, 180) as daemon:
        built = [e["line"] for e in daemon.find("build.progress") if "installing" in e["line"]]
        assert len(built) == 2 and any("npm ci" in line for line in built), built
        assert invoke(client, "cjs")[1]["twoDays"] == 172800000
        assert invoke(client, "esm")[1] == {"oneHour": 3600000, "sdk": "function"}
        where = invoke(client, "cjs")[1]["where"]
    envs = sorted((state / "envs").iterdir())
    assert len(envs) == 2 and where.startswith(str(state / "envs"))
    assert not (cjs / "node_modules").exists() and not (esm / "node_modules").exists()  # the code is untouched
    with started(config, 60) as daemon:  # unchanged: nothing is built again
        assert not [e for e in daemon.find("build.progress") if "installing" in e["line"]]
        assert invoke(client, "esm")[1]["oneHour"] == 3600000
    (cjs / "package.json").write_text(json.dumps({**DEPS_CJS["package.json"], "description": "changed"}))
    with started(config, 180):
        assert invoke(client, "cjs")[1]["twoDays"] == 172800000
    assert len(list((state / "envs").iterdir())) == 3  # a changed package.json gets its own folder


def node_printed(daemon: Daemon, tag: str, count: int = 1, timeout: float = 30) -> list[dict]:
    """The JSON documents the handlers logged after ``tag`` (in Lambda's Node.js log format), once ``count``."""
    def found() -> list[dict]:
        lines = [fields for e in daemon.find("function.output") for fields in log_lines(str(e.get("line", "")))]
        return [json.loads(f[3].split(" ", 1)[1]) for f in lines if f[2] == "INFO" and f[3].startswith(tag + " ")]

    try:
        return wait_until(lambda: len(seen := found()) >= count and seen, timeout=timeout)
    except TimeoutError:
        raise AssertionError(f"no {count}x {tag} within {timeout} s:\n{daemon.tail()}") from None


def test_iot_rule_on_mosquitto_reaches_an_unchanged_node_handler(tmp_path: Path, node_runtime_cache: Path) -> None:
    code = write_node(tmp_path, "alert", {"index.mjs": """
        export const handler = async (event, context) => {
          console.log("ALERT " + JSON.stringify(event));
          return { handled: true };
        };
    """})
    state = link_runtime(node_runtime_cache, tmp_path / "state")
    with Mosquitto(tmp_path / "broker") as broker:
        sql = "SELECT temperature, topic(2) AS device_id FROM 'sensors/+/telemetry' WHERE temperature > 60"
        config = write_config(tmp_path / "config.yaml", {
            "state_dir": str(state), "log_level": "info",
            "functions": {"alert": {"runtime": "nodejs", "memory_size": NODE_MEMORY, "handler": "index.handler",
                                    "code": str(code)}},
            "sources": [{"name": "hot", "type": "mqtt", "broker": broker.url, "sql": sql, "function": "alert"}]})
        with Daemon(config) as daemon, Publisher(broker.plain_port) as publisher:
            daemon.wait_for("mqtt.subscribed")
            publisher.send("sensors/dev7/telemetry", json.dumps({"temperature": 72, "unit": "C"}))
            publisher.send("sensors/dev8/telemetry", json.dumps({"temperature": 55, "unit": "C"}))  # filtered out
            publisher.send("sensors/dev9/telemetry", json.dumps({"temperature": 61, "unit": "C"}))
            alerts = node_printed(daemon, "ALERT", count=2)
    assert sorted(alerts, key=json.dumps) == [{"temperature": 61, "device_id": "dev9"},
                                              {"temperature": 72, "device_id": "dev7"}]


def test_sam_template_with_a_node_function_imported_built_and_run(tmp_path: Path, node_runtime_cache: Path) -> None:
    config, port, stderr = sam_import(tmp_path, "nodejs-orders/template.yaml")
    assert "not supported" not in stderr
    imported = yaml.safe_load(config.read_text())
    assert imported["functions"]["OrderFunction"]["runtime"] == "nodejs"
    link_runtime(node_runtime_cache, (config.parent / imported["state_dir"]).resolve())
    with started(config, 60) as daemon:
        sqs = boto3.client("sqs", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                           config=BotoConfig(retries={"max_attempts": 0}))
        url = f"http://127.0.0.1:{port}/123456789012/node-orders"
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"id": 1, "item": "book"}))
        [seen] = node_printed(daemon, "ORDER")
    assert seen["order"] == {"id": 1, "item": "book"} and seen["stage"] == "test"
    assert seen["fn"] == "OrderFunction" and seen["sdk"] == "function"
    record = SqsRecordModel.model_validate(seen["record"])
    assert record.eventSourceARN == "arn:aws:sqs:us-east-1:123456789012:node-orders"


def test_missing_toolchain_is_named_by_check_and_run_and_python_functions_are_unaffected(tmp_path: Path) -> None:
    node_code = write_node(tmp_path, "web", {"index.js": "exports.handler = async () => 1;\n"})
    py_code = write_handler(tmp_path, "py", "def handler(event, context):\n    return 1\n")
    empty = tmp_path / "bin"
    empty.mkdir()
    python_only = {"state_dir": str(tmp_path / "state"), "functions": {"py": {"handler": "app.handler",
                                                                                "code": str(py_code)}}}
    both = {**python_only, "functions": {**python_only["functions"],
                                         "web": {"runtime": "nodejs", "handler": "index.handler",
                                                 "code": str(node_code)}}}

    def command(config: dict, *args: str) -> subprocess.CompletedProcess[str]:
        path = write_config(tmp_path / "config.yaml", config)
        return subprocess.run([sys.executable, "-m", "bridge.cli", *args, "--config", str(path)],
                              env={**os.environ, "PATH": str(empty)}, capture_output=True, text=True, timeout=60,
                              check=False)

    checked = command(both, "check")
    assert checked.returncode == 2
    assert ("functions.web.runtime: nodejs needs node, npm, make, cmake, g++, autoconf, automake, libtoolize, "
            "python3 to build aws-lambda-ric 3.3.0 (its native part is compiled), not found on PATH; install them: "
            "apt-get install nodejs npm make cmake g++ autoconf automake libtool python3") in checked.stderr
    assert "functions.py" not in checked.stderr
    ran = command(both, "run")
    assert ran.returncode == 2 and "functions.web.runtime: nodejs needs node" in ran.stderr
    assert command(python_only, "check").returncode == 0


def test_live_reload_builds_a_new_node_function_off_the_loop(tmp_path: Path, node_runtime_cache: Path) -> None:
    py_code = write_handler(tmp_path, "py", "def handler(event, context):\n    return 'py'\n")
    node_code = write_node(tmp_path, "late", DEPS_CJS)
    state, port = link_runtime(node_runtime_cache, tmp_path / "state"), free_port()
    base = {"state_dir": str(state), "api": {"listen": f"127.0.0.1:{port}"},
            "functions": {"py": {"handler": "app.handler", "code": str(py_code)}}}
    config = write_config(tmp_path / "config.yaml", base)
    client = boto3.client("lambda", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                          config=BotoConfig(retries={"max_attempts": 0}))
    with Daemon(config) as daemon:
        late = {"runtime": "nodejs", "memory_size": NODE_MEMORY, "handler": "index.handler", "code": str(node_code)}
        write_config(config, {**base, "functions": {**base["functions"], "late": late}})
        daemon.wait_for("reload.applied", timeout=120)
        assert [e for e in daemon.find("build.progress") if "installing" in e["line"]]
        assert invoke(client, "late")[1]["twoDays"] == 172800000
        assert invoke(client, "py")[1] == "py"


def test_a_failed_npm_install_names_the_function_and_npms_words(tmp_path: Path, node_runtime_cache: Path) -> None:
    code = write_node(tmp_path, "broken", {
        "package.json": {"name": "broken", "dependencies": {"ms": "999.999.999"}},  # no such version
        "index.js": "exports.handler = async () => 1;\n"})
    state = link_runtime(node_runtime_cache, tmp_path / "state")
    config = write_config(tmp_path / "config.yaml", {"state_dir": str(state), "functions": {
        "broken": {"runtime": "nodejs", "handler": "index.handler", "code": str(code)}}})
    ran = subprocess.run([sys.executable, "-m", "bridge.cli", "run", "--config", str(config)], capture_output=True,
                         text=True, timeout=120, check=False)
    assert ran.returncode == 1
    assert "function broken: npm install for nodejs-" in ran.stderr and "ETARGET" in ran.stderr
    assert list((state / "envs").iterdir()) == []  # no half-built folder left behind


def test_build_check_and_clean_know_node_functions(tmp_path: Path, node_runtime_cache: Path) -> None:
    code = write_node(tmp_path, "deps", DEPS_CJS)
    state = link_runtime(node_runtime_cache, tmp_path / "state")
    config = write_config(tmp_path / "config.yaml", {"state_dir": str(state), "functions": {
        "deps": {"runtime": "nodejs", "handler": "index.handler", "code": str(code)}}})

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "bridge.cli", *args, "--config", str(config)],
                              capture_output=True, text=True, timeout=300, check=False)

    checked = cli("check")
    assert checked.returncode == 0 and "warning: functions.deps: the dependencies of" in checked.stderr
    assert "run `lambda-bridge build`" in checked.stderr
    built = cli("build")
    assert built.returncode == 0 and "with npm install (no lock file)" in built.stderr, built.stderr
    assert "functions.deps" not in cli("check").stderr  # built: nothing to warn about
    (state / "envs" / "unused").mkdir()
    cleaned = cli("build", "--clean")
    assert cleaned.returncode == 0 and "unused" in cleaned.stdout
    kept = {p.name for p in (state / "envs").iterdir()} | {p.name for p in (state / "runtimes").iterdir()}
    assert any(name.startswith("nodejs-") for name in kept)  # the packages
    assert any(re.fullmatch(r"nodejs\d+-[0-9a-f]{16}", name) for name in kept)  # the runtime


S3_READER = {"index.mjs": """
    // After AWS's "Using an Amazon S3 trigger to invoke a Lambda function" (Node.js): get the object.
    import { S3Client, GetObjectCommand, PutObjectCommand } from "@aws-sdk/client-s3";

    const client = new S3Client({});

    export const handler = async (event, context) => {
      const bucket = event.Records[0].s3.bucket.name;
      const key = decodeURIComponent(event.Records[0].s3.object.key.replace(/\\+/g, " "));
      const response = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
      const text = await response.Body.transformToString();
      await client.send(new PutObjectCommand({ Bucket: "processed", Key: key + ".upper", Body: text.toUpperCase() }));
      console.log("OBJECT " + JSON.stringify({ bucket, key, text, record: event.Records[0] }));
      return { ok: true };
    };
"""}


def test_s3_trigger_reads_the_object_with_the_sdk_through_the_bridge(tmp_path: Path, node_runtime_cache: Path) -> None:
    from aws_lambda_powertools.utilities.parser.models import S3Model

    code = write_node(tmp_path, "reader", S3_READER)
    uploads, processed = tmp_path / "uploads", tmp_path / "processed"
    uploads.mkdir()
    processed.mkdir()
    state, port = link_runtime(node_runtime_cache, tmp_path / "state"), free_port()
    config = write_config(tmp_path / "config.yaml", {
        "state_dir": str(state), "api": {"listen": f"127.0.0.1:{port}"}, "buckets": {"processed": str(processed)},
        "functions": {"reader": {"runtime": "nodejs", "handler": "index.handler", "code": str(code)}},
        "sources": [{"name": "uploads", "type": "directory", "path": str(uploads), "bucket": "uploads",
                     "function": "reader", "events": ["s3:ObjectCreated:*"]}]})
    with Daemon(config) as daemon:
        daemon.wait_for("directory.ready", source="uploads", timeout=60)
        (uploads / "holiday notes.txt").write_text("sunny and warm")
        [seen] = node_printed(daemon, "OBJECT")
        wait_until(lambda: (processed / "holiday notes.txt.upper").exists(), timeout=20)
    assert seen["bucket"] == "uploads" and seen["key"] == "holiday notes.txt" and seen["text"] == "sunny and warm"
    assert S3Model.model_validate({"Records": [seen["record"]]}).Records[0].s3.object.key == "holiday+notes.txt"
    assert (processed / "holiday notes.txt.upper").read_text() == "SUNNY AND WARM"
