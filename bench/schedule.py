"""Benchmark schedules: lateness of fires (scheduled second -> handler start), and start-up with 10,000 schedules."""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import tempfile
import threading
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

from bridge.testing import PRODUCTION_LOGS, Daemon, free_port, wait_until, write_config, write_handler

RECORD = """
    import json, os, time
    def handler(event, context):
        started = time.time()
        if event.get("warm"):
            time.sleep(0.3)  # overlapping warm-up calls make the bridge start every worker
            return None
        line = json.dumps({"time": event.get("time"), "started": started}) + "\\n"
        fd = os.open(os.environ["RECORD_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        os.write(fd, line.encode())
        os.close(fd)
"""


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]


def _function(root: Path, workers: int) -> dict:
    code = write_handler(root, "record", RECORD)
    return {"handler": "app.handler", "code": str(code), "reserved_concurrency": workers,
            "environment": {"RECORD_FILE": str(root / "seen.jsonl")}}


def _warm(port: int, workers: int) -> None:
    def call() -> None:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/2015-03-31/functions/fn/invocations",
                                         data=b'{"warm": true}', method="POST")
        urllib.request.urlopen(request, timeout=30).read()

    threads = [threading.Thread(target=call) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def lateness(root: Path, fires: int, spread: int, workers: int) -> dict:
    """``fires`` at() schedules over ``spread`` seconds; handler start minus the scheduled second."""
    port = free_port()
    first = math.ceil(time.time()) + 6
    times = [first + i * spread // fires for i in range(fires)]
    sources = [{"name": f"s{i}", "type": "schedule", "function": "fn",
                "schedule": f"at({datetime.fromtimestamp(t, UTC):%Y-%m-%dT%H:%M:%S})"} for i, t in enumerate(times)]
    config = write_config(root / "lateness.yaml", {
        "state_dir": str(root / "lateness"), "api": {"listen": f"127.0.0.1:{port}"},
        "functions": {"fn": _function(root, workers)}, "sources": sources})
    with Daemon(config, env=PRODUCTION_LOGS) as daemon:
        _warm(port, workers)
        if time.time() >= first:
            raise SystemExit("start-up and warm-up took longer than the 6 s lead; the machine is too busy")
        seen_path = root / "seen.jsonl"
        wait_until(lambda: seen_path.exists() and len(seen_path.read_text().splitlines()) >= fires,
                   timeout=spread + 60, interval=0.2)
        woke = [e["late_s"] * 1000 for e in daemon.find("schedule.fired")]
    starts = [json.loads(line) for line in seen_path.read_text().splitlines()]
    late = [(s["started"] - datetime.fromisoformat(s["time"].replace("Z", "+00:00")).timestamp()) * 1000
            for s in starts]
    return {"fires": len(late), "workers": workers, "p50_ms": percentile(late, 50), "p99_ms": percentile(late, 99),
            "max_ms": max(late), "mean_ms": statistics.fmean(late),
            "enqueue_p50_ms": percentile(woke, 50), "enqueue_p99_ms": percentile(woke, 99)}


def startup(root: Path, count: int) -> dict:
    """``count`` cron schedules: time to READY=1, time until every schedule is armed, and RSS then.

    The year 2199 keeps them from firing while we measure: only loading and arming is timed.
    """
    sources = [{"name": f"job-{i}", "type": "schedule", "function": "fn", "timezone": "Europe/Berlin",
                "schedule": f"cron({i % 60} {i // 60 % 24} ? * MON-FRI 2199)"} for i in range(count)]
    config = write_config(root / "startup.yaml", {
        "state_dir": str(root / "startup"), "functions": {"fn": _function(root, 1)}, "sources": sources})
    begin = time.monotonic()
    daemon = Daemon(config, env=PRODUCTION_LOGS).start(timeout=300)
    try:
        ready = time.monotonic() - begin
        wait_until(lambda: len(daemon.find("schedule.armed")) >= count, timeout=300, interval=0.25)
        armed = time.monotonic() - begin
        rss = _rss_mb(daemon.proc.pid)  # type: ignore[union-attr]
    finally:
        daemon.stop(300)
    return {"schedules": count, "ready_s": ready, "all_armed_s": armed, "rss_mb": rss}


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fires", type=int, default=120)
    parser.add_argument("--spread", type=int, default=30, help="seconds the fires are spread over")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--schedules", type=int, default=10_000)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-schedule-", dir=os.environ.get("BENCH_DIR", "/var/tmp")))
    late = lateness(root, args.fires, args.spread, args.workers)
    start = startup(root, args.schedules)
    print(f"{'lateness (scheduled second -> handler start)':46} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    print(f"{'handler start, ' + str(late['fires']) + ' fires, ' + str(late['workers']) + ' warm workers':46} "
          f"{late['p50_ms']:>8.1f} {late['p99_ms']:>8.1f} {late['max_ms']:>8.1f}")
    print(f"{'  of which: fire handed to the queue (fsynced)':46} {late['enqueue_p50_ms']:>8.1f} "
          f"{late['enqueue_p99_ms']:>8.1f}")
    print(f"{'start-up':46} {'READY s':>8} {'armed s':>8} {'RSS MB':>8}")
    print(f"{str(start['schedules']) + ' cron schedules':46} {start['ready_s']:>8.2f} {start['all_armed_s']:>8.2f} "
          f"{start['rss_mb']:>8.1f}")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "schedule.json").write_text(json.dumps({"lateness": late, "startup": start}, indent=2))


if __name__ == "__main__":
    main()
