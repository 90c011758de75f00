"""sam-import end to end: each template in tests/sam/templates imported, checked, run, and its trigger driven.

The handlers are the templates' own (unchanged); they print one tagged JSON line, which the daemon logs as
``function.output``; events are validated with the Powertools parser models.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import boto3
import pytest
from aws_lambda_powertools.utilities.parser.models import (
    EventBridgeModel,
    S3Model,
    SqsRecordModel,
)
from botocore.config import Config as BotoConfig

from bridge.testing import Daemon, free_port, wait_until
from tests.integration.mosquitto import Mosquitto, Publisher

TEMPLATES = Path(__file__).resolve().parents[1] / "sam" / "templates"
ACCOUNT = "123456789012"


def lambda_bridge(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bridge.cli", *args], capture_output=True, text=True, timeout=60,
                          check=False)


def sam_import(tmp_path: Path, template: str, *args: str) -> tuple[Path, int, str]:
    """Import a shipped template into tmp_path/config.yaml (on a free api port) and `check` it."""
    port = free_port()
    config = tmp_path / "config.yaml"
    done = lambda_bridge("sam-import", str(TEMPLATES / template), "-o", str(config), "--listen", f"127.0.0.1:{port}",
                         *args)
    assert done.returncode == 0, done.stderr
    checked = lambda_bridge("check", "--config", str(config))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    return config, port, done.stderr


def printed(daemon: Daemon, tag: str) -> list[dict[str, Any]]:
    """What the handlers printed after ``tag`` (one JSON document per line)."""
    return [json.loads(e["line"].split(" ", 1)[1]) for e in daemon.find("function.output")
            if str(e.get("line", "")).startswith(tag + " ")]


def wait_printed(daemon: Daemon, tag: str, count: int = 1, timeout: float = 30) -> list[dict[str, Any]]:
    try:
        return wait_until(lambda: (found := printed(daemon, tag)) and len(found) >= count and found, timeout=timeout)
    except TimeoutError:
        raise AssertionError(f"no {count}x {tag} within {timeout} s:\n{daemon.tail()}") from None


def sqs_client(port: int):
    return boto3.client("sqs", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                        config=BotoConfig(retries={"max_attempts": 0}))


def test_s3_thumbnail_app_on_a_folder(tmp_path: Path) -> None:
    uploads = tmp_path / "uploads"
    config, _, _ = sam_import(tmp_path, "s3-thumbnail/template.yaml", "--map", f"bucket:SourceBucket={uploads}")
    with Daemon(config) as daemon:
        daemon.wait_for("directory.ready", source="CreateThumbnail-ImageUpload", timeout=60)
        (uploads / "notes.txt").write_text("not an image")  # the suffix rule (.jpg) filters it out
        (uploads / "holiday photo.jpg").write_bytes(b"\xff\xd8\xff\xe0 a jpeg")
        [seen] = wait_printed(daemon, "THUMBNAIL")
    bucket = f"s3-thumbnail-images-{ACCOUNT}"  # !Sub ${AWS::StackName}-images-${AWS::AccountId}; stack = folder
    assert seen["thumbnail"] == {"source": f"{bucket}/holiday photo.jpg", "size": 11, "width": 128,
                                 "destination": f"{bucket}-resized/resized-holiday photo.jpg"}
    record = S3Model.model_validate(seen["event"]).Records[0]
    assert record.eventName == "ObjectCreated:Put" and record.s3.object.key == "holiday+photo.jpg"
    assert printed(daemon, "THUMBNAIL") == [seen]


def test_sqs_worker_partial_batch_and_redrive(tmp_path: Path) -> None:
    config, port, _ = sam_import(tmp_path, "sqs-worker/template.yaml")
    with Daemon(config) as daemon:
        sqs = sqs_client(port)
        url = f"http://127.0.0.1:{port}/{ACCOUNT}/orders"
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"order": 1}))
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"order": 2, "poison": True}))
        dlq = f"http://127.0.0.1:{port}/{ACCOUNT}/OrdersDLQ"
        # The poison message is reported failed (partial batch), received again after the 3 s visibility
        # timeout, fails again, and the queue's redrive policy (maxReceiveCount 2) moves it to OrdersDLQ.
        moved = wait_until(lambda: sqs.receive_message(QueueUrl=dlq, WaitTimeSeconds=1).get("Messages"), timeout=40)
        seen = printed(daemon, "ORDER")
    assert json.loads(moved[0]["Body"]) == {"order": 2, "poison": True}
    assert [s["body"]["order"] for s in seen].count(1) == 1  # the good message was deleted after one delivery
    assert sorted(s["receive_count"] for s in seen if s["body"]["order"] == 2) == ["1", "2"]
    assert {s["event_source_arn"] for s in seen} == {f"arn:aws:sqs:us-east-1:{ACCOUNT}:orders"}
    for s in seen:
        SqsRecordModel.model_validate(s["record"])


def test_scheduled_job_json_template_schedulev2_in_berlin(tmp_path: Path) -> None:
    config, _, _ = sam_import(tmp_path, "scheduled-job/template.json")
    listing = lambda_bridge("schedules", "--json", "--next", "3", "--config", str(config))
    assert listing.returncode == 0, listing.stderr
    rows = {row["name"]: row["next"] for row in json.loads(listing.stdout)}
    assert rows["ReportFunction-Hourly"] == []  # Enabled: false
    for fire in rows["ReportFunction-WeekdayMorning"]:
        local = datetime.fromisoformat(fire).astimezone(ZoneInfo("Europe/Berlin"))
        assert (local.hour, local.minute) == (9, 0) and local.weekday() < 5
    with Daemon(config) as daemon:
        fired = lambda_bridge("fire", "ReportFunction-WeekdayMorning", "--config", str(config))
        assert fired.returncode == 0, fired.stderr
        [seen] = wait_printed(daemon, "REPORT")
        lambda_bridge("fire", "ReportFunction-Hourly", "--config", str(config))  # a rule: EventBridge's event
        rule = wait_printed(daemon, "REPORT", count=2)[1]
    assert seen["report"] == "daily-sales" and seen["event"]["report"] == "daily-sales"
    datetime.fromisoformat(seen["event"]["at"].replace("Z", "+00:00"))  # <aws.scheduler.scheduled-time> filled in
    EventBridgeModel.model_validate(rule["event"])
    assert rule["event"]["detail-type"] == "Scheduled Event"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A mosquitto of this test's own (a failure, not a skip, when mosquitto is missing)."""
    with Mosquitto(tmp_path / "broker") as mosquitto:
        yield mosquitto


def test_iot_rule_app_on_mosquitto(tmp_path: Path, broker: Mosquitto) -> None:
    config, _, _ = sam_import(tmp_path, "iot-rule/template.yaml", "--parameter-overrides", "Threshold=60",
                              "--map", f"broker={broker.url}")
    with Daemon(config) as daemon, Publisher(broker.plain_port) as publisher:
        daemon.wait_for("mqtt.subscribed", count=2)
        publisher.send("sensors/dev7/telemetry", json.dumps({"temperature": 72, "unit": "C"}))
        publisher.send("sensors/dev8/telemetry", json.dumps({"temperature": 55, "unit": "C"}))  # under 60
        alerts = wait_printed(daemon, "ALERT", count=3)
    assert sorted(alerts, key=json.dumps) == sorted([
        {"temperature": 72, "device_id": "dev7"},  # HotReadings: the projection, WHERE temperature > 60
        {"temperature": 72, "unit": "C"}, {"temperature": 55, "unit": "C"},  # Everything: SELECT *
    ], key=json.dumps)


def test_http_api_with_authorizer(tmp_path: Path) -> None:
    api_port = free_port()
    config, _, stderr = sam_import(tmp_path, "http-api-authorizer/template.yaml",
                                   "--map", f"api:ItemsApi=127.0.0.1:{api_port}")
    assert "not mapped" not in stderr  # both routes and the authorizer are in the http source
    import urllib.error
    import urllib.request

    with Daemon(config):  # a real request through the imported routes
        request = urllib.request.Request(f"http://127.0.0.1:{api_port}/items/42",
                                         headers={"Authorization": "Bearer letmein"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert json.loads(response.read()) == {"id": "42", "method": "GET"}
        with pytest.raises(urllib.error.HTTPError) as denied:
            urllib.request.urlopen(f"http://127.0.0.1:{api_port}/items/42", timeout=10)
        assert denied.value.code in (401, 403)


def test_globals_parameters_conditions_app(tmp_path: Path) -> None:
    config, port, stderr = sam_import(tmp_path, "globals-params/template.yaml", "--parameter-overrides", "Stage=dev")
    assert "SHARED_TABLE" in stderr and "Kinesis events are not supported" in stderr
    with Daemon(config) as daemon:
        sqs = sqs_client(port)
        url = f"http://127.0.0.1:{port}/{ACCOUNT}/globals-params-dev-jobs"
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"kind": "noise"}))  # filtered out, deleted
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"kind": "job", "n": 1}))
        [job] = wait_printed(daemon, "JOB")
        assert lambda_bridge("fire", "JobFunction-Tick", "--config", str(config)).returncode == 0
        tick = wait_printed(daemon, "JOB", count=2)[1]
        [audit] = wait_printed(daemon, "AUDIT")  # the async fire succeeded: OnSuccess -> AuditFunction
    assert json.loads(job["event"]["Records"][0]["body"]) == {"kind": "job", "n": 1}
    assert job["settings"] == {"STAGE": "dev", "LOG_LEVEL": "DEBUG", "JOBS_QUEUE_URL": url, "DEBUG_ONLY": "yes",
                               "GREETING": "hello from us-east-1", "SHARED_TABLE": None}
    assert tick["event"] == {"stage": "dev", "greeting": "hello"}
    assert audit["requestContext"]["condition"] == "Success" and audit["requestPayload"] == tick["event"]
