"""``state_dir/daemon.json``: where the running daemon is and which config it runs, for the CLI to find it."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

NAME = "daemon.json"


def runtime_path(state_dir: Path) -> Path:
    """The runtime file of the daemon that uses ``state_dir``."""
    return Path(state_dir) / NAME


def file_digest(path: Path | str | None) -> str | None:
    """SHA-256 of a file's bytes (the config file), or None when it cannot be read."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest() if path else None
    except OSError:
        return None


def write(state_dir: Path, info: dict[str, Any]) -> None:
    """Replace the runtime file atomically (write a private temporary file, then rename it over)."""
    write_private(runtime_path(state_dir), info)


def write_private(target: Path, info: dict[str, Any]) -> None:
    """Replace ``target`` with ``info`` as JSON, atomically and 0600 (it names the config and the API)."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask: it names the config path and the API address
        os.write(fd, json.dumps(info, indent=2).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, target)


def remove(state_dir: Path, pid: int) -> None:
    """Remove the runtime file if it is still this process's (a newer daemon's file stays)."""
    found = read(state_dir)
    if found is not None and found.get("pid") == pid:
        with contextlib.suppress(FileNotFoundError):
            runtime_path(state_dir).unlink()


def read(state_dir: Path) -> dict[str, Any] | None:
    """The runtime file's content, or None when there is none (or it is unreadable)."""
    try:
        data = json.loads(runtime_path(state_dir).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def pid_alive(pid: Any) -> bool:
    """True when a process with this pid runs (it may be another user's); a zombie (killed, not yet reaped)
    does not."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


@dataclass
class RunningDaemon:
    """What the runtime file says about a daemon whose process is alive."""

    pid: int
    api_url: str | None
    config_path: str | None
    config_sha256: str | None
    info: dict[str, Any] = field(default_factory=dict)

    def drift(self) -> str | None:
        """Why the config file on disk is not what the daemon runs, or None when it is."""
        reload = self.info.get("reload") or {}
        on_disk = file_digest(self.config_path)
        if on_disk is not None and on_disk != self.config_sha256:
            if reload.get("result") == "invalid" and reload.get("config_sha256") == on_disk:
                first = (reload.get("problems") or ["see `lambda-bridge check`"])[0]
                return (f"{self.config_path} has errors, so the daemon (pid {self.pid}) still runs its previous "
                        f"version: {first}; fix it (`lambda-bridge check`) and it reloads by itself")
            return (f"{self.config_path} changed since the daemon (pid {self.pid}) loaded it; it reloads on its "
                    "own within a second, or send SIGHUP (systemctl reload lambda-bridge)")
        keys = reload.get("needs_restart") or []
        if keys:
            return (f"the daemon (pid {self.pid}) still runs with the previous {', '.join(keys)} settings: "
                    "they apply only after a restart (systemctl restart lambda-bridge)")
        return None


def is_bridge(pid: int) -> bool:
    """False when the pid now belongs to another program (the daemon was killed and the pid reused)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # cannot tell (another user's process under hidepid): trust the pid
    return b"bridge" in cmdline


def find(state_dir: Path) -> RunningDaemon | None:
    """The daemon using ``state_dir``, from its runtime file, when its process is alive."""
    info = read(state_dir)
    if info is None or not pid_alive(info.get("pid")) or not is_bridge(info["pid"]):
        return None
    return RunningDaemon(info["pid"], info.get("api_url"), info.get("config"), info.get("config_sha256"), info)
