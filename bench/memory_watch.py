"""What the resident-memory watch costs: per invocation (watch + unwatch), per look, and looks per second.

Run: .venv/bin/python bench/memory_watch.py. The warm-invocation effect is measured by bench/invoke.py
(row b) on the code before and after; this isolates the watch's own CPU, which load barely changes.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bridge.invokers.memory import MB, ResidentWatch

CHILD = "import time; b = bytearray(8 * 1024 * 1024); time.sleep(60)"


def per_call(fn, n: int) -> float:
    """Microseconds per call of ``fn``, best of 5 runs of ``n``."""
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - start) / n * 1e6)
    return best


def look_cost(children: int) -> float:
    """One look at a process with ``children`` child processes (µs): this process and children it starts."""
    procs = [subprocess.Popen([sys.executable, "-c", CHILD]) for _ in range(children)]
    try:
        watch = ResidentWatch(10240, lambda: None)
        watch.adopt(os.getpid())
        return per_call(watch.resident, 2000)
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


async def watch_unwatch(n: int) -> float:
    """The per-invocation cost when the invocation is shorter than the first look (µs)."""
    watch = ResidentWatch(128, lambda: None)

    def pair() -> None:
        watch.watch()
        watch.unwatch()

    return per_call(pair, n)


def looks_per_second(limit_mb: int, used_mb: int) -> float:
    """How often the watch looks at a worker using ``used_mb`` of ``limit_mb`` while it runs code."""
    watch = ResidentWatch(limit_mb, lambda: None)
    return 1 / watch._pace(used_mb * MB)


def main() -> None:
    rows = {
        "watch+unwatch per invocation (us)": asyncio.run(watch_unwatch(20000)),
        "one look, lone worker (us)": look_cost(0),
        "one look, worker with 4 children (us)": look_cost(4),
        **{f"looks/s at {used}/{limit} MB": looks_per_second(limit, used)
           for limit, used in ((128, 40), (128, 120), (1024, 100), (10240, 200))},
    }
    for name, value in rows.items():
        print(f"{name:42} {value:10.2f}")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "memory_watch.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
