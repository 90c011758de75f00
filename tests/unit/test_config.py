"""Config validation: every malformed file gets a message naming the path, the line and the fix."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bridge.config.model import load_config, parse_config
from bridge.errors import ConfigError

GOOD_FUNCTION = "    handler: app.handler\n    code: ./code\n"

MALFORMED = [
    ("region: 5\n", "region: expected a string, got 5"),
    ("region: moon-base\n", "region: 'moon-base' is not an AWS region name"),
    ("account_id: 12345\n", "account_id: 12345 is not a 12-digit AWS account id"),
    ("regoin: us-east-1\n",
     "regoin: unknown key; did you mean 'region'? expected one of: region, account_id, state_dir"),
    ("api:\n  listen: localhost\n", "api.listen: 'localhost' is not HOST:PORT"),
    ("api:\n  listen: 127.0.0.1:70000\n", "port 1-65535"),
    ("api:\n  port: 9001\n", "api.port: unknown key; expected one of: listen"),
    ("functions:\n  f:\n" + GOOD_FUNCTION + "    reserved_concurrency: true\n",
     "line 5: functions.f.reserved_concurrency: expected a number, got true"),
    ("functions:\n  f:\n" + GOOD_FUNCTION + "    timeout: yes\n", "functions.f.timeout: expected a number, got true"),
    ("api: 9001\n", "api: expected a mapping"),
    ("functions: []\n", "functions: expected a mapping"),
    ("functions:\n  f:\n    code: ./code\n", "line 2: functions.f.handler: required key is missing"),
    ("functions:\n  f:\n    handler: app.handler\n", "functions.f.code: required key is missing"),
    ("functions:\n  f:\n    handler: apphandler\n    code: ./code\n",
     "functions.f.handler: 'apphandler' is not module.function"),
    ("functions:\n  f:\n    handler: app.handler\n    code: ./nowhere\n",
     "functions.f.code: directory"),
    ("functions:\n  f:\n" + GOOD_FUNCTION + "    runtime: node\n",
     "line 5: functions.f.runtime: unknown 'node'; expected one of: python, python3.N (e.g. python3.12), provided"),
    ("functions:\n  f:\n" + GOOD_FUNCTION + "    runtime: provided\n", "runtime provided needs an executable"),
    ("functions:\n  f:\n" + GOOD_FUNCTION + "    timeout: 0\n",
     "line 5: functions.f.timeout: 0 is below the minimum 1"),
    ("functions:\n  f:\n" + GOOD_FUNCTION + "    timeout: 901\n", "functions.f.timeout: 901 is above the maximum 900"),
    ("functions:\n  f:\n" + GOOD_FUNCTION + "    timeout: soon\n", "functions.f.timeout: expected a whole number"),
    ("functions:\n  f:\n" + GOOD_FUNCTION + "    memory_size: 64\n",
     "functions.f.memory_size: 64 is below the minimum 128"),
    ("functions:\n  f:\n" + GOOD_FUNCTION + "    memory_size: 20000\n", "is above the maximum 10240"),
    ("functions:\n  f:\n" + GOOD_FUNCTION + "    reserved_concurrency: -1\n",
     "functions.f.reserved_concurrency: -1 is below the minimum 0"),
    ("functions:\n  f:\n" + GOOD_FUNCTION + "    timout: 3\n",
     "line 5: functions.f.timout: unknown key; did you mean 'timeout'? expected one of: runtime, handler, code"),
    ("functions:\n  f:\n" + GOOD_FUNCTION + "    environment: {AWS_REGION: x}\n", "'AWS_REGION' is reserved"),
    ("functions:\n  f:\n" + GOOD_FUNCTION + "    environment: {1BAD: x}\n",
     "'1BAD' is not a valid environment variable name"),
    ("functions:\n  f:\n" + GOOD_FUNCTION + "    environment: [A]\n", "functions.f.environment: expected a mapping"),
    ("functions:\n  'bad name':\n" + GOOD_FUNCTION, "function name 'bad name' must be 1-64 letters"),
    ("functions:\n  f:\n" + GOOD_FUNCTION + "    environment: {TOKEN: '${NOT_SET_ANYWHERE}'}\n",
     "line 5: functions.f.environment.TOKEN: environment variable NOT_SET_ANYWHERE is not set"),
    ("log_level: loud\n", "log_level: unknown 'loud'; expected one of: debug, info, warning, error"),
    ("shutdown_timeout: -5\n", "shutdown_timeout: -5 is below the minimum 0"),
    ("functions:\n  f: [1, 2\n", "not valid YAML"),
    ("- just\n- a list\n", "the file must be a mapping"),
    ("functions:\n  f:\n" + GOOD_FUNCTION + "sources:\n  - {name: s, function: f}\n",
     "line 6: sources[0].type: required key is missing; expected one of: directory, schedule, sqs, mqtt, http"),
]


@pytest.fixture
def base(tmp_path: Path) -> Path:
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "app.py").write_text("def handler(e, c):\n    return e\n")
    return tmp_path


@pytest.mark.parametrize(("text", "expected"), MALFORMED)
def test_malformed_config_names_path_and_fix(base: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(text, base_dir=base, environ={})
    assert any(expected in problem for problem in err.value.problems), err.value.problems


def test_all_errors_are_reported_at_once(base: Path) -> None:
    text = "regoin: x\nfunctions:\n  f:\n" + GOOD_FUNCTION + "    timeout: 0\n    memory_size: 1\n"
    with pytest.raises(ConfigError) as err:
        parse_config(text, base_dir=base)
    assert len(err.value.problems) == 3
    assert [p.split(":")[0] for p in err.value.problems] == ["line 1", "line 6", "line 7"]


def test_defaults_and_relative_paths(base: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    config = parse_config("functions:\n  f:\n" + GOOD_FUNCTION + "state_dir: ./state\n", base_dir=base)
    fn = config.functions["f"]
    assert (config.region, config.account_id, config.api.address) == ("us-east-1", "000000000000", None)
    assert (fn.runtime, fn.timeout, fn.memory_size) == ("python", 3, 128)
    assert fn.reserved_concurrency == (os.cpu_count() or 1)
    assert fn.code == base / "code" and config.state_dir == base / "state"


def test_state_directory_from_systemd(base: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/lambda-bridge:/var/lib/other")
    assert parse_config("functions: {}\n", base_dir=base).state_dir == Path("/var/lib/lambda-bridge")


def test_environment_substitution(base: Path) -> None:
    text = ("api: {listen: '${PORT:-9001}'}\nfunctions:\n  f:\n" + GOOD_FUNCTION +
            "    environment: {TOKEN: '${SECRET}', LITERAL: '$${NOT_REPLACED}', N: 3, B: true}\n")
    config = parse_config(text, base_dir=base, environ={"SECRET": "s3cr3t"})
    assert config.api.address == ("127.0.0.1", 9001)
    env = config.functions["f"].environment
    assert env == {"TOKEN": "s3cr3t", "LITERAL": "${NOT_REPLACED}", "N": "3", "B": "true"}


def test_config_is_frozen(base: Path) -> None:
    config = parse_config("region: eu-west-1\n", base_dir=base)
    with pytest.raises(ValueError, match="frozen"):
        config.region = "us-east-1"  # type: ignore[misc]


def test_example_config_is_valid() -> None:
    config = load_config(Path(__file__).parents[2] / "config" / "example.yaml")
    assert "thumbnails" in config.functions


def _check(path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bridge.cli", "check", "--config", str(path), *extra],
                          capture_output=True, text=True, check=False)


def test_check_command_exit_codes(base: Path) -> None:
    good = base / "good.yaml"
    good.write_text("functions:\n  f:\n" + GOOD_FUNCTION)
    result = _check(good)
    assert result.returncode == 0, result.stderr
    assert "OK (1 function(s)" in result.stdout
    bad = base / "bad.yaml"
    bad.write_text(textwrap.dedent("""\
        functions:
          f:
            handler: app.handler
            code: ./code
            timeout: 0
    """))
    result = _check(bad)
    assert result.returncode == 2
    assert f"{bad}: 1 error" in result.stderr
    assert "line 5: functions.f.timeout: 0 is below the minimum 1" in result.stderr
    assert _check(base / "missing.yaml").returncode == 2


MQTT = "sources:\n  - {name: m, type: mqtt, broker: 'mqtt://127.0.0.1', sql: \"SELECT * FROM 't'\", function: f"


def _problems(text: str, base: Path) -> list[str]:
    with pytest.raises(ConfigError) as err:
        parse_config(text, base_dir=base, environ={})
    return err.value.problems


def test_state_dir_that_is_a_file(base: Path) -> None:
    (base / "state").write_text("not a directory")
    [problem] = _problems("state_dir: ./state/sub\n", base)
    assert "state_dir: " in problem and "is a file, not a directory" in problem


def test_api_listen_host_must_resolve(base: Path) -> None:
    [problem] = _problems("api: {listen: 'no-such-host.invalid:9001'}\n", base)
    assert "api.listen: 'no-such-host.invalid:9001': the host 'no-such-host.invalid' does not resolve" in problem
    assert parse_config("api: {listen: 'localhost:9001'}\n", base_dir=base).api.address == ("localhost", 9001)


def test_duplicate_keys_are_errors(base: Path) -> None:
    text = "functions:\n  f:\n" + GOOD_FUNCTION + "  f:\n" + GOOD_FUNCTION + "    timeout: 5\n"
    [problem] = _problems(text, base)
    assert problem.startswith("line 5: functions.f: duplicate key (also on line 2)")


def test_schema_and_reference_errors_in_one_pass(base: Path) -> None:
    text = ("functions:\n  f:\n" + GOOD_FUNCTION + "    timeout: 0\n"
            "sources:\n"
            "  - {name: a, type: schedule, schedule: 'rate(5 minutes)', function: nope}\n"
            "  - {name: a, type: sqs, queue: missing, function: f}\n"
            "  - {name: b, type: schedule, schedule: 'cron(bad)', function: ghost}\n")
    problems = _problems(text, base)
    assert [p.split(": ")[1] for p in problems] == [
        "functions.f.timeout", "sources[0].function", "sources[1].name", "sources[1].queue",
        "sources[2].schedule", "sources[2].function"]
    assert not any(".schedule.schedule" in p for p in problems), "no doubled path"


def test_messages_do_not_end_in_a_colon(base: Path) -> None:
    problems = _problems("sources:\n  - {name: d, type: directory, path: ./nowhere, function: f}\n"
                         "functions:\n  f:\n" + GOOD_FUNCTION, base)
    assert problems and not any(p.rstrip().endswith(":") for p in problems), problems


def test_schedule_errors_name_their_key(base: Path) -> None:
    fn = "functions:\n  f:\n" + GOOD_FUNCTION
    [zone] = _problems(fn + "sources:\n  - {name: s, type: schedule, schedule: 'rate(1 hour)', timezone: Mars/Base,"
                       " function: f}\n", base)
    assert "sources[0].timezone: unknown time zone 'Mars/Base'" in zone


def test_mqtt_password_needs_username(base: Path) -> None:
    [problem] = _problems(MQTT + ", password: s3cret}\nfunctions:\n  f:\n" + GOOD_FUNCTION, base)
    assert "sources[0].password: a password needs a username" in problem and "s3cret" not in problem


def test_numeric_mqtt_password_is_never_echoed(base: Path) -> None:
    config = parse_config(MQTT + ", username: u, password: 98765}\nfunctions:\n  f:\n" + GOOD_FUNCTION,
                          base_dir=base)
    assert config.sources[0].read_password() == "98765"
    problems = _problems(MQTT + ", username: u, password: [98765]}\nfunctions:\n  f:\n" + GOOD_FUNCTION, base)
    assert problems and not any("98765" in p for p in problems), problems
    assert "98765" not in repr(config.sources[0])


def test_mqtt_password_file(base: Path) -> None:
    (base / "secret").write_text("from-a-file\n")
    fn = "functions:\n  f:\n" + GOOD_FUNCTION
    config = parse_config(MQTT + ", username: u, password_file: ./secret}\n" + fn, base_dir=base)
    assert config.sources[0].read_password() == "from-a-file"
    [missing] = _problems(MQTT + ", username: u, password_file: ./nope}\n" + fn, base)
    assert "sources[0].password_file: file" in missing and "does not exist" in missing
    [both] = _problems(MQTT + ", username: u, password: x, password_file: ./secret}\n" + fn, base)
    assert "either password or password_file" in both
    [alone] = _problems(MQTT + ", password_file: ./secret}\n" + fn, base)
    assert "sources[0].password_file: a password needs a username" in alone


def test_two_mqtt_sources_with_one_client_id(base: Path) -> None:
    text = (MQTT + "}\n  - {name: n, type: mqtt, broker: 'mqtt://127.0.0.1:1883', client_id: lambda-bridge-m,"
            " sql: \"SELECT * FROM 'u'\", function: f}\nfunctions:\n  f:\n" + GOOD_FUNCTION)
    [problem] = _problems(text, base)
    assert "sources[1].client_id: 'lambda-bridge-m' is also the client id of sources[0]" in problem
    other_broker = text.replace("mqtt://127.0.0.1:1883", "mqtt://127.0.0.2")
    assert len(parse_config(other_broker, base_dir=base).sources) == 2


def test_check_imports_handlers_in_one_pass(base: Path) -> None:
    (base / "code" / "broken.py").write_text("def handler(e, c)\n    return e\n")
    (base / "code" / "loud.py").write_text("print('hello from import')\nimport os\n"
                                           "assert os.environ['MODE'] == 'on'\ndef handler(e, c):\n    return e\n")
    path = base / "handlers.yaml"
    path.write_text("functions:\n"
                    "  ok: {handler: app.handler, code: ./code}\n"
                    "  nofn: {handler: app.missing, code: ./code}\n"
                    "  nomod: {handler: nowhere.handler, code: ./code}\n"
                    "  syntax: {handler: broken.handler, code: ./code}\n"
                    "  envok: {handler: loud.handler, code: ./code, environment: {MODE: 'on'}}\n"
                    "  envbad: {handler: loud.handler, code: ./code, environment: {MODE: 'off'}}\n")
    result = _check(path)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert lines[0] == f"{path}: 4 errors", result.stderr
    assert "functions.nofn.handler: module 'app' has no function 'missing'; it has: handler" in result.stderr
    assert f"functions.nomod.handler: no module 'nowhere' in {base / 'code'}" in result.stderr
    assert "functions.syntax.handler: syntax error in broken.py, line 1" in result.stderr
    assert "functions.envbad.handler: importing 'loud' raised AssertionError" in result.stderr
    assert result.stdout == ""
    assert _check(path, "--skip-handlers").returncode == 0


def test_check_json(base: Path) -> None:
    bad = base / "bad.yaml"
    bad.write_text("functions:\n  f:\n" + GOOD_FUNCTION + "    timout: 3\n")
    result = subprocess.run([sys.executable, "-m", "bridge.cli", "--json", "check", "-c", str(bad)],
                            capture_output=True, text=True, check=False)
    report = json.loads(result.stdout)
    assert result.returncode == 2 and report["valid"] is False
    assert report["problems"] == ["line 5: functions.f.timout: unknown key; did you mean 'timeout'? expected one "
                                  "of: runtime, handler, code, timeout, memory_size, reserved_concurrency, "
                                  "idle_timeout, environment, layers, aws_endpoints, async"]
