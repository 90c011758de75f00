"""Benchmark the S3 API: GetObject and PutObject of 4 KB and 1 MB objects through boto3 against (a) the bridge,
(b) moto's server (what a user would otherwise reach for), (c) aiohttp serving the same files as static files
(the floor, GETs only); requests/s and p50/p99 at one concurrency, in one run. Then the daemon's peak memory
around a large upload and download (it must not grow with the object: bodies are streamed).

Targets (issue 25): the bridge >= 5x moto's requests/s; >= 0.5x the floor for 1 MB GETs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
from aiohttp import web
from botocore.config import Config as BotoConfig

from bridge.testing import PRODUCTION_LOGS, Daemon, free_port, moto_server, write_config

SIZES = {"4 KB": 4096, "1 MB": 1 << 20}
BUCKET = "bench"


def client(endpoint: str, concurrency: int) -> Any:
    """One boto3 S3 client (thread-safe) with a connection per worker thread."""
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="bench",
                        aws_secret_access_key="bench",
                        config=BotoConfig(retries={"max_attempts": 0}, max_pool_connections=concurrency,
                                          s3={"addressing_style": "path"}))


def run(call: Callable[[int], None], requests: int, concurrency: int) -> dict[str, float]:
    """``requests`` calls of ``call(i)`` from ``concurrency`` threads; requests/s and latency quantiles."""
    for i in range(min(concurrency * 2, requests)):  # warm-up: connections opened, caches filled
        call(i)
    latencies: list[float] = []

    def timed(i: int) -> None:
        start = time.perf_counter()
        call(i)
        latencies.append((time.perf_counter() - start) * 1000)

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(timed, range(requests)))
    elapsed = time.perf_counter() - start
    q = statistics.quantiles(latencies, n=100)
    return {"req_per_s": requests / elapsed, "p50_ms": q[49], "p99_ms": q[98], "requests": requests}


def scenarios(s3: Any, requests: int, concurrency: int, *, puts: bool = True) -> dict[str, dict[str, float]]:
    """GET (and PUT) rows for each size against one endpoint (objects ``obj-<size>`` exist)."""
    rows = {}
    for label, size in SIZES.items():
        count = requests if size < (1 << 20) else max(requests // 4, concurrency * 4)

        def get(_: int, key: str = f"obj-{size}", size: int = size) -> None:
            body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
            assert len(body) == size

        rows[f"GET {label}"] = run(get, count, concurrency)
        if puts:
            data = os.urandom(size)
            rows[f"PUT {label}"] = run(lambda i, data=data, size=size: s3.put_object(
                Bucket=BUCKET, Key=f"put-{size}-{i % 50}", Body=data), count, concurrency)
    return rows


def seed(folder: Path) -> None:
    """The GET objects, as files."""
    (folder / BUCKET).mkdir(parents=True, exist_ok=True)
    for size in SIZES.values():
        (folder / BUCKET / f"obj-{size}").write_bytes(os.urandom(size))


def bridge(root: Path, requests: int, concurrency: int, big_mb: int) -> tuple[dict[str, Any], dict[str, Any]]:
    seed(root / "bridge")
    port = free_port()
    config = write_config(root / "bridge.yaml", {
        "state_dir": str(root / "state"), "log_level": "warning", "api": {"listen": f"127.0.0.1:{port}"},
        "buckets": {BUCKET: str(root / "bridge" / BUCKET)}})
    with Daemon(config, env=PRODUCTION_LOGS) as daemon:
        endpoint = f"http://127.0.0.1:{port}"
        rows = scenarios(client(endpoint, concurrency), requests, concurrency)
        assert daemon.proc is not None
        memory = big_object(client(endpoint, 4), root, daemon.proc.pid, big_mb)
    return rows, memory


def big_object(s3: Any, root: Path, pid: int, megabytes: int) -> dict[str, Any]:
    """The daemon's peak RSS before and after uploading and downloading one ``megabytes`` object."""
    before = peak_rss_mb(pid)
    path = root / "big.bin"
    with open(path, "wb") as out:
        for _ in range(megabytes):
            out.write(os.urandom(1 << 20))
    start = time.perf_counter()
    s3.upload_file(str(path), BUCKET, "big.bin")  # multipart, 8 MB parts
    uploaded = time.perf_counter() - start
    path.unlink()
    start = time.perf_counter()
    s3.download_file(BUCKET, "big.bin", str(path))
    downloaded = time.perf_counter() - start
    assert path.stat().st_size == megabytes << 20
    path.unlink()
    return {"object_mb": megabytes, "daemon_peak_rss_before_mb": before, "daemon_peak_rss_after_mb": peak_rss_mb(pid),
            "upload_s": uploaded, "download_s": downloaded}


def peak_rss_mb(pid: int) -> float:
    """VmHWM of a process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def moto(root: Path, requests: int, concurrency: int) -> dict[str, Any]:
    port = free_port()
    with moto_server([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]) as endpoint:
        s3 = client(endpoint, concurrency)
        s3.create_bucket(Bucket=BUCKET)
        for size in SIZES.values():
            s3.put_object(Bucket=BUCKET, Key=f"obj-{size}", Body=os.urandom(size))
        return scenarios(s3, requests, concurrency)


@contextmanager
def static_files(folder: Path) -> Iterator[str]:
    """aiohttp's static file handler (sendfile) on the same files, in a thread of its own."""
    port = free_port()
    ready = threading.Event()
    loop = asyncio.new_event_loop()

    async def serve() -> web.AppRunner:
        app = web.Application()
        app.router.add_static(f"/{BUCKET}", folder / BUCKET)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        return runner

    def main() -> None:
        asyncio.set_event_loop(loop)
        runner = loop.run_until_complete(serve())
        ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    ready.wait(10)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def floor(root: Path, requests: int, concurrency: int) -> dict[str, Any]:
    """The static-file floor in a separate process, so it does not share this client's GIL."""
    seed(root / "static")
    done = subprocess.run([sys.executable, __file__, "--floor-only", str(root / "static"), "--requests",
                           str(requests), "--concurrency", str(concurrency)], capture_output=True, text=True,
                          check=True, timeout=600)
    return json.loads(done.stdout)


def floor_only(folder: Path, requests: int, concurrency: int) -> None:
    """Serve ``folder`` in a child process and measure GETs from this one; prints the rows as JSON."""
    child = subprocess.Popen([sys.executable, __file__, "--serve-static", str(folder)], stdout=subprocess.PIPE,
                             text=True)
    assert child.stdout is not None
    endpoint = child.stdout.readline().strip()
    try:
        print(json.dumps(scenarios(client(endpoint, concurrency), requests, concurrency, puts=False)))
    finally:
        child.terminate()
        child.wait(10)


def serve_static(folder: Path) -> None:
    with static_files(folder) as endpoint:
        print(endpoint, flush=True)
        threading.Event().wait()


def table(results: dict[str, dict[str, Any]]) -> None:
    print(f"{'target':22} {'operation':10} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    for target, rows in results.items():
        for op, row in rows.items():
            print(f"{target:22} {op:10} {row['req_per_s']:>9.0f} {row['p50_ms']:>8.2f} {row['p99_ms']:>8.2f}")
    b, m, f = results["bridge"], results["moto server"], results["static files (floor)"]
    for op in b:
        print(f"bridge / moto   {op:10} {b[op]['req_per_s'] / m[op]['req_per_s']:>6.1f}x   (target >= 5x)")
    for op in f:
        print(f"bridge / floor  {op:10} {b[op]['req_per_s'] / f[op]['req_per_s']:>6.2f}x   "
              f"(target >= 0.5x for GET 1 MB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=1000, help="requests per 4 KB row (1 MB rows: a quarter)")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--big-mb", type=int, default=256, help="the large object for the memory check")
    parser.add_argument("--floor-only", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--serve-static", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_static:
        serve_static(args.serve_static)
        return
    if args.floor_only:
        floor_only(args.floor_only, args.requests, args.concurrency)
        return
    root = Path(tempfile.mkdtemp(prefix="bench-s3-", dir=os.environ.get("BENCH_DIR", "/var/tmp")))
    bridge_rows, memory = bridge(root, args.requests, args.concurrency, args.big_mb)
    results = {"bridge": bridge_rows, "moto server": moto(root, args.requests, args.concurrency),
               "static files (floor)": floor(root, args.requests, args.concurrency)}
    table(results)
    print(f"memory: daemon peak RSS {memory['daemon_peak_rss_before_mb']:.0f} MB before, "
          f"{memory['daemon_peak_rss_after_mb']:.0f} MB after a {memory['object_mb']} MB upload + download "
          f"({memory['upload_s']:.1f} s up, {memory['download_s']:.1f} s down)")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "s3.json").write_text(json.dumps({**results, "memory": memory, "load": os.getloadavg(),
                                             "concurrency": args.concurrency}, indent=2))


if __name__ == "__main__":
    main()
