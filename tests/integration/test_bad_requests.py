"""Bad requests get a 4xx with AWS's error shape and one JSON log line, never a 500 (the daemon as a subprocess)."""

from __future__ import annotations

import base64
import http.client
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import boto3
import pytest
from botocore.config import Config as BotoConfig
from hypothesis import given
from hypothesis import strategies as st

from bridge.testing import Daemon, free_port, write_config, write_handler

ECHO = """
    def handler(event, context):
        return {"event": event, "custom": getattr(context.client_context, "custom", None)}
"""


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """One daemon with a function literally named ``function``, one with reserved_concurrency 1, two queues."""
    root = tmp_path_factory.mktemp("bad-requests")
    code = write_handler(root, "echo", ECHO)
    port = free_port()
    fn = {"handler": "app.handler", "code": str(code), "reserved_concurrency": 1}
    config = write_config(root / "config.yaml", {
        "state_dir": str(root / "state"), "api": {"listen": f"127.0.0.1:{port}"},
        "functions": {"function": fn, "f": fn}, "queues": {"jobs": {}, "orders.fifo": {"fifo": True}}})
    with Daemon(config) as running:
        running.port = port  # type: ignore[attr-defined]
        yield running
        assert running.proc is not None and running.proc.poll() is None, "alive after every request"
        not_json = [line for line in running.raw if not _is_json(line)]
        assert not_json == [], "every log line is one JSON object: no tracebacks"


def _is_json(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def post(port: int, path: str, body: bytes, headers: dict[str, str | bytes]) -> tuple[int, dict, bytes]:
    """One raw HTTP POST (header values may be bytes that are not UTF-8)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.putrequest("POST", path)
        for name, value in {**headers, "Content-Length": str(len(body))}.items():
            conn.putheader(name, value)
        conn.endheaders(body)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def lambda_client(port: int):
    return boto3.client("lambda", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                        config=BotoConfig(retries={"max_attempts": 0}))


def workers_of(pid: int) -> int:
    """How many child processes the daemon has (each is one function worker)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return len(children)


def test_a_function_named_function(daemon: Daemon) -> None:
    client = lambda_client(daemon.port)  # type: ignore[attr-defined]
    arn = "arn:aws:lambda:us-east-1:000000000000:function:function"
    for name in ("function", "000000000000:function:function", arn, f"{arn}:$LATEST"):
        response = client.invoke(FunctionName=name, Payload=b'{"n": 1}')
        assert response["StatusCode"] == 200 and json.loads(response["Payload"].read())["event"] == {"n": 1}


def test_malformed_function_names_are_validation_errors(daemon: Daemon) -> None:
    for name in ("a:b:c:d", "f%20g", ":", "function:", "x" * 200):
        status, headers, body = post(daemon.port, f"/2015-03-31/functions/{name}/invocations", b"{}", {})  # type: ignore[attr-defined]
        assert (status, headers["x-amzn-ErrorType"]) == (400, "ValidationException"), (name, body)
        assert "functionName" in json.loads(body)["message"]


def test_client_context_not_base64_json_is_400_and_leaks_no_worker(daemon: Daemon) -> None:
    port, pid = daemon.port, daemon.proc.pid  # type: ignore[attr-defined,union-attr]
    client = lambda_client(port)
    client.invoke(FunctionName="f", Payload=b"{}")  # one warm worker, the most reserved_concurrency allows
    before = workers_of(pid)
    bad = [b"\xff\xfe\xfa", b"not base64!", base64.b64encode(b"\xff\xfe"), base64.b64encode(b"[1, 2]"),
           base64.b64encode(b"{" * 50_000 + b"}" * 50_000)[:3000]]
    for value in bad * 2:
        status, headers, body = post(port, "/2015-03-31/functions/f/invocations", b"{}",
                                     {"X-Amz-Client-Context": value})
        assert (status, headers["x-amzn-ErrorType"]) == (400, "InvalidRequestContentException"), (value, body)
        assert json.loads(body)["message"] == "Client context must be a valid Base64-encoded JSON object."
    good = base64.b64encode(json.dumps({"custom": {"k": "v"}}).encode()).decode()
    response = client.invoke(FunctionName="f", Payload=b"{}", ClientContext=good)
    assert json.loads(response["Payload"].read())["custom"] == {"k": "v"}
    assert workers_of(pid) == before, "no worker is started (or leaked) for a refused request"
    assert len(daemon.find("invoke.bad_request", code="InvalidRequestContentException")) == len(bad) * 2


SQS_BAD = [
    ("ListQueues", {"QueueNamePrefix": 5}),
    ("ListQueues", {"MaxResults": "x"}),
    ("ListQueues", {"MaxResults": 0}),
    ("CreateQueue", {"QueueName": "q", "Attributes": ["a"]}),
    ("SendMessageBatch", {"QueueUrl": "jobs", "Entries": [5, "x"]}),
    ("SendMessageBatch", {"QueueUrl": "jobs", "Entries": [{"Id": "a", "MessageBody": 5}]}),
    ("SendMessage", {"QueueUrl": "jobs", "MessageBody": "x", "MessageAttributes": {"a": 1}}),
    ("ReceiveMessage", {"QueueUrl": "jobs", "MaxNumberOfMessages": "ten"}),
    ("DeleteMessageBatch", {"QueueUrl": "jobs", "Entries": [{"Id": "a", "ReceiptHandle": ["x"]}]}),
    ("CreateQueue", {"QueueName": "q2", "Attributes": {"RedrivePolicy": "[" * 100_000}}),
]


@pytest.mark.parametrize(("action", "params"), SQS_BAD, ids=[f"{a}-{i}" for i, (a, _) in enumerate(SQS_BAD)])
def test_sqs_wrong_types_are_invalid_parameter_value(daemon: Daemon, action: str, params: dict) -> None:
    status, headers, body = _sqs(daemon.port, action, json.dumps(params).encode())  # type: ignore[attr-defined]
    assert 400 <= status < 500, body
    error = json.loads(body)
    assert error["__type"].startswith("com.amazonaws.sqs#") and error["message"]
    assert headers["x-amzn-query-error"].endswith(";Sender")


@pytest.mark.parametrize("body", [b"[" * 100_000, b'{"a":' * 100_000, b"\xff\xfe", b"[]", b"5"])
def test_sqs_body_not_a_json_object_is_invalid_parameter_value(daemon: Daemon, body: bytes) -> None:
    status, headers, answer = _sqs(daemon.port, "ListQueues", body)  # type: ignore[attr-defined]
    assert (status, json.loads(answer)["__type"]) == (400, "com.amazonaws.sqs#InvalidParameterValue"), answer
    assert headers["x-amzn-query-error"] == "InvalidParameterValue;Sender"


def test_botocore_sees_the_modeled_error(daemon: Daemon) -> None:
    from botocore.exceptions import ClientError

    sqs = boto3.client("sqs", endpoint_url=f"http://127.0.0.1:{daemon.port}", region_name="us-east-1",  # type: ignore[attr-defined]
                       config=BotoConfig(retries={"max_attempts": 0}))
    with pytest.raises(ClientError) as raised:
        sqs.list_queues(MaxResults=5000)
    assert raised.value.response["Error"]["Code"] == "InvalidParameterValue"


def _sqs(port: int, action: str, body: bytes) -> tuple[int, dict, bytes]:
    headers = {"X-Amz-Target": f"AmazonSQS.{action}", "Content-Type": "application/x-amz-json-1.0"}
    return post(port, "/", body, headers)


def test_log_lines_for_bad_requests_are_structured(daemon: Daemon) -> None:
    _sqs(daemon.port, "ListQueues", b'{"MaxResults": "x"}')  # type: ignore[attr-defined]
    found = daemon.wait_for("sqs_api.error", code="InvalidParameterValue", timeout=10)
    assert found and all("request_id" in e for e in found)
    assert os.getpid()  # the module fixture checks every raw line is JSON when the daemon stops


# --- property-based fuzzing against the running daemon (bounded by the profile in tests/conftest.py) ---------

HEADER_BYTES = st.binary(max_size=40).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"").replace(b"\0", b""))
HEADER_VALUES = st.none() | HEADER_BYTES | st.text(st.characters(codec="latin-1", exclude_characters="\r\n\0"),
                                                   max_size=40)
FUNCTION_NAMES = st.sampled_from(["f", "function", "000000000000:function:f", "f:$LATEST", "f:1", "nope",
                                  "arn:aws:lambda:us-east-1:000000000000:function:function:$LATEST"]) | st.text()
CONTEXTS = HEADER_VALUES | st.dictionaries(st.text(), st.text()).map(
    lambda d: base64.b64encode(json.dumps({"custom": d}).encode()).decode())
BODIES = st.binary(max_size=300) | st.text().map(str.encode) | st.sampled_from(
    [b"[" * 100_000, b'{"a":' * 10_000, b"{}", b'{"n": 1}', b"null"])


@given(name=FUNCTION_NAMES, qualifier=st.none() | st.text(max_size=20),
       kind=st.none() | st.sampled_from(["RequestResponse", "Event", "DryRun"]) | HEADER_VALUES,
       log_type=st.none() | st.just("Tail") | HEADER_VALUES, context=CONTEXTS, body=BODIES)
def test_fuzz_invoke_api(daemon: Daemon, name: str, qualifier: str | None, kind: Any, log_type: Any,
                         context: Any, body: bytes) -> None:
    path = f"/2015-03-31/functions/{quote(name, safe='')}/invocations"
    if qualifier is not None:
        path += f"?Qualifier={quote(qualifier, safe='')}"
    headers = {k: v for k, v in {"X-Amz-Invocation-Type": kind, "X-Amz-Log-Type": log_type,
                                 "X-Amz-Client-Context": context}.items() if v is not None}
    status, answer_headers, answer = post(daemon.port, path, body, headers)  # type: ignore[attr-defined]
    assert status < 500, (status, answer)
    if status >= 400 and "x-amzn-ErrorType" in answer_headers:
        assert json.loads(answer)["message"]


SQS_ACTIONS = st.sampled_from(["CreateQueue", "GetQueueUrl", "ListQueues", "DeleteQueue", "GetQueueAttributes",
                               "SetQueueAttributes", "PurgeQueue", "SendMessage", "SendMessageBatch",
                               "ReceiveMessage", "DeleteMessage", "DeleteMessageBatch", "ChangeMessageVisibility",
                               "ChangeMessageVisibilityBatch"]) | st.text(st.characters(codec="latin-1",
                                                                                       exclude_characters="\r\n"),
                                                                         max_size=20)
SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
ANY = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                           max_size=3), max_leaves=8)
QUEUE_REFS = st.sampled_from(["jobs", "orders.fifo", "http://127.0.0.1/000000000000/jobs", "/000000000000/orders.fifo",
                              "http://x/123/jobs", "fuzzed"]) | st.text(max_size=20)
ATTRIBUTE_NAMES = st.sampled_from(["VisibilityTimeout", "DelaySeconds", "FifoQueue", "RedrivePolicy",
                                   "ContentBasedDeduplication", "MessageRetentionPeriod", "All", "QueueArn"])
MESSAGE_ATTRIBUTES = st.dictionaries(st.text(max_size=8), st.fixed_dictionaries(
    {}, optional={"DataType": st.sampled_from(["String", "Number", "Binary", "x"]) | ANY,
                  "StringValue": ANY, "BinaryValue": ANY, "StringListValues": ANY}), max_size=2) | ANY
ENTRY = st.fixed_dictionaries({}, optional={
    "Id": st.sampled_from(["a", "b", "a b"]) | ANY, "MessageBody": st.text(max_size=30) | ANY,
    "ReceiptHandle": st.text(max_size=30) | ANY, "VisibilityTimeout": st.integers(-5, 50000) | ANY,
    "DelaySeconds": st.integers(-5, 1000) | ANY, "MessageGroupId": st.text(max_size=5) | ANY,
    "MessageDeduplicationId": st.text(max_size=5) | ANY, "MessageAttributes": MESSAGE_ATTRIBUTES})
SQS_PARAMS = st.fixed_dictionaries({}, optional={
    "QueueUrl": QUEUE_REFS | ANY, "QueueName": QUEUE_REFS | ANY, "QueueNamePrefix": st.text(max_size=5) | ANY,
    "MaxResults": st.integers(-2, 2000) | ANY, "NextToken": st.text(max_size=10) | ANY,
    "Attributes": st.dictionaries(ATTRIBUTE_NAMES | st.text(max_size=8), st.text(max_size=20) | ANY, max_size=3)
    | ANY,
    "AttributeNames": st.lists(ATTRIBUTE_NAMES | st.text(max_size=8), max_size=3) | ANY,
    "MessageAttributeNames": st.lists(st.text(max_size=8), max_size=3) | ANY,
    "MaxNumberOfMessages": st.integers(-2, 20) | ANY, "WaitTimeSeconds": st.sampled_from([0, -1, 21, "x", None]),
    "VisibilityTimeout": st.integers(-5, 50000) | ANY, "MessageBody": st.text(max_size=50) | ANY,
    "ReceiptHandle": st.text(max_size=30) | ANY, "DelaySeconds": st.integers(-5, 1000) | ANY,
    "MessageAttributes": MESSAGE_ATTRIBUTES, "Entries": st.lists(ENTRY | ANY, max_size=12) | ANY,
    "MessageGroupId": st.text(max_size=5) | ANY})


@given(action=SQS_ACTIONS, body=SQS_PARAMS.map(lambda p: json.dumps(p).encode()) | BODIES)
def test_fuzz_sqs_protocol(daemon: Daemon, action: str, body: bytes) -> None:
    status, headers, answer = _sqs(daemon.port, action, body)  # type: ignore[attr-defined]
    assert status < 500, (status, answer)
    if status >= 400 and "x-amzn-RequestId" in headers:  # else aiohttp refused malformed HTTP before routing
        error = json.loads(answer)
        assert error["__type"].startswith("com.amazonaws.sqs#") and error["message"]
        assert headers["x-amzn-query-error"].endswith(";Sender")
