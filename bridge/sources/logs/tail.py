"""Tailing log files that loses nothing: offsets, rotation by rename, copytruncate, identity by inode + fingerprint."""

from __future__ import annotations

import errno
import fnmatch
import glob
import hashlib
import os
import re
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bridge.events.cloudwatch_logs import MAX_MESSAGE_BYTES

FINGERPRINT_BYTES = 256  # a file's identity beside its inode: a hash of (up to) its first 256 bytes
READ_CHUNK = 1 << 20  # bytes read from one file in one call
READ_BUDGET = 2 << 20  # bytes read from one file per pass; the rest on the next (other files and tasks get a turn)
ROTATED_GRACE = 2.0  # seconds a rotated-away file is kept open after it stopped growing (late writes)
Warn = Callable[..., None]  # warn(event, key, **fields): logged once per key


@dataclass(slots=True)
class Record:
    """One log record: where it starts in its file, the text, the file it came from."""

    origin: str  # the file's identity (dev:inode)
    position: int
    text: str
    path: str


@dataclass(eq=False)
class TailedFile:
    """One open file and how far it is read; ``offset`` is the byte after the last whole line handed out."""

    path: str
    fd: int
    dev: int
    ino: int
    offset: int
    fingerprint: str = ""
    fp_len: int = 0
    buffer: bytearray = field(default_factory=bytearray)
    partial_since: float | None = None  # when the unterminated tail of the buffer was first seen
    skipping: bool = False  # inside an over-long line: the rest up to its newline is dropped
    rotated_at: float | None = None  # moved or deleted away: read to its end, then closed
    grew_at: float = 0.0
    pending: list[str] = field(default_factory=list)  # the multiline record being assembled
    pending_start: int = 0
    pending_since: float = 0.0

    @property
    def key(self) -> str:
        """The file's identity: device and inode."""
        return f"{self.dev}:{self.ino}"

    @property
    def commit_offset(self) -> int:
        """Where a restart must read from: the start of a record not yet handed out."""
        return self.pending_start if self.pending else self.offset

    def state(self) -> dict[str, Any]:
        """What the store keeps for this file."""
        return {"path": self.path, "offset": self.commit_offset, "fp": self.fingerprint, "fp_len": self.fp_len}


def fingerprint(fd: int, length: int = FINGERPRINT_BYTES) -> tuple[str, int]:
    """(hash, bytes hashed) of the file's first ``length`` bytes (fewer when it is shorter)."""
    head = os.pread(fd, length, 0)
    return hashlib.blake2b(head, digest_size=12).hexdigest(), len(head)


class Tailer:
    """The files matching one path or glob, read on demand; the caller watches, batches and commits."""

    def __init__(self, pattern: str, *, follow_symlinks: bool, multiline_start: str | None, warn: Warn,
                 partial_timeout: float) -> None:
        self.pattern = pattern
        self.directory = os.path.dirname(pattern)
        self.glob = os.path.basename(pattern)
        self.follow_symlinks = follow_symlinks
        self.multiline = re.compile(multiline_start).search if multiline_start else None
        self.partial_timeout = partial_timeout
        self.warn = warn
        self.files: dict[str, TailedFile] = {}  # key -> file, the rotated-away ones included
        self.by_path: dict[str, str] = {}  # current path -> key

    # --- which files -----------------------------------------------------------------------------------

    def matches(self, name: str) -> bool:
        """Whether a file name in the watched directory is one of ours."""
        return fnmatch.fnmatchcase(name, self.glob)

    def resume(self, saved: dict[str, Any], *, first_start: bool, from_end: bool) -> None:
        """Open the matching files at their saved offsets (and saved files rotated away while we were down)."""
        self.scan(saved=saved, new_at_end=first_start and from_end)
        for key, entry in saved.items():
            if key not in self.files:
                try:
                    self._recover_rotated(key, entry)
                except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:  # damaged entry, I/O error
                    self.warn("logs.recover_failed", key, path=entry.get("path") if isinstance(entry, dict) else None,
                              error=str(err))

    def scan(self, saved: dict[str, Any] | None = None, new_at_end: bool = False) -> None:
        """Compare the glob with the open files: open new ones, follow renames, retire the ones gone."""
        seen: dict[str, str] = {}
        for path in sorted(glob.glob(glob.escape(self.directory) + os.sep + self.glob)):
            key = self._track(path, saved or {}, new_at_end, set(seen.values()))
            if key is not None:
                seen[path] = key
        now = time.monotonic()
        for key, tailed in self.files.items():
            if key not in seen.values() and tailed.rotated_at is None:
                tailed.rotated_at = now  # renamed out of the glob or deleted: drained, then closed
        self.by_path = seen

    def _track(self, path: str, saved: dict[str, Any], new_at_end: bool, taken: set[str]) -> str | None:
        target = self._target(path)
        if target is None:
            return None
        try:
            info = os.stat(target, follow_symlinks=False)
        except OSError:
            return None
        key = f"{info.st_dev}:{info.st_ino}"
        if key in taken:  # a link and its target both match: one file, read once
            return None
        if key in self.files:
            tailed = self.files[key]
            tailed.path, tailed.rotated_at = path, None
            return key
        tailed = self._open(target, saved, new_at_end)
        if tailed is None:
            return None
        tailed.path = path
        self.files[tailed.key] = tailed
        return tailed.key

    def _target(self, path: str) -> str | None:
        """What to open for ``path``: itself, or for a link (with follow_symlinks) its target in the same directory.

        Links are never followed out of the watched directory (a log link swapped for one to /etc/shadow);
        the target is opened with O_NOFOLLOW, so a link swapped in after this check is refused too.
        """
        try:
            if not stat.S_ISLNK(os.lstat(path).st_mode):
                return path
        except OSError:
            return None
        if not self.follow_symlinks:
            self.warn("logs.symlink_skipped", path, path=path, hint="set follow_symlinks: true to read through links")
            return None
        target = os.path.realpath(path)
        if os.path.dirname(target) != os.path.realpath(self.directory):
            self.warn("logs.symlink_outside", path, path=path, target=target,
                      hint="links are followed only to files in the watched directory")
            return None
        return target

    def _open(self, path: str, saved: dict[str, Any], new_at_end: bool) -> TailedFile | None:
        flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOFOLLOW
        try:
            fd = os.open(path, flags)
        except OSError as err:
            if err.errno != errno.ENOENT:
                reason = "a symlink (not followed)" if err.errno == errno.ELOOP else err.strerror
                self.warn("logs.unreadable", path, path=path, error=reason,
                          hint="give the daemon's user read access (e.g. the adm group) or narrow path:")
            return None
        try:
            return self._opened(path, fd, saved, new_at_end)
        except OSError as err:  # an I/O error reading its first bytes: logged once, tried again at the next scan
            os.close(fd)
            self.warn("logs.read_failed", path, path=path, error=err.strerror)
            return None

    def _opened(self, path: str, fd: int, saved: dict[str, Any], new_at_end: bool) -> TailedFile | None:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            self.warn("logs.not_a_file", path, path=path, hint="path: must name regular files")
            return None
        key = f"{info.st_dev}:{info.st_ino}"
        if key in self.files:  # reached through a followed link: already tailed under its own name
            os.close(fd)
            return None
        tailed = TailedFile(path, fd, info.st_dev, info.st_ino, 0)
        tailed.fingerprint, tailed.fp_len = fingerprint(fd)
        entry = saved.get(key)
        if isinstance(entry, dict) and isinstance(entry.get("offset"), int) and self._same(tailed, entry):
            tailed.offset = min(max(entry["offset"], 0), info.st_size)
        elif new_at_end:
            tailed.offset = info.st_size
        return tailed

    @staticmethod
    def _same(tailed: TailedFile, entry: dict[str, Any]) -> bool:
        """The saved entry is this file: the fingerprint of as many bytes as were hashed then still agrees."""
        length = entry.get("fp_len", 0)
        if not isinstance(length, int) or length <= 0:
            return True
        return fingerprint(tailed.fd, length) == (entry.get("fp"), length)

    def _recover_rotated(self, key: str, entry: dict[str, Any]) -> None:
        """A file we had not finished, renamed while we were down: found by inode in its directory, drained."""
        directory = os.path.dirname(entry.get("path", "")) or self.directory
        try:
            entries = [e for e in os.scandir(directory) if e.inode() == int(key.split(":")[1])]
        except (OSError, ValueError):
            return
        for found in entries:
            if not found.is_file(follow_symlinks=False):
                continue
            tailed = self._open(found.path, {}, False)
            if tailed is None:
                return
            if tailed.key == key and self._same(tailed, entry):
                tailed.offset = min(int(entry["offset"]), os.fstat(tailed.fd).st_size)
                tailed.rotated_at = time.monotonic()
                tailed.path = entry.get("path", tailed.path)  # its lines keep the log stream they had
                self.files[key] = tailed
            else:
                os.close(tailed.fd)
            return

    # --- reading ---------------------------------------------------------------------------------------

    def read(self, keys: list[str] | None = None) -> tuple[list[Record], bool]:
        """Records from the given files (all when None); True when a file has more to read right away."""
        records: list[Record] = []
        more = False
        now = time.monotonic()
        for key in list(self.files) if keys is None else keys:
            tailed = self.files.get(key)
            if tailed is not None:
                more |= self._read_file(tailed, records, now)
        return records, more

    def key_of(self, name: str) -> str | None:
        """The tailed file now at ``directory/name``."""
        return self.by_path.get(os.path.join(self.directory, name))

    def _read_file(self, tailed: TailedFile, records: list[Record], now: float) -> bool:
        try:
            size = os.fstat(tailed.fd).st_size
            self._check_identity(tailed, size)
            budget = READ_BUDGET
            while budget > 0:
                chunk = os.pread(tailed.fd, READ_CHUNK, tailed.offset + len(tailed.buffer))
                if not chunk:
                    break
                tailed.grew_at = now
                budget -= len(chunk)
                self._take(tailed, chunk, records, now)
        except OSError as err:  # an I/O error on one file: logged once, the others go on
            self.warn("logs.read_failed", tailed.path, path=tailed.path, error=err.strerror)
            return False
        self._timeouts(tailed, records, now)
        return budget <= 0

    def _check_identity(self, tailed: TailedFile, size: int) -> None:
        """copytruncate: a file shorter than what we read, or whose first bytes changed, is read again from 0."""
        truncated = size < tailed.offset + len(tailed.buffer)
        if not truncated and tailed.fp_len:
            digest, length = fingerprint(tailed.fd, tailed.fp_len)
            truncated = (digest, length) != (tailed.fingerprint, tailed.fp_len)
        if truncated:
            self.warn("logs.truncated", None, path=tailed.path, offset=tailed.offset, size=size)
            tailed.offset, tailed.skipping, tailed.partial_since = 0, False, None
            tailed.buffer.clear()
            tailed.pending.clear()
            tailed.fp_len = -1  # hashed again below: the file's first bytes are new
        if tailed.fp_len < min(FINGERPRINT_BYTES, size):
            tailed.fingerprint, tailed.fp_len = fingerprint(tailed.fd)

    def _take(self, tailed: TailedFile, chunk: bytes, records: list[Record], now: float) -> None:
        """Split what was read into lines; keep an unterminated tail, drop the rest of an over-long line."""
        if tailed.skipping:
            end = chunk.find(b"\n")
            if end < 0:
                tailed.offset += len(chunk)
                return
            tailed.offset += end + 1
            tailed.skipping = False
            chunk = chunk[end + 1:]
        buffer = tailed.buffer
        buffer += chunk
        start = 0
        while (end := buffer.find(b"\n", start)) >= 0:
            self._line(tailed, tailed.offset + start, bytes(buffer[start:end]), records, now)
            start = end + 1
        del buffer[:start]
        tailed.offset += start
        tailed.partial_since = (tailed.partial_since or now) if buffer else None
        if len(buffer) > MAX_MESSAGE_BYTES:  # an over-long line: its first 256 KB, the rest dropped
            self.warn("logs.line_truncated", tailed.path + ":long", path=tailed.path, offset=tailed.offset,
                      limit=MAX_MESSAGE_BYTES)
            self._line(tailed, tailed.offset, bytes(buffer[:MAX_MESSAGE_BYTES]), records, now)
            tailed.offset += len(buffer)
            buffer.clear()
            tailed.skipping, tailed.partial_since = True, None

    def _timeouts(self, tailed: TailedFile, records: list[Record], now: float) -> None:
        """A last line that never ends, or a multiline record nothing follows, is handed out after the timeout."""
        if tailed.partial_since is not None and now - tailed.partial_since >= self.partial_timeout:
            self._line(tailed, tailed.offset, bytes(tailed.buffer), records, now)
            tailed.offset += len(tailed.buffer)
            tailed.buffer.clear()
            tailed.partial_since = None
        if tailed.pending and now - tailed.pending_since >= self.partial_timeout:
            self._flush_pending(tailed, records)

    def _line(self, tailed: TailedFile, position: int, data: bytes, records: list[Record], now: float) -> None:
        if len(data) > MAX_MESSAGE_BYTES:
            self.warn("logs.line_truncated", tailed.path + ":long", path=tailed.path, offset=position,
                      limit=MAX_MESSAGE_BYTES)
            data = data[:MAX_MESSAGE_BYTES]
        if data.endswith(b"\r"):
            data = data[:-1]
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            self.warn("logs.invalid_utf8", tailed.path + ":utf8", path=tailed.path, offset=position,
                      hint="invalid bytes are sent as U+FFFD, as CloudWatch stores them")
            text = data.decode("utf-8", "replace")
        if self.multiline is None:
            records.append(Record(tailed.key, position, text, tailed.path))
            return
        if tailed.pending and self.multiline(text):
            self._flush_pending(tailed, records)
        if not tailed.pending:
            tailed.pending_start, tailed.pending_since = position, now
        tailed.pending.append(text)

    @staticmethod
    def _flush_pending(tailed: TailedFile, records: list[Record]) -> None:
        text = "\n".join(tailed.pending)
        records.append(Record(tailed.key, tailed.pending_start, text[:MAX_MESSAGE_BYTES], tailed.path))
        tailed.pending.clear()

    # --- timers and state --------------------------------------------------------------------------------

    def next_timer(self) -> float | None:
        """Monotonic time of the next partial-line, multiline or rotated-file deadline."""
        times = []
        for tailed in self.files.values():
            if tailed.partial_since is not None:
                times.append(tailed.partial_since + self.partial_timeout)
            if tailed.pending:
                times.append(tailed.pending_since + self.partial_timeout)
            if tailed.rotated_at is not None:
                times.append(max(tailed.rotated_at, tailed.grew_at) + ROTATED_GRACE)
        return min(times, default=None)

    def close_drained(self, now: float) -> None:
        """Close rotated-away files that were read to their end and stopped growing."""
        for key, tailed in list(self.files.items()):
            if tailed.rotated_at is None or tailed.buffer or tailed.pending:
                continue
            if now - max(tailed.rotated_at, tailed.grew_at) >= ROTATED_GRACE:
                os.close(tailed.fd)
                del self.files[key]

    def state(self) -> dict[str, Any]:
        """Every tailed file's resume point, for the store."""
        return {key: tailed.state() for key, tailed in self.files.items()}

    def close(self) -> None:
        """Close every file."""
        for tailed in self.files.values():
            os.close(tailed.fd)
        self.files.clear()
