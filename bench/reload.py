"""Benchmark live reload: SIGHUP to READY=1 with 100 sources, and events lost across 20 reloads under load."""

from __future__ import annotations

import json
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import boto3
from botocore.config import Config as BotoConfig

from bridge.testing import PRODUCTION_LOGS, Daemon, free_port, wait_until, write_config, write_handler

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests package holds the recorder handler
from tests.integration.test_async_delivery import RECORDER, records

SOURCES = 100
RELOADS = 20


def make_config(root: Path, port: int, round_: int) -> dict:
    code = write_handler(root, "sink", RECORDER)
    sources = [{"name": f"tick-{i}", "type": "schedule", "schedule": f"rate({2 + (i + round_) % 5} days)",
                "function": "sink"} for i in range(SOURCES)]
    return {"state_dir": str(root / "state"), "api": {"listen": f"127.0.0.1:{port}"}, "log_level": "warning",
            "functions": {"sink": {"handler": "app.handler", "code": str(code), "reserved_concurrency": 2,
                                   "environment": {"RECORD_FILE": str(root / "sink.jsonl"),
                                                   "ROUND": str(round_ // 5)}}},
            "sources": sources}


class Sender(threading.Thread):
    """Event invocations as fast as one client sends them; remembers what got 202."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.client = boto3.client("lambda", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                                   aws_access_key_id="x", aws_secret_access_key="x",
                                   config=BotoConfig(retries={"max_attempts": 0}))
        self.sent: list[int] = []
        self.stop = threading.Event()

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            response = self.client.invoke(FunctionName="sink", InvocationType="Event", Payload=json.dumps({"n": n}))
            if response["StatusCode"] == 202:
                self.sent.append(n)
            n += 1


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="bench-reload-"))
    port = free_port()
    path = write_config(root / "config.yaml", make_config(root, port, 0))
    daemon = Daemon(path, env=PRODUCTION_LOGS).start(timeout=60)
    sender = Sender(port)
    sender.start()
    timings = []
    try:
        for round_ in range(1, RELOADS + 1):
            ready_before = len([n for n in daemon.notifications if "READY=1" in n.splitlines()])
            start = time.perf_counter()
            daemon.signal(signal.SIGHUP)
            daemon.wait_notified("READY=1", count=ready_before + 1, timeout=30)
            timings.append((time.perf_counter() - start) * 1000)
            write_config(path, make_config(root, port, round_))  # the next SIGHUP applies a real change
        sender.stop.set()
        sender.join()
        delivered = wait_until(lambda: (d := {r["event"]["n"] for r in records(root / "sink.jsonl")})
                               >= set(sender.sent) and d, timeout=120)
    finally:
        daemon.stop()
    lost = len(set(sender.sent) - delivered)
    dupes = len([r for r in records(root / "sink.jsonl")]) - len(delivered)
    rows = {"sighup_to_ready_ms_p50": statistics.median(timings), "sighup_to_ready_ms_max": max(timings),
            "reloads": RELOADS, "sources": SOURCES, "events_sent": len(sender.sent), "events_lost": lost,
            "duplicates": dupes}
    print(f"{'figure':34} {'value':>10}   target")
    print(f"{'SIGHUP -> READY p50 (ms)':34} {rows['sighup_to_ready_ms_p50']:>10.1f}   <= 500 (100 sources)")
    print(f"{'SIGHUP -> READY max (ms)':34} {rows['sighup_to_ready_ms_max']:>10.1f}")
    print(f"{'events sent during 20 reloads':34} {rows['events_sent']:>10}")
    print(f"{'events lost':34} {lost:>10}   0")
    print(f"{'duplicates':34} {dupes:>10}")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "reload.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
