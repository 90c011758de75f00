"""Event-filter patterns: every operator, AWS's documented examples, the SQS body rule, and bad patterns."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bridge.errors import ExpressionError
from bridge.events.filters import (
    MAX_FILTERS,
    SQS_DATA_KEY,
    compile_filters,
    compile_pattern,
    sqs_filter_view,
)

# The sample event from AWS's event-ruler README, which its content-filtering examples are written against.
EC2_EVENT = {
    "version": "0",
    "id": "ddddd4-aaaa-7777-4444-345dd43cc333",
    "detail-type": "EC2 Instance State-change Notification",
    "source": "aws.ec2",
    "account": "012345679012",
    "time": "2017-10-02T16:24:49Z",
    "region": "us-east-1",
    "resources": ["arn:aws:ec2:us-east-1:123456789012:instance/i-000000aaaaaa00000"],
    "detail": {
        "c-count": 5,
        "d-count": 3,
        "x-limit": 301.8,
        "source-ip": "10.0.0.33",
        "instance-id": "i-000000aaaaaa00000",
        "state": "running",
    },
}

# (pattern, event, expected)
CASES: list[tuple[dict[str, Any], dict[str, Any], bool]] = [
    # exact values, AND across keys, OR within an array
    ({"source": ["aws.ec2"]}, {"source": "aws.ec2"}, True),
    ({"source": ["aws.ec2"]}, {"source": "aws.s3"}, False),
    ({"source": ["aws.ec2"]}, {}, False),
    ({"source": ["aws.ec2", "aws.fargate"]}, {"source": "aws.fargate"}, True),
    ({"a": ["x"], "b": ["y"]}, {"a": "x", "b": "y"}, True),
    ({"a": ["x"], "b": ["y"]}, {"a": "x", "b": "z"}, False),
    ({"a": ["x"], "b": ["y"]}, {"a": "x"}, False),
    ({"name": ["Alice"]}, {"name": "alice"}, False),  # no case folding
    ({"a": ["x"]}, {"a": "x", "other": 1}, True),  # unnamed fields are ignored
    # null and empty string are distinct values
    ({"a": [None]}, {"a": None}, True),
    ({"a": [None]}, {}, False),
    ({"a": [None]}, {"a": ""}, False),
    ({"a": [""]}, {"a": ""}, True),
    ({"a": [""]}, {"a": None}, False),
    # JSON types: a number never equals a string, true never equals 1
    ({"a": [80]}, {"a": 80}, True),
    ({"a": [80]}, {"a": "80"}, False),
    ({"a": ["80"]}, {"a": 80}, False),
    ({"a": [300]}, {"a": 300.0}, True),
    ({"a": [True]}, {"a": True}, True),
    ({"a": [True]}, {"a": 1}, False),
    ({"a": [1]}, {"a": True}, False),
    ({"a": [True]}, {"a": "true"}, False),
    # arrays in the event match when any element matches
    ({"resources": ["arn:1"]}, {"resources": ["arn:0", "arn:1"]}, True),
    ({"resources": ["arn:1"]}, {"resources": ["arn:0"]}, False),
    ({"resources": ["arn:1"]}, {"resources": []}, False),
    ({"a": [2]}, {"a": [[1], [2, 3]]}, True),
    # nesting
    ({"detail": {"state": ["running"]}}, EC2_EVENT, True),
    ({"detail": {"state": ["stopped"]}}, EC2_EVENT, False),
    ({"detail": {"state": ["running"]}}, {"detail": "running"}, False),
    ({"detail": {"state": ["running"]}}, {"state": "running"}, False),
    # prefix, and prefix ignoring case
    ({"time": [{"prefix": "2017-10-02"}]}, {"time": "2017-10-02T18:43:48Z"}, True),
    ({"time": [{"prefix": "2017-10-02"}]}, {"time": "2017-10-03T18:43:48Z"}, False),
    ({"n": [{"prefix": "20"}]}, {"n": 2017}, False),  # string-valued fields only
    ({"service": [{"prefix": {"equals-ignore-case": "EventB"}}]}, {"service": "eventbridge"}, True),
    ({"service": [{"prefix": {"equals-ignore-case": "EventB"}}]}, {"service": "EVENTBRIDGE"}, True),
    ({"service": [{"prefix": {"equals-ignore-case": "EventB"}}]}, {"service": "my-eventbridge"}, False),
    # suffix, and suffix ignoring case
    ({"FileName": [{"suffix": ".png"}]}, {"FileName": "cat.png"}, True),
    ({"FileName": [{"suffix": ".png"}]}, {"FileName": "cat.PNG"}, False),
    ({"FileName": [{"suffix": ".png"}]}, {"FileName": "cat.png.txt"}, False),
    ({"FileName": [{"suffix": {"equals-ignore-case": ".png"}}]}, {"FileName": "cat.PNG"}, True),
    ({"source": [{"suffix": "ec2"}]}, EC2_EVENT, True),
    # equals-ignore-case
    ({"name": [{"equals-ignore-case": "alice"}]}, {"name": "ALICE"}, True),
    ({"name": [{"equals-ignore-case": "alice"}]}, {"name": "alice2"}, False),
    ({"name": [{"equals-ignore-case": "5"}]}, {"name": 5}, False),
    # anything-but: single values, lists, nested prefix/suffix/equals-ignore-case/wildcard
    ({"state": [{"anything-but": "initializing"}]}, {"state": "running"}, True),
    ({"state": [{"anything-but": "initializing"}]}, {"state": "initializing"}, False),
    ({"state": [{"anything-but": "initializing"}]}, {}, False),  # the field must exist
    ({"state": [{"anything-but": "initializing"}]}, {"state": {"nested": 1}}, False),
    ({"x-limit": [{"anything-but": 123}]}, {"x-limit": 124}, True),
    ({"x-limit": [{"anything-but": 123}]}, {"x-limit": 123}, False),
    ({"state": [{"anything-but": ["stopped", "overloaded"]}]}, {"state": "overloaded"}, False),
    ({"state": [{"anything-but": ["stopped", "overloaded"]}]}, {"state": "running"}, True),
    ({"x-limit": [{"anything-but": [100, 200, 300]}]}, {"x-limit": 200}, False),
    ({"x-limit": [{"anything-but": [100, 200, 300]}]}, {"x-limit": 301.8}, True),
    ({"state": [{"anything-but": {"prefix": "init"}}]}, {"state": "initializing"}, False),
    ({"state": [{"anything-but": {"prefix": "init"}}]}, {"state": "running"}, True),
    ({"source": [{"anything-but": {"prefix": "aws."}}]}, {"source": "my.app"}, True),
    ({"FileName": [{"anything-but": {"suffix": ".png"}}]}, {"FileName": "a.png"}, False),
    ({"FileName": [{"anything-but": {"suffix": ".png"}}]}, {"FileName": "a.jpg"}, True),
    ({"state": [{"anything-but": {"equals-ignore-case": "initializing"}}]}, {"state": "INITIALIZING"}, False),
    ({"state": [{"anything-but": {"equals-ignore-case": ["a", "b"]}}]}, {"state": "B"}, False),
    ({"state": [{"anything-but": {"equals-ignore-case": ["a", "b"]}}]}, {"state": "c"}, True),
    ({"FilePath": [{"anything-but": {"wildcard": "*/lib/*"}}]}, {"FilePath": "/usr/lib/libc.so"}, False),
    ({"FilePath": [{"anything-but": {"wildcard": "*/lib/*"}}]}, {"FilePath": "/usr/bin/env"}, True),
    ({"tags": [{"anything-but": "a"}]}, {"tags": ["a", "b"]}, True),  # "b" is anything but "a"
    ({"tags": [{"anything-but": "a"}]}, {"tags": ["a"]}, False),
    # numeric: JSON numbers only
    ({"c": [{"numeric": [">", 0, "<=", 5]}]}, {"c": 5}, True),
    ({"c": [{"numeric": [">", 0, "<=", 5]}]}, {"c": 0}, False),
    ({"c": [{"numeric": [">", 0, "<=", 5]}]}, {"c": 5.000001}, False),
    ({"c": [{"numeric": [">", 0, "<=", 5]}]}, {"c": "3"}, False),
    ({"c": [{"numeric": [">", 0, "<=", 5]}]}, {"c": True}, False),
    ({"c": [{"numeric": [">=", 0, "<", 5]}]}, {"c": 0}, True),
    ({"c": [{"numeric": [">=", 0, "<", 5]}]}, {"c": 5}, False),
    ({"d": [{"numeric": ["<", 10]}]}, {"d": 9.99}, True),
    ({"d": [{"numeric": ["<=", 10]}]}, {"d": 10}, True),
    ({"d": [{"numeric": [">", 10]}]}, {"d": 10}, False),
    ({"x": [{"numeric": ["=", 3.018e2]}]}, {"x": 301.8}, True),
    ({"x": [{"numeric": ["=", 100]}]}, {"x": 100.0}, True),
    ({"x": [{"numeric": ["=", 100]}]}, {"x": 101}, False),
    ({"x": [{"numeric": [">", 10]}]}, {"x": [1, 20]}, True),
    # exists: leaf nodes only
    ({"a": [{"exists": True}]}, {"a": "x"}, True),
    ({"a": [{"exists": True}]}, {"a": None}, True),
    ({"a": [{"exists": True}]}, {}, False),
    ({"a": [{"exists": True}]}, {"a": {"b": 1}}, False),
    ({"a": [{"exists": True}]}, {"a": []}, False),
    ({"a": [{"exists": False}]}, {}, True),
    ({"a": [{"exists": False}]}, {"a": "x"}, False),
    ({"a": [{"exists": False}]}, {"a": {"b": 1}}, True),
    ({"a": {"b": [{"exists": False}]}}, {}, True),
    ({"a": [{"exists": True}, {"exists": False}]}, {}, True),
    # cidr, IPv4 and IPv6
    ({"ip": [{"cidr": "10.0.0.0/24"}]}, {"ip": "10.0.0.255"}, True),
    ({"ip": [{"cidr": "10.0.0.0/24"}]}, {"ip": "10.0.1.0"}, False),
    ({"ip": [{"cidr": "10.0.0.0/24"}]}, {"ip": "not-an-ip"}, False),
    ({"ip": [{"cidr": "10.0.0.0/24"}]}, {"ip": 167772161}, False),
    ({"ip": [{"cidr": "2001:db8::/32"}]}, {"ip": "2001:db8::1"}, True),
    ({"ip": [{"cidr": "2001:db8::/32"}]}, {"ip": "2001:db9::1"}, False),
    ({"ip": [{"cidr": "2001:db8::/32"}]}, {"ip": "10.0.0.1"}, False),
    ({"detail": {"source-ip": [{"cidr": "10.0.0.0/8"}]}}, EC2_EVENT, True),
    # wildcard
    ({"f": [{"wildcard": "*.png"}]}, {"f": "cat.png"}, True),
    ({"f": [{"wildcard": "*.png"}]}, {"f": "cat.jpg"}, False),
    ({"f": [{"wildcard": "*.png"}]}, {"f": ".png"}, True),
    ({"source": [{"wildcard": "Simple*Service"}]}, {"source": "SimpleQueueService"}, True),
    ({"source": [{"wildcard": "Simple*Service"}]}, {"source": "SimpleQueueServices"}, False),
    ({"f": [{"wildcard": "dir/*.png"}]}, {"f": "dir/sub/a.png"}, True),
    ({"f": [{"wildcard": "*Title*"}]}, {"f": "A Title here"}, True),
    ({"f": [{"wildcard": "a\\*b"}]}, {"f": "a*b"}, True),
    ({"f": [{"wildcard": "a\\*b"}]}, {"f": "axb"}, False),
    ({"f": [{"wildcard": "a\\\\b"}]}, {"f": "a\\b"}, True),
    ({"f": [{"wildcard": "a.c"}]}, {"f": "abc"}, False),  # only * is special
    ({"f": [{"wildcard": "*"}]}, {"f": 5}, False),
    # mixing values in one array is an OR
    ({"a": ["x", {"prefix": "y"}, {"numeric": [">", 10]}]}, {"a": 11}, True),
    ({"a": ["x", {"prefix": "y"}, {"numeric": [">", 10]}]}, {"a": "yes"}, True),
    ({"a": ["x", {"prefix": "y"}, {"numeric": [">", 10]}]}, {"a": "no"}, False),
]


@pytest.mark.parametrize(("pattern", "event", "expected"), CASES)
def test_operator_table(pattern: dict[str, Any], event: dict[str, Any], expected: bool) -> None:
    assert compile_pattern(pattern).matches(event) is expected


# --- AWS's documented examples ---------------------------------------------------------------------------


def test_aws_complex_example_matches_the_sample_event() -> None:
    pattern = {
        "time": [{"prefix": "2017-10-02"}],
        "detail": {
            "state": [{"anything-but": "initializing"}],
            "c-count": [{"numeric": [">", 0, "<=", 5]}],
            "d-count": [{"numeric": ["<", 10]}],
            "x-limit": [{"anything-but": [100, 200, 300]}],
            "source-ip": [{"cidr": "10.0.0.0/8"}],
        },
    }
    matcher = compile_pattern(pattern)
    assert matcher.matches(EC2_EVENT)
    assert not matcher.matches({**EC2_EVENT, "detail": {**EC2_EVENT["detail"], "d-count": 10}})


def test_aws_simple_matching_example() -> None:
    pattern = {
        "detail-type": ["EC2 Instance State-change Notification"],
        "resources": ["arn:aws:ec2:us-east-1:123456789012:instance/i-000000aaaaaa00000"],
        "detail": {"state": ["initializing", "running"]},
    }
    assert compile_pattern(pattern).matches(EC2_EVENT)


def test_aws_macie_value_matching_example() -> None:
    event = {"source": "aws.macie", "detail-type": "Macie Alert", "detail": {"risk-score": 80, "trigger": {"risk": 8}}}
    pattern = {
        "source": ["aws.macie"],
        "detail-type": ["Macie Alert"],
        "detail": {"risk-score": [80], "trigger": {"risk": [8]}},
    }
    assert compile_pattern(pattern).matches(event)
    assert not compile_pattern({**pattern, "detail": {"risk-score": [80], "trigger": {"risk": [9]}}}).matches(event)


def test_aws_null_and_empty_string_example() -> None:
    event = {"detail": {"eventVersion": "", "responseElements": None}}
    assert compile_pattern({"detail": {"eventVersion": [""]}}).matches(event)
    assert compile_pattern({"detail": {"responseElements": [None]}}).matches(event)
    assert not compile_pattern({"detail": {"responseElements": [""]}}).matches(event)


def test_aws_exists_false_example_ignores_intermediate_nodes() -> None:
    pattern = compile_pattern({"detail": {"c-count": [{"exists": False}]}})
    assert pattern.matches({"detail": {"state": ["initializing", "running"]}})
    assert pattern.matches({"detail": {"state": ["initializing"], "c-count": {"c1": 100}}})
    assert not pattern.matches({"detail": {"c-count": 5}})


def test_arrays_of_objects_are_crushed_but_stay_consistent() -> None:
    event = {
        "employees": [
            {"firstName": "John", "lastName": "Doe"},
            {"firstName": "Anna", "lastName": "Smith"},
            {"firstName": "Peter", "lastName": "Jones"},
        ]
    }
    assert compile_pattern({"employees": {"firstName": ["Anna"]}}).matches(event)
    assert compile_pattern({"employees": {"firstName": ["Anna"], "lastName": ["Smith"]}}).matches(event)
    # Fields from different array elements never combine into a match.
    assert not compile_pattern({"employees": {"firstName": ["Anna"], "lastName": ["Jones"]}}).matches(event)
    nested = {"employees": [[event["employees"][0], event["employees"][1]], [event["employees"][2]]]}
    assert compile_pattern({"employees": {"firstName": ["Peter"]}}).matches(nested)


OR_PATTERN = {
    "source": ["aws.cloudwatch"],
    "$or": [
        {"metricName": ["CPUUtilization", "ReadLatency"]},
        {"metricType": ["MetricType"], "namespace": ["AWS/EC2", "AWS/ES"]},
        {"scope": ["Service"]},
    ],
}


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        ({"source": "aws.cloudwatch", "metricName": "ReadLatency"}, True),
        ({"source": "aws.cloudwatch", "metricType": "MetricType", "namespace": "AWS/ES"}, True),
        ({"source": "aws.cloudwatch", "metricType": "MetricType"}, False),  # an $or branch is an AND
        ({"source": "aws.cloudwatch", "scope": "Service"}, True),
        ({"source": "aws.cloudwatch"}, False),
        ({"source": "aws.ec2", "metricName": "ReadLatency"}, False),
    ],
)
def test_or_has_and_inside(event: dict[str, Any], expected: bool) -> None:
    assert compile_pattern(OR_PATTERN).matches(event) is expected


def test_parallel_and_nested_or() -> None:
    parallel = compile_pattern(
        {
            "$or": [{"metricName": ["CPUUtilization"]}, {"namespace": ["AWS/EC2"]}],
            "detail": {"$or": [{"source": ["aws.cloudwatch"]}, {"detail-type": ["CloudWatch Alarm State Change"]}]},
        }
    )
    assert parallel.matches({"namespace": "AWS/EC2", "detail": {"source": "aws.cloudwatch"}})
    assert not parallel.matches({"namespace": "AWS/EC2", "detail": {"source": "aws.ec2"}})
    nested = compile_pattern(
        {
            "source": ["aws.cloudwatch"],
            "$or": [
                {"metricName": ["CPUUtilization"]},
                {"namespace": ["AWS/EC2"], "$or": [{"metricId": [1234]}, {"spaceId": [1000]}]},
            ],
        }
    )
    assert nested.matches({"source": "aws.cloudwatch", "namespace": "AWS/EC2", "spaceId": 1000})
    assert not nested.matches({"source": "aws.cloudwatch", "namespace": "AWS/EC2", "spaceId": 1})


def test_pattern_given_as_json_text_like_filter_criteria() -> None:
    matcher = compile_pattern('{ "a" : [ 1, 2 ] }')
    assert matcher.matches({"a": 2})
    assert not matcher.matches({"a": 3})


# --- Lambda's SQS body rule --------------------------------------------------------------------------------


def sqs(body: str, **extra: Any) -> dict[str, Any]:
    return {
        "messageId": "059f36b4-87a3-44ab-83d2-661975830a7d",
        "body": body,
        "attributes": {"ApproximateReceiveCount": "1"},
        **extra,
    }


@pytest.mark.parametrize(
    ("pattern", "body", "expected"),
    [
        # AWS's examples: JSON patterns on a JSON body
        ({"body": {"RequestCode": ["BBBB"]}}, '{"RecordNumber": 1234, "RequestCode": "BBBB"}', True),
        ({"body": {"RequestCode": ["BBBB"]}}, '{"RecordNumber": 1234, "RequestCode": "AAAA"}', False),
        ({"body": {"RecordNumber": [{"numeric": [">", 9999]}]}}, '{"RecordNumber": 10000}', True),
        ({"body": {"RecordNumber": [{"numeric": [">", 9999]}]}}, '{"RecordNumber": 1234}', False),
        # plain-string patterns on a plain body
        ({"body": [{"prefix": "Result: "}]}, "Result: ok", True),
        ({"body": [{"prefix": "Result: "}]}, "Error: no", False),
        ({"body": ["42"]}, "42", True),  # a bare JSON scalar body is treated as a plain string
        # mismatches are dropped, even where the operator alone would have matched
        ({"body": {"RequestCode": ["BBBB"]}}, "RequestCode=BBBB", False),
        ({"body": {"x": [{"exists": False}]}}, "plain text", False),
        ({"body": [{"prefix": "{"}]}, '{"a": 1}', False),
        ({"body": [{"exists": True}]}, '{"a": 1}', False),
        ({"body": [{"anything-but": "x"}]}, "[1, 2]", False),
        # JSON arrays are JSON: object patterns see their elements
        ({"body": {"a": [1]}}, '[{"a": 1}, {"a": 2}]', True),
        # no body in the pattern: the check is skipped
        ({"attributes": {"ApproximateReceiveCount": ["1"]}}, "plain", True),
        ({"attributes": {"ApproximateReceiveCount": ["1"]}}, '{"a": 1}', True),
        # $or branches at the top level follow the same rule
        ({"$or": [{"body": {"a": [1]}}, {"body": ["plain"]}]}, "plain", True),
        ({"$or": [{"body": {"a": [1]}}, {"body": ["plain"]}]}, '{"a": 1}', True),
        ({"$or": [{"body": {"a": [1]}}, {"body": ["plain"]}]}, '{"a": 2}', False),
        # NaN is not JSON: such a body stays a string
        ({"body": [{"prefix": '{"a": NaN'}]}, '{"a": NaN}', True),
    ],
)
def test_sqs_body_json_and_plain_rule(pattern: dict[str, Any], body: str, expected: bool) -> None:
    accept = compile_filters([pattern], data_key=SQS_DATA_KEY)
    assert accept(sqs_filter_view(sqs(body))) is expected


def test_aws_filter_criteria_pattern_string() -> None:
    pattern = json.loads('{"Filters": [{"Pattern": "{ \\"body\\" : { \\"RequestCode\\" : [ \\"BBBB\\" ] } }"}]}')
    accept = compile_filters([f["Pattern"] for f in pattern["Filters"]], data_key=SQS_DATA_KEY)
    assert accept(sqs_filter_view(sqs('{\n "RecordNumber": 1234,\n "RequestCode": "BBBB"\n}')))


def test_sqs_filter_view_leaves_the_record_alone() -> None:
    record = sqs('{"a": 1}')
    view = sqs_filter_view(record)
    assert view["body"] == {"a": 1}
    assert record["body"] == '{"a": 1}'
    assert sqs_filter_view(sqs("plain"))["body"] == "plain"
    assert sqs_filter_view({"messageId": "m"}) == {"messageId": "m"}


def test_without_data_key_body_is_just_a_field() -> None:
    assert compile_pattern({"body": {"a": [{"exists": False}]}}).matches(sqs("plain"))


def test_compile_filters_ors_patterns_and_empty_passes_everything() -> None:
    accept = compile_filters([{"a": ["x"]}, {"b": ["y"]}])
    assert accept({"a": "x"})
    assert accept({"b": "y"})
    assert not accept({"a": "y"})
    assert compile_filters([])({"anything": 1})
    assert compile_filters([{"a": [1]}] * MAX_FILTERS)({"a": 1})


# --- invalid patterns --------------------------------------------------------------------------------------

INVALID: list[tuple[Any, str]] = [
    ({"a": "x"}, 'a: must be an array of values or an object, got "x"'),
    ({"a": 5}, "AWS rejects bare values"),
    ({"body": {"type": [{"prefx": "x"}]}}, "body.type[0]: unknown operator 'prefx'; expected one of: prefix, suffix, "),
    ({"a": [{"prefx": "x"}]}, "anything-but, numeric, exists, equals-ignore-case, cidr, wildcard"),
    ({}, "pattern: empty objects are not allowed"),
    ({"a": {}}, "a: empty objects are not allowed"),
    ({"a": []}, "a: empty arrays are not allowed"),
    ({"a": [["x"]]}, "a[0]: match values must be strings, numbers, true, false, null or operator objects"),
    ({"a": [{"prefix": "x", "suffix": "y"}]}, "a[0]: an operator object needs exactly one key"),
    ({"a": [{"prefix": 5}]}, "a[0].prefix: must be a string or"),
    ({"a": [{"prefix": {"equals-ignore-case": 1}}]}, "a[0].prefix.equals-ignore-case: must be a string"),
    ({"a": [{"suffix": ["x"]}]}, "a[0].suffix: must be a string"),
    ({"a": [{"equals-ignore-case": None}]}, "a[0].equals-ignore-case: must be a string"),
    ({"a": [{"numeric": [">", "x"]}]}, 'a[0].numeric: expected a number, got "x"'),
    ({"a": [{"numeric": [">", True]}]}, "expected a number, got true"),
    ({"a": [{"numeric": ["<", 5, ">", 1]}]}, "a range is a lower bound then an upper bound"),
    ({"a": [{"numeric": [">", 5, "<", 1]}]}, "empty range"),
    ({"a": [{"numeric": ["!=", 5]}]}, 'unknown operator "!="'),
    ({"a": [{"numeric": [">", 1, "<"]}]}, "a[0].numeric: must be"),
    ({"a": [{"numeric": "> 1"}]}, "a[0].numeric: must be"),
    ({"a": [{"exists": "yes"}]}, 'a[0].exists: must be true or false, got "yes"'),
    ({"a": [{"cidr": "10.0.0.0/33"}]}, "a[0].cidr: '10.0.0.0/33' is not an IPv4 or IPv6 CIDR block"),
    ({"a": [{"cidr": 10}]}, "a[0].cidr: must be a string"),
    ({"a": [{"wildcard": "a**b"}]}, "consecutive wildcard characters are not allowed"),
    ({"a": [{"wildcard": "a\\b"}]}, "a backslash may only escape"),
    ({"a": [{"wildcard": "trailing\\"}]}, "a backslash may only escape"),
    ({"a": [{"anything-but": ["x", 1]}]}, "all strings or all numbers"),
    ({"a": [{"anything-but": []}]}, "must be non-empty"),
    ({"a": [{"anything-but": None}]}, "a[0].anything-but: must be a string, a number"),
    ({"a": [{"anything-but": True}]}, "a[0].anything-but: must be a string, a number"),
    ({"a": [{"anything-but": [None]}]}, "all strings or all numbers"),
    ({"a": [{"anything-but": {"prefix": ""}}]}, "a[0].anything-but.prefix: must be a non-empty string"),
    ({"a": [{"anything-but": {"numeric": [">", 1]}}]}, "nested object must be one of"),
    ({"a": [{"anything-but": {"prefix": "x", "suffix": "y"}}]}, "nested object must be one of"),
    ({"a": [{"anything-but": {"wildcard": "a**"}}]}, "a[0].anything-but.wildcard: consecutive wildcard"),
    ({"$or": [{"a": ["x"]}]}, "$or: must be an array of at least 2 objects"),
    ({"$or": {"a": ["x"]}}, "$or: must be an array of at least 2 objects"),
    ({"$or": [{"a": ["x"]}, "b"]}, '$or[1]: only objects are allowed in $or, got "b"'),
    ({"$or": [{"prefix": ["x"]}, {"a": ["y"]}]}, "$or[0]: 'prefix' is an operator, not a field name"),
    ({"d": {"$or": [{"a": ["x"]}, {"b": "y"}]}}, "d.b: must be an array"),
    ("not json", "pattern: not valid JSON"),
    ("[1, 2]", "pattern: must be a JSON object, got [1, 2]"),
    ('{"a": [NaN]}', "pattern: not valid JSON"),
]


@pytest.mark.parametrize(("pattern", "message"), INVALID)
def test_invalid_patterns_name_the_problem(pattern: Any, message: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        compile_pattern(pattern)
    assert message in str(caught.value)


def test_expression_error_is_a_value_error_for_pydantic() -> None:
    with pytest.raises(ValueError, match="unknown operator"):
        compile_pattern({"a": [{"prefx": "x"}]})


def test_more_than_ten_filters_is_an_error() -> None:
    with pytest.raises(ExpressionError, match="at most 10 patterns are allowed \\(got 11\\)"):
        compile_filters([{"a": [1]}] * (MAX_FILTERS + 1))


def test_filter_errors_name_the_filter_index() -> None:
    with pytest.raises(ExpressionError, match=r"^filters\[1\]: a\[0\]: unknown operator 'prefx'"):
        compile_filters([{"a": [1]}, {"a": [{"prefx": "x"}]}])
