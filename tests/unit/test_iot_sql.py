"""Table tests for the AWS IoT rules SQL subset: parsing, evaluation, topic matching, rejected statements."""

from __future__ import annotations

import base64
import dataclasses
import json
import time
from typing import Any

import pytest

from bridge.errors import BridgeError, ExpressionError
from bridge.sources.mqtt.iot_sql import NonJsonPayload, parse_rule, topic_matches, validate_topic_filter

TOPIC = "sensors/d1/data"
CLIENT = "dev-1"
NOW = 1_700_000_000_000
EXAMPLE = (
    "SELECT topic(2) AS device_id, timestamp() AS ts, temperature "
    "FROM 'sensors/+/data' WHERE temperature > 30"
)
BINARY = bytes(range(256))


def _payload(value: Any) -> bytes:
    return value if isinstance(value, bytes) else json.dumps(value).encode()


def run(sql: str, payload: Any, topic: str = TOPIC) -> dict[str, Any] | None:
    return parse_rule(sql).evaluate(_payload(payload), topic=topic, client_id=CLIENT, now_ms=NOW)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# ------------------------------------------------------------------------------------------ the example


def test_example_from_the_issue_projects_and_filters() -> None:
    rule = parse_rule(EXAMPLE)
    assert rule.topic_filter == "sensors/+/data"
    assert rule.matches_topic("sensors/d1/data")
    event = rule.evaluate(b'{"temperature": 31.5, "humidity": 40}', topic=TOPIC, client_id=CLIENT, now_ms=NOW)
    assert event == {"device_id": "d1", "ts": NOW, "temperature": 31.5}
    assert list(event) == ["device_id", "ts", "temperature"]


@pytest.mark.parametrize("payload", [{"temperature": 30}, {"temperature": 12}, {"humidity": 40}, {}])
def test_example_does_not_fire_when_where_is_not_true(payload: dict[str, Any]) -> None:
    assert run(EXAMPLE, payload) is None


# ----------------------------------------------------------------------------------------------- SELECT

DOC = {
    "color": "red",
    "temperature": 50,
    "rgb": {"red": 255, "green": 0},
    "state": {"reported": {"temp": 21.5, "on": True}},
    "nothing": None,
}

SELECT_CASES = [
    ("SELECT * FROM 'a/#'", DOC),
    ("SELECT *, 15 AS speed FROM 'a/#'", {**DOC, "speed": 15}),
    ("SELECT *, 'blue' AS color FROM 'a/#'", {**DOC, "color": "blue"}),
    ("SELECT * AS message, topic() AS t FROM 'a/#'", {"message": DOC, "t": "a/b/c"}),
    ("SELECT color FROM 'a/#'", {"color": "red"}),
    ("SELECT color AS my_color, temperature AS fahrenheit FROM 'a/#'", {"my_color": "red", "fahrenheit": 50}),
    ("SELECT rgb.red AS red_value FROM 'a/#'", {"red_value": 255}),
    ("SELECT state.reported.temp FROM 'a/#'", {"temp": 21.5}),
    ("SELECT state.reported FROM 'a/#'", {"reported": {"temp": 21.5, "on": True}}),
    ("SELECT state.reported.temp.deeper, color.red FROM 'a/#'", {}),
    ("SELECT missing, nothing FROM 'a/#'", {"nothing": None}),
    ("SELECT 'single' AS s, \"double\" AS d FROM 'a/#'", {"s": "single", "d": "double"}),
    (
        "SELECT 42 AS i, 2.5 AS f, -3 AS n, 10.0 AS w, 1e3 AS e FROM 'a/#'",
        {"i": 42, "f": 2.5, "n": -3, "w": 10, "e": 1000},
    ),
    ("SELECT true AS t, FALSE AS f, Null AS z FROM 'a/#'", {"t": True, "f": False, "z": None}),
    ("SELECT topic() AS t, topic(1) AS t1, topic(3) AS t3 FROM 'a/#'", {"t": "a/b/c", "t1": "a", "t3": "c"}),
    ("SELECT topic(4) AS t4, topic(0) AS t0, topic(-1) AS tm, topic('x') AS tx FROM 'a/#'", {}),
    ("SELECT topic(2.2) AS t, topic('3') AS s FROM 'a/#'", {"t": "b", "s": "c"}),
    ("SELECT clientid() AS c, timestamp() AS ts FROM 'a/#'", {"c": CLIENT, "ts": NOW}),
    ("SELECT (temperature - 32) * 5 / 9 AS celsius FROM 'a/#'", {"celsius": 10}),
    (
        "SELECT 7 / 2 AS a, 7.5 / 2 AS b, -7 / 2 AS c, -7 % 3 AS d, 7 % 2.5 AS e FROM 'a/#'",
        {"a": 3, "b": 3.75, "c": -3, "d": -1, "e": 2},
    ),
    ("SELECT 1 + 2 * 3 AS a, (1 + 2) * 3 AS b, -(2 - 5) AS c FROM 'a/#'", {"a": 7, "b": 9, "c": 3}),
    (
        "SELECT color + 1 AS s, 1 + color AS t, '5' - 2 AS n, '5' + 2 AS cat FROM 'a/#'",
        {"s": "red1", "t": "1red", "n": 3, "cat": "52"},
    ),
    ("SELECT 1 / 0 AS a, true + 1 AS b, 'x' - 1 AS c, missing + 1 AS d, nothing + 'x' AS e FROM 'a/#'", {}),
    (
        "SELECT temperature > 40 AS hot, color = 'red' AND temperature < 0 AS both FROM 'a/#'",
        {"hot": True, "both": False},
    ),
    ("SELECT encode(color, 'base64') AS c, encode(missing, 'base64') AS m FROM 'a/#'", {"c": b64(b"red")}),
]


@pytest.mark.parametrize(("sql", "expected"), SELECT_CASES, ids=[case[0] for case in SELECT_CASES])
def test_select(sql: str, expected: dict[str, Any]) -> None:
    assert run(sql, DOC, topic="a/b/c") == expected


def test_whole_number_decimals_arrive_as_ints_as_in_sql_2016_03_23() -> None:
    event = run("SELECT * FROM 'a'", b'{"t": 21.0, "u": 21.5, "big": 12345678901234567890}', topic="a")
    assert event == {"t": 21, "u": 21.5, "big": 12345678901234567890}
    assert type(event["t"]) is int


def test_empty_payload_acts_as_an_empty_object() -> None:
    assert run("SELECT *, topic() AS t FROM 'a'", b"", topic="a") == {"t": "a"}
    assert run("SELECT missing FROM 'a'", b"", topic="a") == {}


def test_keywords_and_function_names_are_case_insensitive_but_fields_are_not() -> None:
    sql = "sElEcT TOPIC(2) as d, Color, color FrOm 'sensors/#' wHeRe NOT temperature <= 10 aNd color = 'red'"
    assert run(sql, {"color": "red", "Color": "RED", "temperature": 11}) == {
        "d": "d1",
        "Color": "RED",
        "color": "red",
    }


def test_multi_line_statement() -> None:
    sql = "SELECT temperature\n  FROM 'sensors/+/data'\n  WHERE temperature > 1"
    assert run(sql, {"temperature": 2}) == {"temperature": 2}


# ------------------------------------------------------------------------------------------------ WHERE

ROW = {
    "a": 1,
    "b": 2,
    "c": 3,
    "n": 5,
    "s": "31",
    "word": "hot",
    "color": "red",
    "flag": True,
    "text_flag": "TRUE",
    "nothing": None,
    "state": {"reported": {"temp": 20}},
    "tags": ["x"],
    "obj": {"k": 1},
}

WHERE_CASES = [
    ("a = 1", True),
    ("a = 2", False),
    ("a <> 2", True),
    ("a > 0 AND b >= 2 AND c < 4 AND n <= 5", True),
    ("s > 30", True),  # numeric strings compare as Decimals
    ("word > 30", False),  # a non-numeric string makes the comparison Undefined
    ("'abc' < 'abd'", False),  # AWS converts both sides of '<' to Decimal: strings do not order
    ("flag > 0", False),  # Booleans do not convert to Decimal
    ("n = '5'", False),  # mismatched types are unequal...
    ("n <> '5'", True),  # ...and therefore not-equal
    ("color = 'red'", True),
    ('color = "red"', True),
    ("color <> 'red'", False),
    ("missing = 1", False),  # Undefined
    ("missing <> 1", False),  # still Undefined, not true
    ("NOT missing = 1", False),  # NOT Undefined is Undefined
    ("missing > 1 OR a = 1", True),  # a decided side wins over an Undefined one
    ("a = 2 AND missing = 1", False),
    ("missing = 1 AND a = 1", False),
    ("NOT a = 2", True),
    ("NOT (a = 1 OR b = 1)", False),
    ("(a = 1 OR b = 1) AND c = 4", False),
    ("a = 1 OR b = 1 AND c = 4", True),  # AND binds tighter than OR
    ("flag", True),
    ("flag = true", True),
    ("NOT flag", False),
    ("text_flag", True),  # 'true'/'false' strings convert to Boolean, in any case
    ("text_flag AND a = 1", True),
    ("a", False),  # a number is not a Boolean
    ("word", False),
    ("'TRUE'", True),
    ("nothing = null", True),
    ("nothing <> null", False),
    ("nothing = 0", False),
    ("tags = tags AND obj = obj", True),
    ("state.reported.temp >= 20 AND state.reported.temp < 20.5", True),
    ("state.missing.temp >= 20", False),
    ("topic(2) = 'd1' AND topic(1) <> 'x'", True),
    ("clientid() = 'dev-1'", True),
    ("timestamp() % 1000 = 0", True),
    ("a + b * c = 7", True),
    ("a / 0 = 1", False),
]


@pytest.mark.parametrize(("where", "fires"), WHERE_CASES, ids=[case[0] for case in WHERE_CASES])
def test_where(where: str, fires: bool) -> None:
    result = run(f"SELECT a FROM 'sensors/#' WHERE {where}", ROW)
    assert (result is not None) is fires
    if fires:
        assert result == {"a": 1}


# -------------------------------------------------------------------------------------- binary payloads


def test_encode_star_carries_a_binary_payload_as_base64() -> None:
    event = run("SELECT encode(*, 'base64') AS data, timestamp() AS ts FROM 'cam/+'", BINARY, topic="cam/1")
    assert event == {"data": b64(BINARY), "ts": NOW}
    assert base64.b64decode(event["data"]) == BINARY


def test_encode_star_encodes_the_raw_bytes_of_a_json_payload_too() -> None:
    raw = b'{"a": 1}'
    assert run("SELECT encode(*, 'base64') AS data FROM 'a'", raw, topic="a") == {"data": b64(raw)}


def test_a_rule_of_functions_only_works_on_any_payload() -> None:
    sql = "SELECT topic() AS t, clientid() AS c, 'x' AS lit FROM 'a' WHERE timestamp() > 0"
    assert run(sql, BINARY, topic="a") == {"t": "a", "c": CLIENT, "lit": "x"}


NON_JSON = [BINARY, b"\xff\xfe", b"hello", b"NaN", b'{"a": Infinity}', b'{"a": 1', b"   "]


@pytest.mark.parametrize("payload", NON_JSON)
@pytest.mark.parametrize(
    ("sql", "needs"),
    [
        ("SELECT * FROM 'a'", "'*'"),
        ("SELECT *, topic() AS t FROM 'a'", "'*'"),
        ("SELECT * AS whole FROM 'a'", "'*'"),
        ("SELECT temperature FROM 'a'", "SELECT reads payload fields"),
        ("SELECT encode(*, 'base64') AS d FROM 'a' WHERE device_type = 'thermostat'", "WHERE reads payload"),
        ("SELECT encode(*, 'base64') AS d, temperature AS t FROM 'a'", "SELECT reads payload"),
    ],
)
def test_a_rule_needing_json_raises_non_json_payload(payload: bytes, sql: str, needs: str) -> None:
    with pytest.raises(NonJsonPayload) as caught:
        run(sql, payload, topic="a")
    assert needs in str(caught.value)
    assert "SELECT encode(*, 'base64') AS data" in str(caught.value)
    assert "not UTF-8 JSON" in caught.value.reason
    assert isinstance(caught.value, BridgeError)


def test_where_false_wins_before_select_star_needs_json() -> None:
    # AWS evaluates WHERE first: a rule that does not fire never reaches the action that needs JSON.
    sql = "SELECT * FROM 'a' WHERE timestamp() % 2 = 1"
    assert run(sql, BINARY, topic="a") is None


def test_a_json_array_payload_is_json_but_not_an_object() -> None:
    assert run("SELECT a FROM 'a'", [1, 2], topic="a") == {}
    assert run("SELECT * AS whole FROM 'a'", [1, 2], topic="a") == {"whole": [1, 2]}
    with pytest.raises(NonJsonPayload, match="JSON array"):
        run("SELECT * FROM 'a'", [1, 2], topic="a")


# --------------------------------------------------------------------------------------------- topics

MATCHES = [
    ("sensors/+/data", "sensors/d1/data", True),
    ("sensors/+/data", "sensors//data", True),  # '+' matches an empty level
    ("sensors/+/data", "sensors/d1/x/data", False),
    ("sensors/+/data", "sensors/d1", False),
    ("sensors/+", "sensors/d1/data", False),
    ("sensors/#", "sensors/d1/data", True),
    ("sensors/#", "sensors", True),  # '#' includes the parent level
    ("sensors/#", "sensorsX/d1", False),
    ("#", "anything/at/all", True),
    ("+/+", "a/b", True),
    ("+", "/", False),
    ("+/+", "/", True),
    ("/#", "/a", True),
    ("a/b", "a/b", True),
    ("a/b", "A/b", False),  # topics are case-sensitive
    ("a/b", "a/b/", False),
    ("#", "$SYS/broker/uptime", False),  # wildcards in the first level never match '$' topics
    ("+/broker/uptime", "$SYS/broker/uptime", False),
    ("$SYS/#", "$SYS/broker/uptime", True),
    ("$SYS/+/uptime", "$SYS/broker/uptime", True),
    ("$aws/things/+/shadow/update/accepted", "$aws/things/t1/shadow/update/accepted", True),
    ("a/$x", "a/$x", True),
    ("a/+", "a/$x", True),  # the '$' rule applies to the first level only
]


@pytest.mark.parametrize(("topic_filter", "topic", "expected"), MATCHES)
def test_topic_matching(topic_filter: str, topic: str, expected: bool) -> None:
    validate_topic_filter(topic_filter)
    assert topic_matches(topic_filter, topic) is expected
    assert parse_rule(f"SELECT * FROM '{topic_filter}'").matches_topic(topic) is expected


@pytest.mark.parametrize(
    ("topic_filter", "fragment"),
    [
        ("", "empty"),
        ("a/#/b", "'#' must be a whole level and the last one"),
        ("a/b#", "'#' must be a whole level"),
        ("a/b+", "'+' must be a whole level"),
        ("a/+b/c", "found '+b' at level 2"),
        ("a/\x00", "NUL"),
    ],
)
def test_invalid_topic_filters(topic_filter: str, fragment: str) -> None:
    with pytest.raises(ExpressionError, match=fragment.replace("+", r"\+")):
        validate_topic_filter(topic_filter)


# ------------------------------------------------------------------------------------- invalid statements

INVALID = [
    ("", "expected the statement to start with SELECT at column 1, found the end of the statement"),
    ("UPDATE x", "expected the statement to start with SELECT at column 1, found 'UPDATE'"),
    ("SELECT temperature", "expected FROM after the SELECT list at column 19"),
    ("SELECT a b FROM 'x'", "expected FROM after the SELECT list at column 10, found 'b'"),
    (
        "SELECT get_thing_shadow('x') AS s FROM 'a'",
        "unsupported function 'get_thing_shadow' at column 8; supported: topic, clientid, timestamp, encode",
    ),
    ("SELECT * FROM 'a' WHERE upper(color) = 'RED'", "unsupported function 'upper' at column 25"),
    ("SELECT a[0] AS x FROM 'a'", "'[' (array literal or indexing) at column 9 is not supported"),
    ("SELECT {'k': 1} AS o FROM 'a'", "'{' (object literal) at column 8 is not supported"),
    ("SELECT (SELECT v FROM e) AS t FROM 'a'", "a nested SELECT (subquery) at column 9 is not supported"),
    ("SELECT CASE a WHEN 1 THEN 2 END AS x FROM 'a'", "a CASE expression at column 8 is not supported"),
    ("SELECT VALUE color FROM 'a'", "SELECT VALUE at column 8 is not supported"),
    ("SET x = 1", "the SET clause at column 1 is not supported; start the statement with SELECT"),
    ("SELECT @x AS v FROM 'a'", "'@' (SET variable) at column 8 is not supported"),
    ("SELECT 1 AS x FROM 'a' b", "expected WHERE or the end of the statement at column 24, found 'b'"),
    ("SELECT 1 AS x FROM 'a' 'b'", "expected WHERE or the end of the statement at column 24, found 'b'"),
    ("SELECT * FROM 'a/#/b'", "'#' must be a whole level and the last one"),
    ("SELECT * FROM 'a/b+'", "'+' must be a whole level"),
    ("SELECT * FROM ''", "topic filter is empty"),
    ("SELECT * FROM a/b", "expected the topic filter as a quoted string after FROM"),
    ("SELECT * FROM 'a' WHERE x != 1", "the operator '!=' at column 27 is not supported; AWS IoT SQL writes"),
    ("SELECT 'abc AS x FROM 'a'", "unterminated string starting at column 25"),
    ("SELECT \"abc AS x FROM 'a'", "unterminated string starting at column 8"),
    ("SELECT topic(1, 2) AS t FROM 'a'", "topic() takes 0 to 1 arguments, got 2 at column 8"),
    ("SELECT clientid(1) AS c FROM 'a'", "clientid() takes 0 arguments, got 1"),
    ("SELECT encode(*) AS d FROM 'a'", "encode() takes 2 arguments, got 1"),
    ("SELECT encode(*, 'hex') AS d FROM 'a'", "unsupported encoding scheme 'hex' for encode() at column 8"),
    ("SELECT encode(*, color) AS d FROM 'a'", "unsupported encoding scheme a computed value"),
    ("SELECT topic(*) AS d FROM 'a'", "'*' is only allowed as the first argument of encode()"),
    ("SELECT topic() + 1 FROM 'a'", "the SELECT item at column 8 needs a name: add AS <name>"),
    ("SELECT timestamp() FROM 'a'", "needs a name: add AS <name>"),
    ("SELECT * FROM 'a' WHERE", "expected an expression at column 24, found the end of the statement"),
    ("SELECT * FROM 'a' WHERE a = 1 b", "expected WHERE or the end of the statement at column 31, found 'b'"),
    ("SELECT * FROM 'a' WHERE a = 1;", "unexpected character ';' at column 30"),
    ("SELECT * FROM 'a' -- all", "a comment at column 19 is not supported"),
    ("SELECT * FROM 'a' WHERE a < b < c", "a chained comparison at column 31 is not supported"),
    ("SELECT a AS FROM 'x'", "expected a name after AS at column 13, found 'FROM'"),
    ("SELECT a AS 'x' FROM 'x'", "expected a name after AS"),
    ("SELECT * FROM 'a' WHERE (a = 1", "expected ')' to close the parenthesis at column 31"),
    ("SELECT * FROM 'a' WHERE * = 1", "'*' inside an expression at column 25 is not supported"),
    (
        "SELECT * FROM 'a' WHERE a IS NULL",
        "expected WHERE or the end of the statement at column 27, found 'IS'",
    ),
    ("SELECT a. FROM 'x'", "expected a field name after '.' at column 11"),
    ("SELECT `a` FROM 'x'", "'`' (quoted identifier) at column 8 is not supported"),
    ("SELECT ${topic()} AS t FROM 'x'", "'$' (substitution template) at column 8 is not supported"),
    ("SELECT , a FROM 'x'", "expected an expression at column 8, found ','"),
    ("SELECT a\nFROM 'x'\nWHERE a == 1", "expected an expression at line 3, column 10, found '='"),
    ("SELECT * FROM 'a/#/b'\n", "(in FROM at column 15)"),
]


@pytest.mark.parametrize(("sql", "fragment"), INVALID, ids=[case[0] for case in INVALID])
def test_invalid_statements_name_the_problem(sql: str, fragment: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        parse_rule(sql)
    assert fragment in str(caught.value)
    assert isinstance(caught.value, ValueError)  # so pydantic reports it at the config path


# ---------------------------------------------------------------------------------------------- the Rule


def test_rule_is_a_frozen_value() -> None:
    rule = parse_rule("SELECT * FROM 'a/+'")
    assert rule == parse_rule("SELECT * FROM 'a/+'")
    assert rule != parse_rule("SELECT a FROM 'a/+'")
    assert repr(rule) == "Rule(sql=\"SELECT * FROM 'a/+'\", topic_filter='a/+')"
    with pytest.raises(dataclasses.FrozenInstanceError):
        rule.topic_filter = "b"  # type: ignore[misc]


def test_each_evaluation_returns_a_fresh_dict() -> None:
    rule = parse_rule("SELECT *, topic() AS t FROM 'a'")
    first = rule.evaluate(b'{"x": 1}', topic="a", client_id=CLIENT, now_ms=NOW)
    first["x"] = 2  # type: ignore[index]
    assert rule.evaluate(b'{"x": 1}', topic="a", client_id=CLIENT, now_ms=NOW) == {"x": 1, "t": "a"}


def test_throughput(capsys: pytest.CaptureFixture[str]) -> None:
    rule = parse_rule(EXAMPLE)
    payload = b'{"temperature": 31.5, "humidity": 40, "battery": 3.7}'
    count = 50_000
    start = time.perf_counter()
    for _ in range(count):
        rule.evaluate(payload, topic=TOPIC, client_id=CLIENT, now_ms=NOW)
    rate = count / (time.perf_counter() - start)
    with capsys.disabled():
        print(f"\niot_sql: {rate:,.0f} evaluations/s of the example rule")
    assert rate > 10_000  # a guard against accidental quadratic work, not a benchmark


@pytest.mark.parametrize("sql", ["SELECT", "SELECT VALUE", "select"])
def test_a_statement_that_ends_early_is_an_expression_error(sql: str) -> None:
    with pytest.raises(ExpressionError):
        parse_rule(sql)
