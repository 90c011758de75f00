"""The memory limits' parts on real processes: the watch's tree sum and pace, the cgroup lookup, exit wording."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from bridge.invokers import memory
from bridge.invokers.memory import MAX_INTERVAL, MB, MIN_INTERVAL, ResidentWatch, own_cgroup
from bridge.invokers.worker import _exec_failure

HOLD = "import sys, time; b = bytearray(int(sys.argv[1]) * 1024 * 1024); print('ready', flush=True); time.sleep(60)"


def _holder(mb: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(mb)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    return proc


def test_the_watch_sums_the_worker_and_its_descendants() -> None:
    """A parent holding little whose child holds 64 MB: the watch of the parent sees both."""
    parent = subprocess.Popen([sys.executable, "-c", f"import subprocess, sys; p = subprocess.Popen([sys.executable, "
                               f"'-c', {HOLD!r}, '64']); p.wait()"], stdout=subprocess.PIPE, text=True,
                              start_new_session=True)
    try:
        assert parent.stdout is not None and parent.stdout.readline() == "ready\n"  # the child's
        watch = ResidentWatch(128, lambda: None)
        watch.adopt(parent.pid)
        own = int(Path(f"/proc/{parent.pid}/statm").read_text().split()[1]) * memory.PAGE
        assert watch.resident() >= own + 64 * MB
    finally:
        os.killpg(parent.pid, signal.SIGKILL)  # the parent and the child it started
        parent.wait()


def test_a_gone_worker_reads_as_none_and_the_peak_stays() -> None:
    proc = _holder(16)
    watch = ResidentWatch(128, lambda: None)
    watch.adopt(proc.pid)
    seen = watch.resident()
    assert seen is not None and seen >= 16 * MB
    proc.kill()
    proc.wait()
    assert watch.resident() is None
    watch.release()


def test_the_pace_quickens_near_the_limit_within_its_bounds() -> None:
    watch = ResidentWatch(128, lambda: None)
    assert watch._pace(0) == 128 * MB / memory.FILL_BYTES_PER_S
    assert watch._pace(127 * MB) == MIN_INTERVAL
    assert ResidentWatch(10240, lambda: None)._pace(0) == MAX_INTERVAL


def test_peak_is_the_larger_of_the_process_mark_and_the_tree_seen() -> None:
    watch = ResidentWatch(128, lambda: None)
    assert watch.peak_mb(None) is None and watch.peak_mb(40) == 40
    watch._peak = 90 * MB
    assert watch.peak_mb(40) == 90 and watch.peak_mb(None) == 90 and watch.peak_mb(120) == 120


def test_own_cgroup_is_this_process_s_v2_directory() -> None:
    path = own_cgroup()
    assert (path / "cgroup.procs").is_file()
    assert str(os.getpid()) in (path / "cgroup.procs").read_text().split()


def test_an_exec_failure_is_worded_as_lambda_words_it() -> None:
    line = "setpriv: failed to execute /srv/fn/bootstrap: No such file or directory"
    assert _exec_failure(line) == "fork/exec /srv/fn/bootstrap: no such file or directory"
    assert _exec_failure("setpriv: failed to execute /a: b: Permission denied") == "fork/exec /a: b: permission denied"
    assert _exec_failure("exit 127 from the handler itself") is None
