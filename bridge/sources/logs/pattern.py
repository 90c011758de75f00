"""CloudWatch Logs filter patterns (terms, %regex%, JSON, space-delimited): parsed once, errors name the column."""

from __future__ import annotations

import json
import re
import string
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from bridge.errors import ExpressionError

Extracted = dict[str, str]
Matcher = Callable[[str], Extracted | None]  # None: no match; {} or the extracted fields: a match
Test = Callable[[Any], bool]

NO_FIELDS: Extracted = {}
MAX_PATTERN = 1024  # AWS's length limit on filterPattern
MAX_ELLIPSES = 2  # '...' in one space-delimited pattern (more would make matching a line quadratic or worse)
MAX_PLACEMENTS = 4096  # ways of laying one line on a pattern with two ellipses tried, at most
MAX_REGEXES = 2  # AWS: at most two %regex% in one JSON or space-delimited pattern
# AWS's regex subset: letters, digits, these symbols and operators; no parentheses, no multi-byte characters.
REGEX_CHARS = frozenset(string.ascii_letters + string.digits + "_#=@/;,-:" + "^$?[]{}|\\*+." + " ")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_NAME = re.compile(r"[A-Za-z0-9_\-@:]+")
_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")
_OPS = ("!=", "<=", ">=", "=", "<", ">")
_TOKEN = re.compile(r'"([^"]*)"|\[([^\]]*)\]|(\S+)')  # a log line's fields: "quoted", [bracketed] or a word
_KEYWORD = re.compile(r"(?:IS\s+(NULL|TRUE|FALSE)|NOT\s+EXISTS)\b", re.IGNORECASE)
_BARE_STOP = frozenset(' \t\n\r,]})(&|"')


class PatternError(ExpressionError):
    """A filter pattern that does not parse; the message names the 1-based column."""


@dataclass(frozen=True, slots=True)
class FilterPattern:
    """A compiled pattern: ``match(message)`` is None, or the extracted fields (empty unless space-delimited)."""

    text: str
    kind: str  # all | terms | regex | json | delimited
    match: Matcher

    @property
    def extracts(self) -> bool:
        """Whether matches carry ``extractedFields`` (AWS adds them for space-delimited patterns only)."""
        return self.kind == "delimited"


def compile_pattern(text: str) -> FilterPattern:
    """Parse ``text`` as AWS does; raises PatternError naming the column of the first problem."""
    if len(text) > MAX_PATTERN:
        raise PatternError(f"filter pattern is {len(text)} characters; AWS allows at most {MAX_PATTERN}")
    if "\x00" in text:
        raise PatternError(f"NUL character at column {text.index(chr(0)) + 1}; remove it")
    stripped = text.strip()
    start = len(text) - len(text.lstrip())
    if not stripped:
        return FilterPattern(text, "all", lambda _message: NO_FIELDS)
    if stripped[0] == "{":
        return FilterPattern(text, "json", _JsonParser(text, start).parse())
    if stripped[0] == "[":
        return FilterPattern(text, "delimited", _DelimitedParser(text, start).parse())
    if stripped[0] == "%":
        return FilterPattern(text, "regex", _standalone_regex(text, start))
    return FilterPattern(text, "terms", _TermParser(text, start).parse())


def _error(text: str, pos: int, what: str) -> PatternError:
    shown = text[pos:pos + 20]
    near = f" near {shown!r}" if shown else " at the end"
    return PatternError(f"filter pattern: {what} at column {pos + 1}{near}")


def compile_regex(text: str, start: int, body: str) -> re.Pattern[str]:
    """One %regex% body (starting at column ``start``), checked against AWS's subset."""
    for offset, char in enumerate(body):
        if char not in REGEX_CHARS:
            why = "parentheses are not supported in AWS's regex" if char in "()" else \
                f"{char!r} is not in AWS's regex subset (letters, digits, _#=@/;,-: and ^$?[]{{}}|\\*+.)"
            raise _error(text, start + 1 + offset, why)
    if not body:
        raise _error(text, start, "empty %regex%")
    try:
        return re.compile(body)
    except re.error as err:
        raise _error(text, start + 1 + (err.pos or 0), f"invalid regex ({err.msg})") from None


def _standalone_regex(text: str, start: int) -> Matcher:
    end = text.rstrip()
    if len(end) - start < 2 or not end.endswith("%"):
        raise _error(text, start, "unterminated %regex% (it must end with %)")
    search = compile_regex(text, start, end[start + 1:-1]).search
    return lambda message: NO_FIELDS if search(message) else None


class _Scanner:
    """Position-keeping helpers shared by the parsers."""

    def __init__(self, text: str, pos: int) -> None:
        self.text = text
        self.pos = pos
        self.regexes = 0

    def error(self, what: str, pos: int | None = None) -> PatternError:
        return _error(self.text, self.pos if pos is None else pos, what)

    def skip(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def peek(self, token: str) -> bool:
        return self.text.startswith(token, self.pos)

    def take(self, token: str) -> bool:
        self.skip()
        if self.peek(token):
            self.pos += len(token)
            return True
        return False

    def expect(self, token: str, what: str) -> None:
        if not self.take(token):
            raise self.error(f"expected {token!r} ({what})")

    def at_end(self) -> bool:
        self.skip()
        return self.pos >= len(self.text)

    def quoted(self) -> str:
        """A double-quoted string at pos (``\\"`` and ``\\\\`` escapes)."""
        start, self.pos, out = self.pos, self.pos + 1, []
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char == "\\" and self.pos + 1 < len(self.text):
                out.append(self.text[self.pos + 1])
                self.pos += 2
            elif char == '"':
                self.pos += 1
                return "".join(out)
            else:
                out.append(char)
                self.pos += 1
        raise self.error("unterminated quoted string", start)

    def value(self) -> Test:
        """The right side of ``=``/``!=``: a quoted or bare string (``*`` at either end), a number or %regex%."""
        self.skip()
        start = self.pos
        if self.peek('"'):
            return _text_test(self.quoted())
        if self.peek("%"):
            return self._regex_value()
        while self.pos < len(self.text) and self.text[self.pos] not in _BARE_STOP:
            self.pos += 1
        word = self.text[start:self.pos]
        if not word:
            raise self.error("expected a value (a number, a string, \"quoted\", or %regex%)")
        if _NUMBER.fullmatch(word):
            return _number_test(float(word), word)
        return _text_test(word)

    def _regex_value(self) -> Test:
        start = self.pos
        end = self.text.find("%", start + 1)
        if end < 0:
            raise self.error("unterminated %regex%", start)
        self.regexes += 1
        if self.regexes > MAX_REGEXES:
            raise self.error(f"more than {MAX_REGEXES} %regex% in one pattern (AWS's limit)", start)
        search = compile_regex(self.text, start, self.text[start + 1:end]).search
        self.pos = end + 1
        return lambda value: isinstance(value, str | int | float) and search(_as_text(value)) is not None

    def number(self, op: str) -> float:
        self.skip()
        found = _NUMBER.match(self.text, self.pos)
        if not found:
            raise self.error(f"{op} needs a number")
        self.pos = found.end()
        return float(found.group())

    def operator(self) -> str | None:
        self.skip()
        for op in _OPS:
            if self.peek(op):
                self.pos += len(op)
                return op
        return None

    def comparison(self) -> tuple[str, Test]:
        """``op value``: a test of one value node; ``!=`` is the negation of ``=``."""
        op = self.operator()
        if op is None:
            raise self.error("expected a comparison (=, !=, <, >, <=, >=)")
        if op in ("=", "!="):
            test = self.value()
            return op, test if op == "=" else (lambda value: not test(value))
        bound = self.number(op)
        return op, _ordering(op, bound)


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _text_test(expected: str) -> Test:
    """String equality where ``*`` at the start or the end is a wildcard (``Ev*ent`` is literal)."""
    if expected == "*":
        return lambda value: True
    head, tail = expected.startswith("*"), len(expected) > 1 and expected.endswith("*")
    core = expected[1 if head else 0:len(expected) - 1 if tail else len(expected)]
    if head and tail:
        return lambda value: core in _as_text(value)
    if head:
        return lambda value: _as_text(value).endswith(core)
    if tail:
        return lambda value: _as_text(value).startswith(core)
    return lambda value: _as_text(value) == expected


def _to_number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        return float(value)
    return None


def _number_test(expected: float, word: str) -> Test:
    """``= 200``: numerically equal to a number or a numeric string; otherwise the text must be the same."""
    def test(value: Any) -> bool:
        number = _to_number(value)
        return number == expected if number is not None else _as_text(value) == word
    return test


def _ordering(op: str, bound: float) -> Test:
    compare: dict[str, Callable[[float], bool]] = {
        "<": lambda n: n < bound, ">": lambda n: n > bound, "<=": lambda n: n <= bound, ">=": lambda n: n >= bound}
    check = compare[op]

    def test(value: Any) -> bool:
        number = _to_number(value)
        return number is not None and check(number)
    return test


# --- terms -----------------------------------------------------------------------------------------------


class _TermParser(_Scanner):
    """``ERROR "exact phrase" -excluded ?either ?or``: case-sensitive substrings."""

    def parse(self) -> Matcher:
        required: list[str] = []
        excluded: list[str] = []
        optional: list[str] = []
        while not self.at_end():
            prefix = self.text[self.pos] if self.text[self.pos] in "-?" else ""
            start = self.pos
            if prefix:
                self.pos += 1
                self.skip()
                if self.pos >= len(self.text):
                    raise self.error(f"{prefix!r} needs a term after it", start)
            term = self._term()
            if prefix != "-" and not term.strip():
                continue  # AWS documents `" "` as the pattern that matches every event
            {"-": excluded, "?": optional, "": required}[prefix].append(term)
        return _terms_matcher(required, excluded, optional)

    def _term(self) -> str:
        if self.peek('"'):
            return self.quoted()
        start = self.pos
        while self.pos < len(self.text) and not self.text[self.pos].isspace():
            if self.text[self.pos] == '"':
                raise self.error('a quote inside a term; put the whole term in "double quotes"')
            self.pos += 1
        return self.text[start:self.pos]


def _terms_matcher(required: list[str], excluded: list[str], optional: list[str]) -> Matcher:
    if len(required) == 1 and not excluded and not optional:
        only = required[0]
        return lambda message: NO_FIELDS if only in message else None

    def match(message: str) -> Extracted | None:
        if any(term not in message for term in required) or any(term in message for term in excluded):
            return None
        if optional and not any(term in message for term in optional):
            return None
        return NO_FIELDS
    return match


# --- JSON ------------------------------------------------------------------------------------------------

Path = list[str | int | None]  # None: any key or index (``*``)


class _JsonParser(_Scanner):
    """``{ $.a[0].b = "x" && ($.n > 5 || $.c IS NULL) }``: && binds tighter than ||; parentheses group."""

    def parse(self) -> Matcher:
        self.expect("{", "a JSON pattern starts with {")
        test = self._or()
        self.expect("}", "close the JSON pattern")
        if not self.at_end():
            raise self.error("unexpected text after the closing }")

        def match(message: str) -> Extracted | None:
            head = message.lstrip()[:1]
            if head != "{":
                return None
            try:
                document = json.loads(message)
            except (ValueError, RecursionError):
                return None
            return NO_FIELDS if test(document) else None
        return match

    def _or(self) -> Test:
        parts = [self._and()]
        while self.take("||"):
            parts.append(self._and())
        return parts[0] if len(parts) == 1 else (lambda doc: any(part(doc) for part in parts))

    def _and(self) -> Test:
        parts = [self._unary()]
        while self.take("&&"):
            parts.append(self._unary())
        return parts[0] if len(parts) == 1 else (lambda doc: all(part(doc) for part in parts))

    def _unary(self) -> Test:
        if self.take("("):
            inner = self._or()
            self.expect(")", "close the parenthesis")
            return inner
        return self._condition()

    def _condition(self) -> Test:
        self.skip()
        if not self.peek("$"):
            raise self.error("expected a selector starting with $ (e.g. $.level) or (")
        path = self._path()
        keyword = self._keyword()
        if keyword is not None:
            return keyword(path)
        _op, test = self.comparison()
        return lambda doc: any(_is_value(node) and test(node) for node in _resolve(doc, path))

    def _keyword(self) -> Callable[[Path], Test] | None:
        self.skip()
        found = _KEYWORD.match(self.text, self.pos)
        if found is None:
            if self.text[self.pos:self.pos + 2].upper() in ("IS", "NO"):
                raise self.error("expected IS NULL, IS TRUE, IS FALSE or NOT EXISTS")
            return None
        self.pos = found.end()
        word = found.group(1)
        if word is None:  # NOT EXISTS
            return lambda path: (lambda doc: not _resolve(doc, path))
        want = {"NULL": None, "TRUE": True, "FALSE": False}[word.upper()]
        return lambda path: (lambda doc: any(node is want for node in _resolve(doc, path)))

    def _path(self) -> Path:
        start = self.pos
        self.pos += 1  # the $
        path: Path = []
        while True:
            if self.peek("."):
                self.pos += 1
                path.append(self._bracket() if self.peek("[") else self._key())
            elif self.peek("["):
                path.append(self._bracket())
            else:
                break
        if not path:
            raise self.error("a selector needs a property after $ (e.g. $.eventType)", start)
        return path

    def _key(self) -> str | None:
        if self.peek("*"):
            self.pos += 1
            return None
        found = _NAME.match(self.text, self.pos)
        if not found:
            raise self.error("expected a property name (letters, digits, - and _) after '.'")
        self.pos = found.end()
        return found.group()

    def _bracket(self) -> str | int | None:
        self.pos += 1  # the [
        if self.peek("*"):
            self.pos += 1
            item: str | int | None = None
        elif self.peek("'") or self.peek('"'):
            quote = self.text[self.pos]
            end = self.text.find(quote, self.pos + 1)
            if end < 0:
                raise self.error("unterminated quoted property name")
            item, self.pos = self.text[self.pos + 1:end], end + 1
        else:
            found = re.compile(r"\d+").match(self.text, self.pos)
            if not found:
                raise self.error("expected an array index, * or a 'quoted name' inside [ ]")
            item, self.pos = int(found.group()), found.end()
        if not self.peek("]"):
            raise self.error("expected ']'")
        self.pos += 1
        return item


def _is_value(node: Any) -> bool:
    """A value node: string or number (AWS: a selector on an array or object never matches)."""
    return isinstance(node, str | int | float) and not isinstance(node, bool)


def _resolve(document: Any, path: Path) -> list[Any]:
    """Every node the path reaches (a ``*`` step fans out); empty when it reaches nothing."""
    nodes = [document]
    for step in path:
        found: list[Any] = []
        for node in nodes:
            if step is None:
                found.extend(node.values() if isinstance(node, dict) else node if isinstance(node, list) else [])
            elif isinstance(step, int):
                if isinstance(node, list) and step < len(node):
                    found.append(node[step])
            elif isinstance(node, dict) and step in node:
                found.append(node[step])
        nodes = found
    return nodes


# --- space-delimited --------------------------------------------------------------------------------------

ELLIPSIS = "..."


@dataclass(slots=True)
class _Slot:
    name: str | None  # None: an unnamed field ($N); "..." any number of fields
    test: Callable[[dict[str, str]], bool] | None = None


class _DelimitedParser(_Scanner):
    """``[ip, user, ..., status=5*, bytes>1000]``: fields split on spaces, "quoted" and [bracketed] kept whole."""

    def parse(self) -> Matcher:
        self.expect("[", "a space-delimited pattern starts with [")
        slots = [self._slot()]
        while self.take(","):
            start = self.pos
            slots.append(self._slot())
            if sum(1 for slot in slots if slot.name == ELLIPSIS) > MAX_ELLIPSES:
                raise self.error(f"at most {MAX_ELLIPSES} '...' in one pattern", start + 1)
        self.expect("]", "close the space-delimited pattern")
        if not self.at_end():
            raise self.error("unexpected text after the closing ]")
        return _delimited_matcher(slots)

    def _slot(self) -> _Slot:
        self.skip()
        if self.peek(ELLIPSIS):
            self.pos += len(ELLIPSIS)
            return _Slot(ELLIPSIS)
        found = _FIELD_NAME.match(self.text, self.pos)
        if not found:
            if self.peek(",") or self.peek("]"):
                return _Slot(None)
            raise self.error("expected a field name, ... or ','")
        self.pos = found.end()
        self.skip()
        if self.peek(",") or self.peek("]"):
            return _Slot(found.group())
        if self.at_end():
            raise self.error("expected ',' or ']' (close the space-delimited pattern)")
        return _Slot(found.group(), self._field_or(found.group()))

    def _field_or(self, name: str) -> Callable[[dict[str, str]], bool]:
        parts = [self._field_and(name)]
        while self.take("||"):
            parts.append(self._field_and(None))
        return parts[0] if len(parts) == 1 else (lambda fields: any(part(fields) for part in parts))

    def _field_and(self, name: str | None) -> Callable[[dict[str, str]], bool]:
        parts = [self._field_condition(name)]
        while self.take("&&"):
            parts.append(self._field_condition(None))
        return parts[0] if len(parts) == 1 else (lambda fields: all(part(fields) for part in parts))

    def _field_condition(self, name: str | None) -> Callable[[dict[str, str]], bool]:
        """``name op value``; the slot's own name is already read for the first condition."""
        if name is None:
            self.skip()
            found = _FIELD_NAME.match(self.text, self.pos)
            if not found:
                raise self.error("expected a field name after && or ||")
            name, self.pos = found.group(), found.end()
        _op, test = self.comparison()
        key = f"${name}"
        return lambda fields: key in fields and test(fields[key])


def split_fields(message: str) -> list[str]:
    """A log line's space-delimited fields: "quoted" and [bracketed] runs are one field, without their marks."""
    return [next(group for group in found.groups() if group is not None) for found in _TOKEN.finditer(message)]


def _delimited_matcher(slots: list[_Slot]) -> Matcher:
    fixed = sum(1 for slot in slots if slot.name != ELLIPSIS)
    open_ended = fixed != len(slots)
    named = [(i, f"${slot.name}") for i, slot in enumerate(slots) if slot.name not in (None, ELLIPSIS)]
    tests = [slot.test for slot in slots if slot.test is not None]

    def match(message: str) -> Extracted | None:
        tokens = split_fields(message)
        if len(tokens) < fixed or (not open_ended and len(tokens) != fixed):
            return None
        for tries, starts in enumerate(_placements(slots, len(tokens), 0, 0, [])):
            if tries >= MAX_PLACEMENTS:
                return None  # a line of thousands of fields against two ellipses: bounded, as no match
            fields = {key: tokens[starts[i]] for i, key in named}
            if all(test(fields) for test in tests):
                return _extracted(slots, starts, tokens)
        return None
    return match


def _placements(slots: list[_Slot], count: int, i: int, j: int, starts: list[int]) -> Iterator[list[int]]:
    """Every way to lay ``count`` fields on the slots: the index of each slot's first field (an ellipsis takes
    0..n). At most two ellipses keep this linear in the line's fields."""
    if i == len(slots):
        if j == count:
            yield starts
        return
    if slots[i].name == ELLIPSIS:
        rest = sum(1 for slot in slots[i + 1:] if slot.name != ELLIPSIS)
        last = rest == len(slots) - i - 1  # no ellipsis after this one: it takes exactly what is left over
        for take in range(count - j - rest, -1 if not last else count - j - rest - 1, -1):
            yield from _placements(slots, count, i + 1, j + take, [*starts, j])
    elif j < count:
        yield from _placements(slots, count, i + 1, j + 1, [*starts, j])


def _extracted(slots: list[_Slot], starts: list[int], tokens: list[str]) -> Extracted:
    """extractedFields as AWS writes them: ``$name`` for a named slot's field, ``$N`` (1-based) for the rest."""
    names = {starts[i]: f"${slot.name}" for i, slot in enumerate(slots) if slot.name not in (None, ELLIPSIS)}
    return {names.get(n, f"${n + 1}"): token for n, token in enumerate(tokens)}
