"""Benchmark the status page's cost: its listener on every invocation, and its JSON answers under load.

(a) per invocation: the metrics the daemon always records (baseline) and the page's listener on top;
(b) a daemon with a failing function and N dead letters: /ui/api/overview, /ui/api/dead-letters and
/bridge/status (baseline) answered while nothing else runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path

try:
    from bench.invoke import pct
except ModuleNotFoundError:  # run as `python bench/ui.py`: its own folder is on sys.path
    from invoke import pct  # type: ignore[no-redef]
from bridge.metrics import Metrics
from bridge.model import InvokeResult
from bridge.testing import Daemon, free_port, wait_until, write_config, write_handler
from bridge.ui.recent import Recent

FAILING = "def handler(event, context):\n    raise ValueError('no')\n"


def per_invocation(n: int) -> dict[str, dict[str, float]]:
    """Nanoseconds per finished invocation: the always-on metrics, then the same with the page's listener."""
    ok, failed = InvokeResult("r", b"{}"), InvokeResult("r", b'{"errorType": "E", "errorMessage": "m"}', "Unhandled")
    metrics, recent = Metrics(), Recent()
    rows = {}
    for name, call in (("metrics only (baseline)", lambda r: metrics.observe_invocation("f", "success", 0.001)),
                       ("page listener, success", lambda r: recent.observe("f", r, 0.001)),
                       ("page listener, failure", None)):
        result = failed if call is None else ok
        call = call or (lambda r: recent.observe("f", r, 0.001))
        start = time.perf_counter_ns()
        for _ in range(n):
            call(result)
        rows[name] = {"ns_per_invocation": (time.perf_counter_ns() - start) / n}
    return rows


def answers(dead_letters: int, requests: int) -> dict[str, dict[str, float]]:
    """Milliseconds per answer from a daemon holding ``dead_letters`` entries."""
    root = Path(tempfile.mkdtemp(prefix="bench-ui-"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    code = write_handler(root, "failing", FAILING)
    path = write_config(root / "config.yaml", {
        "state_dir": str(root / "state"), "api": {"listen": f"127.0.0.1:{port}"}, "log_level": "warning",
        "functions": {"failing": {"handler": "app.handler", "code": str(code), "reserved_concurrency": 4,
                                  "async": {"maximum_retry_attempts": 0}}}})
    with Daemon(path, {"LAMBDA_BRIDGE_LOG_LEVEL": "warning"}):
        for _ in range(dead_letters):
            req = urllib.request.Request(f"{base}/2015-03-31/functions/failing/invocations", data=b"{}",
                                         headers={"X-Amz-Invocation-Type": "Event"})
            urllib.request.urlopen(req, timeout=30).close()
        wait_until(lambda: _get(base, "/bridge/status")["dead_letters"] >= dead_letters, timeout=600, interval=0.5)
        return {f"{path} ({dead_letters} dead letters)": _timed(base, path, requests)
                for path in ("/bridge/status", "/ui/api/overview", "/ui/api/dead-letters")}


def _get(base: str, path: str) -> dict:
    with urllib.request.urlopen(base + path, timeout=30) as resp:
        return json.load(resp)


def _timed(base: str, path: str, n: int) -> dict[str, float]:
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        _get(base, path)
        samples.append((time.perf_counter() - start) * 1000)
    return {"p50_ms": pct(samples, 50), "p99_ms": pct(samples, 99), "mean_ms": statistics.mean(samples)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=200_000, help="invocations observed")
    parser.add_argument("--dead-letters", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    rows = {**per_invocation(args.n), **answers(args.dead_letters, args.requests)}
    for name, row in rows.items():
        figures = "  ".join(f"{k} {v:.3f}" for k, v in row.items())
        print(f"{name:52} {figures}")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "ui.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
