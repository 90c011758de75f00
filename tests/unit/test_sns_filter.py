"""SNS filter policies: AWS's documented examples as a table, SNS's limits, and properties under Hypothesis."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.errors import ExpressionError
from bridge.events.sns_filter import compile_policy

# The message of AWS's "example filter policies" page (customer transactions), as Publish's API shape.
ATTRIBUTES = {
    "customer_interests": {"DataType": "String.Array", "StringValue": '["soccer", "rugby", "hockey"]'},
    "store": {"DataType": "String", "StringValue": "example_corp"},
    "event": {"DataType": "String", "StringValue": "order_placed"},
    "price_usd": {"DataType": "Number", "StringValue": "210.75"},
}
BODY = json.dumps({"customer_interests": ["soccer", "rugby", "hockey"], "store": "example_corp",
                   "event": "order_placed", "price_usd": 210.75})

# (policy, accepted?) from AWS's SNS filtering pages (example policies, operators, AND/OR logic).
DOCUMENTED = [
    ({"store": ["example_corp"], "event": [{"anything-but": "order_cancelled"}],
      "customer_interests": ["rugby", "football", "baseball"], "price_usd": [{"numeric": [">=", 100]}]}, True),
    ({"customer_interests": ["rugby", "football", "baseball"]}, True),
    ({"customer_interests": ["basketball"]}, False),
    ({"store": [{"exists": True}]}, True),
    ({"store": [{"exists": False}]}, False),
    ({"encrypted": [{"exists": False}]}, True),
    ({"encrypted": [{"exists": True}]}, False),
    ({"event": [{"anything-but": ["order_cancelled", "order_failed"]}]}, True),
    ({"event": [{"anything-but": ["order_placed"]}]}, False),
    ({"event": [{"anything-but": {"prefix": "order-"}}]}, True),
    ({"event": [{"anything-but": {"prefix": "order_"}}]}, False),
    ({"price_usd": [{"numeric": [">", 0, "<=", 150]}]}, False),
    ({"price_usd": [{"numeric": [">", 200, "<", 300]}]}, True),
    ({"price_usd": [{"numeric": ["=", 210.75]}]}, True),
    ({"price_usd": [{"anything-but": [100, 500]}]}, True),
    ({"customer_interests": [{"prefix": "bas"}]}, False),
    ({"customer_interests": [{"prefix": "hock"}]}, True),
    ({"store": [{"suffix": "_corp"}]}, True),
    ({"customer_interests": [{"suffix": "ball"}]}, False),
    ({"store": [{"equals-ignore-case": "EXAMPLE_CORP"}]}, True),
    ({"store": ["EXAMPLE_CORP"]}, False),  # string matching is case-sensitive
    ({"store": ["example_corp"], "event": ["order_cancelled"]}, False),  # keys are ANDed
    ({"store": ["other"], "$or": [{"event": ["order_placed"]}, {"price_usd": [{"numeric": ["<", 1]}]}]}, False),
    ({"store": ["example_corp"], "$or": [{"event": ["nope"]}, {"price_usd": [{"numeric": [">", 200]}]}]}, True),
]


@pytest.mark.parametrize(("policy", "accepted"), DOCUMENTED)
def test_documented_policies_on_message_attributes(policy: dict[str, Any], accepted: bool) -> None:
    assert compile_policy(policy).accepts("message-body-with-transaction-details", ATTRIBUTES) is accepted


@pytest.mark.parametrize(("policy", "accepted"), DOCUMENTED)
def test_documented_policies_on_the_message_body(policy: dict[str, Any], accepted: bool) -> None:
    assert compile_policy(policy, "MessageBody").accepts(BODY, {}) is accepted


@pytest.mark.parametrize(("ip", "accepted"), [("10.0.0.255", True), ("10.0.1.1", False), ("not-an-ip", False)])
def test_cidr_matches_ip_addresses(ip: str, accepted: bool) -> None:
    policy = compile_policy({"source_ip": [{"cidr": "10.0.0.0/24"}]})
    assert policy.accepts("", {"source_ip": {"DataType": "String", "StringValue": ip}}) is accepted


def test_body_scope_matches_nested_keys_and_ignores_a_body_that_is_not_json() -> None:
    policy = compile_policy({"order": {"shipping": {"region": [{"prefix": "eu-"}]}}}, "MessageBody")
    assert policy.accepts(json.dumps({"order": {"shipping": {"region": "eu-west-1"}}}), {})
    assert not policy.accepts(json.dumps({"order": {"shipping": {"region": "us-east-1"}}}), {})
    assert not policy.accepts("eu-west-1", {})
    assert not policy.accepts("[1, 2]", {})


def test_binary_attributes_take_no_part() -> None:
    policy = compile_policy({"blob": [{"exists": True}]})
    assert not policy.accepts("", {"blob": {"DataType": "Binary", "BinaryValue": "AAE="}})


@pytest.mark.parametrize(("policy", "scope", "says"), [
    ({f"k{i}": ["v"] for i in range(6)}, "MessageAttributes", "at most 5"),
    ({"a": list(range(10)), "b": list(range(16))}, "MessageAttributes", "160 combinations"),
    ({"a": [{"wildcard": "x*"}]}, "MessageAttributes", "a[0]: 'wildcard' is not an SNS filter operator"),
    ({"a": {"b": ["c"]}}, "MessageAttributes", "a: nested keys need filter_policy_scope: MessageBody"),
    ({"a": [{"numeric": [">", 2e9]}]}, "MessageAttributes", "a[0].numeric: 2000000000.0 is outside"),
    ({"a": [{"numeric": ["=", 1.123456]}]}, "MessageAttributes", "five decimal places"),
    ({"a": [{"anything-but": {"equals-ignore-case": "x"}}]}, "MessageAttributes", "a[0].anything-but"),
    ({"a": [{"prefx": "x"}]}, "MessageAttributes", "a[0]: 'prefx' is not an SNS filter operator"),
    ({"a": []}, "MessageAttributes", "a: empty arrays"),
    ("{not json", "MessageAttributes", "not valid JSON"),
    ({}, "MessageAttributes", "non-empty JSON object"),
])
def test_policies_that_do_not_parse_name_their_path(policy: Any, scope: Any, says: str) -> None:
    with pytest.raises(ExpressionError, match=None) as caught:
        compile_policy(policy, scope)
    assert says in str(caught.value)


def test_body_scope_counts_top_level_keys_only() -> None:
    nested = {"a": ["1"], "b": ["1"], "c": ["1"], "d": ["1"], "e": {"f": ["1"], "g": ["1"], "h": ["1"]}}
    compile_policy(nested, "MessageBody")
    with pytest.raises(ExpressionError):
        compile_policy({**nested, "i": ["1"]}, "MessageBody")


# --- properties ------------------------------------------------------------------------------------------

NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)
TEXTS = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
ATTRS = st.dictionaries(NAMES, TEXTS, min_size=1, max_size=5)


def _as_attributes(values: dict[str, str]) -> dict[str, dict[str, str]]:
    return {k: {"DataType": "String", "StringValue": v} for k, v in values.items()}


@given(ATTRS)
def test_a_policy_of_the_message_own_values_accepts_it_in_both_scopes(values: dict[str, str]) -> None:
    policy = {k: [v] for k, v in values.items()}
    assert compile_policy(policy).accepts("", _as_attributes(values))
    assert compile_policy(policy, "MessageBody").accepts(json.dumps(values), {})


@given(ATTRS, TEXTS)
def test_anything_but_is_the_negation_of_exact_for_a_present_key(values: dict[str, str], other: str) -> None:
    name = next(iter(values))
    attributes = _as_attributes(values)
    exact = compile_policy({name: [other]}).accepts("", attributes)
    assert compile_policy({name: [{"anything-but": [other]}]}).accepts("", attributes) is not exact


@given(ATTRS, TEXTS)
def test_prefix_agrees_with_startswith(values: dict[str, str], prefix: str) -> None:
    name, value = next(iter(values.items()))
    assert compile_policy({name: [{"prefix": prefix}]}).accepts("", _as_attributes(values)) is value.startswith(prefix)


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner,
                                                                                max_size=4), max_leaves=20)


@given(JSON, st.sampled_from(["MessageAttributes", "MessageBody"]))
def test_any_json_either_compiles_or_is_an_expression_error(policy: Any, scope: Any) -> None:
    try:
        compiled = compile_policy(policy, scope)
    except ExpressionError:
        return
    compiled.accepts(BODY, ATTRIBUTES)  # whatever it answers, it answers
