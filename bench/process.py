"""Benchmark the process boundaries: Runtime API admission per connection, the pdeathsig launcher per spawn."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

try:
    from bench.invoke import EVENT, NOOP, make_function, pct
except ModuleNotFoundError:  # run as `python bench/process.py`: its own folder is on sys.path
    from invoke import EVENT, NOOP, make_function, pct  # type: ignore[no-redef]
from bridge import log
from bridge.invokers import peer
from bridge.invokers.local import LocalFunction
from bridge.invokers.worker import pdeathsig_launcher
from bridge.model import Invocation
from bridge.testing import write_handler


def admission(n: int) -> dict[str, dict[str, float]]:
    """The check one accepted connection pays, against a plain accept with no check (same run)."""
    server = socket.create_server(("127.0.0.1", 0))
    local = server.getsockname()
    plain, checked = [], []
    for _ in range(n):
        client = socket.create_connection(local)
        start = time.perf_counter()
        conn, addr = server.accept()
        plain.append((time.perf_counter() - start) * 1000)
        start = time.perf_counter()
        refused = peer.admitted(local, addr, os.getpid())  # this process holds the client socket
        checked.append((time.perf_counter() - start) * 1000)
        assert refused is None, refused
        conn.close()
        client.close()
    server.close()
    rows = Path(peer.TCP_TABLE).read_text().count("\n") - 1
    return {"accept() alone (baseline)": _row(plain),
            f"admission check ({rows} sockets in the table)": _row(checked)}


def spawns(n: int) -> dict[str, dict[str, float]]:
    """``python -c pass`` spawned as a worker is (vfork Popen), with and without setpriv, interleaved."""
    launcher = pdeathsig_launcher()
    bare, wrapped = [], []
    for _ in range(n):
        for prefix, samples in (((), bare), (launcher, wrapped)):
            start = time.perf_counter()
            subprocess.Popen([*prefix, sys.executable, "-S", "-c", "pass"], start_new_session=True).wait()
            samples.append((time.perf_counter() - start) * 1000)
    return {"spawn python -S (baseline)": _row(bare), "spawn via setpriv --pdeathsig KILL": _row(wrapped)}


async def connections_per_worker(code: Path, n: int) -> dict[str, dict[str, float]]:
    """How often the check runs on the hot path: connections a warm worker opens over ``n`` invocations."""
    counted: list[int] = []
    original = peer.admitted

    def counting(*args: object) -> str | None:
        counted.append(1)
        return original(*args)  # type: ignore[arg-type]

    from bridge.invokers import runtime_api
    runtime_api.admitted = counting  # type: ignore[assignment]
    fn = make_function(code, 1)
    try:
        for _ in range(n):
            await fn.invoke(Invocation(EVENT))
    finally:
        await fn.close()
        runtime_api.admitted = original  # type: ignore[assignment]
    return {f"connections for {n} warm invocations": {"count": float(len(counted))}}


async def cold_starts(code: Path, n: int) -> dict[str, dict[str, float]]:
    """bench/invoke.py's cold start (spawn to first answer), without and with the launcher, interleaved."""
    bare, wrapped = [], []
    for _ in range(n):
        for launcher, samples in (((), bare), (pdeathsig_launcher(), wrapped)):
            base = make_function(code, 1)
            fn = LocalFunction(dataclasses.replace(base.spec, launcher=launcher))
            start = time.perf_counter()
            await fn.invoke(Invocation(EVENT))
            samples.append((time.perf_counter() - start) * 1000)
            await fn.close()
    return {"cold start, no launcher (baseline)": _row(bare), "cold start via setpriv --pdeathsig KILL": _row(wrapped)}


def _row(samples: list[float]) -> dict[str, float]:
    return {"p50_ms": pct(samples, 50), "p99_ms": pct(samples, 99), "mean_ms": statistics.mean(samples)}


def report(rows: dict[str, dict[str, float]]) -> None:
    print(f"{'scenario':48} {'p50 ms':>9} {'p99 ms':>9} {'mean ms':>9}")
    for name, row in rows.items():
        if "count" in row:
            print(f"{name:48} {row['count']:>9.0f}")
            continue
        print(f"{name:48} {row['p50_ms']:>9.3f} {row['p99_ms']:>9.3f} {row['mean_ms']:>9.3f}")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "process.json").write_text(json.dumps(rows, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=2000, help="connections checked")
    parser.add_argument("--spawns", type=int, default=50)
    parser.add_argument("--invocations", type=int, default=500)
    args = parser.parse_args()
    log.configure("info", open(os.devnull, "w"), json=True)  # noqa: SIM115 -- logs cost what they cost in production
    code = write_handler(Path(tempfile.mkdtemp(prefix="bench-process-")), "noop", NOOP)
    rows = {**admission(args.n), **spawns(args.spawns), **asyncio.run(cold_starts(code, args.spawns)),
            **asyncio.run(connections_per_worker(code, args.invocations))}
    report(rows)


if __name__ == "__main__":
    main()
