"""The daemon index: found by the config file's real path, only while the daemon lives, only from a private place."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge import runtime_file, runtime_index


@pytest.fixture
def bridge_pid() -> Iterator[int]:
    """A live process whose command line names the bridge (as a daemon's does)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "lambda-bridge"])
    try:
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture
def index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "run"
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(folder))
    return folder


def _daemon(tmp_path: Path, pid: int) -> tuple[Path, Path]:
    config, state = tmp_path / "config.yaml", tmp_path / "state"
    config.write_text("functions: [\n")  # does not parse: the index is how the CLI finds the daemon
    state.mkdir()
    runtime_file.write(state, {"pid": pid, "config": str(config)})
    return config, state


def test_found_by_real_path_and_gone_with_the_daemon(tmp_path: Path, index: Path, bridge_pid: int) -> None:
    config, state = _daemon(tmp_path, bridge_pid)
    entry = runtime_index.register(config, state, bridge_pid)
    assert entry.parent == index and oct(index.stat().st_mode & 0o777) == "0o700"
    link = tmp_path / "link.yaml"
    link.symlink_to(config)
    assert runtime_index.lookup(link) == state
    runtime_index.unregister(config, bridge_pid + 1)  # another daemon's removal leaves this entry
    assert runtime_index.lookup(config) == state
    runtime_index.unregister(config, bridge_pid)
    assert runtime_index.lookup(config) is None and not entry.exists()


def test_a_dead_or_disagreeing_daemon_is_not_found_and_dead_ones_are_pruned(
        tmp_path: Path, index: Path, bridge_pid: int) -> None:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(gone.stdout)
    config, state = _daemon(tmp_path, dead_pid)
    stale = runtime_index.register(config, state, dead_pid)
    assert runtime_index.lookup(config) is None  # killed: its entry stays, but nobody runs the file
    runtime_file.write(state, {"pid": os.getpid(), "config": str(config)})
    other = tmp_path / "other.yaml"
    other.write_text("")
    runtime_index.register(other, state, bridge_pid)
    assert not stale.exists(), "a new daemon prunes the entries of dead ones"
    assert runtime_index.lookup(other) is None, "daemon.json names another process: pid reused or moved"


def test_a_place_others_could_write_is_not_read(tmp_path: Path, index: Path, bridge_pid: int) -> None:
    config, state = _daemon(tmp_path, bridge_pid)
    runtime_index.register(config, state, bridge_pid)
    os.chmod(index, 0o777)
    assert runtime_index.lookup(config) is None
    os.chmod(index, 0o700)
    assert runtime_index.lookup(config) == state
