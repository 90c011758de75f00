"""The state_dir lock: a worker that inherited it keeps a new daemon out until it is gone."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import pytest

from bridge.daemon import state_lock
from bridge.daemon.state_lock import StateLock
from bridge.errors import StateDirInUse


def test_a_worker_left_behind_holds_the_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(state_lock, "ORPHAN_WAIT", 0.2)
    first = asyncio.run(StateLock(tmp_path).acquire())
    assert first.fd is not None
    orphan = subprocess.Popen(["sleep", "60"], pass_fds=(first.fd,))  # as a worker inherits it
    try:
        first.release()  # the daemon is gone; its worker is not
        with pytest.raises(StateDirInUse) as err:
            asyncio.run(StateLock(tmp_path).acquire())
        assert f"still locked by {orphan.pid}" in str(err.value) and err.value.exit_code == 2
    finally:
        orphan.kill()
        orphan.wait()
    second = asyncio.run(StateLock(tmp_path).acquire())  # free once the last holder exited
    second.release()


def test_the_lock_file_is_private(tmp_path: Path) -> None:
    lock = asyncio.run(StateLock(tmp_path / "state").acquire())
    try:
        assert (tmp_path / "state").stat().st_mode & 0o777 == 0o700
        assert lock.path.stat().st_mode & 0o777 == 0o600
        assert lock.path.read_text().strip().isdigit()
    finally:
        lock.release()


def test_a_killed_daemon_not_yet_reaped_does_not_count(tmp_path: Path) -> None:
    zombie = subprocess.Popen(["sleep", "60"])
    zombie.kill()  # dead, but not reaped: a zombie keeps its pid
    os.waitid(os.P_PID, zombie.pid, os.WEXITED | os.WNOWAIT)
    lock = asyncio.run(StateLock(tmp_path).acquire())
    try:
        assert lock.fd is not None
        os.pwrite(lock.fd, f"{zombie.pid}\n".encode(), 0)
        assert not state_lock._alive(zombie.pid)
        assert state_lock._alive(os.getppid())
    finally:
        lock.release()
        zombie.wait()
