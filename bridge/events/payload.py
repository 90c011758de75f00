"""Outside payloads decoded with a bound: JSON when it is JSON no deeper than MAX_DEPTH, else carried as text."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from itertools import accumulate
from typing import Any

# Deep enough for any real event (AWS's own shapes nest under 10 levels), shallow enough that everything
# downstream that recurses (json.dumps of a record wrapping it, filter matching, pydantic) stays far from
# Python's recursion limit. A deeper document is not an error: it travels as text.
MAX_DEPTH = 128

# A JSON string (the unrolled form keeps the regex engine linear), or a run of characters that are neither
# brackets nor the quote that opens a string.
_NOT_A_BRACKET = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[^\[\]{}"]+', re.DOTALL)
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


class TooDeep(ValueError):
    """A JSON document nests deeper than MAX_DEPTH (a ValueError, so callers treat it as "not JSON")."""


def depth(text: str | bytes) -> int:
    """How deep the brackets of a JSON text nest, brackets inside strings not counted (exact for valid JSON)."""
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    if text.count("[") + text.count("{") <= MAX_DEPTH:  # the common case: cannot be too deep, skip the scan
        return 0
    brackets = _NOT_A_BRACKET.sub("", text)
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0)


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
