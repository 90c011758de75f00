"""memory_size on memory used (not address space) and workers that die before asking for work: daemon subprocess.

Which enforcement ran is in the daemon's `memory.limits` line: on a machine whose cgroup v2 hierarchy has no
memory controller (a hybrid cgroup v1/v2 host, as this project's CI box), `auto` is the resident-memory watch;
`test_enforcement_in_use` records which one the other tests exercised.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import sys
import time
from pathlib import Path

import pytest

from bridge.config.model import parse_config
from bridge.errors import ConfigError
from bridge.function_logs import log_path
from bridge.invokers.local import LocalFunction
from bridge.invokers.memory import MODE_ENV, choose, own_cgroup, usable
from bridge.invokers.worker import FunctionSpec
from bridge.model import Invocation
from bridge.testing import Daemon, free_port, invoke, lambda_client, wait_until, write_config, write_handler

PYTHON = os.path.realpath(sys.executable)

HOG = """
    def handler(event, context):
        blocks = [bytearray(1024 * 1024) for _ in range(event["mb"])]  # touched: resident, as Lambda counts it
        return {"mb": len(blocks)}
"""

# The handler's own process stays small; the child it starts is what uses the memory.
FORKER = """
    import subprocess, sys
    def handler(event, context):
        code = f"import time; b = bytearray({event['mb']} * 1024 * 1024); time.sleep({event['hold']})"
        subprocess.run([sys.executable, "-c", code], timeout=60)
        return {"child": "finished"}
"""

# What V8, Go and the JVM do at start: reserve gigabytes of address space and touch almost none of it.
RESERVER = f"""#!{PYTHON}
import json, mmap, os, urllib.request
reserved = mmap.mmap(-1, 8 << 30, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, prot=0)  # PROT_NONE: never committed
api = f"http://{{os.environ['AWS_LAMBDA_RUNTIME_API']}}/2018-06-01/runtime/invocation"
while True:
    with urllib.request.urlopen(f"{{api}}/next") as response:
        rid, event = response.headers["Lambda-Runtime-Aws-Request-Id"], json.load(response)
    body = json.dumps({{"reserved_gb": len(reserved) >> 30, "echo": event}}).encode()
    urllib.request.urlopen(urllib.request.Request(f"{{api}}/{{rid}}/response", data=body, method="POST")).read()
"""

# A custom runtime in Node.js, as a `provided` bootstrap: V8 reserves gigabytes of address space at start.
NODE = """#!/bin/sh
exec node -e '
const http = require("http"), api = process.env.AWS_LAMBDA_RUNTIME_API;
function next() {
  http.get(`http://${api}/2018-06-01/runtime/invocation/next`, (res) => {
    let body = "";
    res.on("data", (chunk) => (body += chunk));
    res.on("end", () => {
      const id = res.headers["lambda-runtime-aws-request-id"];
      const post = http.request(`http://${api}/2018-06-01/runtime/invocation/${id}/response`, {method: "POST"},
                                (r) => { r.resume(); r.on("end", next); });
      post.end(JSON.stringify({node: process.version, echo: JSON.parse(body)}));
    });
  });
}
next();'
"""

EXIT1 = """#!/bin/sh
echo "reading the config"
echo "fatal: DATABASE_URL is not set" >&2
printf 'last words without a newline'
exit 1
"""

KILLED = """#!/bin/sh
echo "about to be killed"
kill -KILL $$
"""


def _bootstrap(root: Path, name: str, text: str) -> str:
    code = root / name
    code.mkdir()
    (code / "bootstrap").write_text(text)
    (code / "bootstrap").chmod(stat.S_IRWXU)
    return str(code)


def _functions(root: Path) -> dict[str, dict]:
    provided = {"handler": "function.handler", "runtime": "provided"}
    return {
        "hog": {"handler": "app.handler", "code": str(write_handler(root, "hog", HOG)), "memory_size": 128},
        "forker": {"handler": "app.handler", "code": str(write_handler(root, "forker", FORKER)), "timeout": 30},
        "reserver": {**provided, "code": _bootstrap(root, "reserver", RESERVER)},
        "node": {**provided, "code": _bootstrap(root, "node", NODE)},
        "exit1": {**provided, "code": _bootstrap(root, "exit1", EXIT1)},
        "killed": {**provided, "code": _bootstrap(root, "killed", KILLED)},
        "nointerpreter": {**provided, "code": _bootstrap(root, "nointerpreter", "#!/nonexistent/python3\n")},
    }


@pytest.fixture(scope="module", params=["auto", "rss"])
def daemon(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """The daemon as it chooses by itself (auto), and forced onto the resident-memory watch (rss)."""
    root = tmp_path_factory.mktemp("memory")
    port = free_port()
    config = {"state_dir": str(root / "state"), "api": {"listen": f"127.0.0.1:{port}"},
              "functions": _functions(root)}
    env = {MODE_ENV: request.param}
    with Daemon(write_config(root / "config.yaml", config), env) as running:
        running.url = f"http://127.0.0.1:{port}"
        running.state_dir = root / "state"
        running.mode = request.param
        yield running


@pytest.fixture(scope="module")
def client(daemon: Daemon):
    return lambda_client(daemon.url, "us-east-1", read_timeout=60)


def invoke_traced(client, name: str, event: object = None) -> tuple[dict, dict, str]:
    response, body = invoke(client, name, event)
    return response, body, response["ResponseMetadata"]["RequestId"]


def function_log(daemon: Daemon, name: str, until: str) -> str:
    """The function's log file once ``until`` is in it (it is written in batches every 50 ms)."""
    path = log_path(daemon.state_dir, name)
    return wait_until(lambda: until in (text := path.read_bytes().decode(errors="replace")) and text)


def cgroup_reason() -> str | None:
    """Why this machine cannot give the daemon cgroup memory limits (None: it can, if delegated)."""
    try:
        usable(own_cgroup(), required=True)
    except OSError as err:
        return str(err)
    return None


def test_enforcement_in_use(daemon: Daemon) -> None:
    [chosen] = daemon.find("memory.limits")
    expected = "rss" if daemon.mode == "rss" or cgroup_reason() else chosen["mode"]
    assert chosen["mode"] == expected, chosen
    print(f"{MODE_ENV}={daemon.mode}: {chosen['mode']} ({chosen.get('reason') or chosen.get('cgroup')})")


def test_allocating_past_memory_size_is_runtime_out_of_memory(client, daemon: Daemon) -> None:
    response, body, rid = invoke_traced(client, "hog", {"mb": 1024})
    assert response["FunctionError"] == "Unhandled"
    assert body == {"errorType": "Runtime.OutOfMemory",
                    "errorMessage": f"RequestId: {rid} Error: Runtime exited with error: signal: killed"}
    [report] = daemon.wait_for("invoke.report", request_id=rid)
    assert "\tStatus: error\tError Type: Runtime.OutOfMemory" in report["line"]
    used = int(re.search(r"Max Memory Used: (\d+) MB", report["line"])[1])
    assert 120 <= used <= 128 + 48, report["line"]  # killed near the limit, not hundreds of MB later
    log = function_log(daemon, "hog", f"REPORT RequestId: {rid}")
    assert f"RequestId: {rid} Error: Runtime exited with error: signal: killed\rRuntime.OutOfMemory" in log
    started = len(daemon.find("worker.started", function="hog"))
    assert invoke_traced(client, "hog", {"mb": 16})[1] == {"mb": 16}  # a fresh worker takes over
    assert len(daemon.find("worker.started", function="hog")) == started + 1


def test_memory_of_the_workers_children_counts(client, daemon: Daemon) -> None:
    started = time.monotonic()
    _, body, _ = invoke_traced(client, "forker", {"mb": 400, "hold": 30})
    assert body["errorType"] == "Runtime.OutOfMemory", body
    assert time.monotonic() - started < 20  # killed, not left to its 30 s sleep
    assert invoke_traced(client, "forker", {"mb": 8, "hold": 0})[1] == {"child": "finished"}


def test_reserved_address_space_is_not_memory_used(client) -> None:
    response, body, _ = invoke_traced(client, "reserver", {"x": 1})
    assert "FunctionError" not in response, body
    assert body == {"reserved_gb": 8, "echo": {"x": 1}}


def test_node_custom_runtime_starts_with_128_mb(client) -> None:
    assert shutil.which("node"), "node is installed by .ci/run"
    response, body, _ = invoke_traced(client, "node", {"x": 1})
    assert "FunctionError" not in response, body
    assert body["echo"] == {"x": 1} and body["node"].startswith("v")


def test_bootstrap_exiting_at_start_fails_the_call_at_once_and_says_why(client, daemon: Daemon) -> None:
    started = time.monotonic()
    _, body, rid = invoke_traced(client, "exit1")
    assert time.monotonic() - started < 3  # not the 10 s init timeout
    assert body == {"errorType": "Runtime.ExitError",
                    "errorMessage": f"RequestId: {rid} Error: Runtime exited with error: exit status 1"}
    log = function_log(daemon, "exit1", f"REPORT RequestId: {rid}")
    for line in ("reading the config", "fatal: DATABASE_URL is not set", "last words without a newline",
                 f"RequestId: {rid} Error: Runtime exited with error: exit status 1\rRuntime.ExitError"):
        assert line in log
    exited = daemon.wait_for("worker.init_exited", function="exit1")[-1]
    assert exited["reason"] == "exit status 1"
    assert exited["last_output"][-1] == "last words without a newline"


def test_bootstrap_killed_at_start_is_an_exit_error_not_out_of_memory(client, daemon: Daemon) -> None:
    started = time.monotonic()
    _, body, rid = invoke_traced(client, "killed")
    assert time.monotonic() - started < 3
    assert body == {"errorType": "Runtime.ExitError",
                    "errorMessage": f"RequestId: {rid} Error: Runtime exited with error: signal: killed"}
    assert "about to be killed" in function_log(daemon, "killed", f"REPORT RequestId: {rid}")


def test_missing_interpreter_fails_fast_and_is_named(client, daemon: Daemon) -> None:
    started = time.monotonic()
    _, body, rid = invoke_traced(client, "nointerpreter")
    assert time.monotonic() - started < 3
    bootstrap = Path(daemon.config_path).parent / "nointerpreter" / "bootstrap"
    assert body == {"errorType": "Runtime.InvalidEntrypoint",  # the kernel names the script, as on Lambda
                    "errorMessage": f"RequestId: {rid} Error: fork/exec {bootstrap}: no such file or directory"}
    assert f"failed to execute {bootstrap}" in function_log(daemon, "nointerpreter", f"REPORT RequestId: {rid}")


def test_forcing_cgroups_that_cannot_be_used_is_a_clear_start_error(tmp_path: Path) -> None:
    """Here either the machine has no cgroup memory controller, or the daemon shares the test's cgroup."""
    config = write_config(tmp_path / "config.yaml", {"state_dir": str(tmp_path / "state"),
                                                     "api": {"listen": f"127.0.0.1:{free_port()}"}})
    daemon = Daemon(config, {MODE_ENV: "cgroup"})
    with pytest.raises(AssertionError):
        daemon.start()
    assert daemon.proc.wait(10) == 2
    assert f"{MODE_ENV}=cgroup: cannot use cgroup v2 memory limits" in daemon.tail()
    assert "Delegate=yes" in daemon.tail()


async def test_without_a_launcher_a_missing_interpreter_is_invalid_entrypoint(tmp_path: Path) -> None:
    """Where setpriv cannot run, the worker is the bootstrap itself: Popen's own error must fail the call."""
    code = Path(_bootstrap(tmp_path, "nointerpreter", "#!/nonexistent/python3\n"))
    cfg = parse_config(f"functions:\n  f: {{handler: function.handler, code: '{code}', runtime: provided}}\n")
    fn = LocalFunction(FunctionSpec("f", cfg.functions["f"], cfg.region, cfg.function_arn("f"), launcher=()))
    try:
        result = await fn.invoke(Invocation(b"{}"))
        assert json.loads(result.payload) == {
            "errorType": "Runtime.InvalidEntrypoint",
            "errorMessage": f"RequestId: {result.request_id} Error: fork/exec {code / 'bootstrap'}: "
                            "no such file or directory"}
        assert fn.workers == 0  # nothing half-started is kept
    finally:
        await fn.close()


def test_an_unknown_enforcement_is_a_config_error_naming_the_choices() -> None:
    with pytest.raises(ConfigError) as err:
        choose({MODE_ENV: "swap"})
    assert err.value.exit_code == 2
    assert f"{MODE_ENV}='swap' is not one of auto, cgroup, rss" in str(err.value)
