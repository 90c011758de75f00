"""Reading small files on the event loop, but only where no disk can make the loop wait.

The directory source hashes every new file for its eTag. A thread does it by default, but each system call
of that thread hands the GIL back and forth with the event loop, and in a burst the loop paid more for that
than the reads themselves cost (bench/directory.py: 50 µs of the loop's time per file, where reading inline
costs 11). So a batch's small files are read on the loop when that cannot block:

- on a memory filesystem (tmpfs, ramfs) there is no disk at all;
- on ext4, xfs and btrfs a read with ``RWF_NOWAIT`` returns what the page cache holds or fails at once
  (EAGAIN) instead of waiting for the disk; the file then goes to the thread like any other.

Everything else (other filesystems, network ones above all, symlinks to follow, files over INLINE_MAX, and
what is left once a batch has read INLINE_BUDGET bytes) goes to the thread as before, and so does every file
under another mount inside the tree (an NFS or FUSE mount there would make even ``lstat`` wait): the mount
table is read again for each batch. The names' metadata (``lstat``, ``open``) is hot by construction:
inotify just reported the file, or a listing just stat'ed it.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from bridge.sources.directory.tree import OPEN_FLAGS, ObjectInfo, TreeRules, Version, current_version

INLINE_MAX = 64 * 1024  # bytes: larger files are always hashed on the thread
INLINE_BUDGET = 1 << 20  # bytes read on the loop per batch, at most (a few milliseconds of hashing)
MEMORY_FILESYSTEMS = frozenset({"tmpfs", "ramfs"})
NOWAIT_FILESYSTEMS = frozenset({"ext4", "xfs", "btrfs"})
MEMORY, NOWAIT, OFF = "memory", "nowait", "off"


class NotCached:
    """The file must be read on the thread (it may need the disk, or it is too large for the loop)."""


NOT_CACHED = NotCached()


def inline_mode(root: bytes, mountinfo: Path = Path("/proc/self/mountinfo")) -> str:
    """How files under ``root`` may be read on the loop: MEMORY, NOWAIT, or OFF (always on the thread)."""
    kind = filesystem_type(os.path.realpath(root), mountinfo)
    if kind in MEMORY_FILESYSTEMS:
        return MEMORY
    return NOWAIT if kind in NOWAIT_FILESYSTEMS and hasattr(os, "RWF_NOWAIT") else OFF


def filesystem_type(path: bytes, mountinfo: Path) -> str:
    """The filesystem type of the mount holding ``path`` (the longest mount point above it), or ""."""
    best, kind = b"", ""
    for point, fstype in _mounts(mountinfo):
        if _under(path, point) and len(point) >= len(best):
            best, kind = point, fstype
    return kind


def _mounts(mountinfo: Path) -> list[tuple[bytes, str]]:
    """(mount point, filesystem type) of each line of ``mountinfo``; none when it cannot be read."""
    try:
        lines = mountinfo.read_bytes().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        fields, _, rest = line.partition(b" - ")
        parts = fields.split()
        if len(parts) >= 5 and rest:
            out.append((_unescape(parts[4]), rest.split()[0].decode(errors="replace")))
    return out


def _under(path: bytes, directory: bytes) -> bool:
    return path == directory or path.startswith(directory.rstrip(b"/") + b"/")


def _unescape(field: bytes) -> bytes:
    r"""mountinfo writes a space in a mount point as \040 (and tab, newline, backslash likewise)."""
    for code, char in ((b"\\040", b" "), (b"\\011", b"\t"), (b"\\012", b"\n"), (b"\\134", b"\\")):
        field = field.replace(code, char)
    return field


def read_inline(rules: TreeRules, rels: list[bytes], mode: str, real_root: bytes = b"",
                mountinfo: Path = Path("/proc/self/mountinfo")) -> list[ObjectInfo | NotCached | None]:
    """What ``read_object`` would return for each file, or NOT_CACHED for those the thread must read.

    ``real_root``: the tree's root with symlinks resolved (as the mount table names it); default: resolved here.
    """
    if mode == OFF or rules.follow_symlinks:  # links need the thread's realpath checks
        return [NOT_CACHED] * len(rels)
    root, mounts = real_root or os.path.realpath(rules.root), _mounts(mountinfo)
    if not mounts:  # no mount table: nothing says the files are not on another mount
        return [NOT_CACHED] * len(rels)
    inner = [os.path.relpath(point, root) for point, _ in mounts if point != root and _under(point, root)]
    out: list[ObjectInfo | NotCached | None] = []
    budget = INLINE_BUDGET
    for rel in rels:
        elsewhere = any(_under(rel, point) for point in inner)
        info = read_cached(rules, rel, mode) if budget > 0 and not elsewhere else NOT_CACHED
        if isinstance(info, ObjectInfo):
            budget -= info.size
        out.append(info)
    return out


def read_cached(rules: TreeRules, rel: bytes, mode: str) -> ObjectInfo | NotCached | None:
    """Size and MD5 of a small regular file without waiting for a disk; None if gone or not a regular file."""
    expected = current_version(rules, rel)  # lstat: FIFOs, sockets and devices are never opened
    if expected is None:
        return None
    if expected.size > INLINE_MAX:
        return NOT_CACHED
    try:
        fd = os.open(rules.path(rel), OPEN_FLAGS | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        return _hash_small(fd, expected, mode)
    finally:
        os.close(fd)


def _hash_small(fd: int, expected: Version, mode: str) -> ObjectInfo | NotCached | None:
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_ino != expected.ino:
            return None
        if st.st_size > INLINE_MAX:
            return NOT_CACHED
        buffer = bytearray(st.st_size + 1)  # one byte more: a read short of it has reached the end
        got = os.preadv(fd, [buffer], 0, os.RWF_NOWAIT) if mode == NOWAIT else os.readv(fd, [buffer])
    except BlockingIOError:  # not all in the page cache: the disk would be needed
        return NOT_CACHED
    except OSError:
        return None if mode == MEMORY else NOT_CACHED  # e.g. EOPNOTSUPP: let the thread read it plainly
    if got > st.st_size or (mode == NOWAIT and got < st.st_size):
        return NOT_CACHED  # it grew while being read, or (RWF_NOWAIT) only part was cached: the thread reads it
    digest = hashlib.md5(memoryview(buffer)[:got], usedforsecurity=False).hexdigest()
    return ObjectInfo(Version(st.st_size, st.st_mtime_ns, st.st_ino), got, digest)
