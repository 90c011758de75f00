"""The delivery summary line and the log-level override: what the journal gets instead of per-event lines."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from bridge.delivery.summary import Summary


class Recorder:
    def __init__(self) -> None:
        self.lines: list[tuple[str, dict[str, Any]]] = []

    def info(self, event: str, **keys: Any) -> None:
        self.lines.append((event, keys))


def test_summary_counts_outcomes_and_starts_again_after_each_line() -> None:
    log = Recorder()
    summary = Summary(log, depth=lambda: 7)
    for outcome in ["succeeded"] * 30 + ["failed", "retried", "throttled"]:
        summary.count(outcome)
    summary.emit(10.0, 7)
    summary.count("succeeded")
    summary.emit(5.0, 0)
    (first, a), (second, b) = log.lines
    assert first == second == "delivery.summary"
    assert a == {"events_per_s": 3.1, "queue_depth": 7, "interval_s": 10.0, "succeeded": 30, "failed": 1,
                 "retried": 1, "throttled": 1}
    assert b["succeeded"] == 1 and b["failed"] == 0 and b["events_per_s"] == 0.2


def test_an_unknown_log_level_override_is_a_usage_error(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"state_dir: '{tmp_path / 'state'}'\nfunctions: {{}}\n")
    result = subprocess.run([sys.executable, "-m", "bridge.cli", "run", "--config", str(config)],
                            capture_output=True, text=True, timeout=60, check=False,
                            env={"LAMBDA_BRIDGE_LOG_LEVEL": "loud", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 2, result.stderr
    assert "LAMBDA_BRIDGE_LOG_LEVEL='loud'" in result.stderr and "debug, info, warning, error" in result.stderr
