"""Benchmark the mqtt source: QoS 1 messages/s from publish to handler, and publish -> handler-start latency."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the test kit's broker helper lives in tests/

from bridge.testing import wait_until, write_config, write_handler
from tests.integration.mosquitto import Mosquitto, Publisher

# Near no-op: it only notes when it started (and the publish time carried by the event), one os.write per call.
HANDLER = """
import os, time
FD = os.open(os.environ["RECORD_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
def handler(event, context):
    os.write(FD, f"{time.time()} {event['t']}\\n".encode())
"""
TOPIC = "bench/sensor/data"
SQL = "SELECT t, n, topic(3) AS kind FROM 'bench/+/data'"


def count(path: Path) -> int:
    """Invocations so far, cheaply: polling must not take the CPU the daemon is measured on."""
    return path.read_bytes().count(b"\n") if path.exists() else 0


def lines(path: Path) -> list[tuple[float, float]]:
    """(handler start, publish time) of every invocation so far."""
    if not path.exists():
        return []
    return [tuple(map(float, line.split())) for line in path.read_text().splitlines() if line]  # type: ignore[misc]


class Bench:
    """A mosquitto and a ``lambda-bridge run`` subprocess with one mqtt source into the recording handler."""

    def __init__(self, root: Path, inflight: int, workers: int) -> None:
        self.root = root
        self.record = root / "out" / "record.txt"  # not beside config.yaml: the daemon watches that directory
        self.record.parent.mkdir()
        self.broker = Mosquitto(root / "broker", extra_config=f"max_inflight_messages {inflight}").start()
        code = write_handler(root, "noop", HANDLER)
        self.config = write_config(root / "config.yaml", {
            "state_dir": str(root / "state"), "log_level": "info",
            "functions": {"noop": {"handler": "app.handler", "code": str(code), "reserved_concurrency": workers,
                                   "environment": {"RECORD_FILE": str(self.record)}}},
            "sources": [{"name": "bench", "type": "mqtt", "broker": self.broker.url, "sql": SQL, "qos": 1,
                         "function": "noop"}],
        })
        # Logs go where they go in production (a pipe to journald costs about what /dev/null costs).
        self.daemon = subprocess.Popen([sys.executable, "-m", "bridge.cli", "run", "--config", str(self.config)],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.publisher = Publisher(self.broker.plain_port, client_id="bench-publisher")

    def warm_up(self) -> None:
        """Repeat one message until the handler saw it: subscribed, worker started, path warm."""
        wait_until(lambda: self.publisher.send(TOPIC, json.dumps({"t": time.time(), "n": -1})) or lines(self.record),
                   timeout=60, interval=0.2)

    def throughput(self, n: int) -> dict[str, float]:
        """Publish n QoS 1 messages as fast as mosquitto_pub can; time until the n-th handler started.

        The publisher is mosquitto_pub (C), one message per stdin line: a device is another host, and a
        Python publisher on this 2-core box would take a fifth of its CPU from the daemon being measured.
        """
        base = count(self.record)
        text = "".join(json.dumps({"t": time.time(), "n": i}) + "\n" for i in range(n)).encode()
        start = time.perf_counter()
        subprocess.run(["mosquitto_pub", "-p", str(self.broker.plain_port), "-i", "bench-burst", "-t", TOPIC,
                        "-q", "1", "-l"], input=text, check=True, timeout=600)
        published = time.perf_counter() - start
        wait_until(lambda: count(self.record) >= base + n, timeout=600, interval=0.05)
        elapsed = time.perf_counter() - start
        return {"messages_per_s": n / elapsed, "messages": n, "publish_per_s": n / published}

    def latency(self, rate: float, seconds: float) -> dict[str, float]:
        """Publish at a steady ``rate``; publish -> handler-start latency of every message."""
        base = count(self.record)
        total = int(rate * seconds)
        start = time.perf_counter()
        for i in range(total):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)  # pacing the publisher, which is the scenario
            self.publisher.publish(TOPIC, json.dumps({"t": time.time(), "n": i}))
        wait_until(lambda: count(self.record) >= base + total, timeout=120, interval=0.05)
        samples = sorted((started - published) * 1000 for started, published in lines(self.record)[base:])
        return {"p50_ms": statistics.median(samples), "p99_ms": samples[int(len(samples) * 0.99) - 1],
                "max_ms": samples[-1], "messages": total, "rate_per_s": rate}

    def close(self) -> None:
        """Stop publisher, daemon and broker."""
        self.publisher.close()
        self.daemon.terminate()
        self.daemon.wait(30)
        self.broker.stop()


def run(args: argparse.Namespace, root: Path) -> dict[str, dict[str, float]]:
    bench = Bench(root, args.inflight, args.workers)
    try:
        bench.warm_up()
        rows = {THROUGHPUT: bench.throughput(args.n),
                f"latency at {args.rate:.0f} msg/s for {args.seconds:.0f} s": bench.latency(args.rate, args.seconds)}
    finally:
        bench.close()
    # The durable async queue's own pace in this run (bench/async.py row b): what MQTT QoS 1 is held to.
    rows[ASYNC] = {"messages_per_s": async_row(max(args.n, ASYNC_EVENTS))["events_per_s"]}
    rows[RATIO] = {"ratio": rows[THROUGHPUT]["messages_per_s"] / rows[ASYNC]["messages_per_s"]}
    return rows


ASYNC_EVENTS = 20000  # the async row's own size: 4,000 a round, steadier than the burst's 10,000
THROUGHPUT = "QoS 1 throughput, one invocation per message"
ASYNC = "async queue row (b) of bench/async.py, this run"
RATIO = "ratio QoS 1 / async row (target >= 0.7)"


def async_row(n: int) -> dict[str, float]:
    """Row (b) of bench/async.py, run now: the durable async queue's pace on this machine in this run."""
    spec = importlib.util.spec_from_file_location("bench_async", Path(__file__).with_name("async.py"))
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module.async_row(n)



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=10000, help="messages for the throughput run")
    parser.add_argument("--rate", type=float, default=200.0, help="messages/s for the latency run")
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of the latency run")
    parser.add_argument("--workers", type=int, default=2, help="reserved_concurrency of the handler")
    parser.add_argument("--inflight", type=int, default=1000, help="mosquitto's max_inflight_messages")
    args = parser.parse_args()
    if shutil.which("mosquitto_pub") is None:
        parser.exit(2, "bench/mqtt.py publishes with mosquitto_pub: apt-get install mosquitto-clients\n")
    root = Path(tempfile.mkdtemp(prefix="bench-mqtt-", dir=os.environ.get("BENCH_DIR", "/var/tmp")))
    rows = run(args, root)
    print(f"state and broker in {root}; mosquitto max_inflight_messages {args.inflight}")
    print(f"{'scenario':44} {'msg/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for name, row in rows.items():
        if "ratio" in row:
            print(f"{name:44} {row['ratio']:>8.2f}")
            continue
        rate = row.get("messages_per_s", row.get("rate_per_s", 0))
        cells = [f"{row[k]:>8.2f}" if k in row else f"{'-':>8}" for k in ("p50_ms", "p99_ms", "max_ms")]
        print(f"{name:44} {rate:>8.0f} {' '.join(cells)}")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "mqtt.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
