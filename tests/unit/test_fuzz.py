"""Property-based fuzz tests of the pure parsers and builders: arbitrary input in, a defined answer out.

Defined answers: the config loader returns a Config or raises ConfigError; sam-import imports a template or
refuses it with a SamTemplateError, within bounded time, whatever its aliases and nesting; the IoT SQL parser and the
filter-pattern compiler return a rule or raise ExpressionError; evaluating and matching return a value; the
event builders return events AWS's own models (aws-lambda-powertools) accept. Examples are bounded by the
profile in tests/conftest.py (HYPOTHESIS_PROFILE=long for a longer run).
"""

from __future__ import annotations

import base64
import contextlib
import json
import time
from datetime import UTC, datetime
from typing import Any

import yaml
from aws_lambda_powertools.utilities.parser.models import S3Model, SqsModel
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.config.model import parse_config
from bridge.errors import ConfigError, ExpressionError, SamTemplateError
from bridge.events import payload
from bridge.events.eventbridge import scheduler_input
from bridge.events.filters import SQS_DATA_KEY, compile_filters, compile_pattern, sqs_filter_view
from bridge.events.invocation_record import invocation_record
from bridge.events.s3 import object_key, s3_event, s3_record
from bridge.events.sqs import judge_batch_response, md5_hex, record_from_sqs_message, sqs_event
from bridge.invokers.remote_backends import is_error_body
from bridge.model import InvokeResult
from bridge.sam import import_template
from bridge.sources.mqtt.iot_sql import NonJsonPayload, parse_rule

SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
                    max_leaves=20)
KEYS = st.sampled_from(["body", "type", "n", "a", "b", "$or", "detail", "source", "prefix", "numeric"]) | st.text()
OPERATORS = st.sampled_from(["prefix", "suffix", "anything-but", "numeric", "exists", "equals-ignore-case", "cidr",
                             "wildcard", "bogus"])
OPERATOR_VALUES = st.fixed_dictionaries({}, optional={"op": OPERATORS}).flatmap(
    lambda d: st.builds(lambda value, op: {op: value}, JSON, OPERATORS))
PATTERN_LEAF = st.lists(SCALARS | OPERATOR_VALUES, max_size=4)
PATTERNS = st.recursive(PATTERN_LEAF, lambda inner: st.dictionaries(KEYS, inner, max_size=4), max_leaves=12)


def deep(depth: int, opening: str = "[", closing: str = "]") -> str:
    return opening * depth + closing * depth


DEEP_TEXT = st.integers(payload.MAX_DEPTH - 2, 20_000).map(deep) | st.integers(1, 5000).map(
    lambda n: '{"a":' * n + "1" + "}" * n)
TEXTS = st.text() | DEEP_TEXT | JSON.map(json.dumps)
BYTES = st.binary() | TEXTS.map(str.encode)


# --- bounded JSON -----------------------------------------------------------------------------------


@given(JSON)
def test_shallow_json_round_trips(value: Any) -> None:
    assert payload.loads(json.dumps(value)) == value


@given(TEXTS | st.binary())
def test_json_or_text_never_raises_and_never_returns_deep_structures(text: str | bytes) -> None:
    value = payload.json_or_text(text)
    json.dumps(value)  # whatever came back can be serialised again (no RecursionError)


# JSON values to nest, with their own depth: brackets inside strings (escaped quotes and backslashes
# around them) must not count, a string of closing brackets must not hide the levels after it.
INNER = st.sampled_from([('"[[[{"', 0), ('"\\"[{"', 0), ('"\\\\"', 0), ("[]", 1), ('"}]"', 0),
                         ('"\\\\\\"]"', 0), ('["]", [[]]]', 3), ('["]]]]", ["]]", [{}]]]', 4)])


@given(st.integers(0, 3 * payload.MAX_DEPTH), INNER)
def test_depth_counts_brackets_outside_strings(depth: int, inner: tuple[str, int]) -> None:
    text = '{"k\\"[": ' * depth + inner[0] + "}" * depth
    json.loads(text)
    found, expected = payload.depth(text), min(depth + inner[1], payload.MAX_DEPTH + 1)
    assert found == expected or (found == 0 and text.count("{") + text.count("[") <= payload.MAX_DEPTH)
    assert (expected > payload.MAX_DEPTH) == (payload.json_or_text(text) == text), "too deep: text"


def _true_depth(value: Any) -> int:
    children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else None
    return 0 if children is None else 1 + max(map(_true_depth, children), default=0)


@given(JSON, st.integers(payload.MAX_DEPTH - 10, payload.MAX_DEPTH + 10))
def test_depth_of_any_wrapped_document(value: Any, levels: int) -> None:
    text = '{"w": ' * levels + json.dumps(value, ensure_ascii=False) + "}" * levels
    found, expected = payload.depth(text), min(levels + _true_depth(value), payload.MAX_DEPTH + 1)
    assert found == expected or (found == 0 and text.count("{") + text.count("[") <= payload.MAX_DEPTH)


# --- filter patterns --------------------------------------------------------------------------------


@given(PATTERNS | JSON, st.booleans())
def test_any_pattern_compiles_or_is_an_expression_error(pattern: Any, sqs: bool) -> None:
    with contextlib.suppress(ExpressionError):
        compile_pattern(pattern if isinstance(pattern, dict) else json.dumps(pattern),
                        data_key=SQS_DATA_KEY if sqs else None)


@given(st.text() | DEEP_TEXT)
def test_any_pattern_text_compiles_or_is_an_expression_error(text: str) -> None:
    with contextlib.suppress(ExpressionError):
        compile_filters([text])


@given(st.dictionaries(KEYS, PATTERN_LEAF, min_size=1, max_size=3), st.dictionaries(KEYS, JSON, max_size=4),
       TEXTS)
def test_matching_any_event_answers_true_or_false(pattern: dict, event: dict, body: str) -> None:
    try:
        matches = compile_filters([pattern, {"body": pattern}], data_key=SQS_DATA_KEY)
    except ExpressionError:
        return
    assert matches(event) in (True, False)
    assert matches(sqs_filter_view({**event, "body": body})) in (True, False)


# --- IoT SQL ----------------------------------------------------------------------------------------

SQL_WORDS = st.sampled_from(["SELECT", "*", ",", "FROM", "WHERE", "AS", "'a/+'", "'a/#'", "a", "b.c", "topic()",
                             "(", ")", "=", "<>", "AND", "OR", "NOT", "+", "-", "/", "%", "1", "'x'", "get(", "[0]",
                             "clientid()", "timestamp()", "abs(", "NULL", "true", "encode(", "*", "'", '"', "1e3", "-"])
SQL = st.text() | st.lists(SQL_WORDS, max_size=20).map(" ".join) | st.lists(SQL_WORDS, max_size=12).map(
    lambda words: "SELECT " + " ".join(words) + " FROM 'a/+'")


@given(SQL)
def test_any_sql_parses_or_is_an_expression_error(sql: str) -> None:
    with contextlib.suppress(ExpressionError):
        parse_rule(sql)


RULES = ["SELECT * FROM 'a/+'", "SELECT a, b.c AS d, topic(2) AS t FROM 'a/+' WHERE a > 1 OR b.c = 'x'",
         "SELECT (n - 32) * 5 / 9 AS c, n % 3 AS m, -n AS neg FROM 'a/+' WHERE NOT (n <> 2)",
         "SELECT *, a + n AS sum, a / n AS q, encode(*, 'base64') AS e, clientid() AS c FROM 'a/+'",
         "SELECT * AS message, timestamp() AS ts FROM 'a/#' WHERE a = 'x' AND n < 0"]


@given(st.sampled_from(RULES), BYTES | JSON.map(lambda v: json.dumps(v).encode()), st.text())
def test_evaluating_any_payload_gives_an_event_or_nothing(sql: str, message: bytes, topic: str) -> None:
    try:
        result = parse_rule(sql).evaluate(message, topic=topic, client_id="c", now_ms=1)
    except NonJsonPayload:
        return
    if result is not None:
        assert isinstance(result, dict)
        json.dumps(result)


# --- config loader ----------------------------------------------------------------------------------

CONFIG_KEYS = st.sampled_from(["state_dir", "functions", "sources", "queues", "api", "async", "handler", "code",
                               "type", "function", "on_success", "on_failure", "listen", "region", "filters",
                               "reserved_concurrency", "timeout", "path", "queue", "topic", "sql", "schedule"])
CONFIG_TREES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                            | st.dictionaries(CONFIG_KEYS | st.text(max_size=5), inner, max_size=4), max_leaves=15)


@given(st.text() | DEEP_TEXT | CONFIG_TREES.map(lambda tree: yaml.safe_dump(tree)))
def test_any_config_text_loads_or_is_a_config_error(text: str) -> None:
    try:
        parse_config(text, environ={})
    except ConfigError as err:
        assert str(err)


@given(st.dictionaries(st.text(min_size=1, max_size=8), st.fixed_dictionaries(
    {"handler": st.just("app.handler"), "code": st.just("/tmp")},
    optional={"async": st.fixed_dictionaries({}, optional={
        "on_success": st.sampled_from(["dlq", "function:a", "function:b", "sqs:http://q"]) | st.text(),
        "on_failure": st.sampled_from(["dlq", "function:a", "function:b"]) | st.none()})}), max_size=4))
def test_destination_graphs_load_or_name_the_loop(functions: dict) -> None:
    try:
        parse_config(yaml.safe_dump({"state_dir": "/tmp/state", "functions": functions}), environ={})
    except ConfigError as err:
        assert str(err)


# --- sam-import: aliases, nesting and references from outside ---------------------------------------

SAM_HEAD = "Transform: AWS::Serverless-2016-10-31\nConditions: {C: !Equals [a, a]}\n"
# One level of an intrinsic around the value X (JSON flow text, which is YAML too).
WRAPPERS = {"join": '{"Fn::Join": ["", [X]]}', "select": '{"Fn::Select": [0, [X]]}',
            "if": '{"Fn::If": ["C", X, "b"]}', "sub": '{"Fn::Sub": ["${V}-", {"V": X}]}', "list": "[X]",
            "map": '{"k": X}', "split": '{"Fn::Split": [",", X]}'}


def alias_tree(levels: int, fanout: int, leaves: int) -> str:
    """Anchors each repeating the previous one ``fanout`` times: a "billion laughs" for large values."""
    lines = [f"  a0: &a0 {{{', '.join(f'k{i}: v' for i in range(leaves))}}}"]
    lines += [f"  a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * fanout)}]" for n in range(1, levels + 1)]
    return "Metadata:\n" + "\n".join(lines) + "\n"


def nested(wrappers: list[str], style: str, depth: int) -> str:
    """The environment value: intrinsics wrapped around each other, then plain nesting of ``style``."""
    inner = {"flow": "[" * depth + "]" * depth, "json": '{"k": ' * depth + "1" + "}" * depth}.get(style, '"x"')
    for name in wrappers:
        inner = WRAPPERS[name].replace("X", inner)
    return inner


@st.composite
def hostile_templates(draw: st.DrawFn) -> str:
    levels, fanout = draw(st.integers(0, 12)), draw(st.integers(1, 40))
    metadata = alias_tree(levels, fanout, draw(st.integers(1, 300))) if levels else ""
    if draw(st.booleans()):  # plain block nesting, as deep as the draw says
        depth = draw(st.integers(0, 1500))
        metadata += "Mappings:\n" + "".join(f"{' ' * (i + 2)}k{i}:\n" for i in range(depth)) + " " * (depth + 2) + "v\n"
    value = nested(draw(st.lists(st.sampled_from(sorted(WRAPPERS)), max_size=400)),
                   draw(st.sampled_from(["flow", "json", "none"])), draw(st.integers(0, 3000)))
    if levels and draw(st.booleans()):
        value = f"*a{draw(st.integers(0, levels))}"  # the evaluator walks an expanded alias
    chain = draw(st.integers(0, 60))  # queues whose names are built from the next one's
    queues = "".join(f"  Q{i}: {{Type: AWS::SQS::Queue, Properties: {{QueueName: !Sub '${{Q{i + 1}.QueueName}}'}}}}\n"
                     for i in range(chain)) + f"  Q{chain}: {{Type: AWS::SQS::Queue}}\n"
    return (SAM_HEAD + metadata + "Resources:\n" + queues + "  Fn:\n    Type: AWS::Serverless::Function\n"
            "    Properties:\n      CodeUri: .\n      Handler: app.handler\n      Runtime: python3.12\n"
            f"      Environment:\n        Variables:\n          V: {value}\n          Q: !Ref Q0\n")


@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                                 HealthCheck.data_too_large])
@given(hostile_templates())
def test_any_template_is_imported_or_refused_in_bounded_time(tmp_path_factory: Any, text: str) -> None:
    path = tmp_path_factory.mktemp("sam") / "template.yaml"
    path.write_text(text)
    started = time.process_time()
    try:
        result = import_template(path, output=path.parent / "config.yaml")
    except SamTemplateError as err:  # one clear error, naming the file: never a traceback of another kind
        assert str(err).startswith(str(path)) and "Traceback" not in str(err)
    else:
        # sam-import keeps the runtime as written (python3.N runs on that interpreter when it is installed)
        assert yaml.safe_load(result.text)["functions"]["Fn"]["runtime"] == "python3.12"
    assert time.process_time() - started < 10  # CPU seconds: the target for any template, refused or imported


# --- event builders (oracle: aws-lambda-powertools' models of AWS's events) --------------------------

ATTRIBUTE = st.one_of(
    st.fixed_dictionaries({"DataType": st.sampled_from(["String", "Number", "String.custom"]),
                           "StringValue": st.text(min_size=1)}),
    st.fixed_dictionaries({"DataType": st.just("Binary"),
                           "BinaryValue": st.binary(min_size=1)}))


@given(st.text() | DEEP_TEXT, st.dictionaries(st.text(st.characters(codec="ascii"), min_size=1, max_size=10),
                                             ATTRIBUTE, max_size=3),
       st.dictionaries(st.sampled_from(["SentTimestamp", "ApproximateReceiveCount", "SenderId",
                                        "ApproximateFirstReceiveTimestamp"]), st.integers(0, 2**40).map(str)))
def test_sqs_records_from_any_message_are_valid_sqs_events(body: str, attributes: dict, system: dict) -> None:
    message = {"MessageId": "m-1", "ReceiptHandle": "r", "Body": body, "MD5OfBody": md5_hex(body),
               "Attributes": {"SentTimestamp": "1", "ApproximateReceiveCount": "1", "SenderId": "s",
                              "ApproximateFirstReceiveTimestamp": "1", **system},
               "MessageAttributes": attributes}
    record = record_from_sqs_message(message, queue_arn="arn:aws:sqs:us-east-1:000000000000:q", region="us-east-1")
    SqsModel.model_validate(sqs_event([record]))
    json.dumps(sqs_event([record]))


@given(BYTES | st.none(), st.booleans(), st.booleans())
def test_any_batch_response_gets_a_verdict(response: bytes | None, failed: bool, report: bool) -> None:
    verdict = judge_batch_response(function_error=failed, payload=response, message_ids=["a", "b"],
                                   report_batch_item_failures=report)
    assert verdict.failed <= {"a", "b"} and verdict.reason


@given(st.binary(min_size=1, max_size=200).filter(lambda b: b"\x00" not in b), st.text(min_size=3, max_size=20))
def test_s3_records_for_any_key_are_valid_s3_events(path: bytes, request_id: str) -> None:
    record = s3_record(event_name="ObjectCreated:Put", bucket="bucket", key=object_key(path), size=1,
                       etag="d41d8cd98f00b204e9800998ecf8427e", sequencer="0A", region="us-east-1",
                       configuration_id="c", event_time=datetime.now(UTC), request_id=request_id, host_id="h",
                       principal_id="p")
    S3Model.model_validate(s3_event([record]))


@given(BYTES, BYTES | st.none())
def test_invocation_records_of_any_payload_serialise(request_payload: bytes, response: bytes | None) -> None:
    last = None if response is None else {"statusCode": 200, "functionError": "Unhandled",
                                          "payload": response.decode(errors="replace")}
    record = invocation_record(request_id="r", function_arn="arn:aws:lambda:us-east-1:000000000000:function:f",
                               condition="RetriesExhausted", invoke_count=1, request_payload=request_payload,
                               last_response=last, now=0.0)
    json.loads(json.dumps(record))


@given(JSON | st.text() | DEEP_TEXT)
def test_scheduler_input_of_any_template(template: Any) -> None:
    value = scheduler_input(template, schedule_arn="arn", scheduled_time=datetime.now(UTC), execution_id="e",
                            attempt_number=1)
    json.dumps(value)


def test_base64_attribute_example_round_trips() -> None:
    """A guard that the strategies above produce binary attributes the builder accepts (not all filtered)."""
    message = {"MessageId": "m", "ReceiptHandle": "r", "Body": "b", "MD5OfBody": md5_hex("b"), "Attributes": {},
               "MessageAttributes": {"x": {"DataType": "Binary", "BinaryValue": base64.b64encode(b"\x01")}}}
    record_from_sqs_message(message, queue_arn="arn:aws:sqs:us-east-1:000000000000:q", region="us-east-1")


@given(BYTES)
def test_error_type_of_any_function_answer(answer: bytes) -> None:
    """A function (or a custom runtime) may answer anything: reading its error type never raises."""
    InvokeResult("r", answer, "Unhandled").error_type  # noqa: B018 - the property is "does not raise"
    is_error_body(answer)
