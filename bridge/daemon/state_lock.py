"""One daemon per state_dir: an exclusive flock on state_dir/daemon.lock, held by the daemon and its workers."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import time
from pathlib import Path

from bridge.errors import StateDirInUse
from bridge.private import private_dir, private_file
from bridge.runtime_file import pid_alive

LOCK_NAME = "daemon.lock"
# A daemon killed with SIGKILL leaves its workers to die by their parent-death signal a moment later; they
# share the lock (inherited descriptor), so a restart waits this long for them before it gives up.
ORPHAN_WAIT = 5.0
POLL = 0.05


class StateLock:
    """The lock and its descriptor; workers inherit ``fd``, so the lock lasts as long as any of them does.

    flock (not fcntl's POSIX locks) because it belongs to the open file description: every process that
    inherited the descriptor holds it, and the kernel drops it when the last one exits, however it exits.
    """

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / LOCK_NAME
        self.fd: int | None = None

    async def acquire(self) -> StateLock:
        """Take the lock or raise StateDirInUse naming the holder; writes our pid into the file."""
        fd = os.open(private_file(private_dir(self.path.parent) / LOCK_NAME), os.O_RDWR | os.O_CLOEXEC)
        try:
            await self._wait_for(fd)
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd
        return self

    async def _wait_for(self, fd: int) -> None:
        deadline = time.monotonic() + ORPHAN_WAIT
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                pid = _recorded_pid(fd)
                if _alive(pid) or time.monotonic() > deadline:
                    raise StateDirInUse(self._describe(pid)) from None
            await asyncio.sleep(POLL)  # the daemon that held it is gone: its workers are exiting

    def _describe(self, pid: int | None) -> str:
        state_dir = self.path.parent
        if _alive(pid):
            return (f"state_dir {state_dir} is in use by another lambda-bridge (pid {pid}); stop it first, "
                    "or give this one its own state_dir")
        holders = ", ".join(str(p) for p in holders_of(self.path)) or "unknown processes"
        return (f"state_dir {state_dir} is still locked by {holders}, worker processes left by a lambda-bridge "
                f"(pid {pid}) that is gone; they exit when their invocation ends, or stop them with "
                f"`kill {holders.replace(',', '')}`")

    def release(self) -> None:
        """Close our descriptor (the kernel drops the lock once no worker holds it either)."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _recorded_pid(fd: int) -> int | None:
    text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    return int(text) if text.isdigit() else None


def _alive(pid: int | None) -> bool:
    """True for a running process other than this one."""
    return pid != os.getpid() and pid_alive(pid)


def holders_of(path: Path) -> list[int]:
    """Processes (of those we may inspect) with ``path`` open: /proc/*/fd, only read on the error path."""
    target, found = str(path.resolve()), []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():  # we have it open to ask
            continue
        with contextlib.suppress(OSError):
            if any(os.readlink(fd) == target for fd in (entry / "fd").iterdir()):
                found.append(int(entry.name))
    return sorted(found)
