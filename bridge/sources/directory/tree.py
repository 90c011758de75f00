"""A watched directory tree as plain data: which names count, listing with versions, reading one object."""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass

CHUNK = 1 << 20  # bytes read per call while hashing
WRITING = ".lambda-bridge.*.tmp"  # the S3 API's files being written: never objects, whatever ``ignore:`` says
OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC  # O_NONBLOCK: a FIFO swapped in never blocks open()


@dataclass(frozen=True, slots=True)
class Version:
    """What identifies one state of a file: a different size, mtime or inode is a new object (a new Put)."""

    size: int
    mtime_ns: int
    ino: int


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """A regular file read to the end: its version when opened and the MD5 of its content (the eTag)."""

    version: Version
    size: int
    etag: str


@dataclass(frozen=True)
class TreeRules:
    """Which entries of the tree count: ignore patterns (any path component) and the symlink policy.

    ``root`` is the absolute directory as bytes (names need not be UTF-8). With ``follow_symlinks`` a symlink to
    a regular file inside the root is read through; symlinks to directories are never descended (no cycles),
    and nothing outside the root is ever read.
    """

    root: bytes
    ignore: tuple[str, ...] = ()
    follow_symlinks: bool = False

    def __post_init__(self) -> None:
        pattern = "|".join(fnmatch.translate(p) for p in (*self.ignore, WRITING))
        object.__setattr__(self, "_ignored", re.compile(pattern, re.DOTALL).match)

    def ignored(self, name: bytes) -> bool:
        """Whether a single name (file or directory) matches an ignore pattern."""
        return self._ignored(os.fsdecode(name)) is not None  # type: ignore[attr-defined]

    def path(self, rel: bytes) -> bytes:
        """The absolute path of a relative key path."""
        return self.root + b"/" + rel if rel else self.root

    def inside(self, path: bytes) -> bool:
        """Whether ``path`` resolves to somewhere inside the root (for following symlinks)."""
        real = os.path.realpath(path)
        return real.startswith(os.path.realpath(self.root) + b"/")


def join(parent: bytes, name: bytes) -> bytes:
    """The relative path of ``name`` inside the relative directory ``parent`` (``b""`` is the root)."""
    return parent + b"/" + name if parent else name


def walk(rules: TreeRules, start: bytes = b"", on_dir: Callable[[bytes], None] | None = None) -> dict[bytes, Version]:
    """Every reportable file under ``start`` (relative) with its version; ignored names are not descended.

    ``on_dir(rel)`` runs for each directory *before* it is listed, so a watch added there misses nothing that
    the listing does not already show. Directories that vanish or cannot be read are skipped.
    """
    found: dict[bytes, Version] = {}
    stack = [start]
    while stack:
        rel = stack.pop()
        if on_dir is not None:
            on_dir(rel)
        try:
            with os.scandir(rules.path(rel)) as entries:
                for entry in entries:
                    _visit(rules, rel, entry, found, stack)
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
    return found


def _visit(rules: TreeRules, parent: bytes, entry: os.DirEntry[bytes], found: dict[bytes, Version],
           stack: list[bytes]) -> None:
    if rules.ignored(entry.name):
        return
    rel = join(parent, entry.name)
    try:
        st = entry.stat(follow_symlinks=False)
        if stat.S_ISLNK(st.st_mode):
            st = _link_target(rules, entry.path)
    except FileNotFoundError:
        return
    if st is None:
        return
    if stat.S_ISDIR(st.st_mode):  # never a symlink's target: _link_target only returns regular files
        stack.append(rel)
    elif stat.S_ISREG(st.st_mode):
        found[rel] = Version(st.st_size, st.st_mtime_ns, st.st_ino)


def _link_target(rules: TreeRules, path: bytes) -> os.stat_result | None:
    """The stat of a symlink's target if links are followed and it stays inside the root, else None."""
    if not rules.follow_symlinks or not rules.inside(path):
        return None
    st = os.stat(path)
    return st if stat.S_ISREG(st.st_mode) else None


def current_version(rules: TreeRules, rel: bytes) -> Version | None:
    """The version of a reportable regular file at ``rel`` now, or None (gone, not a file, link not followed)."""
    path = rules.path(rel)
    try:
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            st = _link_target(rules, path)  # type: ignore[assignment]
    except OSError:
        return None
    if st is None or not stat.S_ISREG(st.st_mode):
        return None
    return Version(st.st_size, st.st_mtime_ns, st.st_ino)


def read_object(rules: TreeRules, rel: bytes) -> ObjectInfo | None:
    """Size and MD5 of a regular file, streamed; None if it is gone or not a regular file (skipped quietly).

    FIFOs, sockets and devices are recognised by ``lstat`` and never opened; the open itself is non-blocking
    and refuses symlinks unless they are followed, and ``fstat`` confirms the file is the one examined.
    """
    expected = current_version(rules, rel)
    if expected is None:
        return None
    follow = rules.follow_symlinks and os.path.islink(rules.path(rel))
    try:
        fd = os.open(rules.path(rel), OPEN_FLAGS | (0 if follow else os.O_NOFOLLOW))
    except OSError:
        return None
    try:
        return _hash_open_file(fd, expected)
    except OSError:
        return None
    finally:
        os.close(fd)


def _hash_open_file(fd: int, expected: Version) -> ObjectInfo | None:
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_ino != expected.ino:
        return None
    digest = hashlib.md5(usedforsecurity=False)
    size = 0
    while chunk := os.read(fd, CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return ObjectInfo(Version(st.st_size, st.st_mtime_ns, st.st_ino), size, digest.hexdigest())


def read_objects(rules: TreeRules, rels: Iterable[bytes]) -> list[ObjectInfo | None]:
    """``read_object`` for many files in one call (one thread hop for a whole batch)."""
    return [read_object(rules, rel) for rel in rels]
