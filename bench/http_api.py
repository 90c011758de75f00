"""Benchmark the http source: one FastAPI app (a) under uvicorn, (b) behind the http source through Mangum,
(c) python-lambda-local per request; requests/s and p50/p99 at concurrency 1 and 16, 2 workers each."""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import aiohttp

from bridge.sources.http.events import sample_event
from bridge.testing import Daemon, free_port, wait_until, write_config

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "examples" / "http"
PATH = "/items/42?q=x&tag=a&tag=b"
EXPECTED = {"item_id": 42, "q": "x", "tags": ["a", "b"]}


async def load(url: str, concurrency: int, requests: int) -> dict[str, float]:
    """``requests`` GETs of ``url`` from ``concurrency`` clients back to back; every answer is checked."""
    latencies: list[float] = []
    remaining = iter(range(requests))
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def client() -> None:
            for _ in remaining:
                start = time.perf_counter()
                async with session.get(url) as response:
                    body = await response.read()
                latencies.append(time.perf_counter() - start)
                if response.status != 200 or json.loads(body) != EXPECTED:
                    raise AssertionError(f"{url}: {response.status} {body[:200]!r}")

        for _ in range(min(50, requests)):  # warm-up: workers started, connections open
            async with session.get(url) as response:
                await response.read()
        start = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    return _summary(latencies, elapsed)


def _summary(latencies: list[float], elapsed: float) -> dict[str, float]:
    ordered = sorted(latencies)
    return {"requests": len(ordered), "per_s": len(ordered) / elapsed,
            "p50_ms": statistics.median(ordered) * 1000, "p99_ms": ordered[int(len(ordered) * 0.99) - 1] * 1000}


def uvicorn_server(port: int) -> subprocess.Popen[bytes]:
    """(a) the floor: the same app served directly by uvicorn with 2 worker processes."""
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "fastapi_app:app", "--port", str(port), "--workers",
                             "2", "--log-level", "warning", "--no-access-log"], cwd=APP)
    wait_until(lambda: _answers(f"http://127.0.0.1:{port}{PATH}"), timeout=30)
    return proc


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except OSError:
        return False


def bridge_config(root: Path, port: int) -> Path:
    """(b) the http source (format http, $default) in front of the app through Mangum, 2 warm workers."""
    return write_config(root / "config.yaml", {
        "state_dir": str(root / "state"), "log_level": "warning",
        "functions": {"app": {"handler": "fastapi_app.handler", "code": str(APP), "reserved_concurrency": 2,
                              "memory_size": 512}},
        "sources": [{"name": "api", "type": "http", "listen": f"127.0.0.1:{port}", "function": "app"}]})


async def lambda_local(root: Path, concurrency: int, requests: int) -> dict[str, float]:
    """(c) the peer: python-lambda-local, one process per request (how it runs), the same event each time."""
    event = root / "event.json"
    path, _, query = PATH.partition("?")
    event.write_text(json.dumps(sample_event("http", "GET", path, query)))
    latencies: list[float] = []
    remaining = iter(range(requests))

    async def client() -> None:
        for _ in remaining:
            start = time.perf_counter()
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "lambda_local", "-f", "handler", "-t", "30", str(APP / "fastapi_app.py"),
                str(event), cwd=APP, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
            out, _ = await proc.communicate()
            latencies.append(time.perf_counter() - start)
            if proc.returncode != 0 or b"item_id" not in out:
                raise AssertionError(out[-500:])

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return _summary(latencies, time.perf_counter() - start)


async def run(requests: int, peer_requests: int) -> dict[str, dict[str, float]]:
    rows: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        port = free_port()
        proc = uvicorn_server(port)
        try:
            for c in (1, 16):
                rows[f"(a) uvicorn, c={c}"] = await load(f"http://127.0.0.1:{port}{PATH}", c, requests)
        finally:
            proc.terminate()
            proc.wait(10)
        port = free_port()
        with Daemon(bridge_config(root, port)):
            for c in (1, 16):
                rows[f"(b) lambda-bridge http + Mangum, c={c}"] = await load(f"http://127.0.0.1:{port}{PATH}", c,
                                                                             requests)
        for c in (1, 16):
            rows[f"(c) python-lambda-local, c={c}"] = await lambda_local(root, c, peer_requests)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000, help="requests per scenario for (a) and (b)")
    parser.add_argument("--peer-requests", type=int, default=32, help="requests per scenario for (c)")
    args = parser.parse_args()
    rows = asyncio.run(run(args.requests, args.peer_requests))
    print(f"{'scenario':42} {'req/s':>9} {'p50 ms':>9} {'p99 ms':>9}")
    for name, row in rows.items():
        print(f"{name:42} {row['per_s']:>9.1f} {row['p50_ms']:>9.2f} {row['p99_ms']:>9.2f}")
    for c in (1, 16):
        a, b = rows[f"(a) uvicorn, c={c}"], rows[f"(b) lambda-bridge http + Mangum, c={c}"]
        print(f"c={c}: (b) p50 - (a) p50 = {b['p50_ms'] - a['p50_ms']:+.2f} ms; "
              f"(b) req/s = {100 * b['per_s'] / a['per_s']:.0f} % of (a)")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "http_api.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
