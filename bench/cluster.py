"""Benchmark cluster mode: events/s end to end through the shared queue with 1, 2 and 3 nodes, against the
embedded single-box mode in the same run, and how much of the CPU moto (the stand-in for AWS) takes.

Each scenario posts N Event invocations through the nodes' Invoke APIs (spread across the nodes, 32 at once)
and stops the clock when the no-op handler has recorded all N. Run from the repository root:
``.venv/bin/python bench/cluster.py [--n 1000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from bridge.testing import Daemon, free_port, wait_until, write_config, write_handler

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.integration import moto_atomic  # noqa: E402  (the repository root is on the path only now)

SINK = """
import os
def handler(event, context):
    fd = os.open(os.environ["RECORD_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(fd, b"x\\n")
    os.close(fd)
"""
FAKE_AWS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}
CONCURRENCY = 32
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(session: int) -> float:
    """User + system CPU of every process in a session (a daemon and its workers, or moto)."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == session:  # field 6 of /proc/PID/stat: the session id
            total += int(fields[11]) + int(fields[12])
    return total / TICK


def config(root: Path, moto: str | None) -> Path:
    code = write_handler(root, "sink", SINK)
    cfg: dict[str, Any] = {
        "state_dir": "${STATE}", "api": {"listen": "127.0.0.1:${PORT}"}, "log_level": "warning",
        "functions": {"sink": {"handler": "app.handler", "code": str(code), "reserved_concurrency": 4,
                               "environment": {"RECORD_FILE": str(root / "sink.log")}}}}
    if moto is not None:
        name = f"bench-{uuid.uuid4().hex[:8]}"
        cfg["cluster"] = {"node_id": "${NODE_ID}", "async_queue": f"{moto}/123456789012/{name}", "table": name,
                          "endpoint_url": moto, "lease_seconds": 5}
    return write_config(root / "config.yaml", cfg)


async def post_all(ports: list[int], n: int) -> None:
    """N Event invocations, round-robin over the nodes, CONCURRENCY at a time; every one must be a 202."""
    numbers = iter(range(n))
    async with aiohttp.ClientSession() as http:
        async def sender() -> None:
            for i in numbers:
                url = f"http://127.0.0.1:{ports[i % len(ports)]}/2015-03-31/functions/sink/invocations"
                async with http.post(url, data=json.dumps({"n": i}), headers={"X-Amz-Invocation-Type": "Event"}) as r:
                    assert r.status == 202, await r.text()

        await asyncio.gather(*(sender() for _ in range(CONCURRENCY)))


def lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def scenario(root: Path, nodes: int, n: int, moto: str | None, moto_pid: int | None) -> dict[str, float]:
    root.mkdir(parents=True)
    path = config(root, moto)
    env = FAKE_AWS | {"PYTHONPATH": str(ROOT)}
    if moto is not None:
        subprocess.run([sys.executable, "-m", "bridge.cli", "cluster", "init", "-c", str(path)], check=True,
                       env=os.environ | env | {"NODE_ID": "x", "STATE": str(root), "PORT": "1"}, capture_output=True)
    ports = [free_port() for _ in range(nodes)]
    daemons = [Daemon(path, env=env | {"NODE_ID": f"n{i}", "STATE": str(root / f"s{i}"), "PORT": str(p)})
               for i, p in enumerate(ports)]
    try:
        for daemon in daemons:
            daemon.start(timeout=60)
        asyncio.run(post_all(ports, 2 * nodes))  # warm a worker on each node
        wait_until(lambda: lines(root / "sink.log") >= 2 * nodes, timeout=60)
        sink = root / "sink.log"
        sink.unlink()
        sessions = [d.proc.pid for d in daemons if d.proc] + ([moto_pid] if moto_pid else [])
        cpu_before = {s: cpu_seconds(s) for s in sessions}
        start = time.perf_counter()
        asyncio.run(post_all(ports, n))
        accepted = time.perf_counter() - start
        wait_until(lambda: lines(sink) >= n, timeout=600, interval=0.05)
        elapsed = time.perf_counter() - start
        cpu = {s: cpu_seconds(s) - cpu_before[s] for s in sessions}
    finally:
        for daemon in daemons:
            daemon.stop()
            daemon.kill()
    total_cpu = sum(cpu.values())
    moto_cpu = cpu.get(moto_pid, 0.0) if moto_pid else 0.0
    return {"events_per_s": n / elapsed, "accepted_per_s": n / accepted, "events": n, "seconds": elapsed,
            "cpu_s": total_cpu, "moto_cpu_s": moto_cpu, "moto_cpu_share": moto_cpu / total_cpu if total_cpu else 0.0}


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(moto_atomic.command(port), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            with urllib.request.urlopen(f"{url}/moto-api/", timeout=1):
                return True
        except OSError:
            return False

    wait_until(answers, timeout=30)
    return proc, url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1000, help="events per scenario")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-cluster-", dir=os.environ.get("BENCH_DIR", "/var/tmp")))
    rows = {"embedded single box (baseline)": scenario(root / "embedded", 1, args.n, None, None)}
    proc, moto = start_moto()
    try:
        for nodes in (1, 2, 3):
            rows[f"cluster, {nodes} node(s), moto server"] = scenario(root / f"c{nodes}", nodes, args.n, moto, proc.pid)
    finally:
        proc.terminate()
        proc.wait(10)
    print(f"{args.n} Event invocations through the Invoke API into a no-op handler (2 cores shared by everything)")
    print(f"{'scenario':38} {'events/s':>9} {'accept/s':>9} {'CPU s':>7} {'moto CPU s':>11} {'moto share':>11}")
    for name, row in rows.items():
        print(f"{name:38} {row['events_per_s']:>9.0f} {row['accepted_per_s']:>9.0f} {row['cpu_s']:>7.1f} "
              f"{row['moto_cpu_s']:>11.1f} {row['moto_cpu_share']:>10.0%}")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "cluster.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
