"""Benchmark remote invocation: RemoteFunction (aiobotocore) vs boto3 in a thread pool, against the bridge's API."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
from botocore.config import Config as BotoConfig

from bridge import log
from bridge.config.model import RemoteFunctionConfig, parse_config
from bridge.invokers.remote import RemoteFunction
from bridge.model import Invocation
from bridge.testing import PRODUCTION_LOGS, Daemon, free_port, write_config, write_handler

NOOP = "def handler(event, context):\n    return {'ok': True}\n"
EVENT = b'{"key": "value"}'
ARN = "arn:aws:lambda:us-east-1:000000000000:function:noop"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"}  # the bridge does not check them


def pct(samples: list[float], p: float) -> float:
    """The p-th percentile (0-100) of ``samples``."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


def summary(samples: list[float], elapsed: float, cpu: float) -> dict[str, float]:
    """Throughput and latency of one run (``samples`` in ms); ``cpu``: this process's CPU seconds.

    Client CPU per call is the figure least disturbed by a busy machine: it is what the client itself costs.
    """
    return {"per_s": len(samples) / elapsed, "p50_ms": pct(samples, 50), "p99_ms": pct(samples, 99),
            "client_cpu_ms": cpu * 1000 / max(1, len(samples)), "invocations": len(samples)}


async def bridge_client(url: str, concurrency: int, seconds: float) -> dict[str, float]:
    """RemoteFunction (one aiobotocore client) with ``concurrency`` callers for ``seconds``."""
    text = json.dumps({"functions": {"noop": {"arn": ARN, "endpoint_url": url, "max_concurrency": concurrency}}})
    cfg = parse_config(text).functions["noop"]
    assert isinstance(cfg, RemoteFunctionConfig)
    fn = RemoteFunction("noop", cfg)
    samples: list[float] = []

    async def caller(deadline: float) -> None:
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            result = await fn.invoke(Invocation(EVENT), wait=True)
            samples.append((time.perf_counter() - start) * 1000)
            assert result.ok, result.payload

    try:
        await asyncio.gather(*(caller(time.perf_counter() + 1.0) for _ in range(concurrency)))  # warm-up
        samples.clear()
        start, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(caller(start + seconds) for _ in range(concurrency)))
        return summary(samples, time.perf_counter() - start, time.process_time() - cpu)
    finally:
        await fn.close()


def boto3_threads(url: str, concurrency: int, seconds: float) -> dict[str, float]:
    """The baseline: boto3's synchronous client shared by ``concurrency`` threads."""
    client = boto3.client("lambda", endpoint_url=url, region_name="us-east-1", config=BotoConfig(
        retries={"total_max_attempts": 1}, max_pool_connections=max(10, concurrency)))
    samples: list[float] = []

    def caller(deadline: float) -> None:
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            response = client.invoke(FunctionName=ARN, Payload=EVENT)
            response["Payload"].read()
            samples.append((time.perf_counter() - start) * 1000)

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(caller, [time.perf_counter() + 1.0] * concurrency))  # warm-up
        samples.clear()
        start, cpu = time.perf_counter(), time.process_time()
        list(pool.map(caller, [start + seconds] * concurrency))
        return summary(samples, time.perf_counter() - start, time.process_time() - cpu)


def run(root: Path, seconds: float) -> dict[str, dict[str, float]]:
    """Start a daemon with a no-op function (16 workers) and measure both clients at concurrency 1 and 16."""
    code = write_handler(root, "noop", NOOP)
    port = free_port()
    config = {"state_dir": str(root / "state"), "log_level": "warning", "api": {"listen": f"127.0.0.1:{port}"},
              "functions": {"noop": {"handler": "app.handler", "code": str(code), "reserved_concurrency": 16}}}
    url = f"http://127.0.0.1:{port}"
    rows: dict[str, dict[str, float]] = {}
    with Daemon(write_config(root / "bench.yaml", config), env=PRODUCTION_LOGS):
        for concurrency in (1, 16):
            rows[f"bridge RemoteFunction, concurrency {concurrency}"] = asyncio.run(
                bridge_client(url, concurrency, seconds))
            rows[f"boto3 in threads, concurrency {concurrency}"] = boto3_threads(url, concurrency, seconds)
    return rows


def report(rows: dict[str, dict[str, float]]) -> None:
    """Print the table and write bench/results/remote.json."""
    print(f"{'client':40} {'per s':>9} {'p50 ms':>9} {'p99 ms':>9} {'client CPU ms/call':>19}")
    for name, row in rows.items():
        print(f"{name:40} {row['per_s']:>9.0f} {row['p50_ms']:>9.2f} {row['p99_ms']:>9.2f} "
              f"{row['client_cpu_ms']:>19.2f}")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "remote.json").write_text(json.dumps(rows, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    os.environ.update({k: os.environ.get(k, v) for k, v in CREDENTIALS.items()})
    log.configure("warning", open(os.devnull, "w"), json=True)  # noqa: SIM115 -- as in production, logs cost
    report(run(Path(tempfile.mkdtemp(prefix="bench-remote-")), args.seconds))


if __name__ == "__main__":
    main()
