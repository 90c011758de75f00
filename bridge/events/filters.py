"""EventBridge / Lambda event-filter patterns: validated once at config time, then matched per event."""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from bridge.errors import ExpressionError
from bridge.events import payload

OPERATORS = ("prefix", "suffix", "anything-but", "numeric", "exists", "equals-ignore-case", "cidr", "wildcard")
MAX_FILTERS = 10
SQS_DATA_KEY = "body"

_LOWER_BOUNDS = (">", ">=")
_UPPER_BOUNDS = ("<", "<=")
_NUMERIC_SHAPES = '["=", n], [">" or ">=", n], ["<" or "<=", n] or [">" or ">=", low, "<" or "<=", high]'
_ANYTHING_BUT_NESTED = ("prefix", "suffix", "equals-ignore-case", "wildcard")


class _Missing:
    """The value of a field the event does not have (distinct from JSON null)."""

    def __repr__(self) -> str:
        return "<missing>"


_MISSING = _Missing()


class _Test(Protocol):
    def test(self, value: Any) -> bool: ...


class _Node(Protocol):
    def match(self, value: Any) -> bool: ...


# ---------------------------------------------------------------------------------------------------------
# Value tests: one per operator, each a frozen value answering "does this leaf value satisfy me?"


def _is_number(value: Any) -> bool:
    # bool is an int subclass in Python, but JSON true is not the number 1.
    return isinstance(value, int | float) and not isinstance(value, bool)


def _same(expected: Any, value: Any) -> bool:
    """JSON equality: numbers compare by value, everything else needs the same JSON type."""
    if _is_number(expected) and _is_number(value):
        return expected == value
    return type(expected) is type(value) and expected == value


@dataclass(frozen=True, slots=True)
class _Equals:
    expected: Any

    def test(self, value: Any) -> bool:
        return _same(self.expected, value)


@dataclass(frozen=True, slots=True)
class _Affix:
    """A string value starting with ``text`` (ending with it when ``at_end``), optionally ignoring case."""

    text: str
    ignore_case: bool = False
    at_end: bool = False

    def test(self, value: Any) -> bool:
        if not isinstance(value, str):
            return False
        text = self.text
        if self.ignore_case:
            text, value = text.casefold(), value.casefold()
        return value.endswith(text) if self.at_end else value.startswith(text)


@dataclass(frozen=True, slots=True)
class _EqualsIgnoreCase:
    text: str

    def test(self, value: Any) -> bool:
        return isinstance(value, str) and value.casefold() == self.text.casefold()


@dataclass(frozen=True, slots=True)
class _Wildcard:
    regex: re.Pattern[str]

    def test(self, value: Any) -> bool:
        return isinstance(value, str) and self.regex.fullmatch(value) is not None


@dataclass(frozen=True, slots=True)
class _Numeric:
    low: float | None = None
    low_inclusive: bool = False
    high: float | None = None
    high_inclusive: bool = False

    def test(self, value: Any) -> bool:
        # Numeric matching only applies to JSON numbers: the string "5" never matches.
        if not _is_number(value):
            return False
        return self._above_low(value) and self._below_high(value)

    def _above_low(self, value: float) -> bool:
        if self.low is None:
            return True
        return value >= self.low if self.low_inclusive else value > self.low

    def _below_high(self, value: float) -> bool:
        if self.high is None:
            return True
        return value <= self.high if self.high_inclusive else value < self.high


@dataclass(frozen=True, slots=True)
class _Cidr:
    network: ipaddress.IPv4Network | ipaddress.IPv6Network

    def test(self, value: Any) -> bool:
        if not isinstance(value, str):
            return False
        try:
            return ipaddress.ip_address(value) in self.network
        except ValueError:
            return False


@dataclass(frozen=True, slots=True)
class _AnythingBut:
    excluded: tuple[_Test, ...]

    def test(self, value: Any) -> bool:
        return not any(t.test(value) for t in self.excluded)


@dataclass(frozen=True, slots=True)
class _Exists:
    present: bool


# ---------------------------------------------------------------------------------------------------------
# Pattern nodes: a leaf holds the value tests of one field; an object holds fields and $or alternatives.


def _flatten(values: list[Any]) -> Iterator[Any]:
    # Iterative, not recursive: an event's arrays may nest as deep as its producer likes.
    stack = [iter(values)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            yield item
        else:
            stack.pop()


def _leaf_values(value: Any) -> list[Any]:
    """The scalar values a field holds: objects are intermediate nodes, not leaves (AWS: exists is leaf-only)."""
    if value is _MISSING or isinstance(value, dict):
        return []
    if isinstance(value, list):
        return [item for item in _flatten(value) if not isinstance(item, dict)]
    return [value]


@dataclass(frozen=True, slots=True)
class _Leaf:
    tests: tuple[_Test, ...]
    exists: tuple[bool, ...]

    def match(self, value: Any) -> bool:
        leaves = _leaf_values(value)
        if bool(leaves) in self.exists:
            return True
        # An event array matches when any of its elements matches any of the pattern's values.
        return any(t.test(leaf) for t in self.tests for leaf in leaves)


@dataclass(frozen=True, slots=True)
class _Object:
    fields: tuple[tuple[str, _Node], ...]
    alternatives: tuple[tuple[_Object, ...], ...]

    def match(self, value: Any) -> bool:
        if isinstance(value, list):
            # Arrays of objects are "crushed": one element must satisfy the whole sub-pattern, so fields
            # from different elements never combine into a match.
            items = list(_flatten(value))
            return any(self._match_here(item) for item in items) if items else self._match_here(_MISSING)
        return self._match_here(value)

    def _match_here(self, value: Any) -> bool:
        fields = value if isinstance(value, dict) else {}
        if not all(node.match(fields.get(name, _MISSING)) for name, node in self.fields):
            return False
        return all(any(branch.match(value) for branch in branches) for branches in self.alternatives)


@dataclass(frozen=True, slots=True)
class _DataFormatGuard:
    """Lambda's SQS rule: a JSON pattern for the data key never matches a plain body, and vice versa."""

    inner: _Node
    wants_json: bool

    def match(self, value: Any) -> bool:
        if isinstance(value, dict | list) != self.wants_json:
            return False
        return self.inner.match(value)


# ---------------------------------------------------------------------------------------------------------
# Public surface


@dataclass(frozen=True, slots=True)
class Matcher:
    """One compiled event pattern; ``matches(event)`` answers as EventBridge / Lambda filtering would."""

    root: _Object

    def matches(self, event: Mapping[str, Any]) -> bool:
        """True when ``event`` (a parsed JSON object) satisfies the pattern."""
        return self.root.match(event if isinstance(event, dict) else dict(event))


@dataclass(frozen=True, slots=True)
class FilterSet:
    """Patterns ORed together, as Lambda's ``FilterCriteria``; with no patterns every event passes."""

    matchers: tuple[Matcher, ...]

    def __call__(self, event: Mapping[str, Any]) -> bool:
        if not self.matchers:
            return True
        return any(m.matches(event) for m in self.matchers)


def compile_pattern(pattern: Mapping[str, Any] | str, *, data_key: str | None = None) -> Matcher:
    """Validate an event pattern (a dict, or its JSON text) and compile it.

    ``data_key`` names the record key holding the payload (``"body"`` for SQS, see ``sqs_filter_view``):
    when set, a pattern whose value for that key is an object only matches structured (JSON) payloads and a
    pattern whose value is an array only matches plain-string payloads, as Lambda documents.

    Raises ``ExpressionError`` naming the offending path, e.g.
    ``body.type[0]: unknown operator 'prefx'; expected one of: prefix, suffix, ...``.
    """
    parsed = _parse_pattern_text(pattern) if isinstance(pattern, str) else pattern
    if not isinstance(parsed, Mapping):
        raise ExpressionError(f"pattern: must be a JSON object, got {_show(parsed)}")
    return Matcher(_compile_object(parsed, "", data_key))


def compile_filters(
    patterns: Sequence[Mapping[str, Any] | str], *, data_key: str | None = None
) -> Callable[[Mapping[str, Any]], bool]:
    """Compile up to ``MAX_FILTERS`` patterns into one predicate that ORs them (Lambda ``FilterCriteria``)."""
    if len(patterns) > MAX_FILTERS:
        raise ExpressionError(
            f'filters: at most {MAX_FILTERS} patterns are allowed (got {len(patterns)}); merge some of them with "$or"'
        )
    matchers = []
    for index, pattern in enumerate(patterns):
        try:
            matchers.append(compile_pattern(pattern, data_key=data_key))
        except ExpressionError as err:
            raise ExpressionError(f"filters[{index}]: {err}") from None
    return FilterSet(tuple(matchers))


def sqs_filter_view(record: Mapping[str, Any]) -> dict[str, Any]:
    """The SQS record as Lambda's filter sees it: ``body`` parsed when it is a JSON object or array.

    Any other body (plain text, or a bare JSON scalar such as ``42`` or ``"hi"``) stays the original string.
    Match the view with a predicate compiled with ``data_key=SQS_DATA_KEY`` so that the JSON/plain mismatch
    rule applies. The record itself is not modified.
    """
    view = dict(record)
    body = view.get(SQS_DATA_KEY)
    if isinstance(body, str):
        parsed = _parse_structured(body)
        if parsed is not None:
            view[SQS_DATA_KEY] = parsed
    return view


# ---------------------------------------------------------------------------------------------------------
# Compilation


def _show(value: Any) -> str:
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _parse_structured(text: str) -> dict[str, Any] | list[Any] | None:
    try:
        parsed = payload.loads(text, parse_constant=_reject_constant)
    except ValueError:  # not JSON, or too deep to match safely: the body is matched as plain text
        return None
    return parsed if isinstance(parsed, dict | list) else None


def _parse_pattern_text(text: str) -> Any:
    try:
        return payload.loads(text, parse_constant=_reject_constant)
    except ValueError as err:
        raise ExpressionError(f"pattern: not valid JSON ({err})") from None


def _child(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _where(path: str) -> str:
    return path or "pattern"


def _compile_object(obj: Mapping[str, Any], path: str, data_key: str | None) -> _Object:
    if not obj:
        raise ExpressionError(f"{_where(path)}: empty objects are not allowed")
    fields: list[tuple[str, _Node]] = []
    alternatives: list[tuple[_Object, ...]] = []
    for name, value in obj.items():
        if name == "$or":
            alternatives.append(_compile_or(value, path, data_key))
            continue
        node = _compile_field(value, _child(path, name))
        if data_key is not None and name == data_key:
            node = _DataFormatGuard(node, wants_json=isinstance(value, Mapping))
        fields.append((name, node))
    return _Object(tuple(fields), tuple(alternatives))


def _compile_field(value: Any, path: str) -> _Node:
    if isinstance(value, Mapping):
        return _compile_object(value, path, None)
    if isinstance(value, list):
        return _compile_leaf(value, path)
    raise ExpressionError(
        f"{path}: must be an array of values or an object, got {_show(value)} "
        f"(AWS rejects bare values; write [{_show(value)}])"
    )


def _compile_or(value: Any, path: str, data_key: str | None) -> tuple[_Object, ...]:
    where = _child(path, "$or")
    if not isinstance(value, list) or len(value) < 2:
        raise ExpressionError(f"{where}: must be an array of at least 2 objects, got {_show(value)}")
    branches = []
    for index, branch in enumerate(value):
        branch_path = f"{where}[{index}]"
        if not isinstance(branch, Mapping):
            raise ExpressionError(f"{branch_path}: only objects are allowed in $or, got {_show(branch)}")
        reserved = sorted(set(branch) & set(OPERATORS))
        if reserved:
            raise ExpressionError(f"{branch_path}: {reserved[0]!r} is an operator, not a field name")
        branches.append(_compile_object(branch, path, data_key))
    return tuple(branches)


def _compile_leaf(values: list[Any], path: str) -> _Leaf:
    if not values:
        raise ExpressionError(f"{path}: empty arrays are not allowed")
    tests: list[_Test] = []
    exists: list[bool] = []
    for index, value in enumerate(values):
        compiled = _compile_value(value, f"{path}[{index}]")
        if isinstance(compiled, _Exists):
            exists.append(compiled.present)
        else:
            tests.append(compiled)
    return _Leaf(tuple(tests), tuple(exists))


def _compile_value(value: Any, path: str) -> _Test | _Exists:
    if isinstance(value, Mapping):
        return _compile_operator(value, path)
    if value is None or isinstance(value, str | bool) or _is_number(value):
        return _Equals(value)
    raise ExpressionError(
        f"{path}: match values must be strings, numbers, true, false, null or operator objects, got {_show(value)}"
    )


def _compile_operator(obj: Mapping[str, Any], path: str) -> _Test | _Exists:
    if len(obj) != 1:
        raise ExpressionError(f"{path}: an operator object needs exactly one key, got {_show(obj)}")
    ((name, arg),) = obj.items()
    where = f"{path}.{name}"
    match name:
        case "prefix":
            return _compile_affix(arg, where, at_end=False)
        case "suffix":
            return _compile_affix(arg, where, at_end=True)
        case "equals-ignore-case":
            return _EqualsIgnoreCase(_require_string(arg, where))
        case "wildcard":
            return _compile_wildcard(_require_string(arg, where), where)
        case "numeric":
            return _compile_numeric(arg, where)
        case "cidr":
            return _compile_cidr(arg, where)
        case "exists":
            return _compile_exists(arg, where)
        case "anything-but":
            return _compile_anything_but(arg, where)
    raise ExpressionError(f"{path}: unknown operator {name!r}; expected one of: {', '.join(OPERATORS)}")


def _require_string(arg: Any, where: str, *, allow_empty: bool = True) -> str:
    if not isinstance(arg, str):
        raise ExpressionError(f"{where}: must be a string, got {_show(arg)}")
    if not arg and not allow_empty:
        raise ExpressionError(f"{where}: must not be empty")
    return arg


def _compile_affix(arg: Any, where: str, *, at_end: bool) -> _Test:
    if isinstance(arg, str):
        return _Affix(arg, at_end=at_end)
    if isinstance(arg, Mapping) and set(arg) == {"equals-ignore-case"}:
        text = _require_string(arg["equals-ignore-case"], f"{where}.equals-ignore-case")
        return _Affix(text, ignore_case=True, at_end=at_end)
    raise ExpressionError(f'{where}: must be a string or {{"equals-ignore-case": string}}, got {_show(arg)}')


def _compile_wildcard(text: str, where: str) -> _Wildcard:
    parts: list[str] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char == "\\":
            escaped = text[index + 1 : index + 2]
            if escaped not in ("*", "\\"):
                raise ExpressionError(f"{where}: a backslash may only escape '*' or '\\' (in {text!r})")
            parts.append(re.escape(escaped))
            index += 2
            continue
        if char == "*" and text[index + 1 : index + 2] == "*":
            raise ExpressionError(f"{where}: consecutive wildcard characters are not allowed (in {text!r})")
        parts.append(".*" if char == "*" else re.escape(char))
        index += 1
    return _Wildcard(re.compile("".join(parts), re.DOTALL))


def _compile_cidr(arg: Any, where: str) -> _Cidr:
    text = _require_string(arg, where)
    try:
        return _Cidr(ipaddress.ip_network(text, strict=False))
    except ValueError:
        raise ExpressionError(f"{where}: {text!r} is not an IPv4 or IPv6 CIDR block (e.g. 10.0.0.0/24)") from None


def _compile_exists(arg: Any, where: str) -> _Exists:
    if not isinstance(arg, bool):
        raise ExpressionError(f"{where}: must be true or false, got {_show(arg)}")
    return _Exists(arg)


def _number(value: Any, where: str) -> float:
    if not _is_number(value):
        raise ExpressionError(f"{where}: expected a number, got {_show(value)}")
    return value


def _compile_numeric(arg: Any, where: str) -> _Numeric:
    if not isinstance(arg, list) or len(arg) not in (2, 4):
        raise ExpressionError(f"{where}: must be {_NUMERIC_SHAPES}; got {_show(arg)}")
    operator, bound = arg[0], _number(arg[1], where)
    if len(arg) == 2:
        return _single_bound(operator, bound, where, arg)
    if operator not in _LOWER_BOUNDS or arg[2] not in _UPPER_BOUNDS:
        raise ExpressionError(f"{where}: a range is a lower bound then an upper bound, {_NUMERIC_SHAPES}")
    high = _number(arg[3], where)
    if bound >= high:
        raise ExpressionError(f"{where}: empty range, {bound} is not below {high}")
    return _Numeric(bound, operator == ">=", high, arg[2] == "<=")


def _single_bound(operator: Any, bound: float, where: str, arg: list[Any]) -> _Numeric:
    if operator == "=":
        return _Numeric(bound, True, bound, True)
    if operator in _LOWER_BOUNDS:
        return _Numeric(low=bound, low_inclusive=operator == ">=")
    if operator in _UPPER_BOUNDS:
        return _Numeric(high=bound, high_inclusive=operator == "<=")
    raise ExpressionError(f"{where}: unknown operator {_show(operator)} in {_show(arg)}; expected {_NUMERIC_SHAPES}")


def _compile_anything_but(arg: Any, where: str) -> _AnythingBut:
    if isinstance(arg, Mapping):
        return _AnythingBut(_anything_but_nested(arg, where))
    if isinstance(arg, str) or _is_number(arg):
        return _AnythingBut((_Equals(arg),))
    if isinstance(arg, list):
        return _AnythingBut(tuple(_Equals(v) for v in _uniform_list(arg, where)))
    raise ExpressionError(
        f"{where}: must be a string, a number, an array of strings or numbers, or one of "
        f"{{{', '.join(_ANYTHING_BUT_NESTED)}}}; got {_show(arg)}"
    )


def _uniform_list(values: list[Any], where: str) -> list[Any]:
    strings = all(isinstance(v, str) for v in values)
    numbers = all(_is_number(v) for v in values)
    if not values or not (strings or numbers):
        raise ExpressionError(f"{where}: the array must be non-empty and all strings or all numbers")
    return values


def _anything_but_nested(arg: Mapping[str, Any], where: str) -> tuple[_Test, ...]:
    if len(arg) != 1 or next(iter(arg)) not in _ANYTHING_BUT_NESTED:
        raise ExpressionError(
            f"{where}: nested object must be one of {{{', '.join(_ANYTHING_BUT_NESTED)}}}, got {_show(arg)}"
        )
    ((name, value),) = arg.items()
    texts = _string_or_strings(value, f"{where}.{name}")
    match name:
        case "prefix":
            return tuple(_Affix(t) for t in texts)
        case "suffix":
            return tuple(_Affix(t, at_end=True) for t in texts)
        case "equals-ignore-case":
            return tuple(_EqualsIgnoreCase(t) for t in texts)
    return tuple(_compile_wildcard(t, f"{where}.wildcard") for t in texts)


def _string_or_strings(value: Any, where: str) -> list[str]:
    values = value if isinstance(value, list) else [value]
    if not values or not all(isinstance(v, str) and v for v in values):
        raise ExpressionError(f"{where}: must be a non-empty string or an array of them, got {_show(value)}")
    return values
