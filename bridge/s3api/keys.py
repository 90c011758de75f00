"""Bucket names to folders, and S3 keys to relative paths that cannot leave them (keys are hostile input)."""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass
from typing import Any

from bridge.s3api.errors import S3Error, invalid_argument
from bridge.sources.directory.tree import WRITING

MAX_KEY = 1024  # bytes, S3's limit
NAME_MAX = 255  # bytes per path segment, the file system's limit


@dataclass(frozen=True, slots=True)
class Bucket:
    """One served bucket: its name and its folder (absolute, resolved, as bytes)."""

    name: str
    root: bytes
    follow_symlinks: bool = False


def bucket_table(config: Any) -> dict[str, Bucket]:
    """Every directory source's bucket, then the ``buckets:`` map (config rules keep one folder per name)."""
    table: dict[str, Bucket] = {}
    for source in config.sources:
        if getattr(source, "type", None) == "directory":
            table.setdefault(source.bucket_name, Bucket(source.bucket_name, os.fsencode(source.path),
                                                        source.follow_symlinks))
    for name, path in config.buckets.items():
        table.setdefault(name, Bucket(name, os.fsencode(path)))
    return table


def shown(key: bytes) -> str:
    """A key as text for messages and XML (bytes that are not UTF-8 shown as U+FFFD)."""
    return key.decode("utf-8", "replace")


def is_folder(key: bytes) -> bool:
    """A key ending in ``/``: the console's "folder" object, kept as a directory."""
    return key.endswith(b"/")


def key_parts(key: bytes) -> list[bytes]:
    """The path segments of ``key`` inside its bucket's folder; S3 errors for keys a folder cannot hold.

    S3 allows ``a//b``, ``./a`` or ``a/../b`` as opaque keys; as paths they would be ambiguous or leave the
    folder, so they are refused (400) rather than mapped to some other file.
    """
    if not key:
        raise invalid_argument("An object key is required.")
    if len(key) > MAX_KEY:
        raise S3Error(400, "KeyTooLongError", "Your key is too long.")
    if b"\0" in key:
        raise invalid_argument("A key holding a NUL byte cannot be a file name.")
    parts = (key[:-1] if is_folder(key) else key).split(b"/")
    for part in parts:
        if part in (b"", b".", b".."):
            raise invalid_argument(f"The key {shown(key)!r} has an empty, '.' or '..' segment; a folder cannot "
                                   "hold it as a file.")
        if len(part) > NAME_MAX:
            raise S3Error(400, "KeyTooLongError", f"Each '/'-separated part of a key is at most {NAME_MAX} bytes "
                                                  "here (the file system's limit).")
        if fnmatch.fnmatchcase(os.fsdecode(part), WRITING):
            raise invalid_argument("Names .lambda-bridge.*.tmp are the bridge's files being written.")
    return parts
