"""Benchmark the logs source: lines/s through a 1 %-matching filter (beside grep -F), write -> handler-start
latency at 1,000 lines/s, and the CPU an idle source watching 100 files costs.

    .venv/bin/python bench/logs.py [--lines 1000000] [--rate 1000] [--seconds 10]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bridge.testing import Daemon, wait_until, write_config, write_handler

# Decodes the event (as a real subscriber would) and notes: its start time, and each message's write time.
HANDLER = """
import base64, gzip, json, os, time
FD = os.open(os.environ["RECORD_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
def handler(event, context):
    started = time.time()
    data = json.loads(gzip.decompress(base64.b64decode(event["awslogs"]["data"])))
    out = "".join(f"{started} {e['message'].rsplit(' ', 1)[-1]}\\n" for e in data["logEvents"])
    os.write(FD, out.encode())
"""
NEEDLE = "NEEDLE"


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (not its children: the workers are not the source)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def count(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def setup(root: Path, path: str, **source: object) -> tuple[Path, Path]:
    record = root / "out" / "record.txt"
    record.parent.mkdir(parents=True, exist_ok=True)
    code = write_handler(root, "sink", HANDLER)
    config = write_config(root / "config.yaml", {
        "state_dir": str(root / "state"), "log_level": "warning",
        "functions": {"sink": {"handler": "app.handler", "code": str(code), "reserved_concurrency": 2,
                               "environment": {"RECORD_FILE": str(record)}}},
        "sources": [{"name": "bench", "type": "logs", "path": path, "function": "sink", **source}],
    })
    return config, record


def throughput(root: Path, lines: int) -> dict[str, float]:
    """A file of ``lines`` lines, 1 % matching, read from its start by a fresh daemon; grep -F on the same file."""
    logs = root / "logs"
    logs.mkdir(parents=True)
    log = logs / "app.log"
    with open(log, "w") as f:
        for n in range(lines):
            kind = NEEDLE if n % 100 == 0 else "INFO"
            f.write(f"2026-12-07T10:00:00.{n % 1000:03d}Z {kind} request handled path=/api/items/{n} status=200 {n}\n")
    size = log.stat().st_size
    start = time.perf_counter()
    grep = subprocess.run(["grep", "-F", "-c", NEEDLE, str(log)], capture_output=True, text=True, check=True)
    grep_s = time.perf_counter() - start
    matching = int(grep.stdout)
    config, record = setup(root, str(log), filter_pattern=NEEDLE, start_position="beginning")
    with Daemon(config, env={"LAMBDA_BRIDGE_LOG_LEVEL": "warning"}) as daemon:
        assert daemon.proc is not None
        cpu0, start = cpu_seconds(daemon.proc.pid), time.perf_counter()
        wait_until(lambda: count(record) >= matching, timeout=600, interval=0.02)
        elapsed, cpu = time.perf_counter() - start, cpu_seconds(daemon.proc.pid) - cpu0
    return {"lines": lines, "mb": size / 1e6, "seconds": elapsed, "lines_per_s": lines / elapsed,
            "daemon_cpu_s": cpu, "grep_s": grep_s, "grep_lines_per_s": lines / grep_s}


def latency(root: Path, rate: int, seconds: float) -> dict[str, float]:
    """Lines appended at ``rate``/s, each carrying its write time; every one matches."""
    logs = root / "logs"
    logs.mkdir(parents=True)
    log = logs / "app.log"
    log.touch()
    config, record = setup(root, str(log), filter_pattern=NEEDLE)
    total = int(rate * seconds)
    with Daemon(config, env={"LAMBDA_BRIDGE_LOG_LEVEL": "warning"}):
        with open(log, "a", buffering=1) as f:
            start = time.perf_counter()
            for n in range(total):
                delay = start + n / rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)  # pacing the writer at the target rate (not synchronisation)
                f.write(f"{NEEDLE} line {n} {time.time()}\n")
        wait_until(lambda: count(record) >= total, timeout=120, interval=0.05)
    samples = sorted(float(a) - float(b) for a, b in (line.split() for line in record.read_text().splitlines()))
    return {"lines": total, "p50_ms": 1000 * statistics.median(samples),
            "p99_ms": 1000 * samples[int(0.99 * (len(samples) - 1))], "max_ms": 1000 * samples[-1]}


def idle(root: Path, files: int, seconds: float) -> dict[str, float]:
    """A source watching ``files`` files that nobody writes: the daemon's CPU over ``seconds``."""
    logs = root / "logs"
    logs.mkdir(parents=True)
    for n in range(files):
        (logs / f"f{n:03d}.log").write_text(f"line of file {n}\n")
    config, _ = setup(root, str(logs / "*.log"))
    with Daemon(config, env={"LAMBDA_BRIDGE_LOG_LEVEL": "warning"}) as daemon:
        assert daemon.proc is not None
        time.sleep(1.0)  # the start's own work settles before the measured window
        cpu0 = cpu_seconds(daemon.proc.pid)
        stop = threading.Event()
        stop.wait(seconds)
        cpu = cpu_seconds(daemon.proc.pid) - cpu0
    return {"files": files, "seconds": seconds, "daemon_cpu_s": cpu, "cpu_percent": 100 * cpu / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        t = throughput(Path(tmp) / "a", args.lines)
        print(f"throughput: {t['lines']:,} lines ({t['mb']:.0f} MB), 1 % matching: {t['lines_per_s']:,.0f} lines/s "
              f"({t['seconds']:.2f} s, daemon CPU {t['daemon_cpu_s']:.2f} s); grep -F: {t['grep_lines_per_s']:,.0f} "
              f"lines/s ({t['grep_s']:.3f} s)   [target >= 50,000 lines/s]")
        lat = latency(Path(tmp) / "b", args.rate, args.seconds)
        print(f"latency at {args.rate} lines/s ({lat['lines']:,} lines): write -> handler start p50 "
              f"{lat['p50_ms']:.1f} ms, p99 {lat['p99_ms']:.1f} ms, max {lat['max_ms']:.1f} ms   [target p50 <= 50 ms]")
        i = idle(Path(tmp) / "c", 100, args.seconds)
        print(f"idle: {i['files']} files watched for {i['seconds']:.0f} s: daemon CPU {i['daemon_cpu_s']:.3f} s "
              f"({i['cpu_percent']:.2f} %)   [target ~0]")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
