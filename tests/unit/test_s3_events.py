"""S3 event notification records: AWS's shape, key encoding that round-trips, sequencers, config rules."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import unquote_plus, unquote_to_bytes

import pytest
from aws_lambda_powertools.utilities.parser.models import S3Model

from bridge.errors import ExpressionError
from bridge.events import s3 as s3events
from bridge.events.s3 import (
    CONFIG_EVENT_PATTERNS,
    decode_key,
    event_name_matches,
    make_sequencer,
    object_key,
    rules_overlap,
    s3_event,
    s3_record,
    validate_event_patterns,
)

WHEN = datetime(2026, 3, 1, 12, 30, 45, 123456, tzinfo=UTC)

# The example message in AWS's "Event message structure" page (S3 User Guide), one record of it.
AWS_SAMPLE_RECORD = {
    "eventVersion": "2.1",
    "eventSource": "aws:s3",
    "awsRegion": "us-west-2",
    "eventTime": "1970-01-01T00:00:00.000Z",
    "eventName": "ObjectCreated:Put",
    "userIdentity": {"principalId": "AIDAJDPLRKLG7UEXAMPLE"},
    "requestParameters": {"sourceIPAddress": "172.16.0.1"},
    "responseElements": {
        "x-amz-request-id": "C3D13FE58DE4C810",
        "x-amz-id-2": "FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWerMUE5JgHvANOjpD",
    },
    "s3": {
        "s3SchemaVersion": "1.0",
        "configurationId": "testConfigRule",
        "bucket": {
            "name": "amzn-s3-demo-bucket",
            "ownerIdentity": {"principalId": "A3NL1KOZZKExample"},
            "arn": "arn:aws:s3:::amzn-s3-demo-bucket",
        },
        "object": {
            "key": "HappyFace.jpg",
            "size": 1024,
            "eTag": "d41d8cd98f00b204e9800998ecf8427e",
            "versionId": "096fKKXTRTtl3on89fVO.nfljtsv6qko",
            "sequencer": "0055AED6DCD90281E5",
        },
    },
}


def record(**overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "event_name": "ObjectCreated:Put",
        "bucket": "uploads",
        "key": object_key("images/red flower.jpg"),
        "size": 2048,
        "etag": "9e107d9d372bb6826bd81d3542a419d6",
        "sequencer": make_sequencer(7),
        "region": "us-east-1",
        "configuration_id": "thumbnails",
        "event_time": WHEN,
        "request_id": "C3D13FE58DE4C810",
        "host_id": "FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWerMUE5JgHvANOjpD",
        "principal_id": "AWS:AIDAJEXAMPLE1234",
    }
    return s3_record(**{**fields, **overrides})


# --- the record ------------------------------------------------------------------------------------------


def test_aws_documented_sample_field_by_field() -> None:
    built = s3_record(
        event_name="ObjectCreated:Put",
        bucket="amzn-s3-demo-bucket",
        key="HappyFace.jpg",
        size=1024,
        etag="d41d8cd98f00b204e9800998ecf8427e",
        version_id="096fKKXTRTtl3on89fVO.nfljtsv6qko",
        sequencer="0055AED6DCD90281E5",
        region="us-west-2",
        configuration_id="testConfigRule",
        event_time=datetime(1970, 1, 1, tzinfo=UTC),
        request_id="C3D13FE58DE4C810",
        host_id="FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWerMUE5JgHvANOjpD",
        principal_id="AIDAJDPLRKLG7UEXAMPLE",
        owner_principal_id="A3NL1KOZZKExample",
        source_ip="172.16.0.1",
    )
    assert built == AWS_SAMPLE_RECORD
    # Same key order too, so the JSON a handler logs looks like AWS's.
    assert json.dumps(built) == json.dumps(AWS_SAMPLE_RECORD)


def test_put_record_validates_against_powertools_s3_model() -> None:
    event = s3_event([record()])
    parsed = S3Model.model_validate(event)
    rec = parsed.Records[0]
    assert rec.eventName == "ObjectCreated:Put"
    assert rec.s3.object.key == "images/red+flower.jpg"
    assert unquote_plus(rec.s3.object.key) == "images/red flower.jpg"
    assert rec.s3.object.size == 2048
    assert rec.s3.bucket.arn == "arn:aws:s3:::uploads"
    assert rec.eventTime == WHEN.replace(microsecond=123000)


@pytest.mark.parametrize("name", ["ObjectRemoved:Delete", "ObjectRemoved:DeleteMarkerCreated"])
def test_delete_records_validate_and_carry_no_size_or_etag(name: str) -> None:
    rec = record(event_name=name, size=None, etag=None, version_id="v2" if "Marker" in name else None)
    assert set(rec["s3"]["object"]) <= {"key", "sequencer", "versionId"}
    assert "size" not in rec["s3"]["object"] and "eTag" not in rec["s3"]["object"]
    parsed = S3Model.model_validate(s3_event([rec]))
    assert parsed.Records[0].s3.object.size is None


@pytest.mark.parametrize("name", ["ObjectCreated:Post", "ObjectCreated:Copy", "ObjectCreated:CompleteMultipartUpload"])
def test_other_created_records_validate(name: str) -> None:
    S3Model.model_validate(s3_event([record(event_name=name)]))


def test_record_details() -> None:
    rec = record(event_name="s3:ObjectCreated:Put", event_version="2.4")
    assert rec["eventName"] == "ObjectCreated:Put"  # the s3: prefix never reaches the record
    assert rec["eventVersion"] == "2.4"
    assert rec["eventSource"] == "aws:s3"
    assert rec["requestParameters"] == {"sourceIPAddress": "127.0.0.1"}
    assert rec["s3"]["bucket"]["ownerIdentity"] == {"principalId": "AWS:AIDAJEXAMPLE1234"}
    assert "versionId" not in rec["s3"]["object"]
    assert "sequencer" not in record(sequencer=None)["s3"]["object"]


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (datetime(2026, 3, 1, 12, 30, 45, 123456, tzinfo=UTC), "2026-03-01T12:30:45.123Z"),
        (datetime(2026, 3, 1, 12, 30, 45, tzinfo=UTC), "2026-03-01T12:30:45.000Z"),
        (datetime(2026, 3, 1, 12, 30, 45, 999999, tzinfo=UTC), "2026-03-01T12:30:45.999Z"),
        (datetime(2026, 3, 1, 14, 0, 0, 5000, tzinfo=timezone(timedelta(hours=2))), "2026-03-01T12:00:00.005Z"),
    ],
)
def test_event_time_is_utc_with_milliseconds(moment: datetime, expected: str) -> None:
    assert record(event_time=moment)["eventTime"] == expected


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"event_time": datetime(2026, 1, 1)}, "timezone-aware"),
        ({"size": None}, "need size and etag"),
        ({"etag": None}, "need size and etag"),
        ({"event_name": "ObjectRemoved:Delete"}, "carry no size or eTag"),
        ({"event_name": "ObjectCreated:*"}, "unknown S3 event name"),
        ({"event_name": "ObjectRestore:Completed"}, "unknown S3 event name"),
    ],
)
def test_record_rejects_inconsistent_input(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        record(**overrides)


def test_s3_test_event() -> None:
    event = s3events.test_event(
        "amzn-s3-demo-bucket",
        event_time=datetime(2014, 10, 13, 15, 57, 2, 89000, tzinfo=UTC),
        request_id="5582815E1AEA5ADF",
        host_id="8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE",
    )
    assert json.dumps(event) == json.dumps(
        {
            "Service": "Amazon S3",
            "Event": "s3:TestEvent",
            "Time": "2014-10-13T15:57:02.089Z",
            "Bucket": "amzn-s3-demo-bucket",
            "RequestId": "5582815E1AEA5ADF",
            "HostId": "8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE",
        }
    )


# --- keys ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("red flower.jpg", "red+flower.jpg"),
        ("a@b", "a%40b"),
        ("dir/sub/file.txt", "dir/sub/file.txt"),
        ("a+b", "a%2Bb"),
        ("100%.txt", "100%25.txt"),
        ("line\nbreak", "line%0Abreak"),
        ("ünï.txt", "%C3%BCn%C3%AF.txt"),
        ("safe-_.~", "safe-_.~"),
        ("q?x=1&y#z", "q%3Fx%3D1%26y%23z"),
        (b"raw bytes.bin", "raw+bytes.bin"),
        (b"bad\xff\xfe.txt", "bad%FF%FE.txt"),
    ],
)
def test_object_key_is_form_url_encoded(name: str | bytes, key: str) -> None:
    assert object_key(name) == key


HOSTILE_NAMES = [
    "plain.txt",
    "with space.txt",
    "plus+sign",
    "percent%20not-a-space",
    "%",
    "%%25",
    "new\nline",
    "tab\tand\rreturn",
    "ünïcødé/日本語/😀.png",
    "quote\"and'apostrophe",
    "back\\slash",
    "dir/../dots",
    "trailing space ",
    "+ + +",
    "a&b=c;d,e",
]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_names_round_trip_through_unquote_plus(name: str) -> None:
    key = object_key(name)
    assert unquote_plus(key) == name
    assert decode_key(key) == name.encode("utf-8")
    assert " " not in key and "\n" not in key


@pytest.mark.parametrize("raw", [b"bad\xff.txt", b"latin1-caf\xe9", b"\x80\x81/mixed \xc3\xa9 ok", b"\xed\xa0\x80"])
def test_non_utf8_bytes_round_trip(raw: bytes) -> None:
    key = object_key(raw)
    assert key.isascii()
    # Exact bytes, for handlers that care.
    assert decode_key(key) == raw
    assert unquote_to_bytes(key.replace("+", " ")) == raw
    # surrogateescape gives the str Python itself uses for that file name.
    assert unquote_plus(key, encoding="utf-8", errors="surrogateescape") == os.fsdecode(raw)
    # Plain unquote_plus never fails; undecodable bytes show as U+FFFD.
    assert "\ufffd" in unquote_plus(key)


def test_fsdecoded_str_and_raw_bytes_give_the_same_key() -> None:
    raw = b"dir/caf\xe9 menu.txt"
    assert object_key(os.fsdecode(raw)) == object_key(raw) == "dir/caf%E9+menu.txt"
    assert object_key("café menu.txt") == object_key("café menu.txt".encode())


def test_str_with_foreign_surrogates_is_rejected() -> None:
    with pytest.raises(ValueError):
        object_key("lone\ud800surrogate")


# --- sequencers ------------------------------------------------------------------------------------------


def test_sequencer_is_fixed_width_uppercase_hex_that_sorts_as_strings() -> None:
    assert make_sequencer(0) == "0000000000000000"
    assert make_sequencer(255) == "00000000000000FF"
    assert make_sequencer(16**16 - 1) == "FFFFFFFFFFFFFFFF"
    counters = [0, 1, 9, 10, 15, 16, 255, 256, 4095, 10**12, 2**63]
    sequencers = [make_sequencer(c) for c in counters]
    assert sequencers == sorted(sequencers)
    assert all(len(s) == 16 and s == s.upper() for s in sequencers)


@pytest.mark.parametrize("counter", [-1, 16**16])
def test_sequencer_rejects_out_of_range(counter: int) -> None:
    with pytest.raises(ValueError, match="outside"):
        make_sequencer(counter)


# --- event types -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("s3:ObjectCreated:*", "ObjectCreated:Put", True),
        ("s3:ObjectCreated:*", "ObjectCreated:CompleteMultipartUpload", True),
        ("s3:ObjectCreated:*", "ObjectRemoved:Delete", False),
        ("s3:ObjectRemoved:*", "ObjectRemoved:DeleteMarkerCreated", True),
        ("s3:ObjectCreated:Put", "ObjectCreated:Put", True),
        ("s3:ObjectCreated:Put", "ObjectCreated:Post", False),
        ("s3:ObjectCreated:Put", "s3:ObjectCreated:Put", True),
        ("s3:ObjectRemoved:Delete", "ObjectRemoved:DeleteMarkerCreated", False),
    ],
)
def test_event_name_matches(pattern: str, name: str, expected: bool) -> None:
    assert event_name_matches(pattern, name) is expected


def test_valid_event_patterns_pass() -> None:
    assert validate_event_patterns(["s3:ObjectCreated:*", "s3:ObjectRemoved:Delete"]) == (
        "s3:ObjectCreated:*",
        "s3:ObjectRemoved:Delete",
    )
    assert validate_event_patterns(list(CONFIG_EVENT_PATTERNS)) == CONFIG_EVENT_PATTERNS


@pytest.mark.parametrize(
    ("patterns", "message"),
    [
        (["s3:ObjectCreated:Pot"], "unknown S3 event type 's3:ObjectCreated:Pot'; expected one of: s3:ObjectCreated:*"),
        (["ObjectCreated:Put"], "(did you mean 's3:ObjectCreated:Put'?)"),
        (["s3:ObjectRestore:Completed"], "s3:ObjectRemoved:DeleteMarkerCreated"),
        ([], "at least one S3 event type is required"),
        ("s3:ObjectCreated:*", "at least one S3 event type is required"),
    ],
)
def test_invalid_event_patterns_list_the_valid_ones(patterns: Any, message: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        validate_event_patterns(patterns)
    assert message in str(caught.value)


# --- overlapping rules -----------------------------------------------------------------------------------

CREATED = ["s3:ObjectCreated:*"]
REMOVED = ["s3:ObjectRemoved:*"]


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        # identical rules for the same events
        (("images/", ".jpg", CREATED), ("images/", ".jpg", CREATED), True),
        # non-overlapping prefixes (AWS: images/ to one queue, logs/ to another)
        (("images/", None, CREATED), ("logs/", None, CREATED), False),
        # one prefix extends the other
        (("images/", None, CREATED), ("images/cats/", None, CREATED), True),
        (("images", None, CREATED), ("images/", None, CREATED), True),
        # non-overlapping suffixes (AWS: .jpg and .png share a last letter yet never overlap)
        (("images/", ".jpg", CREATED), ("images/", ".png", CREATED), False),
        ((None, ".jpg", CREATED), (None, ".png", CREATED), False),
        # one suffix extends the other
        ((None, "jpg", CREATED), (None, ".jpg", CREATED), True),
        # a prefix-only rule and a suffix-only rule: images/x.jpg matches both
        (("images/", None, CREATED), (None, ".jpg", CREATED), True),
        # same suffix, disjoint prefixes
        (("images/", ".jpg", CREATED), ("logs/", ".jpg", CREATED), False),
        # no filter at all overlaps with everything of the same event type
        ((None, None, CREATED), ("images/", ".jpg", CREATED), True),
        (("", "", CREATED), (None, None, CREATED), True),
        # event types must intersect
        (("images/", None, CREATED), ("images/", None, REMOVED), False),
        (("images/", None, CREATED), ("images/", None, ["s3:ObjectCreated:Put"]), True),
        (("images/", None, ["s3:ObjectCreated:Put"]), ("images/", None, ["s3:ObjectCreated:Copy"]), False),
        (("a", None, ["s3:ObjectCreated:Put", "s3:ObjectRemoved:Delete"]), ("a", None, REMOVED), True),
    ],
)
def test_rules_overlap_table(a: tuple[Any, ...], b: tuple[Any, ...], expected: bool) -> None:
    assert rules_overlap(*a, *b) is expected
    assert rules_overlap(*b, *a) is expected
