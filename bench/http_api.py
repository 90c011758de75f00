"""Benchmark the http source: one FastAPI app (a) under uvicorn, (b) behind the http source through Mangum,
(c) python-lambda-local per request; requests/s and p50/p99 at concurrency 1 and 16, 2 workers each.

Two more rows say where (b)'s time goes: (d) the Mangum handler alone, called in a loop by 2 processes (no
HTTP, no runtime client): what the function itself costs, which no Lambda-faithful bridge can avoid; (e) the
http source in front of a no-op handler that returns the same response: what the bridge and the runtime
interface client cost without the app. The CPU column of (b) and (e) is split into daemon + workers.

(a) and (b) are driven by the same client in the same way: aiohttp, one keep-alive connection per concurrent
client, all opened during the warm-up (the run counts any opened later), TCP_NODELAY set as aiohttp sets it.

Why (a) is not ``uvicorn --workers 2``: that CLI path binds its listener with ``socket.socket(family)``, so
``proto`` is 0; accepted sockets inherit it, and asyncio sets TCP_NODELAY only on sockets whose ``proto`` is
IPPROTO_TCP. uvicorn (h11) writes a response's head and body in two sends, so with Nagle on, the body waits
for the client's delayed ACK: a steady ~44 ms per keep-alive request on Linux (seen with strace: the body's
sendto leaves 0.2 ms after the head and reaches the client 40 ms later; uvicorn issue #3149). A single
uvicorn process, or one under uvloop, does not have it. The floor runs the same uvicorn (h11, asyncio,
2 worker processes under uvicorn's own supervisor) on a listener made with ``proto=IPPROTO_TCP``.
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
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import aiohttp

from bridge.sources.http.events import sample_event
from bridge.testing import PRODUCTION_LOGS, Daemon, free_port, wait_until, write_config, write_handler

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "examples" / "http"
PATH = "/items/42?q=x&tag=a&tag=b"
EXPECTED = {"item_id": 42, "q": "x", "tags": ["a", "b"]}


async def load(url: str, concurrency: int, requests: int, server: int) -> dict[str, float]:
    """``requests`` GETs of ``url`` from ``concurrency`` clients back to back; every answer is checked.

    Each client keeps one connection alive for the whole run; the warm-up opens them all, and any
    connection opened while measuring is counted (``new_connections``: 0 means keep-alive held). The CPU
    time of the ``server`` process tree and of this client, per request, says where the time goes."""
    latencies: list[float] = []
    opened = [0]
    trace = aiohttp.TraceConfig()

    async def on_connect(*_: object) -> None:
        opened[0] += 1

    trace.on_connection_create_end.append(on_connect)
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    async with aiohttp.ClientSession(connector=connector, trace_configs=[trace]) as session:

        async def client(remaining: Iterator[int], record: bool) -> None:
            for _ in remaining:
                start = time.perf_counter()
                async with session.get(url) as response:
                    body = await response.read()
                if record:
                    latencies.append(time.perf_counter() - start)
                if response.status != 200 or json.loads(body) != EXPECTED:
                    raise AssertionError(f"{url}: {response.status} {body[:200]!r}")

        warm = iter(range(max(50, 10 * concurrency)))  # workers started, every client's connection open
        await asyncio.gather(*(client(warm, False) for _ in range(concurrency)))
        opened[0] = 0
        remaining = iter(range(requests))
        cpu = _cpu_seconds(server), _cpu_seconds(server, tree=False), time.process_time()  # client: this process
        start = time.perf_counter()
        await asyncio.gather(*(client(remaining, True) for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
        server_cpu, root_cpu = _cpu_seconds(server) - cpu[0], _cpu_seconds(server, tree=False) - cpu[1]
        client_cpu = time.process_time() - cpu[2]
    return {**_summary(latencies, elapsed), "new_connections": opened[0],
            "server_cpu_ms": 1000 * server_cpu / requests, "client_cpu_ms": 1000 * client_cpu / requests,
            "root_cpu_ms": 1000 * root_cpu / requests}


def _cpu_seconds(root: int, tree: bool = True) -> float:
    """User + system CPU seconds of ``root`` and (``tree``) its descendants (Linux /proc)."""
    stats: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # exited meanwhile
            stats[int(entry.name)] = int(fields[1]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    pids, grown = {root}, {root}
    while grown and tree:
        grown = {pid for pid, (parent, _) in stats.items() if parent in grown}
        pids |= grown
    return sum(stats[pid][1] for pid in pids if pid in stats)


def _summary(latencies: list[float], elapsed: float) -> dict[str, float]:
    ordered = sorted(latencies)
    return {"requests": len(ordered), "per_s": len(ordered) / elapsed,
            "p50_ms": statistics.median(ordered) * 1000, "p99_ms": ordered[int(len(ordered) * 0.99) - 1] * 1000}


def uvicorn_server(port: int) -> subprocess.Popen[bytes]:
    """(a) the floor: the same app served directly by uvicorn with 2 worker processes (see serve_floor)."""
    proc = subprocess.Popen([sys.executable, __file__, "--serve-floor", str(port)], cwd=APP)
    wait_until(lambda: _answers(f"http://127.0.0.1:{port}{PATH}"), timeout=30)
    return proc


def serve_floor(port: int) -> None:
    """What ``uvicorn fastapi_app:app --workers 2`` runs, on a listener whose accepted sockets get TCP_NODELAY."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    sys.path.insert(0, str(APP))
    config = uvicorn.Config("fastapi_app:app", host="127.0.0.1", port=port, workers=2, log_level="warning",
                            access_log=False)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # proto 6: asyncio sets NODELAY
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.set_inheritable(True)
    Multiprocess(config, sockets=[sock]).run()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except OSError:
        return False


def bridge_config(root: Path, port: int, handler: str = "fastapi_app.handler", code: Path = APP) -> Path:
    """(b) the http source (format http, $default) in front of the app through Mangum, 2 warm workers; the
    app's requirements.txt is built first (the build is not what this bench measures)."""
    config = write_config(root / "config.yaml", {
        "state_dir": str(root / "state"), "log_level": "warning",
        "functions": {"app": {"handler": handler, "code": str(code), "reserved_concurrency": 2,
                              "memory_size": 512}},
        "sources": [{"name": "api", "type": "http", "listen": f"127.0.0.1:{port}", "function": "app"}]})
    subprocess.run([sys.executable, "-m", "bridge.cli", "build", "--config", str(config)], check=True)
    return config


# (e)'s function: the app's answer to PATH, returned as a constant (no app, no Mangum).
NOOP = f"""
import json
BODY = json.dumps({EXPECTED!r})
def handler(event, context):
    return {{"statusCode": 200, "headers": {{"content-type": "application/json"}}, "body": BODY}}
"""


def handler_alone(requests: int) -> dict[str, float]:
    """(d) 2 processes, each calling the Mangum handler ``requests / 2`` times with (b)'s event, in process."""
    each = requests // 2
    procs = [subprocess.Popen([sys.executable, __file__, "--call-handler", str(each)], cwd=APP,
                              stdout=subprocess.PIPE) for _ in range(2)]
    results = [json.loads(proc.communicate(timeout=600)[0]) for proc in procs]
    elapsed = max(r["seconds"] for r in results)
    return {"requests": 2 * each, "per_s": 2 * each / elapsed,
            "handler_cpu_ms": 1000 * sum(r["cpu_seconds"] for r in results) / (2 * each)}


def call_handler(count: int) -> None:
    """(d)'s process: the handler alone, ``count`` times, each with a fresh event dict (parsed beforehand:
    decoding the event and encoding the answer are the runtime client's share, counted in (e))."""
    sys.path.insert(0, str(APP))
    import fastapi_app

    path, _, query = PATH.partition("?")
    text = json.dumps(sample_event("http", "GET", path, query))
    context = _Context()
    for _ in range(200):  # warm: imports, first-call caches
        fastapi_app.handler(json.loads(text), context)
    events = [json.loads(text) for _ in range(count)]
    start, cpu = time.perf_counter(), time.process_time()
    for event in events:
        fastapi_app.handler(event, context)
    print(json.dumps({"seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu}))


class _Context:
    """What Mangum reads of the Lambda context."""

    aws_request_id = "bench"
    function_name = "app"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:app"
    memory_limit_in_mb = 512

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 30000


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
                rows[f"(a) uvicorn, c={c}"] = await load(f"http://127.0.0.1:{port}{PATH}", c, requests, proc.pid)
        finally:
            proc.terminate()
            proc.wait(10)
        port = free_port()
        with Daemon(bridge_config(root, port), env=PRODUCTION_LOGS) as daemon:
            assert daemon.proc is not None
            for c in (1, 16):
                rows[f"(b) lambda-bridge http + Mangum, c={c}"] = await load(f"http://127.0.0.1:{port}{PATH}", c,
                                                                             requests, daemon.proc.pid)
        for c in (1, 16):
            rows[f"(c) python-lambda-local, c={c}"] = await lambda_local(root, c, peer_requests)
        rows[HANDLER_ROW] = handler_alone(requests)
        code = write_handler(root, "noop", NOOP)
        (root / "e").mkdir()
        port = free_port()
        with Daemon(bridge_config(root / "e", port, "app.handler", code), env=PRODUCTION_LOGS) as daemon:
            assert daemon.proc is not None
            rows[NOOP_ROW] = await load(f"http://127.0.0.1:{port}{PATH}", 16, requests, daemon.proc.pid)
    return rows


HANDLER_ROW = "(d) the Mangum handler alone, 2 processes"
NOOP_ROW = "(e) lambda-bridge http + no-op handler, c=16"


def report(rows: dict[str, dict[str, float]], load: tuple[tuple[float, ...], tuple[float, ...]]) -> dict:
    """Print the table and the two targets; return what goes to the JSON file."""
    print(f"load average (1, 5, 15 min) before: {_load(load[0])}; after: {_load(load[1])}; {os.cpu_count()} CPUs")
    print(f"{'scenario':44} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'new conns':>9} "
          f"{'CPU ms/req: server (daemon + workers), client':>46}")
    for name, row in rows.items():
        print(f"{name:44} {row['per_s']:>9.1f} {_cell(row, 'p50_ms')} {_cell(row, 'p99_ms')} "
              f"{row.get('new_connections', '-'):>9} {_cpu(name, row):>46}")
    a1, b1 = rows["(a) uvicorn, c=1"], rows["(b) lambda-bridge http + Mangum, c=1"]
    a16, b16 = rows["(a) uvicorn, c=16"], rows["(b) lambda-bridge http + Mangum, c=16"]
    latency = b1["p50_ms"] - a1["p50_ms"]
    share = 100 * b16["per_s"] / a16["per_s"]
    targets = {"p50_added_ms_c1": latency, "p50_target_met": latency <= 2.0,
               "per_s_share_c16_percent": share, "per_s_target_met": share >= 50.0,
               "p50_added_ms_c16": b16["p50_ms"] - a16["p50_ms"]}
    print(f"target 1, c=1: (b) p50 - (a) p50 = {latency:+.2f} ms (<= 2 ms): {_met(latency <= 2.0)}")
    print(f"target 2, c=16: (b) req/s = {share:.0f} % of (a) (>= 50 %): {_met(share >= 50.0)}")
    print(f"(for reference, c=16: (b) p50 - (a) p50 = {targets['p50_added_ms_c16']:+.2f} ms)")
    targets.update(budget(rows))
    return {"rows": rows, "targets": targets, "loadavg_before": load[0], "loadavg_after": load[1],
            "cpus": os.cpu_count()}


def _cell(row: dict[str, float], key: str) -> str:
    return f"{row[key]:>8.2f}" if key in row else f"{'-':>8}"


def _cpu(name: str, row: dict[str, float]) -> str:
    if "handler_cpu_ms" in row:
        return f"{row['handler_cpu_ms']:.2f} (handler only)"
    if "server_cpu_ms" not in row:
        return "-"
    server = f"{row['server_cpu_ms']:.2f}"
    if name.startswith(("(b)", "(e)")):
        server += f" ({row['root_cpu_ms']:.2f} + {row['server_cpu_ms'] - row['root_cpu_ms']:.2f})"
    return f"{server}, {row['client_cpu_ms']:.2f}"


def budget(rows: dict[str, dict[str, float]]) -> dict[str, float]:
    """Target 2 as a CPU budget: what (b) may spend per request on this machine, and what it cannot avoid."""
    cpus = os.cpu_count() or 1
    allowed = 1000 * cpus / (0.5 * rows["(a) uvicorn, c=16"]["per_s"])
    handler = rows[HANDLER_ROW]["handler_cpu_ms"]
    noop = rows[NOOP_ROW]
    runtime_client = noop["server_cpu_ms"] - noop["root_cpu_ms"]  # the workers' CPU with a no-op handler
    floor = handler + runtime_client + rows["(a) uvicorn, c=16"]["client_cpu_ms"]
    least = floor + noop["root_cpu_ms"]  # plus the daemon's own work for a request that does nothing
    print(f"target 2 as a budget: 50 % of (a) on {cpus} CPUs leaves {allowed:.2f} ms CPU per request for "
          f"everything; the handler alone takes {handler:.2f} (d), the runtime interface client "
          f"{runtime_client:.2f} (e's workers), a client at least (a)'s: {floor:.2f} ms before the bridge does "
          f"anything, {least:.2f} ms with the daemon's work for a no-op function (e): "
          f"{'within' if least <= allowed else 'over'} budget")
    return {"budget_cpu_ms": allowed, "unavoidable_cpu_ms": floor, "least_cpu_ms_with_daemon": least}


def _load(avg: tuple[float, ...]) -> str:
    return ", ".join(f"{x:.2f}" for x in avg)


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000, help="requests per scenario for (a) and (b)")
    parser.add_argument("--peer-requests", type=int, default=32, help="requests per scenario for (c)")
    parser.add_argument("--serve-floor", type=int, metavar="PORT", help=argparse.SUPPRESS)  # (a)'s server
    parser.add_argument("--call-handler", type=int, metavar="N", help=argparse.SUPPRESS)  # (d)'s processes
    args = parser.parse_args()
    if args.serve_floor:
        serve_floor(args.serve_floor)
        return
    if args.call_handler:
        call_handler(args.call_handler)
        return
    before = os.getloadavg()
    rows = asyncio.run(run(args.requests, args.peer_requests))
    result = report(rows, (before, os.getloadavg()))
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "http_api.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
