"""Benchmark the durable async queue: group-commit intake, end-to-end delivery, and per-event fsync baseline."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path

from bridge import log
from bridge.config.model import parse_config
from bridge.delivery.dispatcher import Dispatcher
from bridge.invokers.registry import Functions
from bridge.store import QueuedEvent, Store, connect, event_row, insert_events
from bridge.testing import write_handler

NOOP = "def handler(event, context):\n    return None\n"
PAYLOAD = json.dumps({"Records": [{"s3": {"object": {"key": "images/cat.jpg", "size": 1024}}}]}).encode()


def event(i: int) -> QueuedEvent:
    now = time.time()
    return QueuedEvent(f"ev-{i}", "noop", PAYLOAD, f"rid-{i}", now, now)


async def intake(path: Path, n: int, producers: int) -> dict[str, float]:
    """(a) ``producers`` concurrent callers, each awaiting durability of one event at a time."""
    async with Store(path) as store:
        counter = iter(range(n))

        async def producer() -> None:
            for i in counter:
                await store.enqueue([event(i)])

        start = time.perf_counter()
        await asyncio.gather(*(producer() for _ in range(producers)))
        elapsed = time.perf_counter() - start
        commits = store.commits
    return {"events_per_s": n / elapsed, "events": n, "fsync_commits": commits}


def per_event_fsync(path: Path, n: int) -> dict[str, float]:
    """(c) the baseline: one transaction, one fsync per event (synchronous=FULL, no grouping)."""
    conn = connect(path)
    start = time.perf_counter()
    for i in range(n):
        conn.execute("BEGIN IMMEDIATE")
        insert_events(conn, [event_row(event(i))])
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return {"events_per_s": n / elapsed, "events": n, "fsync_commits": n}


async def end_to_end(root: Path, n: int) -> dict[str, float]:
    """(b) n events accepted in the queue, delivered to a no-op handler on 2 warm workers."""
    code = write_handler(root, "noop", NOOP)
    cfg = parse_config(f"functions:\n  noop: {{handler: app.handler, code: '{code}', reserved_concurrency: 2}}\n"
                       f"state_dir: '{root / 'e2e'}'\n")
    functions = Functions(cfg)
    async with Store(root / "e2e" / "bridge.sqlite3") as store:
        dispatcher = Dispatcher(store, functions, cfg)
        runner = asyncio.create_task(dispatcher.run())
        await dispatcher.accept("noop", PAYLOAD)  # warm both the worker and the path
        await _until_empty(store)
        start = time.perf_counter()
        for chunk in range(0, n, 500):
            await dispatcher.accept_many([event(i) for i in range(chunk, min(n, chunk + 500))])
        await _until_empty(store)
        elapsed = time.perf_counter() - start
        dispatcher.stop()
        await runner
    await functions.close()
    return {"events_per_s": n / elapsed, "events": n, "fsync_commits": store.commits}


async def _until_empty(store: Store) -> None:
    """Poll the queue depth (a benchmark's end condition; the daemon itself never polls)."""
    while (await store.depth())[0]:  # noqa: ASYNC110
        await asyncio.sleep(0.01)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=20000)
    args = parser.parse_args()
    log.configure("info", open(os.devnull, "w"), json=True)  # noqa: SIM115 -- logs cost what they cost in production
    root = Path(tempfile.mkdtemp(prefix="bench-async-", dir=os.environ.get("BENCH_DIR", "/var/tmp")))
    rows = {
        "(a) durable intake, group commit, 64 producers": asyncio.run(intake(root / "a.sqlite3", args.n, 64)),
        "(b) end-to-end into no-op handler, 2 workers": asyncio.run(end_to_end(root, args.n // 2)),
        "(c) baseline: synchronous=FULL per event": per_event_fsync(root / "c.sqlite3", min(args.n, 2000)),
    }
    print(f"store on {root} ({_fs(root)})")
    print(f"{'scenario':50} {'events/s':>10} {'events':>8} {'fsyncs':>8}")
    for name, row in rows.items():
        print(f"{name:50} {row['events_per_s']:>10.0f} {row['events']:>8} {row['fsync_commits']:>8}")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "async.json").write_text(json.dumps(rows, indent=2))


def _fs(path: Path) -> str:
    best = ""
    for line in Path("/proc/mounts").read_text().splitlines():
        _, mount, fstype, *_ = line.split()
        if str(path).startswith(mount) and len(mount) > len(best.split(" ")[0]):
            best = f"{mount} {fstype}"
    return best


if __name__ == "__main__":
    main()
