"""Outside payloads decoded with a bound: JSON when it is JSON no deeper than MAX_DEPTH, else carried as text."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

# Deep enough for any real event (AWS's own shapes nest under 10 levels), shallow enough that everything
# downstream that recurses (json.dumps of a record wrapping it, filter matching, pydantic) stays far from
# Python's recursion limit. A deeper document is not an error: it travels as text.
MAX_DEPTH = 128

# Outside strings, brackets become parentheses and every other ASCII character goes: "(()())" is the
# document's nesting, ready for counting with str.replace at C speed.
_BRACKETS = str.maketrans({**{chr(c): None for c in range(128) if chr(c) not in "[]{}"},
                           "[": "(", "{": "(", "]": ")", "}": ")"})


class TooDeep(ValueError):
    """A JSON document nests deeper than MAX_DEPTH (a ValueError, so callers treat it as "not JSON")."""


def depth(text: str | bytes) -> int:
    """How deep the brackets of a JSON text nest (strings not counted), up to MAX_DEPTH + 1: exact when it is
    at most MAX_DEPTH and the text is valid JSON. Linear, and at C speed (no Python loop per character)."""
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    if text.count("[") + text.count("{") <= MAX_DEPTH:  # the common case: cannot be too deep, skip the scan
        return 0
    # Escapes go first (pairs of backslashes, then escaped quotes), so every quote left delimits a string and
    # the even pieces of a split on quotes are the text outside strings.
    unescaped = text.replace("\\\\", "").replace('\\"', "")
    nesting = "".join(unescaped.split('"')[0::2]).translate(_BRACKETS)
    found = 0
    while found <= MAX_DEPTH:  # each pass removes the innermost level of every pair of brackets
        shorter = nesting.replace("()", "")
        if len(shorter) == len(nesting):
            break
        nesting, found = shorter, found + 1
    return found


def loads(text: str | bytes, *, parse_constant: Callable[[str], Any] | None = None) -> Any:
    """``json.loads`` that refuses (with TooDeep) documents nested deeper than MAX_DEPTH, before parsing them."""
    if depth(text) > MAX_DEPTH:
        raise TooDeep(f"JSON nested deeper than {MAX_DEPTH} levels")
    try:
        return json.loads(text, parse_constant=parse_constant)
    except RecursionError:  # unreachable for valid JSON after the check; kept so no input can escape as one
        raise TooDeep(f"JSON nested deeper than {MAX_DEPTH} levels") from None


def json_or_text(payload: bytes | str) -> Any:
    """A payload as a record carries it: parsed JSON, or the text when it is not JSON or too deep."""
    try:
        return loads(payload)
    except ValueError:  # includes UnicodeDecodeError and TooDeep
        return payload.decode(errors="replace") if isinstance(payload, bytes) else payload
