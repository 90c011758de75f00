"""Benchmark SQS sources: messages/s from send to handler (embedded queue vs moto), SendMessage latency."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aiobotocore.session import get_session
from botocore.config import Config as BotoConfig

from bridge.testing import PRODUCTION_LOGS, Daemon, free_port, wait_until, write_config, write_handler

NOOP = "def handler(event, context):\n    return None\n"
CREDS = {"aws_access_key_id": "bench", "aws_secret_access_key": "bench"}


def _config(root: Path, port: int, queue: str, endpoint: str | None) -> Path:
    code = write_handler(root, "noop", NOOP)
    source: dict[str, Any] = {"name": "bench", "type": "sqs", "queue": queue, "function": "noop", "batch_size": 10,
                              "maximum_concurrency": 8}
    if endpoint:
        source["endpoint_url"] = endpoint
    return write_config(root / "config.yaml", {
        "state_dir": str(root / "state"), "log_level": "warning", "api": {"listen": f"127.0.0.1:{port}"},
        "queues": {"bench": {}, "latency": {}},
        "functions": {"noop": {"handler": "app.handler", "code": str(code), "reserved_concurrency": 2}},
        "sources": [source]})


async def _client(stack: Any, endpoint: str) -> Any:
    boto = BotoConfig(retries={"max_attempts": 0}, max_pool_connections=32)
    return await stack.enter_async_context(get_session().create_client(
        "sqs", region_name="us-east-1", endpoint_url=endpoint, config=boto, **CREDS))


async def throughput(endpoint: str, queue_url: str, n: int, senders: int = 16) -> dict[str, float]:
    """Send ``n`` messages (SendMessageBatch, ``senders`` at once); time until the queue is empty."""
    import contextlib

    async with contextlib.AsyncExitStack() as stack:
        sqs = await _client(stack, endpoint)
        batches = iter(range(0, n, 10))
        start = time.perf_counter()

        async def sender() -> None:
            for first in batches:
                entries = [{"Id": str(i), "MessageBody": json.dumps({"n": first + i})} for i in range(10)]
                await sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)

        await asyncio.gather(*(sender() for _ in range(senders)))
        sent = time.perf_counter() - start
        while await _depth(sqs, queue_url):  # noqa: ASYNC110 -- the queue offers no "empty" notification
            await asyncio.sleep(0.1)
        elapsed = time.perf_counter() - start
    return {"messages_per_s": n / elapsed, "messages": n, "send_s": sent, "total_s": elapsed}


async def _depth(sqs: Any, url: str) -> int:
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    found = (await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names))["Attributes"]
    return sum(int(found[name]) for name in names)


async def latency(endpoint: str, queue_url: str, n: int) -> dict[str, float]:
    """SendMessage one at a time: the answer comes once the message is on disk (fsync'ed)."""
    import contextlib

    async with contextlib.AsyncExitStack() as stack:
        sqs = await _client(stack, endpoint)
        times = []
        for i in range(n):
            start = time.perf_counter()
            await sqs.send_message(QueueUrl=queue_url, MessageBody=f"m{i}")
            times.append((time.perf_counter() - start) * 1000)
    quantiles = statistics.quantiles(times, n=100)
    return {"p50_ms": quantiles[49], "p99_ms": quantiles[98], "per_s": n / (sum(times) / 1000)}


def embedded(root: Path, n: int, n_latency: int) -> dict[str, dict[str, float]]:
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    with Daemon(_config(root / "embedded", port, "bench", None), env=PRODUCTION_LOGS):
        base = f"{endpoint}/000000000000"
        asyncio.run(throughput(endpoint, f"{base}/bench", 100))  # warm the worker and the path
        rows = {"embedded queue -> no-op handler, batch 10": asyncio.run(throughput(endpoint, f"{base}/bench", n))}
        rows["embedded SendMessage latency (durable)"] = asyncio.run(latency(endpoint, f"{base}/latency", n_latency))
    return rows


def moto(root: Path, n: int) -> dict[str, dict[str, float]]:
    moto_port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(moto_port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{moto_port}"
    try:
        wait_until(lambda: _answers(endpoint), timeout=30)
        url = asyncio.run(_create(endpoint, "bench"))
        with Daemon(_config(root / "moto", free_port(), url, endpoint), env=_fake_env() | PRODUCTION_LOGS):
            asyncio.run(throughput(endpoint, url, 100))
            return {"moto server -> no-op handler, batch 10 (peer)": asyncio.run(throughput(endpoint, url, n))}
    finally:
        proc.terminate()
        proc.wait(10)


def _fake_env() -> dict[str, str]:
    return {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}


def _answers(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"{url}/moto-api/", timeout=1):
            return True
    except OSError:
        return False


async def _create(endpoint: str, name: str) -> str:
    import contextlib

    async with contextlib.AsyncExitStack() as stack:
        sqs = await _client(stack, endpoint)
        return (await sqs.create_queue(QueueName=name))["QueueUrl"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=20000, help="messages for the embedded queue")
    parser.add_argument("--n-moto", type=int, default=3000, help="messages for moto (slower)")
    parser.add_argument("--n-latency", type=int, default=1000)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-queue-", dir=os.environ.get("BENCH_DIR", "/var/tmp")))
    rows = embedded(root, args.n, args.n_latency) | moto(root, args.n_moto)
    print(f"{'scenario':50} {'msgs/s':>9} {'messages':>9} {'p50 ms':>8} {'p99 ms':>8}")
    for name, row in rows.items():
        rate = row.get("messages_per_s", row.get("per_s", 0))
        print(f"{name:50} {rate:>9.0f} {row.get('messages', ''):>9} {row.get('p50_ms', float('nan')):>8.2f} "
              f"{row.get('p99_ms', float('nan')):>8.2f}")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "queue.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
