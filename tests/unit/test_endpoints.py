"""Where a local function's SDK calls go: AWS_ENDPOINT_URL_* from api.listen and aws_endpoints:, placeholder
credentials, and the config rules of aws_endpoints: and buckets:."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.config.model import Config, parse_config
from bridge.errors import ConfigError
from bridge.invokers.endpoints import PLACEHOLDER_CREDENTIALS, endpoint_variables, sdk_variables
from bridge.invokers.worker import FunctionSpec

FUNCTION = "functions:\n  f:\n    handler: app.handler\n    code: ./code\n"


@pytest.fixture
def base(tmp_path: Path) -> Path:
    (tmp_path / "code").mkdir()
    (tmp_path / "data").mkdir()
    return tmp_path


def config(base: Path, text: str) -> Config:
    return parse_config(text, base_dir=base, environ={})


def variables(base: Path, text: str) -> dict[str, str]:
    cfg = config(base, text)
    return endpoint_variables(cfg, cfg.functions["f"])  # type: ignore[arg-type]


def test_workers_are_pointed_at_api_listen(base: Path) -> None:
    assert variables(base, "api: {listen: 0.0.0.0:9001}\n" + FUNCTION) == {
        "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9001", "AWS_ENDPOINT_URL_SQS": "http://127.0.0.1:9001",
        "AWS_ENDPOINT_URL_LAMBDA": "http://127.0.0.1:9001", "AWS_ENDPOINT_URL_EVENTBRIDGE": "http://127.0.0.1:9001",
        "AWS_ENDPOINT_URL_SNS": "http://127.0.0.1:9001"}
    assert variables(base, "api: {listen: '[::1]:9001'}\n" + FUNCTION)["AWS_ENDPOINT_URL_S3"] == "http://[::1]:9001"
    assert variables(base, FUNCTION) == {}, "no api.listen: nothing to point at"


def test_precedence_function_over_global_over_bridge(base: Path) -> None:
    text = ("api: {listen: 127.0.0.1:9001}\naws_endpoints: {s3: aws, dynamodb: 'http://127.0.0.1:8000', "
            "sqs: 'http://elsewhere:4566'}\n" + FUNCTION + "    aws_endpoints: {sqs: bridge, lambda: aws}\n")
    assert variables(base, text) == {"AWS_ENDPOINT_URL_DYNAMODB": "http://127.0.0.1:8000",
                                     "AWS_ENDPOINT_URL_SQS": "http://127.0.0.1:9001",
                                     "AWS_ENDPOINT_URL_EVENTBRIDGE": "http://127.0.0.1:9001",
                                     "AWS_ENDPOINT_URL_SNS": "http://127.0.0.1:9001"}
    cfg = config(base, "api: {listen: 127.0.0.1:9001}\n" + FUNCTION
                 + "    environment: {AWS_ENDPOINT_URL_S3: 'http://mine:1'}\n")
    fn = cfg.functions["f"]
    spec = FunctionSpec("f", fn, "us-east-1", "arn", endpoints=endpoint_variables(cfg, fn),  # type: ignore[arg-type]
                        launcher=())
    env = spec.environment("127.0.0.1:1", "stream")
    assert env["AWS_ENDPOINT_URL_S3"] == "http://mine:1", "the function's own environment: wins"
    assert env["AWS_ENDPOINT_URL_LAMBDA"] == "http://127.0.0.1:9001"


def test_placeholder_credentials_only_when_there_are_none(tmp_path: Path) -> None:
    endpoints = {"AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9001"}
    assert sdk_variables(endpoints, {}, {}, home=tmp_path) == {**endpoints, **PLACEHOLDER_CREDENTIALS}
    assert sdk_variables(endpoints, {}, {"AWS_PROFILE": "dev"}, home=tmp_path) == endpoints
    assert sdk_variables(endpoints, {"AWS_ACCESS_KEY_ID": "k"}, {}, home=tmp_path) == endpoints
    (tmp_path / ".aws").mkdir()
    (tmp_path / ".aws" / "credentials").write_text("[default]\n")
    assert sdk_variables(endpoints, {}, {}, home=tmp_path) == endpoints
    assert sdk_variables({}, {}, {}, home=tmp_path / "none") == {}, "nothing local: the SDK's own defaults"


def test_no_home_directory_is_no_shared_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under the unit's DynamicUser there may be no HOME and no passwd entry to find one: Path.home() raises.
    Every event of the systemd test used to fail with "Could not determine home directory"."""
    endpoints = {"AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9001"}
    monkeypatch.delenv("HOME", raising=False)
    monkeypatch.setattr("pwd.getpwuid", lambda uid: (_ for _ in ()).throw(KeyError(uid)))
    assert sdk_variables(endpoints, {}, {}) == {**endpoints, **PLACEHOLDER_CREDENTIALS}


@pytest.mark.parametrize(("text", "expected"), [
    ("aws_endpoints: {s3: 'ftp://x'}\n", "aws_endpoints.s3: 'ftp://x' must be an http(s):// URL, 'aws'"),
    ("aws_endpoints: {S3: aws}\n", "aws_endpoints: 'S3' is not a service id"),
    ("buckets: {metrics: ./data}\n", "is a path of the daemon's own API"),
    ("buckets: {'a/b': ./data}\n", "bucket name 'a/b' is not 1-255 letters"),
    ("buckets: {out: ./missing}\n", "buckets.out: directory"),
    ("buckets: {data: ./code}\nsources:\n  - {type: directory, name: d, path: ./data, function: f}\n",
     "sources[0].bucket: 'data' is already the bucket of"),
])
def test_config_mistakes_name_the_path(base: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        config(base, FUNCTION + text if "sources" in text else text)
    assert any(expected in problem for problem in err.value.problems), err.value.problems
