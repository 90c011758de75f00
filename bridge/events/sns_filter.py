"""SNS subscription filter policies: SNS's rules and limits checked once, then matched with the pattern engine."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from bridge.errors import ExpressionError
from bridge.events import filters

Scope = Literal["MessageAttributes", "MessageBody"]
MAX_KEYS = 5  # keys of a policy (MessageBody scope: top-level keys only, nested ones do not count)
MAX_COMBINATIONS = 150  # the product of the number of values in each array
NUMERIC_LIMIT = 1e9  # numeric matching covers -1e9..1e9 with five decimal places
SNS_OPERATORS = ("prefix", "suffix", "anything-but", "numeric", "exists", "equals-ignore-case", "cidr")
ANYTHING_BUT_NESTED = ("prefix", "suffix")


@dataclass(frozen=True, slots=True)
class FilterPolicy:
    """A checked SNS filter policy; ``accepts(body, attributes)`` answers as SNS's delivery would."""

    matcher: filters.Matcher
    scope: Scope

    def accepts(self, message: str, attributes: Mapping[str, Mapping[str, Any]]) -> bool:
        """True when the message (Publish's ``Message`` text and API-shape ``MessageAttributes``) passes."""
        return self.accepts_view(message, attribute_view(attributes))

    def accepts_view(self, message: str, view: dict[str, Any]) -> bool:
        """``accepts`` with the attributes already as ``attribute_view`` gives them (once per message, however
        many subscriptions look at it)."""
        if self.scope == "MessageBody":
            body = _json_object(message)
            return body is not None and self.matcher.matches(body)
        return self.matcher.matches(view)


def compile_policy(policy: Mapping[str, Any] | str, scope: Scope = "MessageAttributes") -> FilterPolicy:
    """Check a policy against SNS's language and limits, and compile it.

    Raises ``ExpressionError`` naming the offending path (``region[0].prefx: unknown operator ...``).
    """
    try:
        parsed = json.loads(policy) if isinstance(policy, str) else policy
    except (ValueError, RecursionError):
        raise ExpressionError("filter_policy: not valid JSON text") from None
    if not isinstance(parsed, Mapping) or not parsed:
        raise ExpressionError("filter_policy: must be a non-empty JSON object of keys and arrays of values")
    _check_object(parsed, "", nested_ok=scope == "MessageBody")
    keys = _count_keys(parsed)
    if keys > MAX_KEYS:
        raise ExpressionError(f"filter_policy: {keys} keys; SNS allows at most {MAX_KEYS} "
                              f"{'top-level ' if scope == 'MessageBody' else ''}keys in a policy")
    combinations = _combinations(parsed)
    if combinations > MAX_COMBINATIONS:
        raise ExpressionError(f"filter_policy: {combinations} combinations of values (the product of the "
                              f"number of values in each array); SNS allows at most {MAX_COMBINATIONS}")
    return FilterPolicy(filters.compile_pattern(parsed), scope)


def attribute_view(attributes: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Message attributes as the policy sees them: String as text, Number as a number, String.Array as its
    elements; Binary attributes take no part in filtering."""
    view: dict[str, Any] = {}
    for name, attribute in attributes.items():
        kind = str(attribute.get("DataType") or attribute.get("Type") or "")
        text = attribute.get("StringValue", attribute.get("Value"))
        if not isinstance(text, str) or kind.startswith("Binary"):
            continue
        view[name] = _typed_value(kind, text)
    return view


def _typed_value(kind: str, text: str) -> Any:
    if kind.startswith("Number"):
        try:
            number = float(text)
        except ValueError:
            return text
        return number if math.isfinite(number) else text
    if kind.startswith("String.Array"):
        try:
            items = json.loads(text)
        except ValueError:
            return text
        return items if isinstance(items, list) else text
    return text


def _json_object(message: str) -> dict[str, Any] | None:
    try:
        body = json.loads(message)
    except (ValueError, RecursionError):
        return None
    return body if isinstance(body, dict) else None


# --- SNS's own rules, on top of the pattern engine's --------------------------------------------------


def _child(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _check_object(obj: Mapping[str, Any], path: str, *, nested_ok: bool) -> None:
    for name, value in obj.items():
        where = _child(path, name)
        if name == "$or":
            for index, branch in enumerate(value if isinstance(value, list) else []):
                if isinstance(branch, Mapping):
                    _check_object(branch, f"{where}[{index}]", nested_ok=nested_ok)
        elif isinstance(value, Mapping):
            if not nested_ok:
                raise ExpressionError(f"{where}: nested keys need filter_policy_scope: MessageBody; message "
                                      "attributes are flat")
            _check_object(value, where, nested_ok=nested_ok)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                _check_value(item, f"{where}[{index}]")


def _check_value(item: Any, where: str) -> None:
    if _is_number(item):
        _check_number(item, where)
    if not isinstance(item, Mapping) or len(item) != 1:
        return  # the pattern engine names what is wrong with it
    ((name, arg),) = item.items()
    if name not in SNS_OPERATORS:
        raise ExpressionError(f"{where}: {name!r} is not an SNS filter operator; SNS has: "
                              f"{', '.join(SNS_OPERATORS)}")
    if name == "numeric" and isinstance(arg, list):
        for number in (a for a in arg if _is_number(a)):
            _check_number(number, f"{where}.numeric")
    if name == "anything-but" and isinstance(arg, Mapping) and not set(arg) <= set(ANYTHING_BUT_NESTED):
        raise ExpressionError(f"{where}.anything-but: SNS nests only {' or '.join(ANYTHING_BUT_NESTED)} in "
                              f"anything-but, got {sorted(arg)}")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_number(number: float, where: str) -> None:
    if not -NUMERIC_LIMIT <= number <= NUMERIC_LIMIT:
        raise ExpressionError(f"{where}: {number} is outside SNS's numeric range -1e9..1e9")
    if round(number, 5) != number:
        raise ExpressionError(f"{where}: {number} has more than the five decimal places SNS matches")


def _leaf_keys(obj: Mapping[str, Any]) -> Iterator[str]:
    for name, value in obj.items():
        if name == "$or":
            for branch in value if isinstance(value, list) else []:
                if isinstance(branch, Mapping):
                    yield from _leaf_keys(branch)
        else:
            yield name


def _count_keys(obj: Mapping[str, Any]) -> int:
    """Distinct top-level keys, $or branches' included (attributes are flat, so there all keys are top-level)."""
    return len(set(_leaf_keys(obj)))


def _combinations(obj: Mapping[str, Any]) -> int:
    """The product of the number of values of each array; a $or adds up its branches."""
    total = 1
    for name, value in obj.items():
        if name == "$or" and isinstance(value, list):
            total *= sum(_combinations(b) for b in value if isinstance(b, Mapping)) or 1
        elif isinstance(value, Mapping):
            total *= _combinations(value)
        elif isinstance(value, list):
            total *= max(1, len(value))
    return total
