"""Pure parts of the directory source: key filters, loop detection, and the S3 record for one change."""

from __future__ import annotations

import base64
import json
import os
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bridge.events.s3 import event_name_matches, object_key, s3_event, s3_record
from bridge.sources.directory.tree import ObjectInfo

PUT_EVENT, DELETE_EVENT = "ObjectCreated:Put", "ObjectRemoved:Delete"


@dataclass(frozen=True)
class KeyFilter:
    """S3's prefix/suffix rule and event types of one source.

    AWS compares filter values with the key in its URL-encoded form; here a value matches if it matches
    either the encoded key or the plain relative path, so ``prefix: "my photos/"`` (what the directory shows)
    and ``prefix: "my+photos/"`` (an AWS configuration copied as is) both work.
    """

    prefix: str = ""
    suffix: str = ""
    events: tuple[str, ...] = ("s3:ObjectCreated:*", "s3:ObjectRemoved:*")

    def matches(self, rel: bytes) -> bool:
        """Whether the object at relative path ``rel`` is covered by the prefix/suffix rule."""
        if not self.prefix and not self.suffix:
            return True
        plain = os.fsdecode(rel)
        if plain.startswith(self.prefix) and plain.endswith(self.suffix):
            return True
        encoded = object_key(rel)
        return encoded.startswith(self.prefix) and encoded.endswith(self.suffix)

    def wants(self, event_name: str) -> bool:
        """Whether an event of this concrete type is configured."""
        return any(event_name_matches(p, event_name) for p in self.events)


@dataclass
class LoopGuard:
    """Runaway repetition on one key: after ``threshold`` events within ``window`` seconds, invocations stop.

    AWS stops S3 -> Lambda -> S3 loops after about 16 hops; a handler writing into its own watched tree is such
    a loop. Suppressed events still count, so the key stays blocked until it has been quiet for a window.
    """

    threshold: int
    window: float
    seen: dict[bytes, deque[float]] = field(default_factory=dict)
    blocked: set[bytes] = field(default_factory=set)

    def check(self, key: bytes, now: float) -> tuple[bool, bool]:
        """(allowed, newly_blocked) for one more event on ``key`` at ``now``."""
        times = self.seen.setdefault(key, deque())
        times.append(now)
        while times and times[0] <= now - self.window:
            times.popleft()
        if len(times) <= self.threshold:
            self.blocked.discard(key)
            return True, False
        newly = key not in self.blocked
        self.blocked.add(key)
        return False, newly

    def prune(self, now: float) -> None:
        """Forget keys without events in the last window (bounds memory over millions of keys)."""
        stale = [k for k, times in self.seen.items() if not times or times[-1] <= now - self.window]
        for key in stale:
            del self.seen[key]
            self.blocked.discard(key)


@dataclass(frozen=True)
class RecordMaker:
    """Builds the S3 event notification for one change of one source."""

    source: str
    bucket: str
    region: str
    account_id: str
    event_version: str = "2.1"

    def payload(self, event_name: str, rel: bytes, info: ObjectInfo | None, sequencer: str,
                now: datetime | None = None, key: str | None = None) -> bytes:
        """``{"Records": [record]}`` as JSON bytes (S3 sends one record per event); ``key``: ``object_key(rel)``
        when the caller has it already."""
        record = s3_record(
            event_name=event_name, bucket=self.bucket, key=key or object_key(rel),
            size=info.size if info else None, etag=info.etag if info else None, sequencer=sequencer,
            region=self.region, configuration_id=self.source, event_time=now or datetime.now(UTC),
            request_id=os.urandom(8).hex().upper(), host_id=base64.b64encode(os.urandom(48)).decode(),
            principal_id=f"AWS:{self.account_id}", owner_principal_id=self.account_id,
            event_version=self.event_version,
        )
        return json.dumps(s3_event([record])).encode()
