"""Benchmark fan-out: PutEvents entries/s with 10 rules and SNS Publish/s with 5 filtered subscriptions through
boto3, the bridge beside moto's server in the same run; publish -> handler latency (p50) on the bridge."""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import boto3
from botocore.config import Config as BotoConfig

from bridge.testing import PRODUCTION_LOGS, Daemon, free_port, wait_until, write_config, write_handler

RULES = 10
SUBSCRIPTIONS = 5
THREADS = 8
PROCESSES = 4
STAMP = """
    import json, os, time
    def handler(event, context):
        if "Records" in event:
            sent = json.loads(event["Records"][0]["Sns"]["Message"])["sent"]
        else:
            sent = event["detail"]["sent"]
        with open(os.environ["RECORD_FILE"], "a") as f:
            f.write(json.dumps({"latency_ms": (time.time() - sent) * 1000}) + "\\n")
"""


def _client(service: str, endpoint: str) -> Any:
    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="bench",
                        aws_secret_access_key="bench",
                        config=BotoConfig(retries={"max_attempts": 0}, max_pool_connections=THREADS))


def _bridge_config(root: Path, port: int) -> Path:
    code = write_handler(root, "stamp", STAMP)
    rules = [{"name": f"r{i}", "event_pattern": {"source": ["bench"], "detail-type": [f"t{i}"]},
              "targets": [f"queue:bus{i}"]} for i in range(RULES)]
    rules.append({"name": "latency", "event_pattern": {"source": ["latency"]}, "targets": ["function:stamp"]})
    subs = [{"queue": f"sub{i}", "filter_policy": {"kind": [f"k{i}"]}} for i in range(SUBSCRIPTIONS)]
    return write_config(root / "config.yaml", {
        "state_dir": str(root / "state"), "log_level": "warning", "api": {"listen": f"127.0.0.1:{port}"},
        "functions": {"stamp": {"handler": "app.handler", "code": str(code),
                                "environment": {"RECORD_FILE": str(root / "latency.jsonl")}}},
        "queues": {**{f"bus{i}": {} for i in range(RULES)}, **{f"sub{i}": {} for i in range(SUBSCRIPTIONS)}},
        "buses": {"default": {"rules": rules}},
        "topics": {"bench": {"subscriptions": subs}, "latency": {"subscriptions": [{"function": "stamp"}]}},
    })


def _moto_setup(endpoint: str) -> str:
    """The same rules and filtered subscriptions on moto (SQS targets); returns the topic's ARN."""
    sqs, events, sns = (_client(s, endpoint) for s in ("sqs", "events", "sns"))

    def queue_arn(name: str) -> str:
        url = sqs.create_queue(QueueName=name)["QueueUrl"]
        return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

    for i in range(RULES):
        events.put_rule(Name=f"r{i}", EventPattern=json.dumps({"source": ["bench"], "detail-type": [f"t{i}"]}))
        events.put_targets(Rule=f"r{i}", Targets=[{"Id": "q", "Arn": queue_arn(f"bus{i}")}])
    topic = sns.create_topic(Name="bench")["TopicArn"]
    for i in range(SUBSCRIPTIONS):
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn(f"sub{i}"),
                      Attributes={"FilterPolicy": json.dumps({"kind": [f"k{i}"]})})
    return topic


def _rate(work: Callable[[Any, int], int], client: Callable[[], Any], calls: int) -> float:
    """Items per second: ``calls`` calls of ``work`` over PROCESSES processes of THREADS threads, one client
    per thread (one Python process of boto3 threads is bound by its own GIL long before either server)."""
    with multiprocessing.get_context("fork").Pool(PROCESSES) as pool:
        pool.starmap(_calls, [(work, client, THREADS)] * PROCESSES)  # warm every process and connection
        start = time.perf_counter()
        items = sum(pool.starmap(_calls, [(work, client, calls // PROCESSES)] * PROCESSES))
    return items / (time.perf_counter() - start)


def _calls(work: Callable[[Any, int], int], client: Callable[[], Any], calls: int) -> int:
    local = threading.local()

    def one(i: int) -> int:
        if not hasattr(local, "client"):
            local.client = client()
        return work(local.client, i)

    with ThreadPoolExecutor(THREADS) as pool:
        return sum(pool.map(one, range(calls)))


def _put_events(client: Any, i: int) -> int:
    entries = [{"Source": "bench", "DetailType": f"t{(i + j) % RULES}", "Detail": json.dumps({"n": i, "j": j})}
               for j in range(10)]
    answer = client.put_events(Entries=entries)
    assert answer["FailedEntryCount"] == 0, answer
    return len(entries)


def _publish(topic: str, client: Any, i: int) -> int:
    client.publish(TopicArn=topic, Message=json.dumps({"n": i}),
                   MessageAttributes={"kind": {"DataType": "String", "StringValue": f"k{i % SUBSCRIPTIONS}"}})
    return 1


def _raw_publish_rate(endpoint: str, topic: str, calls: int, concurrency: int = 32) -> float:
    """Publish/s from one asyncio client sending the form boto3 sends: what the server alone takes, with far
    less client CPU than boto3's (which on a small machine competes with the server it measures)."""
    import aiohttp

    def form(i: int) -> str:
        return urlencode({"Action": "Publish", "Version": "2010-03-31", "TopicArn": topic,
                          "Message": json.dumps({"n": i}), "MessageAttributes.entry.1.Name": "kind",
                          "MessageAttributes.entry.1.Value.DataType": "String",
                          "MessageAttributes.entry.1.Value.StringValue": f"k{i % SUBSCRIPTIONS}"})

    async def run() -> float:
        # moto reads the region and account from the credential scope; the signature itself is not checked
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Authorization": (
            "AWS4-HMAC-SHA256 Credential=bench/20260101/us-east-1/sns/aws4_request, SignedHeaders=host, "
            "Signature=0")}
        async with aiohttp.ClientSession() as session:
            numbers = iter(range(calls))

            async def worker() -> None:
                for i in numbers:
                    async with session.post(endpoint + "/", data=form(i), headers=headers) as response:
                        await response.read()
                        assert response.status == 200, response.status

            start = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return calls / (time.perf_counter() - start)

    return asyncio.run(run())


def _latency(endpoint: str, record: Path, n: int) -> dict[str, float]:
    """One message at a time, by bus and by topic: time from the call to the handler's first line."""
    events, sns = _client("events", endpoint), _client("sns", endpoint)
    topic = "arn:aws:sns:us-east-1:000000000000:latency"
    for i in range(n):
        events.put_events(Entries=[{"Source": "latency", "DetailType": "x", "Detail": json.dumps(
            {"sent": time.time()})}])
        sns.publish(TopicArn=topic, Message=json.dumps({"sent": time.time()}))
        wait_until(lambda i=i: record.exists() and len(record.read_text().splitlines()) >= 2 * (i + 1), timeout=30)
    times = [json.loads(line)["latency_ms"] for line in record.read_text().splitlines()]
    return {"p50_ms": statistics.median(times), "p90_ms": statistics.quantiles(times, n=10)[8]}


def bridge(root: Path, calls: int, n_latency: int) -> dict[str, Any]:
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    with Daemon(_bridge_config(root / "bridge", port), env=PRODUCTION_LOGS):
        topic = "arn:aws:sns:us-east-1:000000000000:bench"
        return {"put_events_entries_per_s": _rate(_put_events, partial(_client, "events", endpoint), calls),
                "publish_per_s": _rate(partial(_publish, topic), partial(_client, "sns", endpoint), calls),
                "publish_per_s_raw_client": _raw_publish_rate(endpoint, topic, calls),
                "publish_to_handler": _latency(endpoint, root / "bridge" / "latency.jsonl", n_latency)}


def moto(calls: int) -> dict[str, Any]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _answers(endpoint), timeout=30)
        topic = _moto_setup(endpoint)
        return {"put_events_entries_per_s": _rate(_put_events, partial(_client, "events", endpoint), calls),
                "publish_per_s": _rate(partial(_publish, topic), partial(_client, "sns", endpoint), calls),
                "publish_per_s_raw_client": _raw_publish_rate(endpoint, topic, calls)}
    finally:
        proc.terminate()
        proc.wait(10)


def _answers(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"{url}/moto-api/", timeout=1):
            return True
    except OSError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=2000, help="PutEvents calls (10 entries each) and Publishes")
    parser.add_argument("--calls-moto", type=int, default=500, help="the same on moto (slower)")
    parser.add_argument("--n-latency", type=int, default=100)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-fanout-", dir=os.environ.get("BENCH_DIR", "/var/tmp")))
    ours, theirs = bridge(root, args.calls, args.n_latency), moto(args.calls_moto)
    print(f"{'scenario':44} {'bridge':>10} {'moto':>10} {'ratio':>7}")
    for key, label in (("put_events_entries_per_s", "PutEvents entries/s, 10 rules"),
                       ("publish_per_s", "SNS Publish/s, 5 filtered subscriptions"),
                       ("publish_per_s_raw_client", "  the same, one asyncio client (server only)")):
        print(f"{label:44} {ours[key]:>10.0f} {theirs[key]:>10.0f} {ours[key] / theirs[key]:>6.1f}x")
    lat = ours["publish_to_handler"]
    print(f"publish -> handler (bus and topic): p50 {lat['p50_ms']:.1f} ms, p90 {lat['p90_ms']:.1f} ms")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "fanout.json").write_text(json.dumps({"bridge": ours, "moto": theirs}, indent=2))


if __name__ == "__main__":
    main()
