"""Benchmark the local invoke path: direct call vs bridge (warm, HTTP, throughput, cold) vs python-lambda-local."""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from bridge import log
from bridge.build.envs import Envs
from bridge.build.readiness import Readiness
from bridge.config.model import parse_config
from bridge.invokers.local import LocalFunction
from bridge.invokers.worker import FunctionSpec
from bridge.model import Invocation
from bridge.testing import PRODUCTION_LOGS, Daemon, free_port, write_config, write_handler

NOOP = "def handler(event, context):\n    return {'ok': True}\n"
EVENT = b'{"key": "value"}'


def pct(samples: list[float], p: float) -> float:
    """The p-th percentile (0-100) of ``samples``."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


def direct(code: Path, n: int) -> dict[str, float]:
    """(a) the floor: the handler called in this process."""
    spec = importlib.util.spec_from_file_location("noop_app", code / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        module.handler(json.loads(EVENT), None)
        samples.append((time.perf_counter() - start) * 1000)
    return {"p50_ms": pct(samples, 50), "p99_ms": pct(samples, 99), "per_s": 1000 / statistics.mean(samples)}


def make_function(code: Path, concurrency: int) -> LocalFunction:
    """The function as the daemon runs it: its environment (Lambda's sys.path, the runtime folder) made ready
    before the first worker starts, in ``code``'s parent's state folder."""
    text = f"functions:\n  noop: {{handler: app.handler, code: '{code}', reserved_concurrency: {concurrency}}}\n"
    cfg = parse_config(text)
    fn = cfg.functions["noop"]
    readiness = Readiness("noop", fn, Envs(code.parent / "state"))  # type: ignore[arg-type]
    return LocalFunction(FunctionSpec("noop", fn, cfg.region, cfg.function_arn("noop")), readiness=readiness)


async def warm_latency(code: Path, n: int) -> dict[str, float]:
    """(b) sequential warm invocations through the pool, runtime API and awslambdaric."""
    fn = make_function(code, 1)
    await fn.invoke(Invocation(EVENT))
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        await fn.invoke(Invocation(EVENT))
        samples.append((time.perf_counter() - start) * 1000)
    await fn.close()
    return {"p50_ms": pct(samples, 50), "p99_ms": pct(samples, 99), "per_s": 1000 / statistics.mean(samples)}


async def throughput(code: Path, seconds: float, workers: int = 2) -> dict[str, float]:
    """(b) invocations/s with ``workers`` warm workers kept busy."""
    fn = make_function(code, workers)
    await asyncio.gather(*(fn.invoke(Invocation(EVENT), wait=True) for _ in range(workers)))
    done = 0
    deadline = time.perf_counter() + seconds

    async def loop() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await fn.invoke(Invocation(EVENT), wait=True)
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(workers * 2)))
    elapsed = time.perf_counter() - start
    await fn.close()
    return {"per_s": done / elapsed, "invocations": done}


async def cold_start(code: Path, n: int) -> dict[str, float]:
    """Cold start: spawn a worker, import awslambdaric and the handler, first invocation answered."""
    samples = []
    for _ in range(n):
        fn = make_function(code, 1)
        start = time.perf_counter()
        await fn.invoke(Invocation(EVENT))
        samples.append((time.perf_counter() - start) * 1000)
        await fn.close()
    return {"p50_ms": pct(samples, 50), "p99_ms": max(samples), "per_s": 1000 / statistics.mean(samples)}


async def http_latency(url: str, n: int) -> dict[str, float]:
    """(b') the same through the daemon's Invoke API over HTTP (keep-alive client)."""
    samples = []
    async with aiohttp.ClientSession() as session:
        for i in range(n + 20):
            start = time.perf_counter()
            async with session.post(f"{url}/2015-03-31/functions/noop/invocations", data=EVENT) as resp:
                await resp.read()
            if i >= 20:
                samples.append((time.perf_counter() - start) * 1000)
    return {"p50_ms": pct(samples, 50), "p99_ms": pct(samples, 99), "per_s": 1000 / statistics.mean(samples)}


def lambda_local(code: Path, n: int) -> dict[str, float]:
    """(c) python-lambda-local: a fresh process per call."""
    exe = shutil.which("python-lambda-local") or str(Path(sys.executable).parent / "python-lambda-local")
    event = code / "event.json"
    event.write_bytes(EVENT)
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        subprocess.run([exe, "-f", "handler", str(code / "app.py"), str(event)], check=True, capture_output=True)
        samples.append((time.perf_counter() - start) * 1000)
    return {"p50_ms": pct(samples, 50), "p99_ms": max(samples), "per_s": 1000 / statistics.mean(samples)}


def idle_rss(root: Path, code: Path) -> float:
    """The daemon's RSS once ready, before any worker exists (MB)."""
    port = free_port()
    config = {"state_dir": str(root / "state"), "api": {"listen": f"127.0.0.1:{port}"},
              "functions": {"noop": {"handler": "app.handler", "code": str(code)}}}
    env = {"PYTHONWARNINGS": "ignore", **PRODUCTION_LOGS}
    with Daemon(write_config(root / "idle.yaml", config), env=env) as daemon:
        return _rss_mb(daemon.proc.pid)


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def http_bench(root: Path, code: Path, n: int) -> dict[str, float]:
    port = free_port()
    config = {"state_dir": str(root / "state"), "api": {"listen": f"127.0.0.1:{port}"},
              "functions": {"noop": {"handler": "app.handler", "code": str(code), "reserved_concurrency": 1}}}
    daemon = Daemon(write_config(root / "http.yaml", config), env=PRODUCTION_LOGS).start()
    try:
        return await http_latency(f"http://127.0.0.1:{port}", n)
    finally:
        daemon.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    log.configure("info", open(os.devnull, "w"), json=True)  # noqa: SIM115 -- logs cost what they cost in production
    root = Path(tempfile.mkdtemp(prefix="bench-invoke-"))
    code = write_handler(root, "noop", NOOP)
    rows = {
        "(a) direct in-process call": direct(code, args.n),
        "(b) bridge warm sync invoke (pool)": asyncio.run(warm_latency(code, args.n)),
        "(b) bridge warm invoke via HTTP API": asyncio.run(http_bench(root, code, args.n)),
        "(b) bridge throughput, 2 workers": asyncio.run(throughput(code, args.seconds)),
        "(c) python-lambda-local": lambda_local(code, 20),
        "cold start (spawn to first answer)": asyncio.run(cold_start(code, 20)),
    }
    rows["daemon idle RSS (MB), no workers"] = {"rss_mb": idle_rss(root, code)}
    report(rows)


def report(rows: dict[str, dict[str, float]]) -> None:
    print(f"{'scenario':40} {'p50 ms':>9} {'p99 ms':>9} {'per s':>10}")
    for name, row in rows.items():
        if "rss_mb" in row:
            print(f"{name:40} {row['rss_mb']:>9.1f} MB")
            continue
        p50, p99 = row.get("p50_ms"), row.get("p99_ms")
        print(f"{name:40} {p50 if p50 is not None else float('nan'):>9.3f} "
              f"{p99 if p99 is not None else float('nan'):>9.3f} {row['per_s']:>10.0f}")
    bridge, peer = rows["(b) bridge warm sync invoke (pool)"], rows["(c) python-lambda-local"]
    print(f"bridge warm vs python-lambda-local per call: {peer['p50_ms'] / bridge['p50_ms']:.0f}x faster")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "invoke.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
