"""Config validation: every malformed file gets a message naming the path, the line and the fix."""

from __future__ import annotations

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
    ("regoin: us-east-1\n", "regoin: unknown key; did you mean 'region'? expected one of: region, account_id, state_dir"),
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
     "line 5: functions.f.runtime: unknown 'node'; expected one of: python, provided"),
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
     "line 5: functions.f.timout: unknown key; did you mean 'timeout'? expected one of: handler, code, runtime"),
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


def _check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bridge.cli", "check", "--config", str(path)],
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
