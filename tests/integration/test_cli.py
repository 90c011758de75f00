"""The CLI with the daemon as a subprocess: it finds the running daemon, keeps stdout clean, reports in JSON."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel, S3Model, SqsModel

from bridge.testing import Daemon, free_port, wait_until, write_config, write_handler

ECHO = """
    def handler(event, context):
        print("echo", event.get("n"))
        return {"n": event.get("n")}
"""


def cli(config: Path | None, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """``lambda-bridge ARGS --config config`` (the global option after the command, as the other tests do)."""
    tail = ["--config", str(config)] if config is not None else []
    return subprocess.run([sys.executable, "-m", "bridge.cli", *args, *tail], input=stdin,
                          capture_output=True, text=True, check=False, timeout=120)


@pytest.fixture
def env(tmp_path: Path):
    port = free_port()
    echo = write_handler(tmp_path, "echo", ECHO)
    config = {
        "state_dir": str(tmp_path / "state"), "api": {"listen": f"127.0.0.1:{port}"},
        "functions": {"echo": {"handler": "app.handler", "code": str(echo), "reserved_concurrency": 2}},
        "queues": {"jobs": {}},
        "sources": [{"name": "nightly", "type": "schedule", "schedule": "cron(0 3 1 1 ? 2199)", "function": "echo"}],
    }
    return write_config(tmp_path / "config.yaml", config), config, port


def test_runtime_file_is_written_at_ready_private_and_removed_at_stop(env) -> None:
    path, config, port = env
    runtime = Path(config["state_dir"]) / "daemon.json"
    with Daemon(path) as daemon:
        info = json.loads(runtime.read_text())
        assert info["pid"] == daemon.proc.pid
        assert info["api_url"] == f"http://127.0.0.1:{port}" and info["config"] == str(path.resolve())
        assert len(info["config_sha256"]) == 64
        assert stat.S_IMODE(runtime.stat().st_mode) == 0o600
        daemon.stop()
    assert not runtime.exists()


def test_an_invalid_config_on_disk_does_not_lock_the_cli_out(env) -> None:
    path, _config, port = env
    with Daemon(path) as daemon:
        assert cli(path, "invoke", "echo", "--payload", '{"n": 1}').returncode == 0
        path.write_text(path.read_text().replace("reserved_concurrency: 2", "reserved_concurrency: true"))
        daemon.wait_for("reload.invalid")
        status = cli(path, "status")
        assert status.returncode == 0, status.stderr
        assert f"daemon: running (pid {daemon.proc.pid})" in status.stdout
        assert f"API http://127.0.0.1:{port}" in status.stdout
        assert "has errors, so the daemon" in status.stdout and "reserved_concurrency" in status.stdout

        invoked = cli(path, "invoke", "echo", "--payload", '{"n": 2}')
        assert invoked.returncode == 0, invoked.stderr
        assert json.loads(invoked.stdout) == {"n": 2}
        assert "has errors, so the daemon" in invoked.stderr and "in this process" not in invoked.stderr

        logs = cli(path, "logs", "echo", "--json")
        assert logs.returncode == 0, logs.stderr
        messages = [json.loads(line)["message"] for line in logs.stdout.splitlines()]
        assert "echo 2" in messages
        assert cli(path, "dlq", "list", "--json").stdout.strip() == "[]"
        sent = cli(path, "queue", "send", "jobs", "hello")
        assert sent.returncode == 0, sent.stderr
        assert "MessageId" in json.loads(sent.stdout)
        listed = json.loads(cli(path, "--json", "queue", "list").stdout)
        assert listed == [{"queue": "jobs", "visible": 1, "in_flight": 0, "delayed": 0}]
        assert cli(path, "check").returncode == 2, "check still says the file is wrong"


# Four ways to break the file's YAML itself (the daemon's state_dir is set in the file, not the default).
BROKEN = {
    "unclosed bracket": lambda text: text.replace("functions:", "functions: [", 1),
    "stray tab": lambda text: text.replace("functions:", "functions:\n\tstray: 1", 1),
    "unclosed quote": lambda text: text + 'region: "us-east-1\n',
    "empty file": lambda _text: "",
}


def run_cli(config: Path, *args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """``cli`` with more environment and another working directory (where a default state_dir would go)."""
    return subprocess.run([sys.executable, "-m", "bridge.cli", *args, "--config", str(config)],
                          capture_output=True, text=True, check=False, timeout=120, env={**os.environ, **env},
                          cwd=cwd)


@pytest.mark.parametrize("breakage", list(BROKEN))
def test_a_config_that_does_not_parse_does_not_lose_the_running_daemon(env, tmp_path: Path, breakage: str) -> None:
    """The CLI finds the daemon by the file's path in the daemon index (here in $RUNTIME_DIRECTORY, as systemd's
    RuntimeDirectory= gives it), not by the state_dir it can no longer read from the file."""
    path, config, _port = env
    where = {"RUNTIME_DIRECTORY": str(tmp_path / "run")}
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    with Daemon(path, env=where) as daemon:
        assert run_cli(path, "invoke", "echo", "--payload", '{"n": 1}', env=where, cwd=elsewhere).returncode == 0
        [entry] = (tmp_path / "run").iterdir()
        assert stat.S_IMODE(entry.stat().st_mode) == 0o600 and stat.S_IMODE(entry.parent.stat().st_mode) == 0o700
        path.write_text(BROKEN[breakage](path.read_text()))
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        runtime = Path(config["state_dir"]) / "daemon.json"
        wait_until(lambda: json.loads(runtime.read_text()).get("reload", {}).get("config_sha256") == digest)

        status = run_cli(path, "status", env=where, cwd=elsewhere)
        assert status.returncode == 0, status.stdout + status.stderr
        assert f"daemon: running (pid {daemon.proc.pid})" in status.stdout
        assert "has errors, so the daemon" in status.stdout

        invoked = run_cli(path, "invoke", "echo", "--payload", '{"n": 2}', env=where, cwd=elsewhere)
        assert invoked.returncode == 0, invoked.stderr
        assert json.loads(invoked.stdout) == {"n": 2}
        assert "has errors, so the daemon" in invoked.stderr and "in this process" not in invoked.stderr

        logs = run_cli(path, "logs", "echo", "--json", env=where, cwd=elsewhere)
        assert logs.returncode == 0, logs.stderr
        assert "echo 2" in [json.loads(line)["message"] for line in logs.stdout.splitlines()]
        assert "has errors, so the daemon" in logs.stderr

        listed = run_cli(path, "--json", "queue", "list", env=where, cwd=elsewhere)
        assert listed.returncode == 0, listed.stderr
        assert json.loads(listed.stdout) == [{"queue": "jobs", "visible": 0, "in_flight": 0, "delayed": 0}]

        dead = run_cli(path, "dlq", "list", env=where, cwd=elsewhere)
        assert dead.returncode == 0, dead.stderr
        assert "the dead-letter store is empty" in dead.stderr and "has errors, so the daemon" in dead.stderr
        assert list(elsewhere.iterdir()) == [], "no store made under the working directory's var/state"
        daemon.stop()
    assert list((tmp_path / "run").iterdir()) == [], "the entry goes with the daemon"
    gone = run_cli(path, "status", env=where, cwd=elsewhere)
    assert gone.returncode == 1 and "daemon: NOT RUNNING" in gone.stdout
    assert list(elsewhere.iterdir()) == []


def test_commands_that_only_read_create_no_store(env, tmp_path: Path) -> None:
    """No daemon and no store yet: reading says there is nothing and creates nothing, valid file or not."""
    path, config, _port = env
    config["state_dir"] = str(tmp_path / "nothing-yet")
    write_config(path, config)
    here = tmp_path / "cwd"
    here.mkdir()
    dead = run_cli(path, "dlq", "list", env={}, cwd=here)
    assert dead.returncode == 0 and "the dead-letter store is empty" in dead.stderr, dead.stderr
    shown = run_cli(path, "dlq", "show", "nope", env={}, cwd=here)
    assert shown.returncode != 0 and "no dead letter with id 'nope'" in shown.stderr
    assert run_cli(path, "status", env={}, cwd=here).returncode == 1
    listed = run_cli(path, "--json", "queue", "list", env={}, cwd=here)
    assert json.loads(listed.stdout) == [{"queue": "jobs", "visible": 0, "in_flight": 0, "delayed": 0}]
    assert run_cli(path, "schedules", env={}, cwd=here).returncode == 0
    follow = run_cli(path, "logs", "echo", "--follow", env={}, cwd=here)
    assert follow.returncode == 2 and "does not exist" in follow.stderr
    path.write_text(path.read_text().replace("functions:", "functions: [", 1))
    broken = run_cli(path, "dlq", "list", env={}, cwd=here)
    assert broken.returncode == 2 and "config" in broken.stderr.lower(), broken.stderr
    status = run_cli(path, "status", env={}, cwd=here)
    assert status.returncode == 1 and "state_dir is unknown" in status.stderr
    assert not (tmp_path / "nothing-yet").exists() and list(here.iterdir()) == []


def test_an_api_change_that_needs_a_restart_is_reported_and_the_old_port_used(env) -> None:
    path, config, port = env
    with Daemon(path) as daemon:
        config["api"]["listen"] = f"127.0.0.1:{free_port()}"
        write_config(path, config)
        daemon.wait_for("reload.applied")
        status = cli(path, "status", "--json")
        report = json.loads(status.stdout)
        assert report["running"] is True and report["api_url"] == f"http://127.0.0.1:{port}"
        assert "previous api settings" in report["config_note"] and "restart" in report["config_note"]
        invoked = cli(path, "invoke", "echo", "--payload", '{"n": 7}')
        assert json.loads(invoked.stdout) == {"n": 7}
        assert "in this process" not in invoked.stderr and "restart" in invoked.stderr
        assert daemon.find("invoke.report", function="echo"), "the daemon ran it"


def test_without_a_daemon_invoke_says_where_it_runs_and_stdout_stays_clean(env) -> None:
    path, *_ = env
    invoked = cli(path, "invoke", "echo", "--payload", '{"n": 3}')
    assert invoked.returncode == 0, invoked.stderr
    assert json.loads(invoked.stdout) == {"n": 3}
    assert "no daemon is running" in invoked.stderr and "running echo in this process" in invoked.stderr
    queued = cli(path, "invoke", "echo", "--invocation-type", "Event")
    assert json.loads(queued.stdout)["StatusCode"] == 202
    assert "it is delivered when the daemon starts" in queued.stderr
    sent = cli(path, "queue", "send", "jobs", '{"a": 1}')  # `queue send ... | jq` must get JSON alone
    assert sent.returncode == 0, sent.stderr
    assert len(sent.stdout.splitlines()) == 1 and "MessageId" in json.loads(sent.stdout)
    status = cli(path, "status", "--json")
    assert status.returncode == 1 and json.loads(status.stdout)["running"] is False


def test_fire_says_what_it_fired_and_where_it_went(env) -> None:
    path, *_ = env
    down = cli(path, "fire", "nightly")
    assert down.returncode == 0, down.stderr
    assert down.stdout.startswith("fired nightly (cron(0 3 1 1 ? 2199), rule) at ")
    assert "no daemon is running, so it waits for the next start" in down.stdout
    with Daemon(path) as daemon:
        daemon.wait_for("delivery.succeeded", function="echo")  # the event queued while it was down
        report = json.loads(cli(path, "fire", "nightly", "--json").stdout)
        assert report["daemon_running"] is True and f"pid {daemon.proc.pid}" in report["delivery"]
        assert report["schedule"] == "nightly" and report["function"] == "echo"
        done = daemon.wait_for("delivery.succeeded", count=2, function="echo")
        assert report["request_id"] in {e.get("request_id") for e in done}


def test_global_options_before_or_after_and_version(env, tmp_path: Path) -> None:
    path, *_ = env
    before = subprocess.run([sys.executable, "-m", "bridge.cli", "--config", str(path), "--json", "schedules"],
                            capture_output=True, text=True, check=False)
    after = cli(path, "schedules", "--json")
    assert before.returncode == after.returncode == 0, before.stderr + after.stderr
    assert json.loads(before.stdout)[0]["name"] == json.loads(after.stdout)[0]["name"] == "nightly"
    nested = subprocess.run([sys.executable, "-m", "bridge.cli", "-c", str(path), "dlq", "--json", "list"],
                            capture_output=True, text=True, check=False)
    assert json.loads(nested.stdout) == []
    version = cli(None, "--version")
    assert version.returncode == 0 and version.stdout.startswith("lambda-bridge ")
    for command in (["invoke"], ["logs"], ["queue", "send"], ["dlq", "show"], ["fire"], ["generate-event", "sqs"]):
        shown = cli(None, *command, "--help")
        assert shown.returncode == 0 and "Usage: lambda-bridge" in shown.stdout
        assert "--config" in shown.stdout and "--json" in shown.stdout
    unknown = cli(path, "stauts")
    assert unknown.returncode == 2 and "No such command 'stauts'" in unknown.stderr


def test_port_in_use_is_one_line_and_exit_2(env) -> None:
    path, _config, port = env
    with socket.create_server(("127.0.0.1", port)):
        result = subprocess.run([sys.executable, "-m", "bridge.cli", "run", "--config", str(path)],
                                capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == (f"lambda-bridge: api.listen: cannot listen on 127.0.0.1:{port}: address "
                                     "already in use; another process listens there: stop it, or change api.listen")
    assert "Traceback" not in result.stdout + result.stderr


def test_generated_events_match_aws_models(env) -> None:
    path, *_ = env
    put = json.loads(cli(path, "generate-event", "s3", "put", "--bucket", "photos", "--key", "a b.jpg",
                         "--body", "hi").stdout)
    model = S3Model.model_validate(put)
    assert model.Records[0].s3.object.key == "a+b.jpg" and model.Records[0].s3.object.size == 2
    assert model.Records[0].s3.bucket.name == "photos" and model.Records[0].eventName == "ObjectCreated:Put"
    removed = S3Model.model_validate(json.loads(cli(path, "generate-event", "s3", "delete").stdout))
    assert removed.Records[0].eventName == "ObjectRemoved:Delete"
    sqs = json.loads(cli(path, "generate-event", "sqs", "--queue", "orders", "--body", "x",
                         "--attributes", '{"kind": "order"}').stdout)
    record = SqsModel.model_validate(sqs).Records[0]
    assert record.body == "x" and record.eventSourceARN.endswith(":000000000000:orders")
    assert record.messageAttributes["kind"].stringValue == "order"
    rule = EventBridgeModel.model_validate(json.loads(cli(path, "generate-event", "schedule").stdout))
    assert rule.source == "aws.events" and rule.detail_type == "Scheduled Event"
    sched = json.loads(cli(path, "generate-event", "scheduler", "--time", "2026-01-01T00:00:00Z").stdout)
    assert EventBridgeModel.model_validate(sched).source == "aws.scheduler" and sched["time"] == "2026-01-01T00:00:00Z"
    iot = cli(path, "generate-event", "iot", "--sql", "SELECT topic(2) AS device, t FROM 'sensors/+/data'",
              "--topic", "sensors/d1/data", "--payload", '{"t": 31}')
    assert json.loads(iot.stdout) == {"device": "d1", "t": 31}


def test_generated_event_feeds_invoke(env) -> None:
    path, *_ = env
    event = cli(path, "generate-event", "sqs", "--body", "piped").stdout
    result = cli(path, "invoke", "echo", "--payload-file", "-", stdin=event)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"n": None}


def test_runtime_file_lets_the_cli_find_the_daemon_without_api_listen_in_the_file(env) -> None:
    """The runtime file, not the file's api.listen, says where the daemon is (here: the file has none now)."""
    path, config, port = env
    with Daemon(path) as daemon:
        text = yaml.safe_load(path.read_text())
        del text["api"]
        write_config(path, text)
        wait_until(lambda: daemon.find("reload.applied"))
        status = json.loads(cli(path, "status", "--json").stdout)
        assert status["running"] is True and status["api_url"] == f"http://127.0.0.1:{port}"
        assert os.path.exists(Path(config["state_dir"]) / "daemon.json")
