"""Benchmark the S3 API: GetObject and PutObject of 4 KB and 1 MB objects against (a) the bridge, (b) moto's
server (what a user would otherwise reach for), (c) aiohttp serving the same files as static files (the floor,
GETs only); requests/s, p50/p99 and the server's CPU time per request, in one run. Then the daemon's peak
memory around a large upload and download (it must not grow with the object: bodies are streamed).

Each row is driven twice:

- **through boto3**: ``--processes`` processes of ``--concurrency`` threads, each call a real boto3 call.
  boto3 spends about 1.3 ms of CPU on each call, so on a small machine this measures the client as much as the
  server: a server that cost nothing could not go above (cores / 1.3 ms) here.
- **replayed**: boto3's own request for the operation (its headers, SigV4 signature and checksum, captured
  just before botocore sends it; only ``Expect: 100-continue`` dropped) sent again and again by a lean
  socket client over ``--connections`` keep-alive connections, a PUT's key varied per connection. This is
  what the server itself sustains.

The server's CPU per request (from /proc, its user + system time over the run) holds either way.

Targets (issue 25): the bridge >= 5x moto's requests/s; >= 0.5x the floor for 1 MB GETs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
from aiohttp import web
from botocore.config import Config as BotoConfig

from bridge.testing import PRODUCTION_LOGS, Daemon, answers, free_port, wait_until, write_config

SIZES = {"4 KB": 4096, "1 MB": 1 << 20}
BUCKET = "bench"


def client(endpoint: str, concurrency: int) -> Any:
    """One boto3 S3 client (thread-safe) with a connection per worker thread."""
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="bench",
                        aws_secret_access_key="bench",
                        config=BotoConfig(retries={"max_attempts": 0}, max_pool_connections=concurrency,
                                          s3={"addressing_style": "path"}))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def drive(endpoint: str, op: str, size: int, count: int, server_pid: int, *, mode: str,
          args: argparse.Namespace) -> dict[str, float]:
    """``count`` requests through boto3 (``--processes`` processes of ``--concurrency`` threads) or replayed
    (one process, ``--connections`` connections); requests/s, latency quantiles, and the server's CPU time per
    request (what the server costs, whatever the client and the machine's load)."""
    processes, width = (args.processes, args.concurrency) if mode == "boto3" else (1, args.connections)
    share = -(-count // processes)
    spec = json.dumps([endpoint, op, size, share, width])
    children = [subprocess.Popen([sys.executable, __file__, f"--{mode}", spec], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True) for _ in range(processes)]
    for child in children:  # each has imported boto3, opened its connections and warmed up
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    cpu, start = cpu_seconds(server_pid), time.perf_counter()
    for child in children:
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    outputs = [child.communicate(timeout=600)[0] for child in children]
    elapsed, cpu = time.perf_counter() - start, cpu_seconds(server_pid) - cpu
    if any(child.returncode for child in children):
        raise SystemExit(f"a client failed against {endpoint} ({op} {size}): see its error above")
    latencies = [x for out in outputs for x in json.loads(out)]
    q = statistics.quantiles(latencies, n=100)
    return {"req_per_s": len(latencies) / elapsed, "p50_ms": q[49], "p99_ms": q[98], "requests": len(latencies),
            "server_cpu_ms_per_req": cpu * 1000 / len(latencies)}


def captured(endpoint: str, op: str, size: int) -> tuple[bytes, bytes]:
    """boto3's own request for one GetObject / PutObject (request line and headers, body), as botocore was
    about to send it; ``Expect: 100-continue`` is dropped (the replay sends the body at once)."""
    s3 = client(endpoint, 1)
    data = os.urandom(size) if op == "PUT" else b""
    seen: list[Any] = []
    s3.meta.events.register("before-send.s3.*", lambda request, **_: seen.append(request))
    if op == "GET":
        s3.get_object(Bucket=BUCKET, Key=f"obj-{size}")["Body"].read()
    else:
        s3.put_object(Bucket=BUCKET, Key=f"put-{size}", Body=data)
    request = seen[-1]
    url = urlsplit(request.url)
    lines = [f"{request.method} {url.path}{'?' + url.query if url.query else ''} HTTP/1.1", f"Host: {url.netloc}"]
    lines += [f"{k}: {v.decode() if isinstance(v, bytes) else v}" for k, v in request.headers.items()
              if k.lower() not in ("host", "expect")]
    return ("\r\n".join(lines) + "\r\n\r\n").encode(), data


class Connection:
    """One keep-alive HTTP/1.1 connection: send a prepared request, read the whole answer (2xx or fail)."""

    def __init__(self, host: str, port: int) -> None:
        self.address = (host, port)
        self.scratch = memoryview(bytearray(1 << 20))
        self.sock = self._open()

    def _open(self) -> socket.socket:
        sock = socket.create_connection(self.address)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def call(self, head: bytes, body: bytes) -> None:
        """One request and its answer; a new connection when the server closes this one."""
        self.sock.sendall(head)
        if body:
            self.sock.sendall(body)
        answer, early = self._head()
        status = int(answer[9:12])
        fields = {k.strip().lower(): v.strip() for k, _, v in (line.partition(b":")
                                                             for line in answer.split(b"\r\n")[1:])}
        self._skip(int(fields.get(b"content-length", b"0")) - early)
        if not 200 <= status < 300:
            raise RuntimeError(f"answered {answer[:200]!r}")
        if fields.get(b"connection", b"").lower() == b"close" or answer.startswith(b"HTTP/1.0"):
            self.sock.close()
            self.sock = self._open()

    def _head(self) -> tuple[bytes, int]:
        data = bytearray()
        while (end := data.find(b"\r\n\r\n")) < 0:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the server closed the connection mid-answer")
            data += chunk
        return bytes(data[:end]), len(data) - end - 4

    def _skip(self, left: int) -> None:
        while left > 0:
            got = self.sock.recv_into(self.scratch, min(left, len(self.scratch)))
            if not got:
                raise ConnectionError("the server closed the connection mid-body")
            left -= got


def replay_process(spec: str) -> None:
    """One replaying client process: capture boto3's request, warm up every connection, say ready, wait for
    go, run, print the latencies."""
    endpoint, op, size, count, width = json.loads(spec)
    head, body = captured(endpoint, op, size)
    url = urlsplit(endpoint)
    connections = [Connection(url.hostname or "127.0.0.1", url.port or 80) for _ in range(width)]

    def request(n: int, i: int) -> bytes:  # one key per connection and slot: never two writers of one key
        return head if op == "GET" else head.replace(b"/put-", f"/put-c{n}-{i % 50}-".encode(), 1)

    for n, conn in enumerate(connections):
        conn.call(request(n, 0), body)
    print("ready", flush=True)
    sys.stdin.readline()
    latencies: list[float] = []

    def run(n: int) -> None:
        for i in range(n, count, width):
            start = time.perf_counter()
            connections[n].call(request(n, i), body)
            latencies.append((time.perf_counter() - start) * 1000)

    with ThreadPoolExecutor(width) as pool:
        list(pool.map(run, range(width)))
    print(json.dumps(latencies), flush=True)


def client_process(spec: str) -> None:
    """One client process of ``drive``: warm up, say ready, wait for go, run, print the latencies."""
    endpoint, op, size, count, concurrency = json.loads(spec)
    s3 = client(endpoint, concurrency)
    data = os.urandom(size)

    def call(i: int) -> None:
        if op == "GET":
            assert len(s3.get_object(Bucket=BUCKET, Key=f"obj-{size}")["Body"].read()) == size
        else:
            s3.put_object(Bucket=BUCKET, Key=f"put-{size}-{os.getpid()}-{i % 50}", Body=data)

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(call, range(concurrency * 2)))
    print("ready", flush=True)
    sys.stdin.readline()
    latencies: list[float] = []

    def timed(i: int) -> None:
        start = time.perf_counter()
        call(i)
        latencies.append((time.perf_counter() - start) * 1000)

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(timed, range(count)))
    print(json.dumps(latencies), flush=True)


def scenarios(endpoint: str, args: argparse.Namespace, server_pid: int, *, puts: bool = True) -> dict[str, Any]:
    """GET (and PUT) rows for each size against one endpoint (objects ``obj-<size>`` exist), through boto3 and
    replayed."""
    rows = {}
    for mode in ("boto3", "replay"):
        for label, size in SIZES.items():
            count = args.requests if size < (1 << 20) else max(args.requests // 4, args.concurrency * 4)
            count *= 4 if mode == "replay" else 1  # a replayed request costs the client far less: run longer
            for op in ("GET", "PUT") if puts else ("GET",):
                rows[f"{op} {label} {mode}"] = drive(endpoint, op, size, count, server_pid, mode=mode, args=args)
    return rows


def seed(folder: Path) -> None:
    """The GET objects, as files."""
    (folder / BUCKET).mkdir(parents=True, exist_ok=True)
    for size in SIZES.values():
        (folder / BUCKET / f"obj-{size}").write_bytes(os.urandom(size))


def bridge(root: Path, args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    seed(root / "bridge")
    port = free_port()
    config = write_config(root / "bridge.yaml", {
        "state_dir": str(root / "state"), "log_level": "warning", "api": {"listen": f"127.0.0.1:{port}"},
        "buckets": {BUCKET: str(root / "bridge" / BUCKET)}})
    with Daemon(config, env=PRODUCTION_LOGS) as daemon:
        endpoint = f"http://127.0.0.1:{port}"
        assert daemon.proc is not None
        rows = scenarios(endpoint, args, daemon.proc.pid)
        memory = big_object(client(endpoint, 4), root, daemon.proc.pid, args.big_mb)
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


def moto(args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: answers(f"{endpoint}/moto-api/"), timeout=30)
        s3 = client(endpoint, 1)
        s3.create_bucket(Bucket=BUCKET)
        for size in SIZES.values():
            s3.put_object(Bucket=BUCKET, Key=f"obj-{size}", Body=os.urandom(size))
        return scenarios(endpoint, args, proc.pid)
    finally:
        proc.terminate()
        proc.wait(10)


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


def floor(root: Path, args: argparse.Namespace) -> dict[str, Any]:
    """aiohttp's static files (sendfile) on the same files, served by a process of its own."""
    seed(root / "static")
    child = subprocess.Popen([sys.executable, __file__, "--serve-static", str(root / "static")],
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    endpoint = child.stdout.readline().strip()
    try:
        return scenarios(endpoint, args, child.pid, puts=False)
    finally:
        child.terminate()
        child.wait(10)


def serve_static(folder: Path) -> None:
    with static_files(folder) as endpoint:
        print(endpoint, flush=True)
        threading.Event().wait()


def table(results: dict[str, dict[str, Any]]) -> None:
    print(f"{'target':22} {'operation':18} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'server CPU ms/req':>18}")
    for target, rows in results.items():
        for op, row in rows.items():
            print(f"{target:22} {op:18} {row['req_per_s']:>9.0f} {row['p50_ms']:>8.2f} {row['p99_ms']:>8.2f} "
                  f"{row['server_cpu_ms_per_req']:>18.3f}")
    b, m, f = results["bridge"], results["moto server"], results["static files (floor)"]
    for op in b:
        print(f"bridge / moto   {op:18} {b[op]['req_per_s'] / m[op]['req_per_s']:>6.1f}x req/s, "
              f"{m[op]['server_cpu_ms_per_req'] / b[op]['server_cpu_ms_per_req']:>6.1f}x less server CPU per request "
              "(target >= 5x)")
    for op in f:
        print(f"bridge / floor  {op:18} {b[op]['req_per_s'] / f[op]['req_per_s']:>6.2f}x   "
              f"(target >= 0.5x for GET 1 MB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=1000, help="requests per 4 KB row (1 MB rows: a quarter)")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--big-mb", type=int, default=256, help="the large object for the memory check")
    parser.add_argument("--processes", type=int, default=2, help="client processes (each with --concurrency threads)")
    parser.add_argument("--connections", type=int, default=16, help="connections of the replaying client")
    parser.add_argument("--boto3", help=argparse.SUPPRESS)
    parser.add_argument("--replay", help=argparse.SUPPRESS)
    parser.add_argument("--serve-static", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_static:
        serve_static(args.serve_static)
        return
    if args.boto3 or args.replay:
        client_process(args.boto3) if args.boto3 else replay_process(args.replay)
        return
    root = Path(tempfile.mkdtemp(prefix="bench-s3-", dir=os.environ.get("BENCH_DIR", "/var/tmp")))
    bridge_rows, memory = bridge(root, args)
    results = {"bridge": bridge_rows, "moto server": moto(args), "static files (floor)": floor(root, args)}
    table(results)
    print(f"memory: daemon peak RSS {memory['daemon_peak_rss_before_mb']:.0f} MB before, "
          f"{memory['daemon_peak_rss_after_mb']:.0f} MB after a {memory['object_mb']} MB upload + download "
          f"({memory['upload_s']:.1f} s up, {memory['download_s']:.1f} s down)")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "s3.json").write_text(json.dumps({**results, "memory": memory, "load": os.getloadavg(),
                                             "concurrency": args.concurrency, "processes": args.processes,
                                             "connections": args.connections},
                                            indent=2))


if __name__ == "__main__":
    main()
