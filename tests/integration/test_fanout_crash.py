"""SIGKILL the daemon while PutEvents and Publish calls flow: every entry and message it answered for reaches
each matching function and queue after a restart."""

from __future__ import annotations

import http.client
import json
import random
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import boto3

from bridge.testing import Daemon, free_port, wait_until, write_config, write_handler
from tests.integration.test_async_delivery import RECORDER, records

KILLS = 8
SENDERS = 4
TOPIC_ARN = "arn:aws:sns:us-east-1:000000000000:numbers"


def _put_events(n: int) -> tuple[str, bytes, dict[str, str]]:
    body = json.dumps({"Entries": [{"Source": "crash", "DetailType": "n", "Detail": json.dumps({"n": n})}]})
    return "/", body.encode(), {"X-Amz-Target": "AWSEvents.PutEvents",
                                "Content-Type": "application/x-amz-json-1.1"}


def _publish(n: int) -> tuple[str, bytes, dict[str, str]]:
    body = urlencode({"Action": "Publish", "Version": "2010-03-31", "TopicArn": TOPIC_ARN,
                      "Message": json.dumps({"n": n})})
    return "/", body.encode(), {"Content-Type": "application/x-www-form-urlencoded"}


class Sender(threading.Thread):
    """Sends PutEvents or Publish calls with increasing ``n``; remembers every n the daemon answered 200 for."""

    def __init__(self, port: int, start_at: int, request: Any) -> None:
        super().__init__(daemon=True)
        self.port, self.n, self.request = port, start_at, request
        self.accepted: list[int] = []
        self.stop = threading.Event()

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        while not self.stop.is_set():
            try:
                conn.request("POST", *self.request(self.n))
                response = conn.getresponse()
                answer = response.read()
            except (OSError, http.client.HTTPException):
                conn.close()
                if self.stop.wait(0.01):
                    return
                continue
            if response.status == 200 and (b'"FailedEntryCount": 0' in answer or b"<MessageId>" in answer):
                self.accepted.append(self.n)
            self.n += 1


def _config(tmp_path: Path, port: int) -> dict[str, Any]:
    code = write_handler(tmp_path, "sink", RECORDER)
    return {
        "state_dir": str(tmp_path / "state"), "api": {"listen": f"127.0.0.1:{port}"}, "log_level": "warning",
        "functions": {name: {"handler": "app.handler", "code": str(code), "reserved_concurrency": 2,
                             "environment": {"RECORD_FILE": str(tmp_path / f"{name}.jsonl")}}
                      for name in ("from-bus", "from-topic")},
        "queues": {"bus-copy": {}, "topic-copy": {}},
        "buses": {"default": {"rules": [{"name": "all", "event_pattern": {"source": ["crash"]},
                                         "targets": [{"target": "function:from-bus", "input_path": "$.detail"},
                                                     {"target": "queue:bus-copy", "input_path": "$.detail"}]}]}},
        "topics": {"numbers": {"subscriptions": [{"function": "from-topic"},
                                                 {"queue": "topic-copy", "raw_message_delivery": True}]}},
    }


def _run_and_kill(config: Path, port: int, rng: random.Random) -> tuple[list[int], list[int]]:
    bus: list[int] = []
    topic: list[int] = []
    for round_ in range(KILLS):
        daemon = Daemon(config)
        daemon.start()
        senders = [Sender(port, (round_ * SENDERS + i) * 1_000_000, _put_events if i % 2 else _publish)
                   for i in range(SENDERS)]
        for sender in senders:
            sender.start()
        time.sleep(rng.uniform(0.3, 1.0))  # the scenario: calls flow for a random while, then the kill
        daemon.kill()
        for i, sender in enumerate(senders):
            sender.stop.set()
            sender.join()
            (bus if i % 2 else topic).extend(sender.accepted)
    return bus, topic


def _queue_numbers(port: int, queue: str, wanted: set[int]) -> set[int]:
    sqs = boto3.client("sqs", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                       aws_access_key_id="x", aws_secret_access_key="x")
    url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
    seen: set[int] = set()

    def drained() -> bool:
        for message in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
            seen.add(json.loads(message["Body"])["n"])
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        return wanted <= seen

    wait_until(drained, timeout=120)
    return seen


def _function_numbers(path: Path, wanted: set[int]) -> set[int]:
    def delivered() -> set[int] | None:
        seen = {r["event"]["n"] if "n" in r["event"] else json.loads(r["event"]["Records"][0]["Sns"]["Message"])["n"]
                for r in records(path)}
        return seen if wanted <= seen else None

    return wait_until(delivered, timeout=120)


def test_sigkill_loses_no_accepted_put_events_or_publish(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path / "config.yaml", _config(tmp_path, port))
    bus, topic = _run_and_kill(config, port, random.Random(28))
    assert len(bus) > 100 and len(topic) > 100, (len(bus), len(topic))
    with Daemon(config):
        _function_numbers(tmp_path / "from-bus.jsonl", set(bus))
        _function_numbers(tmp_path / "from-topic.jsonl", set(topic))
        _queue_numbers(port, "bus-copy", set(bus))
        _queue_numbers(port, "topic-copy", set(topic))
    print(f"\nfan-out crash test: {KILLS} SIGKILLs, {len(bus)} PutEvents entries and {len(topic)} messages "
          "accepted, none lost")
