"""CloudWatch Logs subscription events: AWS's documented sample, Powertools' model, ids, AWS's batch limits."""

from __future__ import annotations

import base64
import gzip
import json
import re

from aws_lambda_powertools.utilities.parser.models import CloudWatchLogsModel
from hypothesis import given
from hypothesis import strategies as st

from bridge.events.cloudwatch_logs import (
    MAX_BATCH_EVENTS,
    MAX_MESSAGE_BYTES,
    LogEvent,
    batches,
    decode,
    encode,
    event_id,
    logs_data,
    payloads,
    truncate_message,
)

# The sample event of AWS's "Using Lambda with CloudWatch Logs" page (also Powertools' test event).
AWS_SAMPLE = {"awslogs": {"data": (
    "H4sIAAAAAAAAAHWPwQqCQBCGX0Xm7EFtK+smZBEUgXoLCdMhFtKV3akI8d0bLYmibvPPN3wz00CJxmQnTO41whwWQRIctmEcB6sQbFC3CjW3"
    "XW8kxpOpP+OC22d1Wml1qZkQGtoMsScxaczKN3plG8zlaHIta5KqWsozoTYw3/djzwhpLwivWFGHGpAFe7DL68JlBUk+l7KSN7tCOEJ4M3/q"
    "OI49vMHj+zCKdlFqLaU2ZHV2a4Ct/an0/ivdX8oYc1UVX860fQDQiMdxRQEAAA==")}}


def test_same_document_as_aws_sample() -> None:
    """Our builder, given the sample's values, writes the very JSON AWS wrote (keys, order, compact form)."""
    aws_raw = gzip.decompress(base64.b64decode(AWS_SAMPLE["awslogs"]["data"]))
    events = [LogEvent("eventId1", 1440442987000, "[ERROR] First test message"),
              LogEvent("eventId2", 1440442987001, "[ERROR] Second test message")]
    ours = encode(logs_data("123456789123", "testLogGroup", "testLogStream", "testFilter", events))
    assert gzip.decompress(base64.b64decode(ours["awslogs"]["data"])) == aws_raw
    assert list(ours) == ["awslogs"] and list(ours["awslogs"]) == ["data"]
    parsed = CloudWatchLogsModel.model_validate(ours).awslogs.decoded_data
    assert [e.message for e in parsed.logEvents] == ["[ERROR] First test message", "[ERROR] Second test message"]


def test_ids_are_56_digits_stable_and_time_ordered() -> None:
    first = event_id(1_700_000_000_000, "2049:12", 0)
    assert re.fullmatch(r"\d{56}", first)
    assert event_id(1_700_000_000_000, "2049:12", 0) == first
    assert event_id(1_700_000_000_000, "2049:12", 10) != first
    assert event_id(1_700_000_000_001, "2049:12", 0) > first


def test_extracted_fields_only_when_given() -> None:
    data = logs_data("1", "g", "s", "f", [LogEvent("1", 1, "a b", {"$w1": "a", "$w2": "b"}), LogEvent("2", 2, "c")])
    assert data["logEvents"][0]["extractedFields"] == {"$w1": "a", "$w2": "b"}
    assert "extractedFields" not in data["logEvents"][1]


def test_batches_follow_aws_limits() -> None:
    small = [LogEvent(str(i), i, "x") for i in range(MAX_BATCH_EVENTS + 5)]
    assert [len(b) for b in batches(small)] == [MAX_BATCH_EVENTS, 5]
    big = [LogEvent(str(i), i, "y" * 200_000) for i in range(12)]  # (200,000 + 26) bytes each: 5 fit in 1 MiB
    assert [len(b) for b in batches(big)] == [5, 5, 2]


def test_payload_over_the_limit_is_split() -> None:
    noise = [LogEvent(str(i), i, base64.b64encode(bytes(range(256)) * 200).decode()) for i in range(40)]
    out = list(payloads("1", "g", "s", "f", noise, 100_000))
    assert sum(len(batch) for batch, _ in out) == 40 and len(out) > 1
    assert all(len(payload) <= 100_000 for _, payload in out)


def test_truncate_keeps_whole_characters_within_256_kb() -> None:
    text = "é" * MAX_MESSAGE_BYTES
    cut = truncate_message(text)
    assert len(cut.encode()) <= MAX_MESSAGE_BYTES and set(cut) == {"é"}
    assert truncate_message("short") == "short"
    assert truncate_message("lone \ud800 surrogate") == "lone ? surrogate"  # a journal's JSON can hold one


@given(st.lists(st.text(st.characters(blacklist_categories=["Cs"]), max_size=200), min_size=1, max_size=20),
       st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3))
def test_any_messages_make_a_valid_event(messages: list[str], fields: dict[str, str]) -> None:
    events = [LogEvent(event_id(1_700_000_000_000 + i, "o", i), 1_700_000_000_000 + i, m, fields or None)
              for i, m in enumerate(messages)]
    for batch, payload in payloads("123456789012", "/var/log/app.log", "app.log", "f", events, 1 << 20):
        event = json.loads(payload)
        model = CloudWatchLogsModel.model_validate(event)
        assert [e.message for e in model.awslogs.decoded_data.logEvents] == [e.message for e in batch]
        assert decode(event)["subscriptionFilters"] == ["f"]
