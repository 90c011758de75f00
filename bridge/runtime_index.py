"""Running daemons by config file: a small private index, so the CLI finds one whose config file does not parse.

``state_dir/daemon.json`` says everything about a running daemon, but the CLI learns ``state_dir`` from the
config file; while that file does not parse, the index answers instead. One entry per daemon, named by a
digest of its config file's real path, holding its pid and its state_dir; written (0600, in a 0700
directory) at READY, removed at stop; entries of dead processes are ignored and pruned by the next daemon.

Where: systemd's ``$RUNTIME_DIRECTORY`` (``RuntimeDirectory=`` in the unit: the only place besides the state
and logs directories that ``ProtectSystem=strict`` leaves writable), else ``/run/lambda-bridge`` for root,
else ``$XDG_RUNTIME_DIR/lambda-bridge``, else ``~/.cache/lambda-bridge/daemons``. The CLI looks in all of them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any

from bridge.private import private_dir
from bridge.runtime_file import find, is_bridge, pid_alive, write_private

NAME = "lambda-bridge"
SYSTEM_DIR = Path("/run") / NAME


def index_dirs(*, writing: bool) -> list[Path]:
    """Where entries live, in order of preference (``writing``: those this process may write to)."""
    found = []
    systemd = os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0]
    if systemd:
        found.append(Path(systemd))
    if not writing or os.geteuid() == 0:
        found.append(SYSTEM_DIR)
    if os.environ.get("XDG_RUNTIME_DIR"):
        found.append(Path(os.environ["XDG_RUNTIME_DIR"]) / NAME)
    with contextlib.suppress(RuntimeError):  # no home directory: that place is left out
        found.append(Path.home() / ".cache" / NAME / "daemons")
    return list(dict.fromkeys(found))


def entry_name(config_path: Path | str) -> str:
    """The entry's file name: a digest of the config file's real path (symlinks resolved)."""
    return hashlib.sha256(os.path.realpath(config_path).encode()).hexdigest()[:32] + ".json"


def register(config_path: Path | str, state_dir: Path, pid: int) -> Path:
    """Record this daemon under its config file in the first usable place; returns the entry (OSError: none)."""
    info = {"pid": pid, "config": os.path.realpath(config_path), "state_dir": str(state_dir)}
    error: OSError | None = None
    for folder in index_dirs(writing=True):
        try:
            private_dir(folder)
            _prune(folder)
            target = folder / entry_name(config_path)
            write_private(target, info)
            return target
        except OSError as err:
            error = err
    raise error or OSError("no place for the daemon index")


def unregister(config_path: Path | str, pid: int) -> None:
    """Remove this daemon's entries (another daemon's entry for the same file stays)."""
    for folder in index_dirs(writing=True):
        entry = folder / entry_name(config_path)
        if (_read(entry) or {}).get("pid") == pid:
            with contextlib.suppress(OSError):
                entry.unlink()


def lookup(config_path: Path | str) -> Path | None:
    """The state_dir of the daemon running ``config_path`` (its process alive, its daemon.json agreeing)."""
    real = os.path.realpath(config_path)
    for folder in index_dirs(writing=False):
        if not _trusted(folder):
            continue
        info = _read(folder / entry_name(real)) or {}
        pid, state_dir = info.get("pid"), info.get("state_dir")
        if info.get("config") != real or not isinstance(state_dir, str) or not pid_alive(pid) or not is_bridge(pid):
            continue
        running = find(Path(state_dir))
        if running is not None and running.pid == pid:
            return Path(state_dir)
    return None


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _prune(folder: Path) -> None:
    """Remove the entries of daemons that are gone (killed: they could not remove their own)."""
    for entry in folder.glob("*.json"):
        if not pid_alive((_read(entry) or {}).get("pid")):
            with contextlib.suppress(OSError):
                entry.unlink()


def _trusted(folder: Path) -> bool:
    """Only a directory nobody else could have put there or written to: a planted entry would send the CLI
    (maybe run by root) to another store. It is this user's or root's, or sits in a root-only directory
    (/run/lambda-bridge of a unit with DynamicUser=), and no group or other may write to it."""
    try:
        here, parent = os.lstat(folder), os.lstat(folder.parent)
    except OSError:
        return False
    if not stat.S_ISDIR(here.st_mode) or here.st_mode & 0o022:
        return False
    root_only_parent = parent.st_uid == 0 and not parent.st_mode & 0o022
    return here.st_uid in (os.geteuid(), 0) or root_only_parent
