"""S3 event notifications: the records S3 sends to Lambda, built from plain values, and its config rules."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote_plus, unquote_to_bytes

from bridge.errors import ExpressionError

EVENT_TYPES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("ObjectCreated", ("Put", "Post", "Copy", "CompleteMultipartUpload")),
    ("ObjectRemoved", ("Delete", "DeleteMarkerCreated")),
)
EVENT_NAMES: tuple[str, ...] = tuple(f"{kind}:{name}" for kind, names in EVENT_TYPES for name in names)
CONFIG_EVENT_PATTERNS: tuple[str, ...] = tuple(
    f"s3:{kind}:{name}" for kind, names in EVENT_TYPES for name in ("*", *names)
)
SEQUENCER_WIDTH = 16
_SEQUENCER_LIMIT = 16**SEQUENCER_WIDTH


def object_key(relative_path: bytes | str) -> str:
    """The key as it appears in ``s3.object.key``: the ``/``-separated relative path, form-URL-encoded.

    As S3 does it, and as handlers undo it with ``urllib.parse.unquote_plus``: a space becomes ``+``, ``/``
    stays, every other byte outside ``A-Z a-z 0-9 _ . - ~`` becomes ``%XX`` ("red flower.jpg" ->
    "red+flower.jpg", "a+b" -> "a%2Bb", a newline -> "%0A").

    File names on Linux are bytes and need not be UTF-8. The *raw bytes* of the name are percent-encoded,
    exactly as S3 encodes the UTF-8 bytes of a key; a ``str`` is first turned back into those bytes with
    ``surrogateescape`` (undoing ``os.fsdecode``). What a handler gets back:

    - a UTF-8 name (the normal case) round-trips with plain ``unquote_plus(key)``;
    - ``unquote_to_bytes(key.replace("+", " "))`` (``decode_key``) always gives the exact bytes;
    - ``unquote_plus(key, errors="surrogateescape")`` gives the ``str`` Python's ``os.fsdecode`` gives for
      that name, so ``open(os.path.join(root, it))`` opens the very file;
    - plain ``unquote_plus(key)`` shows each invalid byte as U+FFFD, as any UTF-8 decoder would.

    Raises ``UnicodeEncodeError`` (a ``ValueError``) for a ``str`` holding surrogates ``os.fsdecode`` never
    produces.
    """
    raw = relative_path if isinstance(relative_path, bytes) else relative_path.encode("utf-8", "surrogateescape")
    return quote_plus(raw, safe="/")


def decode_key(key: str) -> bytes:
    """Inverse of ``object_key``: the exact bytes of the relative path."""
    return unquote_to_bytes(key.replace("+", " "))


def make_sequencer(counter: int) -> str:
    """The ``sequencer`` for the ``counter``-th event: uppercase hex, fixed width, so it compares as a string.

    AWS compares sequencers of one key by left-padding the shorter with zeros; a fixed width of
    ``SEQUENCER_WIDTH`` digits makes that a plain string comparison.
    """
    if not 0 <= counter < _SEQUENCER_LIMIT:
        raise ValueError(f"sequencer counter {counter} is outside 0..{_SEQUENCER_LIMIT - 1}")
    return f"{counter:0{SEQUENCER_WIDTH}X}"


def s3_record(
    *,
    event_name: str,
    bucket: str,
    key: str,
    size: int | None,
    etag: str | None,
    sequencer: str | None,
    region: str,
    configuration_id: str,
    event_time: datetime,
    request_id: str,
    host_id: str,
    principal_id: str,
    owner_principal_id: str | None = None,
    version_id: str | None = None,
    event_version: str = "2.1",
    source_ip: str = "127.0.0.1",
) -> dict[str, Any]:
    """One record of an S3 event notification, field for field as S3 sends it to Lambda.

    ``key`` is the already-encoded key (``object_key(...)``). ``event_name`` is a concrete type such as
    ``ObjectCreated:Put`` (an ``s3:`` prefix is accepted and dropped). Created records need ``size`` and
    ``etag`` (hex MD5 for a single-part object); removed records carry neither, so both must be ``None``.
    ``owner_principal_id`` (bucket owner) defaults to ``principal_id``; ``event_time`` must be timezone-aware.
    """
    name = _concrete_event_name(event_name)
    return {
        "eventVersion": event_version,
        "eventSource": "aws:s3",
        "awsRegion": region,
        "eventTime": _iso_millis(event_time),
        "eventName": name,
        "userIdentity": {"principalId": principal_id},
        "requestParameters": {"sourceIPAddress": source_ip},
        "responseElements": {"x-amz-request-id": request_id, "x-amz-id-2": host_id},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": configuration_id,
            "bucket": {
                "name": bucket,
                "ownerIdentity": {"principalId": owner_principal_id or principal_id},
                "arn": f"arn:aws:s3:::{bucket}",
            },
            "object": _object_section(name, key, size, etag, version_id, sequencer),
        },
    }


def s3_event(records: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The event a function receives: ``{"Records": [...]}`` (S3 sends one record per event)."""
    return {"Records": list(records)}


def test_event(bucket: str, *, event_time: datetime, request_id: str, host_id: str) -> dict[str, Any]:
    """The ``s3:TestEvent`` S3 sends when a notification configuration is saved."""
    return {
        "Service": "Amazon S3",
        "Event": "s3:TestEvent",
        "Time": _iso_millis(event_time),
        "Bucket": bucket,
        "RequestId": request_id,
        "HostId": host_id,
    }


def event_name_matches(pattern: str, event_name: str) -> bool:
    """Whether a configured type (``s3:ObjectCreated:*``) covers an event name (``ObjectCreated:Put``)."""
    wanted, actual = _strip_s3(pattern), _strip_s3(event_name)
    if wanted.endswith(":*"):
        return actual.startswith(wanted[:-1])
    return wanted == actual


def validate_event_patterns(patterns: Sequence[str]) -> tuple[str, ...]:
    """Check configured event types; raise ``ExpressionError`` naming the valid ones. Returns them as given."""
    if isinstance(patterns, str) or not patterns:
        raise ExpressionError(f"at least one S3 event type is required; expected some of: {_valid_list()}")
    for pattern in patterns:
        if pattern not in CONFIG_EVENT_PATTERNS:
            raise ExpressionError(
                f"unknown S3 event type {pattern!r}{_hint(pattern)}; expected one of: {_valid_list()}"
            )
    return tuple(patterns)


def rules_overlap(
    a_prefix: str | None,
    a_suffix: str | None,
    a_events: Sequence[str],
    b_prefix: str | None,
    b_suffix: str | None,
    b_events: Sequence[str],
) -> bool:
    """Whether S3 would reject two notification rules on one bucket as overlapping.

    They overlap when they share an event type and some key could match both: each prefix is a prefix of
    the other (or empty), and each suffix is a suffix of the other (or empty). ``.jpg`` and ``.png`` never
    overlap; ``images/`` and ``images/cats/`` do, as do prefix ``images/`` and suffix ``.jpg``.
    """
    if not _expand(a_events) & _expand(b_events):
        return False
    a_prefix, b_prefix, a_suffix, b_suffix = a_prefix or "", b_prefix or "", a_suffix or "", b_suffix or ""
    prefixes = a_prefix.startswith(b_prefix) or b_prefix.startswith(a_prefix)
    suffixes = a_suffix.endswith(b_suffix) or b_suffix.endswith(a_suffix)
    return prefixes and suffixes


def _strip_s3(name: str) -> str:
    return name.removeprefix("s3:")


def _valid_list() -> str:
    return ", ".join(CONFIG_EVENT_PATTERNS)


def _hint(pattern: str) -> str:
    candidate = f"s3:{pattern}"
    return f" (did you mean {candidate!r}?)" if candidate in CONFIG_EVENT_PATTERNS else ""


def _expand(patterns: Sequence[str]) -> frozenset[str]:
    return frozenset(name for name in EVENT_NAMES if any(event_name_matches(p, name) for p in patterns))


def _concrete_event_name(event_name: str) -> str:
    name = _strip_s3(event_name)
    if name not in EVENT_NAMES:
        raise ValueError(f"unknown S3 event name {event_name!r}; expected one of: {', '.join(EVENT_NAMES)}")
    return name


def _iso_millis(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("event_time must be timezone-aware (use datetime.now(UTC))")
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").removesuffix("+00:00") + "Z"


def _object_section(
    name: str, key: str, size: int | None, etag: str | None, version_id: str | None, sequencer: str | None
) -> dict[str, Any]:
    section: dict[str, Any] = {"key": key}
    if name.startswith("ObjectCreated:"):
        if size is None or etag is None:
            raise ValueError(f"{name} records need size and etag")
        section |= {"size": size, "eTag": etag}
    elif size is not None or etag is not None:
        raise ValueError(f"{name} records carry no size or eTag; pass None")
    if version_id is not None:
        section["versionId"] = version_id
    if sequencer is not None:
        section["sequencer"] = sequencer
    return section
