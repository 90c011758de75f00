"""The AWS IoT rules SQL subset (version 2016-03-23): parse a rule once, evaluate it per MQTT message."""

from __future__ import annotations

import base64
import json
import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple

from bridge.errors import BridgeError, ExpressionError
from bridge.events import payload as bounded_json

__all__ = ["NonJsonPayload", "Rule", "parse_rule", "topic_matches", "validate_topic_filter"]

SUPPORTED_FUNCTIONS = ("topic", "clientid", "timestamp", "encode")


class _Undefined:
    """AWS IoT's Undefined: not a value; a key holding it is left out of the result."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "Undefined"


_UNDEFINED: Any = _Undefined()


class NonJsonPayload(BridgeError):
    """The payload is not a JSON object but the rule reads its fields or selects ``*``.

    AWS IoT cannot evaluate field references on a binary payload, and its Lambda action only accepts
    JSON, so the rule does not fire; the caller logs ``mqtt.non_json_payload`` and skips the message.
    """

    def __init__(self, reason: str, needs: str) -> None:
        self.reason = reason
        self.needs = needs
        super().__init__(
            f"payload is not a JSON object ({reason}) but the rule's {needs}; "
            "to receive binary payloads use SELECT encode(*, 'base64') AS data"
        )


# ---------------------------------------------------------------------------------------------- topics


def validate_topic_filter(topic_filter: str) -> None:
    """Raise ExpressionError unless ``topic_filter`` is a valid MQTT filter ('#' last, '+' a whole level)."""
    if not topic_filter:
        raise ExpressionError("topic filter is empty; expected e.g. 'sensors/+/data'")
    if "\x00" in topic_filter:
        raise ExpressionError("topic filter contains a NUL character")
    levels = topic_filter.split("/")
    for number, level in enumerate(levels, start=1):
        if "#" in level and (level != "#" or number != len(levels)):
            raise ExpressionError(
                f"topic filter {topic_filter!r}: '#' must be a whole level and the last one "
                f"(e.g. 'sensors/#'), found {level!r} at level {number}"
            )
        if "+" in level and level != "+":
            raise ExpressionError(
                f"topic filter {topic_filter!r}: '+' must be a whole level (e.g. 'sensors/+/data'), "
                f"found {level!r} at level {number}"
            )


def topic_matches(topic_filter: str, topic: str) -> bool:
    """Whether ``topic`` matches the (valid) MQTT ``topic_filter``.

    '+' matches exactly one level, '#' the remaining levels including none ('a/#' matches 'a'); a
    wildcard in the first level never matches a topic starting with '$' (MQTT 3.1.1 §4.7.2).
    """
    return _levels_match(tuple(topic_filter.split("/")), topic)


def _levels_match(levels: tuple[str, ...], topic: str) -> bool:
    parts = topic.split("/")
    if parts[0].startswith("$") and levels[0] in ("+", "#"):
        return False
    for index, level in enumerate(levels):
        if level == "#":
            return True
        if index >= len(parts) or (level != "+" and level != parts[index]):
            return False
    return len(levels) == len(parts)


# ---------------------------------------------------------------------------------------------- values

_KINDS = MappingProxyType(
    {
        int: "number",
        float: "number",
        bool: "boolean",
        str: "string",
        type(None): "null",
        list: "array",
        dict: "object",
    }
)
_BOOLEAN_TEXT = MappingProxyType({"true": True, "false": False})
# The string-to-Decimal conversion AWS documents: ^-?\d+(\.\d+)?((?i)E-?\d+)?$
_NUMERIC_TEXT = re.compile(r"-?[0-9]+(?:\.[0-9]+)?(?:[eE]-?[0-9]+)?")


def _whole(number: float) -> int | float:
    """SQL 2016-03-23 processes whole-number decimals (10.0) as Int (10)."""
    return int(number) if number.is_integer() else number


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_DECODER = json.JSONDecoder(parse_float=lambda text: _whole(float(text)), parse_constant=_reject_constant)


def _decode(payload: bytes) -> tuple[Any, str | None]:
    """The payload as JSON, or Undefined and why not; an empty payload acts as an empty object (AWS)."""
    if not payload:
        return {}, None
    try:
        text = payload.decode("utf-8")
        if bounded_json.depth(text) > bounded_json.MAX_DEPTH:  # carried on as text would be; here: not JSON
            return _UNDEFINED, f"{len(payload)} bytes, JSON nested deeper than {bounded_json.MAX_DEPTH} levels"
        return _DECODER.decode(text), None
    except (ValueError, RecursionError):
        return _UNDEFINED, f"{len(payload)} bytes, not UTF-8 JSON"


def _to_number(value: Any) -> Any:
    """AWS's conversion to Decimal: numbers as they are, numeric strings parsed, all else Undefined."""
    kind = type(value)
    if kind is int or kind is float:
        return value
    if kind is str and _NUMERIC_TEXT.fullmatch(value):
        return float(value)
    return _UNDEFINED


def _to_bool(value: Any) -> Any:
    """AWS's conversion to Boolean: booleans, and the strings 'true'/'false' in any case."""
    if value is True or value is False:
        return value
    if type(value) is str:
        return _BOOLEAN_TEXT.get(value.lower(), _UNDEFINED)
    return _UNDEFINED


def _to_text(value: Any) -> Any:
    """AWS's conversion to String; Null and Undefined have none."""
    kind = type(value)
    if kind is str:
        return value
    if kind is bool:
        return "true" if value else "false"
    if kind is int or kind is float:
        return str(value)
    if kind is list or kind is dict:
        return json.dumps(value, separators=(",", ":"))
    return _UNDEFINED


def _kind_of(value: Any) -> str:
    return _KINDS.get(type(value), "value")


# ------------------------------------------------------------------------------------------- operators


def _equals(left: Any, right: Any) -> Any:
    """'=': Undefined if either side is; mismatched types are unequal ('5' = 5 is false)."""
    if left is _UNDEFINED or right is _UNDEFINED:
        return _UNDEFINED
    return _kind_of(left) == _kind_of(right) and left == right


def _not_equals(left: Any, right: Any) -> Any:
    result = _equals(left, right)
    return result if result is _UNDEFINED else not result


def _ordering(compare: Callable[[Any, Any], bool]) -> Callable[[Any, Any], Any]:
    """'<' and friends convert both sides to Decimal; 'abc' < 'abd' is Undefined, as in AWS."""

    def apply(left: Any, right: Any) -> Any:
        x, y = _to_number(left), _to_number(right)
        if x is _UNDEFINED or y is _UNDEFINED:
            return _UNDEFINED
        return compare(x, y)

    return apply


def _int_div(x: int, y: int) -> int:
    # Java-style Int division truncates toward zero, unlike Python's floor division.
    quotient = abs(x) // abs(y)
    return quotient if (x < 0) == (y < 0) else -quotient


def _int_mod(x: int, y: int) -> int:
    return x - y * _int_div(x, y)


def _arithmetic(
    int_op: Callable[[int, int], int], float_op: Callable[[Any, Any], float]
) -> Callable[[Any, Any], Any]:
    """Int op Int stays Int; anything else (numeric strings included) is Decimal; else Undefined."""

    def apply(left: Any, right: Any) -> Any:
        x, y = _to_number(left), _to_number(right)
        if x is _UNDEFINED or y is _UNDEFINED:
            return _UNDEFINED
        try:
            if type(x) is int and type(y) is int:
                return int_op(x, y)
            return _whole(float_op(x, y))
        except (ZeroDivisionError, OverflowError, ValueError):
            return _UNDEFINED

    return apply


_numeric_add = _arithmetic(operator.add, operator.add)


def _add(left: Any, right: Any) -> Any:
    """'+' concatenates when either side is a string ('5' + 1 is '51'), else adds numbers."""
    if type(left) is str or type(right) is str:
        x, y = _to_text(left), _to_text(right)
        return _UNDEFINED if x is _UNDEFINED or y is _UNDEFINED else x + y
    return _numeric_add(left, right)


def _negate(value: Any) -> Any:
    number = _to_number(value)
    if number is _UNDEFINED:
        return _UNDEFINED
    return -number if type(number) is int else _whole(-number)


_BINARY = MappingProxyType(
    {
        "=": _equals,
        "<>": _not_equals,
        "<": _ordering(operator.lt),
        "<=": _ordering(operator.le),
        ">": _ordering(operator.gt),
        ">=": _ordering(operator.ge),
        "+": _add,
        "-": _arithmetic(operator.sub, operator.sub),
        "*": _arithmetic(operator.mul, operator.mul),
        "/": _arithmetic(_int_div, operator.truediv),
        "%": _arithmetic(_int_mod, math.fmod),
    }
)
_COMPARISONS = frozenset(("=", "<>", "<", "<=", ">", ">="))
_COMPARISONS_OR_BANG = _COMPARISONS | {"!="}


# ------------------------------------------------------------------------------------------- tokenizer


class _Token(NamedTuple):
    kind: str  # name, number, string, op, end
    text: str
    pos: int

    @property
    def word(self) -> str:
        """The upper-cased text of a name, for case-insensitive keywords."""
        return self.text.upper() if self.kind == "name" else ""


_TOKEN = re.compile(
    r"""(?P<space>\s+)
      | (?P<comment>--|/\*)
      | (?P<number>[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)
      | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<string>'[^']*'|"[^"]*")
      | (?P<op><>|!=|<=|>=|[-+*/%=<>(),.])""",
    re.VERBOSE,
)
_UNSUPPORTED_CHARS = MappingProxyType(
    {
        "[": "'[' (array literal or indexing)",
        "{": "'{' (object literal)",
        "`": "'`' (quoted identifier)",
        "$": "'$' (substitution template)",
        "@": "'@' (SET variable)",
    }
)


def _position(sql: str, pos: int) -> str:
    line = sql.count("\n", 0, pos) + 1
    column = pos - sql.rfind("\n", 0, pos)
    return f"column {column}" if line == 1 else f"line {line}, column {column}"


def _character_error(sql: str, pos: int) -> ExpressionError:
    char, at = sql[pos], _position(sql, pos)
    if char in "'\"":
        return ExpressionError(f"unterminated string starting at {at}")
    if char in _UNSUPPORTED_CHARS:
        return ExpressionError(f"{_UNSUPPORTED_CHARS[char]} at {at} is not supported")
    return ExpressionError(f"unexpected character {char!r} at {at}")


def _tokenize(sql: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(sql):
        match = _TOKEN.match(sql, pos)
        if match is None:
            raise _character_error(sql, pos)
        if match.lastgroup == "comment":
            raise ExpressionError(
                f"a comment at {_position(sql, pos)} is not supported: AWS IoT SQL has none"
            )
        if match.lastgroup != "space":
            tokens.append(_Token(match.lastgroup or "", match.group(), pos))
        pos = match.end()
    tokens.append(_Token("end", "", len(sql)))
    return tokens


# ------------------------------------------------------------------------------------------------- AST


@dataclass(frozen=True, slots=True)
class _Lit:
    value: Any


@dataclass(frozen=True, slots=True)
class _Path:
    keys: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Star:
    pos: int


@dataclass(frozen=True, slots=True)
class _Call:
    name: str
    args: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class _Unary:
    op: str
    operand: Any


@dataclass(frozen=True, slots=True)
class _Binary:
    op: str
    left: Any
    right: Any


@dataclass(frozen=True, slots=True)
class _Item:
    key: str | None  # None: merge the payload object into the result (a bare '*')
    node: Any


@dataclass(frozen=True, slots=True)
class _Statement:
    items: tuple[_Item, ...]
    topic_filter: str
    where: Any


def _reads_fields(node: Any) -> bool:
    """Whether evaluating ``node`` looks into the payload as JSON (encode(*, ...) does not)."""
    match node:
        case _Path():
            return True
        case _Call(args=args):
            return any(_reads_fields(arg) for arg in args)
        case _Unary(operand=operand):
            return _reads_fields(operand)
        case _Binary(left=left, right=right):
            return _reads_fields(left) or _reads_fields(right)
    return False


# ---------------------------------------------------------------------------------------------- parser

_RESERVED = frozenset(("SELECT", "FROM", "WHERE", "AS", "AND", "OR", "NOT", "TRUE", "FALSE", "NULL", "CASE"))
_LITERALS = MappingProxyType({"TRUE": True, "FALSE": False, "NULL": None})
_ARITY = MappingProxyType({"topic": (0, 1), "clientid": (0, 0), "timestamp": (0, 0), "encode": (2, 2)})


class _Parser:
    """Recursive descent over the token list; every error names the offending token's position."""

    def __init__(self, sql: str) -> None:
        self.sql = sql
        self.tokens = _tokenize(sql)
        self.index = 0

    # -- token helpers

    @property
    def token(self) -> _Token:
        return self.tokens[self.index]

    def advance(self) -> _Token:
        token = self.token
        self.index += 1
        return token

    def at_op(self, *texts: str) -> bool:
        return self.token.kind == "op" and self.token.text in texts

    def at_word(self, word: str) -> bool:
        return self.token.word == word

    def at(self, token: _Token | None = None) -> str:
        return _position(self.sql, (token or self.token).pos)

    def fail(self, expected: str) -> ExpressionError:
        token = self.token
        found = {"end": "the end of the statement", "string": token.text}.get(token.kind, f"'{token.text}'")
        return ExpressionError(f"expected {expected} at {self.at()}, found {found}")

    def unsupported(self, what: str, fix: str = "") -> ExpressionError:
        return ExpressionError(f"{what} at {self.at()} is not supported" + (f"; {fix}" if fix else ""))

    def expect_op(self, text: str, context: str) -> None:
        if not self.at_op(text):
            raise self.fail(f"{text!r} {context}")
        self.advance()

    # -- statement

    def statement(self) -> _Statement:
        if self.at_word("SET"):
            raise self.unsupported("the SET clause", "start the statement with SELECT")
        if not self.at_word("SELECT"):
            raise self.fail("the statement to start with SELECT")
        self.advance()
        items = self.select_list()
        topic_filter = self.from_clause()
        where = self.where_clause()
        if self.token.kind != "end":
            raise self.fail("WHERE or the end of the statement")
        return _Statement(tuple(items), topic_filter, where)

    def select_list(self) -> list[_Item]:
        after = self.tokens[min(self.index + 1, len(self.tokens) - 1)]  # "SELECT" alone: the end token
        if self.at_word("VALUE") and (after.kind in ("number", "string") or after.word not in _RESERVED):
            raise self.unsupported("SELECT VALUE", "select named items, e.g. SELECT color AS c")
        items = [self.select_item()]
        while self.at_op(","):
            self.advance()
            items.append(self.select_item())
        if not self.at_word("FROM"):
            raise self.fail("FROM after the SELECT list")
        return items

    def select_item(self) -> _Item:
        start = self.token
        node: Any = _Star(start.pos) if self.at_op("*") else None
        if node is not None:
            self.advance()
        else:
            node = self.expression()
        if self.at_word("AS"):
            self.advance()
            return _Item(self.alias(), node)
        if isinstance(node, _Star):
            return _Item(None, node)
        if isinstance(node, _Path):
            return _Item(node.keys[-1], node)  # as in AWS: 'SELECT a.b.c' yields the key 'c'
        raise ExpressionError(f"the SELECT item at {self.at(start)} needs a name: add AS <name>")

    def alias(self) -> str:
        token = self.token
        if token.kind != "name" or token.word in _RESERVED:
            raise self.fail("a name after AS")
        self.advance()
        return token.text

    def from_clause(self) -> str:
        self.advance()  # FROM, checked by select_list
        token = self.token
        if token.kind != "string":
            raise self.fail("the topic filter as a quoted string after FROM, e.g. 'sensors/+/data'")
        self.advance()
        topic_filter = token.text[1:-1]
        try:
            validate_topic_filter(topic_filter)
        except ExpressionError as exc:
            raise ExpressionError(f"{exc} (in FROM at {self.at(token)})") from None
        return topic_filter

    def where_clause(self) -> Any:
        if not self.at_word("WHERE"):
            return None
        self.advance()
        return self.expression()

    # -- expressions, lowest precedence first

    def expression(self) -> Any:
        node = self.conjunction()
        while self.at_word("OR"):
            self.advance()
            node = _Binary("OR", node, self.conjunction())
        return node

    def conjunction(self) -> Any:
        node = self.negation()
        while self.at_word("AND"):
            self.advance()
            node = _Binary("AND", node, self.negation())
        return node

    def negation(self) -> Any:
        if self.at_word("NOT"):
            self.advance()
            return _Unary("NOT", self.negation())
        return self.comparison()

    def comparison(self) -> Any:
        node = self.additive()
        if self.at_op("!="):
            raise self.unsupported("the operator '!='", "AWS IoT SQL writes 'not equal' as <>")
        if self.token.kind == "op" and self.token.text in _COMPARISONS:
            op = self.advance().text
            node = _Binary(op, node, self.additive())
            if self.token.kind == "op" and self.token.text in _COMPARISONS_OR_BANG:
                raise self.unsupported("a chained comparison", "combine comparisons with AND")
        return node

    def additive(self) -> Any:
        node = self.multiplicative()
        while self.at_op("+", "-"):
            op = self.advance().text
            node = _Binary(op, node, self.multiplicative())
        return node

    def multiplicative(self) -> Any:
        node = self.unary()
        while self.at_op("*", "/", "%"):
            op = self.advance().text
            node = _Binary(op, node, self.unary())
        return node

    def unary(self) -> Any:
        if not self.at_op("-"):
            return self.primary()
        self.advance()
        operand = self.unary()
        if isinstance(operand, _Lit) and _to_number(operand.value) is not _UNDEFINED:
            return _Lit(_negate(operand.value))  # fold '-5' so it costs nothing per message
        return _Unary("-", operand)

    def primary(self) -> Any:
        token = self.token
        if token.kind == "number":
            self.advance()
            return _Lit(int(token.text) if token.text.isdigit() else _whole(float(token.text)))
        if token.kind == "string":
            self.advance()
            return _Lit(token.text[1:-1])
        if self.at_op("("):
            return self.parenthesized()
        if token.kind == "name":
            return self.name()
        if self.at_op("*"):
            raise self.unsupported(
                "'*' inside an expression", "use it as a SELECT item or in encode(*, 'base64')"
            )
        raise self.fail("an expression")

    def parenthesized(self) -> Any:
        self.advance()
        if self.at_word("SELECT"):
            raise self.unsupported("a nested SELECT (subquery)")
        node = self.expression()
        self.expect_op(")", "to close the parenthesis")
        return node

    def name(self) -> Any:
        token = self.token
        if token.word in _LITERALS:
            self.advance()
            return _Lit(_LITERALS[token.word])
        if token.word == "CASE":
            raise self.unsupported("a CASE expression")
        if token.word in _RESERVED:
            raise self.fail("an expression")
        if self.tokens[self.index + 1].text == "(":
            return self.call()
        return self.path()

    def path(self) -> _Path:
        keys = [self.advance().text]
        while self.at_op("."):
            self.advance()
            if self.token.kind != "name" or self.token.word in _RESERVED:
                raise self.fail("a field name after '.'")
            keys.append(self.advance().text)
        if self.at_op("("):
            raise self.unsupported("calling a dotted name")
        return _Path(tuple(keys))

    def call(self) -> _Call:
        token = self.advance()
        name = token.text.lower()
        if name not in _ARITY:
            raise ExpressionError(
                f"unsupported function {token.text!r} at {_position(self.sql, token.pos)}; "
                f"supported: {', '.join(SUPPORTED_FUNCTIONS)}"
            )
        self.advance()  # '('
        args = self.arguments()
        self.check_call(name, args, token)
        return _Call(name, tuple(args))

    def arguments(self) -> list[Any]:
        args: list[Any] = []
        while not self.at_op(")"):
            if args:
                self.expect_op(",", "between arguments")
            args.append(_Star(self.advance().pos) if self.at_op("*") else self.expression())
        self.advance()
        return args

    def check_call(self, name: str, args: list[Any], token: _Token) -> None:
        low, high = _ARITY[name]
        where = _position(self.sql, token.pos)
        if not low <= len(args) <= high:
            wanted = f"{low}" if low == high else f"{low} to {high}"
            raise ExpressionError(f"{name}() takes {wanted} arguments, got {len(args)} at {where}")
        stars = [arg for arg in args if isinstance(arg, _Star)]
        if stars and (name != "encode" or args[0] is not stars[0] or len(stars) > 1):
            raise ExpressionError(f"'*' is only allowed as the first argument of encode() at {where}")
        if name == "encode" and not (isinstance(args[1], _Lit) and args[1].value == "base64"):
            scheme = repr(args[1].value) if isinstance(args[1], _Lit) else "a computed value"
            raise ExpressionError(
                f"unsupported encoding scheme {scheme} for encode() at {where}; supported: 'base64'"
            )


# -------------------------------------------------------------------------------------------- compiler


class _Ctx:
    """What one evaluation sees: the message, and its payload decoded once."""

    __slots__ = ("client_id", "doc", "json_error", "now_ms", "payload", "topic")

    def __init__(self, payload: bytes, topic: str, client_id: str, now_ms: int) -> None:
        self.payload = payload
        self.topic = topic
        self.client_id = client_id
        self.now_ms = now_ms
        self.doc: Any = _UNDEFINED
        self.json_error: str | None = None


_Fn = Callable[[_Ctx], Any]


def _compile(node: Any) -> _Fn:
    """Turn an expression node into a closure, so that a message costs no tree walk."""
    match node:
        case _Lit(value=value):
            return lambda ctx: value
        case _Path(keys=keys):
            return _compile_path(keys)
        case _Call():
            return _compile_call(node)
        case _Unary(op="NOT", operand=operand):
            inner = _compile(operand)
            return lambda ctx: _not(_to_bool(inner(ctx)))
        case _Unary(operand=operand):
            inner = _compile(operand)
            return lambda ctx: _negate(inner(ctx))
        case _Binary(op="AND" | "OR"):
            return _compile_logic(node)
        case _Binary(op=op, left=left, right=right):
            apply, lhs, rhs = _BINARY[op], _compile(left), _compile(right)
            return lambda ctx: apply(lhs(ctx), rhs(ctx))
    raise AssertionError(f"unknown node {node!r}")


def _not(value: Any) -> Any:
    return value if value is _UNDEFINED else not value


def _compile_path(keys: tuple[str, ...]) -> _Fn:
    if len(keys) == 1:
        (key,) = keys

        def field(ctx: _Ctx) -> Any:
            doc = ctx.doc
            return doc.get(key, _UNDEFINED) if type(doc) is dict else _UNDEFINED

        return field

    def nested(ctx: _Ctx) -> Any:
        value = ctx.doc
        for key in keys:
            if type(value) is not dict:
                return _UNDEFINED
            value = value.get(key, _UNDEFINED)
        return value

    return nested


def _compile_logic(node: _Binary) -> _Fn:
    """AND/OR over Booleans (or 'true'/'false' strings); a decided side wins over an Undefined one."""
    lhs, rhs = _compile(node.left), _compile(node.right)
    decisive = node.op == "OR"  # the value that settles the result on its own

    def logic(ctx: _Ctx) -> Any:
        left = _to_bool(lhs(ctx))
        if left is decisive:
            return decisive
        right = _to_bool(rhs(ctx))
        if right is decisive:
            return decisive
        return _UNDEFINED if left is _UNDEFINED or right is _UNDEFINED else not decisive

    return logic


def _compile_call(node: _Call) -> _Fn:
    if node.name == "clientid":
        return lambda ctx: ctx.client_id
    if node.name == "timestamp":
        return lambda ctx: ctx.now_ms
    if node.name == "encode":
        return _compile_encode(node.args[0])
    return _compile_topic(node.args)


def _topic_segment(topic: str, number: Any) -> Any:
    """topic(n): the 1-based level n of the topic, Undefined when out of range or not a number."""
    number = _to_number(number)
    if number is _UNDEFINED:
        return _UNDEFINED
    index = round(number)  # AWS converts the argument to the nearest Int
    parts = topic.split("/")
    return parts[index - 1] if 1 <= index <= len(parts) else _UNDEFINED


def _compile_topic(args: tuple[Any, ...]) -> _Fn:
    if not args:
        return lambda ctx: ctx.topic
    if isinstance(args[0], _Lit):
        number = args[0].value
        return lambda ctx: _topic_segment(ctx.topic, number)
    index = _compile(args[0])
    return lambda ctx: _topic_segment(ctx.topic, index(ctx))


def _compile_encode(arg: Any) -> _Fn:
    if isinstance(arg, _Star):
        # '*' is the raw payload bytes here, whatever their format: the documented way to carry binary.
        return lambda ctx: base64.b64encode(ctx.payload).decode("ascii")
    value = _compile(arg)

    def encode(ctx: _Ctx) -> Any:
        text = _to_text(value(ctx))
        return _UNDEFINED if text is _UNDEFINED else base64.b64encode(text.encode()).decode("ascii")

    return encode


def _star_object(ctx: _Ctx) -> dict[str, Any]:
    if type(ctx.doc) is not dict:
        raise NonJsonPayload(_not_object_reason(ctx), "SELECT merges '*' into its result")
    return ctx.doc


def _star_value(ctx: _Ctx) -> Any:
    if ctx.json_error is not None:
        raise NonJsonPayload(ctx.json_error, "SELECT puts '*' under a key")
    return ctx.doc


def _not_object_reason(ctx: _Ctx) -> str:
    return ctx.json_error or f"it is a JSON {_kind_of(ctx.doc)}"


def _compile_select(items: tuple[_Item, ...]) -> Callable[[_Ctx], dict[str, Any]]:
    """The SELECT list as one closure; Undefined values are left out, as AWS serializes them."""
    steps = [
        (item.key, _star_object if item.key is None else _star_value)
        if isinstance(item.node, _Star)
        else (item.key, _compile(item.node))
        for item in items
    ]

    def select(ctx: _Ctx) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value_of in steps:
            value = value_of(ctx)
            if key is None:
                result.update(value)
            elif value is not _UNDEFINED:
                result[key] = value
        return result

    return select


# ------------------------------------------------------------------------------------------------ rule


@dataclass(frozen=True, slots=True)
class _Plan:
    levels: tuple[str, ...]
    select: Callable[[_Ctx], dict[str, Any]]
    where: _Fn | None
    where_reads: bool
    select_reads: bool
    needs_json: bool


def _make_plan(statement: _Statement) -> _Plan:
    where_reads = statement.where is not None and _reads_fields(statement.where)
    select_reads = any(_reads_fields(item.node) for item in statement.items)
    has_star = any(isinstance(item.node, _Star) for item in statement.items)
    return _Plan(
        levels=tuple(statement.topic_filter.split("/")),
        select=_compile_select(statement.items),
        where=None if statement.where is None else _compile(statement.where),
        where_reads=where_reads,
        select_reads=select_reads,
        needs_json=where_reads or select_reads or has_star,
    )


def _require_json(ctx: _Ctx, clause: str) -> None:
    if ctx.json_error is not None:
        raise NonJsonPayload(ctx.json_error, f"{clause} reads payload fields")


@dataclass(frozen=True)
class Rule:
    """A parsed AWS IoT topic rule: which topics it listens to and what event it makes of a message."""

    sql: str
    topic_filter: str
    _plan: _Plan = field(repr=False, compare=False)

    def matches_topic(self, topic: str) -> bool:
        """Whether a message published on ``topic`` triggers this rule (MQTT wildcard matching)."""
        return _levels_match(self._plan.levels, topic)

    def evaluate(self, payload: bytes, *, topic: str, client_id: str, now_ms: int) -> dict[str, Any] | None:
        """The event AWS IoT would send to Lambda for this message, or None when WHERE is not true.

        ``now_ms`` is what ``timestamp()`` returns. Raises NonJsonPayload when the payload is not JSON
        (or, for ``SELECT *``, not a JSON object) but the rule needs it to be.
        """
        plan = self._plan
        ctx = _Ctx(payload, topic, client_id, now_ms)
        if plan.needs_json:
            ctx.doc, ctx.json_error = _decode(payload)
        if plan.where is not None:
            if plan.where_reads:
                _require_json(ctx, "WHERE")
            if _to_bool(plan.where(ctx)) is not True:
                return None
        if plan.select_reads:
            _require_json(ctx, "SELECT")
        return plan.select(ctx)


def parse_rule(sql: str) -> Rule:
    """Parse an AWS IoT rule statement; ExpressionError names any unsupported or malformed part."""
    statement = _Parser(sql).statement()
    return Rule(sql=sql, topic_filter=statement.topic_filter, _plan=_make_plan(statement))
