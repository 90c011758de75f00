"""CloudWatch Logs filter patterns: every example of AWS's filter-pattern documentation, errors with a column,
and properties (Hypothesis) of the term, exclusion and JSON semantics.

The table's oracle is AWS's page "Filter pattern syntax for metric filters, subscription filters, filter log
events, and Live Tail" (and its earlier "Filter and Pattern Syntax" edition): each row is one documented
pattern, the documented log events, and which of them the page says match.
"""

from __future__ import annotations

import json
import re
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.errors import ExpressionError
from bridge.sources.logs.pattern import PatternError, compile_pattern, split_fields

# The documented sample events.
HTTP_ERRORS = ["[ERROR 400] BAD REQUEST", "[ERROR 401] UNAUTHORIZED REQUEST", "[ERROR 419] MISSING ARGUMENTS",
               "[ERROR 420] INVALID ARGUMENTS"]
AUTH = ["[ERROR 401] UNAUTHORIZED REQUEST", "[SUCCESS 200] AUTHORIZED REQUEST"]
OLD_TERMS = ["[ERROR] A fatal exception has occurred", "Exiting with ERRORCODE: -1",
             "[ERROR] Caught IllegalArgumentException", "[ERROR] Unhandled Exception",
             "[WARN] Failed to process the request", "[ERROR] Unable to continue: Failed to process the request"]
WORDS = ["ERROR WARN message", "ERROR message", "WARN message"]
FOO = ['{"foo": "bar"}', '{"foo": "baz"}']
TRAIL = json.dumps({"eventType": "UpdateTrail", "sourceIPAddress": "111.111.111.111",
                    "arrayKey": ["value", "another value"],
                    "objectList": [{"name": "a", "id": 1}, {"name": "b", "id": 2}],
                    "SomeObject": None, "ThisFlag": True, "cluster.name": "c"})
USERS = json.dumps({"user": {"id": 1, "email": "John.Stiles@example.com"},
                    "users": [{"id": 2, "email": "John.Doe@example.com"}, {"id": 3, "email": "Jane.Doe@example.com"}],
                    "actions": ["GET", "PUT", "DELETE"], "coordinates": [[0, 1, 2], [4, 5, 6], [7, 8, 9]]})
APACHE = ['127.0.0.1 - frank [10/Oct/2000:13:25:15 -0700] "GET /apache_pb.gif HTTP/1.0" 200 1534',
          '127.0.0.1 - frank [10/Oct/2000:13:35:22 -0700] "GET /apache_pb.gif HTTP/1.0" 500 5324',
          '127.0.0.1 - frank [10/Oct/2000:13:50:35 -0700] "GET /apache_pb.gif HTTP/1.0" 200 4355']
APACHE_404 = '127.0.0.1 - frank [10/Oct/2000:13:25:15 -0700] "GET /index.html HTTP/1.0" 404 1534'

# (pattern, events, indexes of the events the documentation says match)
DOCUMENTED = [
    # unstructured log events
    ("", OLD_TERMS, [0, 1, 2, 3, 4, 5]),
    ('" "', HTTP_ERRORS, [0, 1, 2, 3]),
    ("ERROR", HTTP_ERRORS, [0, 1, 2, 3]),
    ("ERROR ARGUMENTS", HTTP_ERRORS, [2, 3]),
    ("?ERROR ?ARGUMENTS", HTTP_ERRORS, [0, 1, 2, 3]),
    ('"INTERNAL SERVER ERROR"', [*HTTP_ERRORS, "[ERROR 500] INTERNAL SERVER ERROR"], [4]),
    ("ERROR -ARGUMENTS", HTTP_ERRORS, [0, 1]),
    ("%AUTHORIZED%", AUTH, [0, 1]),
    ('"ERROR"', OLD_TERMS, [0, 1, 2, 3, 5]),
    ('"ERROR" -"Exiting"', OLD_TERMS, [0, 2, 3, 5]),
    ('"ERROR" - "Exiting"', OLD_TERMS, [0, 2, 3, 5]),
    ('"ERROR Exception"', OLD_TERMS[2:4], []),  # one quoted phrase: the page's text shows it unquoted, below
    ("ERROR Exception", OLD_TERMS, [2, 3]),
    ("Failed to process the request", OLD_TERMS, [4, 5]),
    ("ERROR", WORDS, [0, 1]),
    ("?ERROR ?WARN", WORDS, [0, 1, 2]),
    ("ERROR WARN", WORDS, [0]),
    ("ERROR -WARN", WORDS, [1]),
    # space-delimited OR / AND inside a field
    ("[w1=ERROR, w2]", WORDS, [1]),
    ("[w1=ERROR || w1=WARN, w2]", WORDS, [1, 2]),
    # JSON OR
    ("{$.foo = bar}", FOO, [0]),
    ("{$.foo = baz }", FOO, [1]),
    ("{$.foo = bar || $.foo = baz }", FOO, [0, 1]),
    # JSON log events
    ('{ $.eventType = "UpdateTrail" }', [TRAIL], [0]),
    ("{ $.sourceIPAddress != 123.123.* }", [TRAIL], [0]),
    ('{ $.arrayKey[0] = "value" }', [TRAIL], [0]),
    ("{ $.objectList[1].id = 2 }", [TRAIL], [0]),
    ("{ $.SomeObject IS NULL }", [TRAIL], [0]),
    ("{ $.SomeOtherObject NOT EXISTS }", [TRAIL], [0]),
    ("{ $.ThisFlag IS TRUE }", [TRAIL], [0]),
    ("{ $.ThisFlag IS FALSE }", [TRAIL], []),
    # compound conditions
    ('{ ($.user.id = 1) && ($.users[0].email = "John.Doe@example.com") }', [USERS], [0]),
    ('{ ($.user.id = 2 && $.users[0].email = "nonmatch") || $.actions[2] = "GET" }', [USERS], []),
    ('{ $.user.email = "John.Stiles@example.com" || $.coordinates[0][1] = nonmatch && $.actions[2] = nomatch }',
     [USERS], [0]),
    ('{ ($.user.email = "John.Stiles@example.com" || $.coordinates[0][1] = nonmatch) && $.actions[2] = nomatch }',
     [USERS], []),
    # a selector on an array matches neither = nor !=
    ("{$.users = 1}", ['{"users": [1, 2, 3]}'], []),
    ("{$.users != 1}", ['{"users": [1, 2, 3]}'], []),
    ("{ $.latency = * }", ['{"latency": 12}', '{"other": 1}'], [0]),
    # space-delimited log events
    ("[ip, user, username, timestamp, request, status_code, bytes]", APACHE, [0, 1, 2]),
    ("[..., status_code, bytes]", APACHE, [0, 1, 2]),
    ("[ip, user, ..., status_code, bytes]", APACHE, [0, 1, 2]),
    ("[ip, user, ...]", APACHE, [0, 1, 2]),
    ("[ip, user, username, timestamp, request, status_code, bytes > 1000]", APACHE, [0, 1, 2]),
    ("[ip, user, username, timestamp, request, status_code = 200, bytes]", APACHE, [0, 2]),
    ("[ip, user, username, timestamp, request, status_code = 4*, bytes]", [*APACHE, APACHE_404], [3]),
    ("[ip, user, username, timestamp, request = *html*, status_code = 4*, bytes]", [*APACHE, APACHE_404], [3]),
    # the page's own example names a seventh field it never declares: six slots never fit seven fields
    ("[ip, user, username, timestamp, request, status_code = 4* && bytes > 1000]", [*APACHE, APACHE_404], []),
    ("[ip, user, username, timestamp, request, status_code = 403 || status_code = 404, bytes]",
     [*APACHE, APACHE_404], [3]),
    ("[..., request=*.html*, status_code=4*,]", [*APACHE, APACHE_404], [3]),
]

# Numeric comparisons the page lists without sample events: they parse.
DOCUMENTED_SYNTAX = ["{ $.latency >= 500 }", "{ $.numbers[0] < 10e3 }", "{ $.numbers[0] < 10e-3 }",
                     "{ $.processes[4].averageRuntime <= 55.5 }", "{ $.errorCode = 400 }", "{ $.errorCode != 500 }",
                     "{ $.latency > +1000 }"]


@pytest.mark.parametrize(("pattern", "events", "matching"), DOCUMENTED, ids=[row[0] or "empty" for row in DOCUMENTED])
def test_documented_examples(pattern: str, events: list[str], matching: list[int]) -> None:
    compiled = compile_pattern(pattern)
    assert [i for i, event in enumerate(events) if compiled.match(event) is not None] == matching


@pytest.mark.parametrize("pattern", DOCUMENTED_SYNTAX)
def test_documented_numeric_syntax_parses(pattern: str) -> None:
    compiled = compile_pattern(pattern)
    assert compiled.kind == "json"


def test_dotted_key_of_the_documented_sample() -> None:
    """The current page's sample event has a key with a period ("cluster.name"); the page shows no pattern for
    it, so this is the bracket form JSONPath uses (an extension, documented in docs/logs.md)."""
    assert compile_pattern("{ $.['cluster.name'] = \"c\" }").match(TRAIL) is not None
    assert compile_pattern("{ $.cluster.name = \"c\" }").match(TRAIL) is None


def test_documented_w1_not_error_and_not_warn() -> None:
    """The page says ``[w1!=ERROR&&w1!=WARN, w2]`` matches "ERROR WARN message"; by its own rules (w1 is the
    first word, two slots take two words) it can match none of the three: the sentence contradicts the page."""
    compiled = compile_pattern("[w1!=ERROR&&w1!=WARN, w2]")
    assert [compiled.match(event) for event in WORDS] == [None, None, None]
    assert compiled.match("INFO message") == {"$w1": "INFO", "$w2": "message"}


def test_documented_extracted_fields() -> None:
    """The page's extractedFields for ``[..., request=*.html*, status_code=4*,]``: named fields as $name, the
    others by their position."""
    assert compile_pattern("[..., request=*.html*, status_code=4*,]").match(APACHE_404) == {
        "$status_code": "404", "$request": "GET /index.html HTTP/1.0", "$7": "1534",
        "$4": "10/Oct/2000:13:25:15 -0700", "$3": "frank", "$2": "-", "$1": "127.0.0.1"}


@pytest.mark.parametrize(("pattern", "column"), [
    ("{ $.level = }", 13), ("{ $.level = \"x\"", 16), ("[ip, user", 10), ("%ab(c%", 4), ('"abc', 1),
    ("{ $.a IS FOO }", 7), ("{ level = 1 }", 3), ("{ $.a > abc }", 9), ("%something!%", 11), ("ERROR -", 7),
    ("{ $.a = 1 } junk", 13), ("{ $.a = %x% && $.b = %y% && $.c = %z% }", 35), ("%abc", 1), ("{ $ = 1 }", 3),
])
def test_errors_name_the_column(pattern: str, column: int) -> None:
    with pytest.raises(PatternError, match=rf"at column {column}\b"):
        compile_pattern(pattern)


def test_regex_subset() -> None:
    """AWS's regex: the listed characters and operators only; no parentheses, no multi-byte characters."""
    assert compile_pattern(r"%^\[ERROR 4[0-9]{2}\]%").match("[ERROR 401] UNAUTHORIZED") is not None
    assert compile_pattern("%colou?r%").match("grey color") is not None
    for bad in ("%a(b)%", "%café%", "%a!b%"):
        with pytest.raises(PatternError):
            compile_pattern(bad)
    assert compile_pattern("[w1 = %^ERR%, w2]").match("ERROR x") == {"$w1": "ERROR", "$w2": "x"}
    assert compile_pattern('{ $.msg = %time[do]ut% }').match('{"msg": "a timeout"}') is not None


def test_wildcards_only_at_the_ends() -> None:
    """``*Event`` and ``Event*`` are wildcards; ``Ev*ent`` is the literal text."""
    assert compile_pattern("{ $.e = *Event }").match('{"e": "PutEvent"}') is not None
    assert compile_pattern("{ $.e = Event* }").match('{"e": "EventName"}') is not None
    assert compile_pattern("{ $.e = Ev*ent }").match('{"e": "Event"}') is None
    assert compile_pattern("{ $.e = Ev*ent }").match('{"e": "Ev*ent"}') is not None


def test_field_values_in_quotes_and_brackets_are_one_field() -> None:
    assert split_fields(APACHE[0]) == ["127.0.0.1", "-", "frank", "10/Oct/2000:13:25:15 -0700",
                                       "GET /apache_pb.gif HTTP/1.0", "200", "1534"]


# --- properties --------------------------------------------------------------------------------------------

WORD = st.text(st.sampled_from("abcXYZ019_"), min_size=1, max_size=6)
MESSAGE = st.text(st.sampled_from("abcXYZ019_ -[]{}\":"), max_size=40)


@given(st.text(max_size=200))
def test_any_text_parses_or_names_a_column(text: str) -> None:
    """Never a crash: a pattern, or an ExpressionError saying where (or why: too long, NUL)."""
    try:
        compiled = compile_pattern(text)
    except ExpressionError as err:
        assert re.search(r"at column \d+|characters|NUL", str(err)), str(err)
        return
    compiled.match(text)
    compiled.match("")


@given(st.sampled_from(["{", "[", "%", "{ $.", "[a, ", '"', "-", "?"]), st.text(max_size=60), st.text(max_size=80))
def test_structured_prefixes_parse_or_fail_cleanly(prefix: str, rest: str, message: str) -> None:
    try:
        compiled = compile_pattern(prefix + rest)
    except ExpressionError:
        return
    compiled.match(message)


@given(st.lists(WORD, min_size=1, max_size=4), MESSAGE)
def test_terms_are_substrings_anded(terms: list[str], message: str) -> None:
    matched = compile_pattern(" ".join(terms)).match(message) is not None
    assert matched == all(term in message for term in terms)


@given(st.lists(WORD, min_size=1, max_size=4), MESSAGE)
def test_question_terms_are_ored(terms: list[str], message: str) -> None:
    matched = compile_pattern(" ".join(f"?{t}" for t in terms)).match(message) is not None
    assert matched == any(term in message for term in terms)


@given(WORD, WORD, MESSAGE)
def test_exclusion_is_negation(term: str, excluded: str, message: str) -> None:
    with_exclusion = compile_pattern(f"{term} -{excluded}").match(message) is not None
    assert with_exclusion == (term in message and excluded not in message)


@given(st.text(max_size=30).filter(lambda t: not set(t) & set('"\\\0') and t.strip()), MESSAGE)
def test_quoted_phrase_is_one_substring(phrase: str, message: str) -> None:
    assert (compile_pattern(f'"{phrase}"').match(message + phrase) is not None)
    assert (compile_pattern(f'"{phrase}"').match(message) is not None) == (phrase in message)


@given(st.integers(-10**6, 10**6), st.integers(-10**6, 10**6), st.sampled_from(["<", ">", "<=", ">=", "=", "!="]))
def test_json_numeric_comparisons(value: int, bound: int, op: str) -> None:
    expected = {"<": value < bound, ">": value > bound, "<=": value <= bound, ">=": value >= bound,
                "=": value == bound, "!=": value != bound}[op]
    assert (compile_pattern(f"{{ $.n {op} {bound} }}").match(json.dumps({"n": value})) is not None) == expected


PLAIN = st.text(max_size=10).filter(lambda t: not set(t) & set('"\\\0'))


@given(st.text(max_size=10), PLAIN)
def test_json_equality_and_inequality_are_complements_on_value_nodes(value: str, other: str) -> None:
    message = json.dumps({"k": value})
    equal = compile_pattern(f'{{ $.k = "{other}" }}').match(message) is not None
    unequal = compile_pattern(f'{{ $.k != "{other}" }}').match(message) is not None
    assert equal != unequal
    if "*" not in other:
        assert equal == (value == other)


def test_ellipses_are_bounded() -> None:
    """Two ``...`` at most (a third is an error at its column); a line of 100,000 fields stays cheap."""
    two = compile_pattern("[a, ..., b=zz, ..., d]")
    assert two.match("x y zz w q") == {"$a": "x", "$2": "y", "$b": "zz", "$4": "w", "$d": "q"}
    with pytest.raises(PatternError, match="column 18"):
        compile_pattern("[..., a, ..., b, ...]")
    line = " ".join(["x"] * 100_000)
    started = time.perf_counter()
    assert two.match(line) is None
    assert time.perf_counter() - started < 5  # linear; a quadratic search would take minutes
