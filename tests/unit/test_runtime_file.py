"""The runtime file: private, atomic, found only while its daemon lives, and why the config file differs."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from bridge import runtime_file


def _info(config: Path, **extra: object) -> dict:
    return {"pid": os.getpid(), "api_url": "http://127.0.0.1:1", "config": str(config),
            "config_sha256": runtime_file.file_digest(config), **extra}


def test_written_private_and_removed_only_by_its_owner(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("a: 1\n")
    old = os.umask(0)
    try:
        runtime_file.write(tmp_path, _info(config))
    finally:
        os.umask(old)
    path = runtime_file.runtime_path(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == [], "no temporary file left"
    runtime_file.remove(tmp_path, os.getpid() + 1)
    assert path.exists(), "another daemon's file stays"
    runtime_file.remove(tmp_path, os.getpid())
    assert not path.exists()


def test_found_only_while_the_process_lives(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("a: 1\n")
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    runtime_file.write(tmp_path, _info(config, pid=int(gone.stdout)))
    assert runtime_file.find(tmp_path) is None
    runtime_file.write(tmp_path, _info(config, pid=1))  # alive, but not a bridge (init)
    assert runtime_file.find(tmp_path) is None or b"bridge" in Path("/proc/1/cmdline").read_bytes()


def test_drift_says_why_the_file_is_not_what_runs(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("a: 1\n")
    info = _info(config)
    daemon = runtime_file.RunningDaemon(os.getpid(), None, str(config), info["config_sha256"], info)
    assert daemon.drift() is None
    config.write_text("a: [\n")
    assert "changed since the daemon" in runtime_file.RunningDaemon(os.getpid(), None, str(config),
                                                                       info["config_sha256"], info).drift()
    rejected = {**info, "reload": {"result": "invalid", "config_sha256": runtime_file.file_digest(config),
                                   "problems": ["line 1: not valid YAML"]}}
    drift = runtime_file.RunningDaemon(os.getpid(), None, str(config), info["config_sha256"], rejected).drift()
    assert "has errors, so the daemon" in drift and "line 1: not valid YAML" in drift
    restart = {**info, "config_sha256": runtime_file.file_digest(config),
               "reload": {"result": "applied", "needs_restart": ["api"]}}
    drift = runtime_file.RunningDaemon(os.getpid(), None, str(config), restart["config_sha256"], restart).drift()
    assert "previous api settings" in drift and "restart" in drift


def test_a_bind_error_inside_the_task_groups_becomes_one_line() -> None:
    """When the port is taken between the pre-check and aiohttp's bind, `run` still prints one line."""
    import errno

    from bridge.cli.run import _start_error
    from bridge.errors import ListenError

    inner = OSError(errno.EADDRINUSE, "error while attempting to bind on address ('127.0.0.1', 9001): in use")
    group = BaseExceptionGroup("unhandled errors in a TaskGroup", [ExceptionGroup("inner", [inner])])
    error = _start_error(group, "127.0.0.1:9001")
    assert isinstance(error, ListenError) and error.exit_code == 2
    assert str(error) == ("api.listen: cannot listen on 127.0.0.1:9001: address already in use; another process "
                          "listens there: stop it, or change api.listen")
    assert _start_error(BaseExceptionGroup("x", [RuntimeError("other")]), "127.0.0.1:9001") is None
