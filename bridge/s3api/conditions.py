"""GetObject's request headers that shape the answer: conditions (If-*) and Range."""

from __future__ import annotations

import email.utils
import math
import re

from bridge.s3api.errors import S3Error

RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def _etags(value: str) -> set[str]:
    return {tag.strip().removeprefix("W/").strip('"') for tag in value.split(",")}


def _date(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None  # S3 ignores a date it cannot read


def whole_seconds(mtime: float) -> int:
    """An object's time in S3's whole seconds, rounded *up*: an object written within the second after a local
    file changed must not look older than that file (``aws s3 sync`` would copy it again and again)."""
    return math.ceil(mtime)


def precondition(headers: object, etag: str, mtime: float) -> int | None:
    """304 or 412 when the If-* headers say so (S3's order and precedence), else None."""
    get = headers.get  # type: ignore[attr-defined]
    seconds = whole_seconds(mtime)  # Last-Modified has whole seconds
    match, unmodified = get("If-Match"), _date(get("If-Unmodified-Since"))
    if match is not None:
        if etag not in _etags(match) and "*" not in _etags(match):
            return 412
    elif unmodified is not None and seconds > unmodified:
        return 412
    none_match, modified = get("If-None-Match"), _date(get("If-Modified-Since"))
    if none_match is not None:
        if etag in _etags(none_match) or "*" in _etags(none_match):
            return 304
    elif modified is not None and seconds <= modified:
        return 304
    return None


def byte_range(value: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) inclusive for a ``Range: bytes=`` header; None for none or one S3 ignores (several ranges,
    another unit); InvalidRange (416) when it cannot be satisfied."""
    found = RANGE.match(value.strip()) if value else None
    if found is None:
        return None
    first, last = found.groups()
    if not first and not last:
        return None
    if not first:  # the last N bytes
        length = int(last)
        if length == 0 or size == 0:
            raise _invalid(size)
        return max(0, size - length), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if last and int(last) < start:
        return None  # not a valid range: ignored, as by S3
    if start >= size:
        raise _invalid(size)
    return start, end


def _invalid(size: int) -> S3Error:
    return S3Error(416, "InvalidRange", "The requested range is not satisfiable", ActualObjectSize=str(size),
                   RangeRequested="")
