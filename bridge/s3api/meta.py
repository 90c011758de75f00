"""What S3 keeps beside an object's bytes (ETag, Content-Type, Cache-Control, x-amz-meta-*), in an xattr.

An extended attribute on the file itself: it travels with the rename that publishes the file, goes away with
the file, is never an object in the folder, and setting it is no inotify event a source watches. It records
the file's size and mtime: once anyone else rewrites the file, the stored values no longer apply and the
object is what a dropped file is (ETag = the MD5 the directory events carry, Content-Type from the extension).
A file system without user xattrs keeps them in memory instead (lost on restart; logged once).
"""

from __future__ import annotations

import errno
import functools
import hashlib
import json
import mimetypes
import os
import threading
from dataclasses import dataclass, field
from typing import Any

XATTR = "user.lambda-bridge.s3"
DEFAULT_TYPE = "binary/octet-stream"  # S3's own default
STORED_HEADERS = ("Cache-Control", "Content-Disposition", "Content-Encoding", "Content-Language", "Expires")
HASH_CHUNK = 1 << 20
CACHE_LIMIT = 100_000  # ETags of dropped files remembered by (device, inode, size, mtime)


@dataclass(frozen=True)
class ObjectMeta:
    """S3's view of one object beyond its bytes."""

    etag: str  # without quotes
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)  # STORED_HEADERS given at upload
    user: dict[str, str] = field(default_factory=dict)  # x-amz-meta-* without the prefix, lower-case names

    def to_json(self, st: os.stat_result) -> bytes:
        """The xattr value for the file whose stat is ``st``."""
        return json.dumps({"v": [st.st_size, st.st_mtime_ns], "etag": self.etag, "type": self.content_type,
                           "headers": self.headers, "user": self.user}, separators=(",", ":")).encode()


@functools.lru_cache(maxsize=4096)  # keys are read again and again; mimetypes' lookup is not cheap
def guess_type(name: str) -> str:
    """The Content-Type of a file by its extension, else S3's ``binary/octet-stream``."""
    return mimetypes.guess_type(name, strict=False)[0] or DEFAULT_TYPE


class MetaStore:
    """Reads and writes object metadata; remembers the MD5 of files dropped into folders."""

    def __init__(self, log: Any) -> None:
        self.log = log
        self._etags: dict[tuple[int, int, int, int], str] = {}
        self._fallback: dict[tuple[int, int], bytes] = {}  # (device, inode) -> xattr value, no-xattr file systems
        self._lock = threading.Lock()
        self._warned = False

    def write(self, fd: int, meta: ObjectMeta) -> None:
        """Attach ``meta`` to the open file (call after its last write, before the rename)."""
        st = os.fstat(fd)
        value = meta.to_json(st)
        try:
            os.setxattr(fd, XATTR, value)
            return
        except OSError as err:
            if err.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.E2BIG, errno.ENOSPC, errno.EPERM):
                raise
            self._warn(err)
        with self._lock:
            self._fallback[(st.st_dev, st.st_ino)] = value

    def read(self, fd: int, st: os.stat_result) -> ObjectMeta:
        """The metadata of an open object; a file the S3 API did not write (or that changed since) gets its
        MD5 (hashed now unless remembered) and nothing else."""
        return self.known(fd, st) or ObjectMeta(self.md5(fd, st))

    def known(self, fd: int, st: os.stat_result) -> ObjectMeta | None:
        """The metadata stored with the object or its remembered MD5; None when only hashing it would tell
        (quick: no reading of the file's data)."""
        raw = self._raw(fd, st)
        if raw is not None:
            try:
                data = json.loads(raw)
                if data.get("v") == [st.st_size, st.st_mtime_ns]:
                    return ObjectMeta(str(data["etag"]), data.get("type"), dict(data.get("headers") or {}),
                                      dict(data.get("user") or {}))
            except (ValueError, TypeError, KeyError, AttributeError):
                pass  # someone else's or a damaged value: the file is then a plain dropped file
        etag = self._etags.get((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns))
        return ObjectMeta(etag) if etag is not None else None

    def _raw(self, fd: int, st: os.stat_result) -> bytes | None:
        try:
            return os.getxattr(fd, XATTR)
        except OSError:
            with self._lock:
                return self._fallback.get((st.st_dev, st.st_ino))

    def md5(self, fd: int, st: os.stat_result) -> str:
        """The MD5 of an open file, remembered by version (the ETag of a file dropped into a folder)."""
        version = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        known = self._etags.get(version)
        if known is not None:
            return known
        digest = hashlib.md5(usedforsecurity=False)
        offset = 0
        while chunk := os.pread(fd, HASH_CHUNK, offset):
            digest.update(chunk)
            offset += len(chunk)
        with self._lock:
            if len(self._etags) >= CACHE_LIMIT:
                self._etags.clear()
            self._etags[version] = digest.hexdigest()
        return digest.hexdigest()

    def _warn(self, err: OSError) -> None:
        if not self._warned:
            self._warned = True
            self.log.warning("s3.no_xattr", error=str(err),
                             fix="metadata (Content-Type, x-amz-meta-*, multipart ETags) is kept in memory only; "
                                 "use a file system with user extended attributes to keep it across restarts")
