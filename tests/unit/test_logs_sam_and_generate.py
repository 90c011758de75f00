"""sam-import of CloudWatchLogs events and ``generate-event cloudwatch-logs``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from aws_lambda_powertools.utilities.parser.models import CloudWatchLogsModel

from bridge.sam.importer import parse_maps
from tests.unit.test_sam_import import imported

LOGS_TEMPLATE = """
Resources:
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: src/
      Handler: app.handler
      Runtime: python3.12
      Events:
        Errors:
          Type: CloudWatchLogs
          Properties: {LogGroupName: /app/web, FilterPattern: "{ $.level = \\"ERROR\\" }"}
        Journal:
          Type: CloudWatchLogs
          Properties: {LogGroupName: !Ref Group, FilterPattern: "?ERROR ?WARN"}
        Unmapped:
          Type: CloudWatchLogs
          Properties: {LogGroupName: /not/mapped, FilterPattern: ""}
  Group:
    Type: AWS::Logs::LogGroup
    Properties: {LogGroupName: /app/nginx}
"""


def test_cloudwatch_logs_events_map_to_logs_sources(tmp_path: Path) -> None:
    (tmp_path / "var").mkdir()
    maps = parse_maps([f"loggroup:/app/web={tmp_path}/var/web.log", "loggroup:Group=journal:nginx.service"])
    config, unmapped = imported(tmp_path, LOGS_TEMPLATE, maps=maps)
    sources = {s["name"]: s for s in config["sources"]}
    assert sources["Fn-Errors"] == {"name": "Fn-Errors", "type": "logs", "log_group": "/app/web",
                                    "filter_pattern": '{ $.level = "ERROR" }', "path": "var/web.log",
                                    "function": "Fn"}
    assert sources["Fn-Journal"]["journal"] == {"unit": "nginx.service"}
    assert sources["Fn-Journal"]["filter_pattern"] == "?ERROR ?WARN"
    assert any("/not/mapped" in u and "--map loggroup:" in u for u in unmapped)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bridge.cli", "generate-event", "cloudwatch-logs", *args],
                          capture_output=True, text=True, check=False, timeout=60)


def test_generate_event_cloudwatch_logs() -> None:
    out = run("--log-group", "/var/log/app.log", "--message", "ERROR one", "--message", "INFO two",
              "--filter-pattern", "ERROR", "--account-id", "111122223333")
    assert out.returncode == 0, out.stderr
    data = CloudWatchLogsModel.model_validate(json.loads(out.stdout)).awslogs.decoded_data
    assert data.logGroup == "/var/log/app.log" and data.owner == "111122223333"
    assert [e.message for e in data.logEvents] == ["ERROR one"]
    bad = run("--filter-pattern", "{ $.a = ")
    assert bad.returncode == 2 and "column" in bad.stderr
