"""Unchanged handlers from AWS's public examples calling S3, SQS and Lambda from inside a local function: the
workers' SDKs reach the bridge through AWS_ENDPOINT_URL_* (the daemon runs as a subprocess)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config as BotoConfig
from PIL import Image

from bridge.testing import Daemon, free_port, wait_until, write_config, write_handler
from tests.integration.test_async_delivery import RECORDER, records

# The Lambda console's "Get S3 object" blueprint (s3-get-object-python), verbatim.
GET_OBJECT_BLUEPRINT = """
import json
import urllib.parse
import boto3

print('Loading function')

s3 = boto3.client('s3')


def lambda_handler(event, context):
    #print("Received event: " + json.dumps(event, indent=2))

    # Get the object from the event and show its content type
    bucket = event['Records'][0]['s3']['bucket']['name']
    key = urllib.parse.unquote_plus(event['Records'][0]['s3']['object']['key'], encoding='utf-8')
    try:
        response = s3.get_object(Bucket=bucket, Key=key)
        print("CONTENT TYPE: " + response['ContentType'])
        return response['ContentType']
    except Exception as e:
        print(e)
        print('Error getting object {} from bucket {}. Make sure they exist and your bucket is in the same region as this function.'.format(key, bucket))
        raise e
"""  # noqa: E501 -- verbatim

# The thumbnail function of AWS's tutorial "Using an Amazon S3 trigger to create thumbnail images", verbatim.
THUMBNAIL = """
import boto3
import os
import sys
import uuid
from urllib.parse import unquote_plus
from PIL import Image
import PIL.Image

s3_client = boto3.client('s3')

def resize_image(image_path, resized_path):
  with Image.open(image_path) as image:
    image.thumbnail(tuple(x / 2 for x in image.size))
    image.save(resized_path)

def lambda_handler(event, context):
  for record in event['Records']:
    bucket = record['s3']['bucket']['name']
    key = unquote_plus(record['s3']['object']['key'])
    tmpkey = key.replace('/', '')
    download_path = '/tmp/{}{}'.format(uuid.uuid4(), tmpkey)
    upload_path = '/tmp/resized-{}'.format(tmpkey)
    s3_client.download_file(bucket, key, download_path)
    resize_image(download_path, upload_path)
    s3_client.upload_file(upload_path, '{}-resized'.format(bucket), 'resized-{}'.format(key))
"""

# Sending to a queue named by the environment, as the SAM "sqs-send" samples do.
SEND_TO_QUEUE = """
import json
import os
import boto3

sqs = boto3.client('sqs')

def lambda_handler(event, context):
    response = sqs.send_message(QueueUrl=os.environ['QUEUE_URL'], MessageBody=json.dumps(event))
    return {'statusCode': 200, 'body': response['MessageId']}
"""

# Invoking another function, as in the Lambda developer guide's boto3 example.
INVOKE_OTHER = """
import json
import boto3

client = boto3.client('lambda')

def lambda_handler(event, context):
    response = client.invoke(FunctionName='rec', InvocationType='RequestResponse', Payload=json.dumps(event))
    return json.loads(response['Payload'].read())
"""


def fn(tmp_path: Path, name: str, source: str, handler: str = "app.lambda_handler", **extra: Any) -> dict[str, Any]:
    code = write_handler(tmp_path, f"code-{name}", source)
    return {"handler": handler, "code": str(code), "timeout": 30, "memory_size": 1024, **extra}


def thumbnail_function(tmp_path: Path) -> dict[str, Any]:
    """The tutorial's function with its requirements.txt, as it ships: ``run`` builds Pillow into its environment
    (workers do not see the daemon's venv, as a Lambda function sees only what it brings)."""
    config = fn(tmp_path, "thumbnail", THUMBNAIL)
    (Path(config["code"]) / "requirements.txt").write_text("Pillow\n")
    return config


@pytest.fixture
def bridge(tmp_path: Path):
    port = free_port()
    for name in ("inbox", "images", "images-resized"):
        (tmp_path / name).mkdir()
    rec = fn(tmp_path, "rec", RECORDER, handler="app.handler",
             environment={"RECORD_FILE": str(tmp_path / "rec.jsonl")})
    config = write_config(tmp_path / "config.yaml", {
        "state_dir": str(tmp_path / "state"), "api": {"listen": f"127.0.0.1:{port}"},
        "queues": {"jobs": {}},
        "functions": {"blueprint": fn(tmp_path, "blueprint", GET_OBJECT_BLUEPRINT),
                      "thumbnail": thumbnail_function(tmp_path),
                      "sender": fn(tmp_path, "sender", SEND_TO_QUEUE,
                                   environment={"QUEUE_URL": f"http://127.0.0.1:{port}/000000000000/jobs"}),
                      "caller": fn(tmp_path, "caller", INVOKE_OTHER), "rec": rec},
        "sources": [{"type": "directory", "name": "inbox", "path": str(tmp_path / "inbox"), "function": "blueprint"},
                    {"type": "directory", "name": "images", "path": str(tmp_path / "images"),
                     "function": "thumbnail"},
                    {"type": "sqs", "name": "jobs", "queue": "jobs", "function": "rec"}],
        "buckets": {"images-resized": str(tmp_path / "images-resized")}})
    daemon = Daemon(config, env={"HOME": str(tmp_path)})
    for name in [k for k in daemon.env if k.startswith("AWS_")]:  # no credentials: the workers get placeholders
        del daemon.env[name]
    daemon.port = port  # type: ignore[attr-defined]
    daemon.start()
    for source in ("inbox", "images"):
        daemon.wait_for("directory.ready", source=source, timeout=60)
    daemon.wait_for("sqs.polling", source="jobs", timeout=60)
    yield daemon
    daemon.stop()
    daemon.kill()


def invoke(port: int, name: str, payload: dict[str, Any]) -> Any:
    client = boto3.client("lambda", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                          aws_access_key_id="x", aws_secret_access_key="y",
                          config=BotoConfig(retries={"max_attempts": 0}, read_timeout=60))
    response = client.invoke(FunctionName=name, Payload=json.dumps(payload))
    assert "FunctionError" not in response, response["Payload"].read()
    return json.loads(response["Payload"].read())


def function_log(tmp_path: Path, name: str) -> str:
    path = tmp_path / "state" / "logs" / f"{name}.log"
    return path.read_text() if path.exists() else ""


def test_get_object_blueprint_prints_the_content_type(bridge: Daemon, tmp_path: Path) -> None:
    (tmp_path / "inbox" / "cat.jpg").write_bytes(b"not really a picture")
    try:
        wait_until(lambda: "CONTENT TYPE: image/jpeg" in function_log(tmp_path, "blueprint"), timeout=30)
    except TimeoutError:
        raise AssertionError(function_log(tmp_path, "blueprint") + bridge.tail()) from None


def test_thumbnail_function_writes_a_smaller_image_to_the_other_bucket(bridge: Daemon, tmp_path: Path) -> None:
    picture = io.BytesIO()
    Image.new("RGB", (400, 300), (200, 30, 30)).save(picture, "PNG")
    (tmp_path / "images" / "photo.png").write_bytes(picture.getvalue())
    out = tmp_path / "images-resized" / "resized-photo.png"
    try:
        wait_until(out.exists, timeout=240)  # the first call waits for the function's build (Pillow from PyPI)
    except TimeoutError:
        raise AssertionError(function_log(tmp_path, "thumbnail") + bridge.tail()) from None
    with Image.open(out) as thumb:
        thumb.verify()
    with Image.open(out) as thumb:
        assert thumb.format == "PNG" and thumb.size == (200, 150)


def test_send_message_reaches_the_embedded_queue_and_its_consumer(bridge: Daemon, tmp_path: Path) -> None:
    result = invoke(bridge.port, "sender", {"order": 42})  # type: ignore[attr-defined]
    assert result["statusCode"] == 200
    wait_until(lambda: records(tmp_path / "rec.jsonl"), timeout=30)
    [entry] = records(tmp_path / "rec.jsonl")
    [message] = entry["event"]["Records"]
    assert message["eventSource"] == "aws:sqs" and json.loads(message["body"]) == {"order": 42}
    assert message["messageId"] == result["body"]


def test_lambda_invoke_reaches_the_other_function(bridge: Daemon, tmp_path: Path) -> None:
    assert invoke(bridge.port, "caller", {"n": 7}) == {"ok": 7}  # type: ignore[attr-defined]
    [entry] = records(tmp_path / "rec.jsonl")
    assert entry["event"] == {"n": 7}
