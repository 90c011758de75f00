"""What the S3 API tells the directory sources about a file it wrote: the call that made it, and its S3 ETag.

The kernel only says "a file appeared" (the S3 API renames a finished temporary file into place); the event S3
would send names the call (``ObjectCreated:Copy``, ``:CompleteMultipartUpload``) and carries S3's ETag (a
multipart upload's is not the file's MD5). The S3 API records both here, in-process, before the rename; the
source uses them only while the file is still that exact version (size, mtime, inode), so a later edit of
the file by anyone else is an ordinary ``Put`` again.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from bridge.sources.directory.tree import Version

EXTENSION = "directory.provenance"  # ctx.extensions key
LIMIT = 65_536  # paths remembered; the oldest are forgotten first (then reported as a plain Put)


@dataclass(frozen=True, slots=True)
class Made:
    """One file as the S3 API wrote it."""

    version: Version
    event_name: str  # "ObjectCreated:Put", "ObjectCreated:Copy", "ObjectCreated:CompleteMultipartUpload"
    etag: str


class Provenance:
    """Absolute path -> how the S3 API last wrote it (bounded, most recent kept)."""

    def __init__(self, limit: int = LIMIT) -> None:
        self.limit = limit
        self._made: OrderedDict[bytes, Made] = OrderedDict()
        self._lock = threading.Lock()  # the S3 API records from its file threads, the source reads on the loop

    def record(self, path: bytes, made: Made) -> None:
        """Remember that the file at ``path`` (absolute, resolved folder) was written by an S3 call."""
        with self._lock:
            self._made.pop(path, None)
            self._made[path] = made
            while len(self._made) > self.limit:
                self._made.popitem(last=False)

    def lookup(self, path: bytes, version: Version) -> Made | None:
        """How ``path`` was made, if the file is still the version the S3 API wrote."""
        with self._lock:
            made = self._made.get(path)
        return made if made is not None and made.version == version else None
