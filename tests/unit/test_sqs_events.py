"""Lambda SQS records from ReceiveMessage results, queue ARNs, MD5s, and every batch-response judging rule."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest
from aws_lambda_powertools.utilities.parser.models import SqsModel

from bridge.events.sqs import (
    BatchVerdict,
    judge_batch_response,
    md5_hex,
    md5_of_message_attributes,
    queue_arn,
    record_from_sqs_message,
    sqs_event,
    sqs_record,
)

QUEUE_ARN = "arn:aws:sqs:us-east-2:123456789012:my-queue"

# The standard-queue record in AWS's "Using Lambda with Amazon SQS" page.
AWS_SAMPLE_RECORD = {
    "messageId": "059f36b4-87a3-44ab-83d2-661975830a7d",
    "receiptHandle": "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a...",
    "body": "Test message.",
    "attributes": {
        "ApproximateReceiveCount": "1",
        "SentTimestamp": "1545082649183",
        "SenderId": "AIDAIENQZJOLO23YVJ4VO",
        "ApproximateFirstReceiveTimestamp": "1545082649185",
    },
    "messageAttributes": {
        "myAttribute": {
            "stringValue": "myValue",
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": "String",
        }
    },
    "md5OfBody": "e4e68fb7bd0e697a0ae8f1bb342846b3",
    "eventSource": "aws:sqs",
    "eventSourceARN": QUEUE_ARN,
    "awsRegion": "us-east-2",
}

# A ReceiveMessage message as botocore returns it (AttributeNames/MessageAttributeNames=["All"]).
BOTO_MESSAGE = {
    "MessageId": "059f36b4-87a3-44ab-83d2-661975830a7d",
    "ReceiptHandle": "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a...",
    "MD5OfBody": "e4e68fb7bd0e697a0ae8f1bb342846b3",
    "Body": "Test message.",
    "Attributes": {
        "SenderId": "AIDAIENQZJOLO23YVJ4VO",
        "ApproximateFirstReceiveTimestamp": "1545082649185",
        "ApproximateReceiveCount": "1",
        "SentTimestamp": "1545082649183",
    },
    "MessageAttributes": {"myAttribute": {"StringValue": "myValue", "DataType": "String"}},
}

FIFO_MESSAGE = {
    "MessageId": "11d6ee51-4cc7-4302-9e22-7cd8afdaadf5",
    "ReceiptHandle": "AQEBBX8nesZEXmkhsmZeyIE8iQAMig7qw...",
    "MD5OfBody": "e4e68fb7bd0e697a0ae8f1bb342846b3",
    "Body": "Test message.",
    "Attributes": {
        "MessageDeduplicationId": "1",
        "SenderId": "AIDAIO23YVJENQZJOL4VO",
        "ApproximateFirstReceiveTimestamp": "1573251510774",
        "MessageGroupId": "1",
        "ApproximateReceiveCount": "1",
        "SequenceNumber": "18849496460467696128",
        "SentTimestamp": "1573251510774",
    },
}


def test_aws_documented_sample_field_by_field() -> None:
    rec = record_from_sqs_message(BOTO_MESSAGE, queue_arn=QUEUE_ARN, region="us-east-2")
    assert rec == AWS_SAMPLE_RECORD
    # Same key order as AWS's sample, attributes included.
    assert json.dumps(rec) == json.dumps(AWS_SAMPLE_RECORD)


def test_standard_record_validates_against_powertools_sqs_model() -> None:
    event = sqs_event([record_from_sqs_message(BOTO_MESSAGE, queue_arn=QUEUE_ARN, region="us-east-2")])
    parsed = SqsModel.model_validate(event)
    rec = parsed.Records[0]
    assert rec.body == "Test message."
    assert rec.eventSource == "aws:sqs"
    assert rec.attributes.MessageGroupId is None
    assert rec.messageAttributes["myAttribute"].stringValue == "myValue"


def test_fifo_record_carries_fifo_attributes_in_aws_order() -> None:
    arn = "arn:aws:sqs:us-east-2:123456789012:fifo.fifo"
    rec = record_from_sqs_message(FIFO_MESSAGE, queue_arn=arn, region="us-east-2")
    assert list(rec["attributes"]) == [
        "ApproximateReceiveCount",
        "SentTimestamp",
        "SequenceNumber",
        "MessageGroupId",
        "SenderId",
        "MessageDeduplicationId",
        "ApproximateFirstReceiveTimestamp",
    ]
    assert rec["messageAttributes"] == {}
    parsed = SqsModel.model_validate(sqs_event([rec])).Records[0]
    assert parsed.attributes.MessageGroupId == "1"
    assert parsed.attributes.SequenceNumber == "18849496460467696128"
    assert parsed.attributes.MessageDeduplicationId == "1"


def test_message_attributes_are_lower_camel_case_with_base64_binaries() -> None:
    attributes = {
        "text": {"StringValue": "hello", "DataType": "String"},
        "count": {"StringValue": "42", "DataType": "Number"},
        "blob": {"BinaryValue": b"\x00\x01binary", "DataType": "Binary"},
        "already64": {"BinaryValue": "AAFiaW5hcnk=", "DataType": "Binary.custom"},
        "custom": {"StringValue": "Manaus", "DataType": "String.nome"},
    }
    message = {**BOTO_MESSAGE, "MessageAttributes": attributes, "MD5OfMessageAttributes": "0" * 32}
    rec = record_from_sqs_message(message, queue_arn=QUEUE_ARN, region="us-east-2")
    converted = rec["messageAttributes"]
    assert converted["text"] == {
        "stringValue": "hello",
        "stringListValues": [],
        "binaryListValues": [],
        "dataType": "String",
    }
    assert converted["count"]["stringValue"] == "42"
    assert converted["blob"]["binaryValue"] == base64.b64encode(b"\x00\x01binary").decode()
    assert "stringValue" not in converted["blob"]
    assert converted["already64"]["binaryValue"] == "AAFiaW5hcnk="
    assert converted["custom"]["dataType"] == "String.nome"
    assert rec["md5OfMessageAttributes"] == "0" * 32
    assert list(rec).index("md5OfMessageAttributes") == list(rec).index("md5OfBody") + 1
    parsed = SqsModel.model_validate(sqs_event([rec])).Records[0]
    assert parsed.messageAttributes["blob"].binaryValue == converted["blob"]["binaryValue"]


def test_sqs_record_passes_unknown_attributes_through_as_strings() -> None:
    rec = sqs_record(
        message_id="m1",
        receipt_handle="r1",
        body="{}",
        attributes={"SentTimestamp": 1545082649183, "AWSTraceHeader": "Root=1-5e1b4151", "ApproximateReceiveCount": 2},
        message_attributes={},
        md5_of_body=md5_hex("{}"),
        queue_arn=QUEUE_ARN,
        region="us-east-2",
    )
    assert rec["attributes"] == {
        "ApproximateReceiveCount": "2",
        "SentTimestamp": "1545082649183",
        "AWSTraceHeader": "Root=1-5e1b4151",
    }
    assert "md5OfMessageAttributes" not in rec


def test_missing_md5_of_body_is_computed() -> None:
    message = {key: value for key, value in BOTO_MESSAGE.items() if key != "MD5OfBody"}
    rec = record_from_sqs_message(message, queue_arn=QUEUE_ARN, region="us-east-2")
    assert rec["md5OfBody"] == "e4e68fb7bd0e697a0ae8f1bb342846b3"


def test_md5_hex_matches_sqs() -> None:
    assert md5_hex("Test message.") == "e4e68fb7bd0e697a0ae8f1bb342846b3"
    # SQS hashes the UTF-8 bytes of the body.
    assert md5_hex("ü") == hashlib.md5(b"\xc3\xbc").hexdigest()


def test_md5_of_message_attributes_matches_a_recorded_sqs_value() -> None:
    # md5OfMessageAttributes of a real SQS -> Lambda record carrying this one attribute.
    attributes = {"baggage": {"StringValue": "baggageAttr=someVal", "DataType": "String"}}
    assert md5_of_message_attributes(attributes) == "c463394b93aa40fde42d504642922761"


def test_md5_of_message_attributes_is_order_independent_and_accepts_base64() -> None:
    raw = {"b": {"BinaryValue": b"\x00\xff", "DataType": "Binary"}, "a": {"StringValue": "1", "DataType": "Number"}}
    text = {"a": raw["a"], "b": {"BinaryValue": base64.b64encode(b"\x00\xff").decode(), "DataType": "Binary"}}
    assert md5_of_message_attributes(raw) == md5_of_message_attributes(text)
    assert md5_of_message_attributes({}) == md5_hex("")


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("jobs", "arn:aws:sqs:eu-west-1:000000000000:jobs"),
        ("orders.fifo", "arn:aws:sqs:eu-west-1:000000000000:orders.fifo"),
        ("https://sqs.eu-west-1.amazonaws.com/123456789012/jobs", "arn:aws:sqs:eu-west-1:123456789012:jobs"),
        ("https://sqs.eu-west-1.amazonaws.com/123456789012/jobs/", "arn:aws:sqs:eu-west-1:123456789012:jobs"),
        ("http://localhost:5000/123456789012/q", "arn:aws:sqs:eu-west-1:123456789012:q"),
        ("http://localhost:9324/queue/jobs", "arn:aws:sqs:eu-west-1:000000000000:jobs"),
        ("arn:aws:sqs:us-east-1:111122223333:other", "arn:aws:sqs:us-east-1:111122223333:other"),
    ],
)
def test_queue_arn(given: str, expected: str) -> None:
    assert queue_arn(given, "eu-west-1", "000000000000") == expected


@pytest.mark.parametrize("given", ["", "http://localhost:9324/"])
def test_queue_arn_needs_a_name(given: str) -> None:
    with pytest.raises(ValueError, match="no queue name"):
        queue_arn(given, "eu-west-1", "000000000000")


# --- judging a batch response ------------------------------------------------------------------------------

IDS = ["m1", "m2", "m3"]
ALL = frozenset(IDS)
NONE: frozenset[str] = frozenset()


def failures(*ids: Any) -> bytes:
    return json.dumps({"batchItemFailures": [{"itemIdentifier": i} for i in ids]}).encode()


# (function_error, payload, report_batch_item_failures, failed, reason fragment)
JUDGING: list[tuple[bool, Any, bool, frozenset[str], str]] = [
    # without ReportBatchItemFailures: error -> all failed, anything else -> all succeeded
    (True, None, False, ALL, "function error"),
    (True, failures("m1"), False, ALL, "function error"),
    (False, None, False, NONE, "success"),
    (False, failures("m1"), False, NONE, "success"),  # the response is ignored
    (False, b"not json", False, NONE, "success"),
    # with it, a function error still fails everything
    (True, None, True, ALL, "function error"),
    (True, failures(), True, ALL, "function error"),
    # complete success
    (False, None, True, NONE, "success"),
    (False, b"", True, NONE, "success"),
    (False, b"  \n", True, NONE, "success"),
    (False, b"null", True, NONE, "success"),
    (False, b"{}", True, NONE, "success"),
    (False, b'{"batchItemFailures": []}', True, NONE, "success"),
    (False, b'{"batchItemFailures": null}', True, NONE, "success"),
    (False, b'{"statusCode": 200}', True, NONE, "success"),
    (False, "{}", True, NONE, "success"),  # a str payload is accepted too
    # complete failure
    (False, b"not json", True, ALL, "not valid JSON"),
    (False, b'{"batchItemFailures": [', True, ALL, "not valid JSON"),
    (False, b"\xff\xfe\x00", True, ALL, "not valid JSON"),
    (False, b'"m1"', True, ALL, "expected a JSON object"),
    (False, b'["m1"]', True, ALL, "expected a JSON object"),
    (False, b"42", True, ALL, "expected a JSON object"),
    (False, b'{"batchItemFailures": "m1"}', True, ALL, "batchItemFailures must be a list"),
    (False, b'{"batchItemFailures": {"itemIdentifier": "m1"}}', True, ALL, "batchItemFailures must be a list"),
    (False, failures(""), True, ALL, "itemIdentifier is null or empty"),
    (False, failures(None), True, ALL, "itemIdentifier is null or empty"),
    (False, failures("m1", ""), True, ALL, "batchItemFailures[1].itemIdentifier is null or empty"),
    (False, b'{"batchItemFailures": [{"messageId": "m1"}]}', True, ALL, 'has no "itemIdentifier" key'),
    (False, b'{"batchItemFailures": [{}]}', True, ALL, 'has no "itemIdentifier" key'),
    (False, b'{"batchItemFailures": ["m1"]}', True, ALL, 'has no "itemIdentifier" key'),
    (False, failures(1), True, ALL, "must be a string message id"),
    (False, failures("m9"), True, ALL, "itemIdentifier 'm9' is not in the batch"),
    (False, failures("m1", "m9"), True, ALL, "'m9' is not in the batch"),
    # partial failure: exactly the listed messages
    (False, failures("m2"), True, frozenset({"m2"}), "1 of 3 messages"),
    (False, failures("m1", "m3"), True, frozenset({"m1", "m3"}), "2 of 3 messages"),
    (False, failures("m1", "m1"), True, frozenset({"m1"}), "1 of 3 messages"),
    (False, failures(*IDS), True, ALL, "3 of 3 messages"),
    (False, b'{"batchItemFailures": [{"itemIdentifier": "m2", "extra": 1}], "other": true}', True, {"m2"}, "1 of 3"),
]


@pytest.mark.parametrize(("error", "payload", "report", "failed", "reason"), JUDGING)
def test_judge_batch_response(error: bool, payload: Any, report: bool, failed: frozenset[str], reason: str) -> None:
    verdict = judge_batch_response(
        function_error=error, payload=payload, message_ids=IDS, report_batch_item_failures=report
    )
    assert verdict.failed == failed
    assert reason in verdict.reason


def test_batch_verdict_is_a_frozen_value() -> None:
    verdict = judge_batch_response(
        function_error=False, payload=failures("m1"), message_ids=IDS, report_batch_item_failures=True
    )
    assert verdict == BatchVerdict(frozenset({"m1"}), verdict.reason)
    assert isinstance(verdict.failed, frozenset)
    with pytest.raises(AttributeError):
        verdict.failed = frozenset()  # type: ignore[misc]
