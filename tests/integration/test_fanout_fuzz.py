"""Fuzzing PutEvents and SNS's query protocol on a running daemon: hostile bodies and parameters get an answer
below 500, never a traceback, never an unexpected-error line, and the daemon keeps serving."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.testing import Daemon, free_port, write_config, write_handler
from tests.integration.test_async_delivery import RECORDER

TOPIC = "arn:aws:sns:us-east-1:000000000000:t"
JSONISH = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                       lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                   max_size=4), max_leaves=12)
ENTRY = st.fixed_dictionaries({}, optional={
    "Source": JSONISH | st.sampled_from(["shop", ""]), "DetailType": JSONISH | st.just("x"),
    "Detail": JSONISH | st.sampled_from(['{"total": 5}', "[1]", "{", '{"a": ' * 300, "null"]),
    "Resources": JSONISH | st.lists(st.text(max_size=5), max_size=3), "Time": JSONISH | st.sampled_from(
        [1e300, -1e300, "2026-01-01T00:00:00Z", "not a time", 1767225600]),
    "EventBusName": JSONISH | st.sampled_from(["default", "arn:aws:events:us-east-1:0:event-bus/default", "x"]),
})
EVENTS_BODY = (st.lists(ENTRY, max_size=12).map(lambda e: json.dumps({"Entries": e}).encode())
               | JSONISH.map(lambda v: json.dumps(v).encode()) | st.binary(max_size=200))
FORM_KEYS = st.sampled_from([
    "Message", "Subject", "MessageStructure", "TopicArn", "TargetArn", "PhoneNumber", "Name",
    "MessageAttributes.entry.1.Name", "MessageAttributes.entry.1.Value.DataType",
    "MessageAttributes.entry.1.Value.StringValue", "MessageAttributes.entry.1.Value.BinaryValue",
    "MessageAttributes.entry.x.Name", "PublishBatchRequestEntries.member.1.Id",
    "PublishBatchRequestEntries.member.1.Message", "PublishBatchRequestEntries.member.2.Id",
    "PublishBatchRequestEntries.member.99999999999999999999.Message",
    "PublishBatchRequestEntries.member.1.MessageAttributes.entry.1.Value.DataType"])
FORM_VALUES = st.text(max_size=30) | st.sampled_from(
    [TOPIC, "String", "Number", "Binary", "String.Array", "[1,", "[]", "1e999", "nan", "json", '{"default": 1}',
     "AAE=", "!!", "a\nb"])
FORM = st.builds(lambda action, params: urlencode({"Action": action, **params}).encode(),
                 st.sampled_from(["Publish", "PublishBatch", "ListTopics", "GetTopicAttributes", "CreateTopic",
                                  "ListSubscriptionsByTopic", "Subscribe"]),
                 st.dictionaries(FORM_KEYS, FORM_VALUES, max_size=8))


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, int]]:
    tmp_path = tmp_path_factory.mktemp("fanout-fuzz")
    port = free_port()
    code = write_handler(tmp_path, "sink", RECORDER)
    config = write_config(tmp_path / "config.yaml", {
        "state_dir": str(tmp_path / "state"), "api": {"listen": f"127.0.0.1:{port}"},
        "functions": {"sink": {"handler": "app.handler", "code": str(code),
                               "environment": {"RECORD_FILE": str(tmp_path / "sink.jsonl")}}},
        "queues": {"q": {"maximum_message_size": 1024}},
        "buses": {"default": {"rules": [{"name": "all", "event_pattern": {"source": [{"prefix": ""}]},
                                         "targets": ["function:sink", "queue:q"]}]}},
        "topics": {"t": {"subscriptions": [{"function": "sink"}, {"queue": "q", "raw_message_delivery": True},
                                           {"queue": "q", "filter_policy": {"a": [{"exists": True}]}}]}},
    })
    with Daemon(config) as running:
        yield running, port
    assert not running.find("api.unexpected_error") and not running.find("http.unexpected_error")
    assert "Traceback" not in "".join(running.raw)


def _post(port: int, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", "/", body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@given(EVENTS_BODY)
def test_put_events_never_fails_inside(daemon: Any, body: bytes) -> None:
    _, port = daemon
    status, answer = _post(port, body, {"X-Amz-Target": "AWSEvents.PutEvents",
                                        "Content-Type": "application/x-amz-json-1.1"})
    assert status < 500, answer
    parsed = json.loads(answer)
    assert "Entries" in parsed or parsed["__type"] in ("ValidationException", "SerializationException"), parsed


@given(FORM)
def test_sns_query_never_fails_inside(daemon: Any, body: bytes) -> None:
    _, port = daemon
    status, answer = _post(port, body, {"Content-Type": "application/x-www-form-urlencoded"})
    assert status < 500, answer
    assert answer.startswith(b"<"), answer
