"""Files only the daemon's user may read (directories 0700, files 0600), whatever the umask."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """Create ``path`` as 0700 if it is missing (its missing parents get the usual mode); returns it.

    An existing directory keeps its mode: it may be the user's (``state_dir: .``); what we put in it is
    private on its own.
    """
    if not path.is_dir():
        path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
        os.chmod(path, DIR_MODE)  # mkdir's mode is filtered by the umask
    return path


def private_file(path: Path) -> Path:
    """Create ``path`` empty as 0600 if it is missing, or tighten it to 0600; returns it.

    Created with the mode at open, never widened afterwards, so no other user can open it in between.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    except PermissionError:
        if path.exists():
            return path  # another user's file (a CLI reading the daemon's store): theirs to keep as it is
        raise
    try:
        os.fchmod(fd, FILE_MODE)  # the umask may have left it narrower (0400) or it existed wider (0644)
    except PermissionError:
        pass  # writable but not ours (root's file opened by a group member): not ours to change
    finally:
        os.close(fd)
    return path


def tighten(path: Path, mode: int = FILE_MODE) -> None:
    """chmod ``path`` to ``mode`` if it exists with any other mode (files written before this release)."""
    with contextlib.suppress(FileNotFoundError, PermissionError):  # PermissionError: not our file
        if path.stat().st_mode & 0o7777 != mode:
            os.chmod(path, mode)
