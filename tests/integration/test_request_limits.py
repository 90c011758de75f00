"""Requests over a size limit get AWS's 4xx, which SDKs do not retry: boto3 against the daemon, attempts counted."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from bridge.testing import Daemon, free_port, write_config, write_handler


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    root = tmp_path_factory.mktemp("limits")
    code = write_handler(root, "echo", "def handler(event, context):\n    return event\n")
    port = free_port()
    config = write_config(root / "config.yaml", {
        "state_dir": str(root / "state"), "api": {"listen": f"127.0.0.1:{port}"},
        "functions": {"echo": {"handler": "app.handler", "code": str(code)}}, "queues": {"jobs": {}}})
    with Daemon(config) as running:
        running.url = f"http://127.0.0.1:{port}"  # type: ignore[attr-defined]
        yield running
        assert not running.find("sqs_api.unexpected_error") and not running.find("api.unexpected_error")


class Attempts:
    """Counts the HTTP requests a client sends (each retry is one more), by botocore's before-send event."""

    def __init__(self, client: Any) -> None:
        self.count = 0
        client.meta.events.register("before-send", self._sent)

    def _sent(self, **_: Any) -> None:
        self.count += 1


def _client(daemon: Daemon, service: str) -> Any:
    """A client with boto3's default retries (the legacy mode: up to 5 attempts for a 500)."""
    return boto3.client(service, endpoint_url=daemon.url, region_name="us-east-1")  # type: ignore[attr-defined]


def _refused(call: Any, **params: Any) -> dict[str, Any]:
    with pytest.raises(ClientError) as caught:
        call(**params)
    return caught.value.response


def test_a_7mb_send_message_is_one_413_not_five_500s(daemon: Daemon) -> None:
    sqs = _client(daemon, "sqs")
    url = sqs.get_queue_url(QueueName="jobs")["QueueUrl"]
    attempts = Attempts(sqs)
    answer = _refused(sqs.send_message, QueueUrl=url, MessageBody="x" * 7_500_000)  # past the app's 7 MiB cap too
    assert attempts.count == 1
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 413
    assert answer["Error"]["Code"] == "RequestEntityTooLarge"
    assert "1662976 bytes" in answer["Error"]["Message"] and "262144" in answer["Error"]["Message"]


def test_a_message_over_the_limit_is_invalid_parameter_value(daemon: Daemon) -> None:
    sqs = _client(daemon, "sqs")
    url = sqs.get_queue_url(QueueName="jobs")["QueueUrl"]
    attempts = Attempts(sqs)
    answer = _refused(sqs.send_message, QueueUrl=url, MessageBody="x" * 300_000)
    assert attempts.count == 1 and answer["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert answer["Error"]["Message"] == ("One or more parameters are invalid. Reason: Message must be shorter "
                                          "than 262144 bytes.")


def test_a_batch_over_256kb_together_is_batch_request_too_long(daemon: Daemon) -> None:
    sqs = _client(daemon, "sqs")
    url = sqs.create_queue(QueueName="batches")["QueueUrl"]
    attempts = Attempts(sqs)
    entries = [{"Id": "a", "MessageBody": "a" * 200_000}, {"Id": "b", "MessageBody": "b" * 100_000}]
    answer = _refused(sqs.send_message_batch, QueueUrl=url, Entries=entries)
    assert attempts.count == 1 and answer["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert answer["Error"]["Code"] == "AWS.SimpleQueueService.BatchRequestTooLong"
    assert answer["Error"]["Message"] == ("Batch requests cannot be longer than 262144 bytes. "
                                          "You have sent 300000 bytes.")
    assert sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0).get("Messages") is None  # nothing was stored


def test_a_chunked_sqs_request_past_the_cap_is_413(daemon: Daemon) -> None:
    conn = http.client.HTTPConnection(daemon.url.removeprefix("http://"), timeout=60)  # type: ignore[attr-defined]
    chunks = (b"x" * 1_000_000 for _ in range(8))
    conn.request("POST", "/", body=chunks, encode_chunked=True, headers={
        "X-Amz-Target": "AmazonSQS.SendMessage", "Content-Type": "application/x-amz-json-1.0"})
    response = conn.getresponse()
    assert response.status == 413 and json.loads(response.read())["__type"].endswith("#RequestEntityTooLarge")
    conn.close()


def test_an_invoke_past_the_app_s_cap_is_lambda_s_413(daemon: Daemon) -> None:
    client = _client(daemon, "lambda")
    attempts = Attempts(client)
    answer = _refused(client.invoke, FunctionName="echo", Payload=b'"' + b"x" * 7_500_000 + b'"')
    assert attempts.count == 1 and answer["ResponseMetadata"]["HTTPStatusCode"] == 413
    assert answer["Error"] == {"Code": "RequestTooLargeException", "Message": (
        "Request must be smaller than 6291456 bytes for the InvokeFunction operation")}
