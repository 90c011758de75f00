"""Benchmark the directory source: close-to-handler latency (raw inotify as the floor), a burst, idle cost.

The burst's drain rate is compared with bench/async.py's row (b) of the same run (target: at least 0.7).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from asyncinotify import Inotify, Mask

from bridge.testing import PRODUCTION_LOGS, Daemon, wait_until, write_config, write_handler

# Records when the handler started, per key (the first thing it does), appended in one write.
STAMP = """
    import os, time
    def handler(event, context):
        now = time.time()
        line = "%s %.6f\\n" % (event["Records"][0]["s3"]["object"]["key"], now)
        fd = os.open(os.environ["RECORD_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        os.write(fd, line.encode())
        os.close(fd)
"""


def daemon_for(work: Path, root: Path, state: Path, concurrency: int) -> tuple[Daemon, Path]:
    """A daemon with one directory source on ``root`` invoking the STAMP handler asynchronously."""
    record = work / "out" / "handled.txt"  # not beside config.yaml: the daemon watches that directory for edits
    record.parent.mkdir(parents=True, exist_ok=True)
    code = write_handler(work, "stamp", STAMP)
    config = {"state_dir": str(state),
              "functions": {"stamp": {"handler": "app.handler", "code": str(code), "reserved_concurrency": concurrency,
                                      "environment": {"RECORD_FILE": str(record)}}},
              "sources": [{"name": "bench", "type": "directory", "path": str(root), "function": "stamp"}]}
    return Daemon(write_config(work / "config.yaml", config), env=PRODUCTION_LOGS), record


def handled(record: Path) -> dict[str, float]:
    """key -> time the handler started."""
    if not record.exists():
        return {}
    out = {}
    for line in record.read_text().splitlines():
        key, _, stamp = line.rpartition(" ")
        out[key] = float(stamp)
    return out


def lines_in(record: Path) -> int:
    """Invocations so far, cheaply: polling must not take the CPU the daemon is measured on."""
    return record.read_bytes().count(b"\n") if record.exists() else 0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _raw_watch(root: Path, seen: dict[str, float], stop: asyncio.Event) -> None:
    with Inotify() as inotify:
        inotify.add_watch(root, Mask.CLOSE_WRITE)
        async for event in _until(inotify, stop):
            seen[str(event.name)] = time.time()


async def _until(inotify: Inotify, stop: asyncio.Event) -> Any:
    while not stop.is_set():
        get = asyncio.ensure_future(inotify.get())
        halt = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait({get, halt}, return_when=asyncio.FIRST_COMPLETED)
        halt.cancel()
        if get in done:
            yield get.result()
        else:
            get.cancel()


def _write(path: Path) -> float:
    with open(path, "wb") as f:
        f.write(b"x" * 1024)
    return time.time()  # just after close


async def _write_paced(root: Path, count: int, rate: float) -> dict[str, float]:
    closed = {}
    start = time.monotonic()
    for i in range(count):
        name = f"f{i:05d}.txt"
        closed[name] = _write(root / name)  # in the loop on purpose: the raw watcher sees it as a client would
        await asyncio.sleep(max(0.0, start + (i + 1) / rate - time.monotonic()))
    return closed


def latency(work: Path, count: int, rate: float) -> dict[str, Any]:
    """(a) files closed at ``rate``/s: close -> handler start, and close -> raw inotify event (the floor)."""
    root = work / "lat"
    root.mkdir()
    daemon, record = daemon_for(work / "a", root, work / "a" / "state", concurrency=2)
    with daemon:
        daemon.wait_for("directory.ready", source="bench", timeout=60)

        async def run() -> tuple[dict[str, float], dict[str, float]]:
            raw: dict[str, float] = {}
            stop = asyncio.Event()
            watcher = asyncio.create_task(_raw_watch(root, raw, stop))
            await asyncio.sleep(0.1)  # let the raw watch be added before the first file
            closed = await _write_paced(root, count, rate)
            stop.set()
            await watcher
            return closed, raw

        closed, raw = asyncio.run(run())
        wait_until(lambda: lines_in(record) >= count, timeout=120, interval=0.1)
    seen = handled(record)
    bridge_ms = [1000 * (seen[k] - t) for k, t in closed.items()]
    raw_ms = [1000 * (raw[k] - t) for k, t in closed.items() if k in raw]
    return {"files": count, "rate_per_s": rate,
            "bridge_p50_ms": percentile(bridge_ms, 0.5), "bridge_p99_ms": percentile(bridge_ms, 0.99),
            "raw_inotify_p50_ms": percentile(raw_ms, 0.5), "raw_inotify_p99_ms": percentile(raw_ms, 0.99)}


def burst(work: Path, count: int) -> dict[str, Any]:
    """(b) ``count`` files created as fast as possible on tmpfs; all must reach the no-op-ish handler."""
    shm = Path(tempfile.mkdtemp(prefix="bridge-burst-", dir="/dev/shm"))
    root = shm / "bucket"
    root.mkdir()
    daemon, record = daemon_for(work / "b", root, work / "b" / "state", concurrency=2)
    with daemon:
        daemon.wait_for("directory.ready", source="bench", timeout=60)
        start = time.time()
        for i in range(count):
            (root / f"{i:06d}.dat").write_bytes(b"%d" % i)
        written = time.time() - start
        with contextlib.suppress(TimeoutError):  # what never arrives is reported as lost
            wait_until(lambda: lines_in(record) >= count, timeout=600, interval=0.5)
        overflowed = bool(daemon.find("directory.overflow"))
    seen = handled(record)
    lost = count - len(set(seen) & {f"{i:06d}.dat" for i in range(count)})
    drain = max(seen.values()) - start if seen else float("nan")
    for path in sorted(shm.rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    shm.rmdir()
    return {"files": count, "lost": lost, "write_s": written, "end_to_end_s": drain,
            "drain_files_per_s": (count - lost) / drain, "kernel_queue_overflowed": overflowed}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def idle(work: Path, dirs: int, seconds: float) -> dict[str, Any]:
    """(c) the daemon watching ``dirs`` directories with nothing happening: CPU share and resident memory."""
    root = work / "idle"
    for i in range(dirs):
        (root / f"{i // 100:03d}" / f"{i % 100:03d}").mkdir(parents=True)
    daemon, _ = daemon_for(work / "c", root, work / "c" / "state", concurrency=1)
    with daemon:
        ready = daemon.wait_for("directory.ready", source="bench", timeout=120)[0]
        pid = daemon.proc.pid  # type: ignore[union-attr]
        before, start = cpu_seconds(pid), time.monotonic()
        time.sleep(seconds)  # measuring idleness: nothing to wait for
        used = cpu_seconds(pid) - before
        elapsed = time.monotonic() - start
        memory = rss_mb(pid)
    return {"directories": dirs, "watches": ready.get("watches"), "seconds": elapsed,
            "cpu_percent": 100 * used / elapsed, "rss_mb": memory}


def async_row(n: int) -> dict[str, float]:
    """Row (b) of bench/async.py, run now: the durable async queue's pace on this machine in this run."""
    spec = importlib.util.spec_from_file_location("bench_async", Path(__file__).with_name("async.py"))
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module.async_row(n)


BURST = "(b) 50,000-file burst on tmpfs, no-op handler, 2 workers"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--latency-files", type=int, default=1000)
    parser.add_argument("--burst-files", type=int, default=50_000)
    parser.add_argument("--idle-dirs", type=int, default=10_000)
    parser.add_argument("--idle-seconds", type=float, default=20.0)
    parser.add_argument("--async-events", type=int, default=20_000, help="events for bench/async.py's row (b)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-dir-") as tmp:
        work = Path(tmp)
        results = {
            "(a) close -> handler start at 100 files/s": latency(work, args.latency_files, 100.0),
            BURST: burst(work, args.burst_files),
            "(c) idle, watching 10,000 directories": idle(work, args.idle_dirs, args.idle_seconds),
        }
    # The durable async queue's own pace in this run (bench/async.py row b): what the burst drain is held to.
    pace = async_row(args.async_events)["events_per_s"]
    results[BURST]["async_row_events_per_s"] = pace
    results[BURST]["drain_to_async_ratio"] = results[BURST]["drain_files_per_s"] / pace
    for name, figures in results.items():
        print(name)
        for key, value in figures.items():
            print(f"    {key:<28} {value:,.2f}" if isinstance(value, float) else f"    {key:<28} {value}")
    out = Path(__file__).parent / "results" / "directory.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
