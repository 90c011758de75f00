"""SIGKILL the daemon at random moments while async events flow: nothing it accepted is ever lost."""

from __future__ import annotations

import http.client
import json
import random
import threading
import time
from pathlib import Path

from bridge.testing import Daemon, free_port, wait_until, write_config, write_handler
from tests.integration.test_async_delivery import RECORDER, records

KILLS = 20
SENDERS = 8


class Sender(threading.Thread):
    """Posts Event invocations with increasing ``n``; remembers every n the daemon answered 202 for."""

    def __init__(self, port: int, start_at: int) -> None:
        super().__init__(daemon=True)
        self.port, self.n = port, start_at
        self.accepted: list[int] = []
        self.stop = threading.Event()

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        while not self.stop.is_set():
            try:
                conn.request("POST", "/2015-03-31/functions/sink/invocations", body=json.dumps({"n": self.n}),
                             headers={"X-Amz-Invocation-Type": "Event"})
                response = conn.getresponse()
                response.read()  # an unread response makes the next request on this connection fail
                status = response.status
            except (OSError, http.client.HTTPException):
                conn.close()
                if self.stop.wait(0.01):  # the daemon is gone: back off briefly until it is killed for good
                    return
                continue
            if status == 202:
                self.accepted.append(self.n)
            self.n += 1


def test_sigkill_loses_nothing_accepted(tmp_path: Path) -> None:
    code = write_handler(tmp_path, "sink", RECORDER)
    sink = tmp_path / "sink.jsonl"
    port = free_port()
    config = write_config(tmp_path / "config.yaml", {
        "state_dir": str(tmp_path / "state"), "api": {"listen": f"127.0.0.1:{port}"}, "log_level": "warning",
        "functions": {"sink": {"handler": "app.handler", "code": str(code), "reserved_concurrency": 2,
                               "environment": {"RECORD_FILE": str(sink)}}},
    })
    rng = random.Random(7)
    accepted: list[int] = []
    for round_ in range(KILLS):
        daemon = Daemon(config)
        daemon.start()
        senders = [Sender(port, start_at=(round_ * SENDERS + i) * 1_000_000) for i in range(SENDERS)]
        for sender in senders:
            sender.start()
        time.sleep(rng.uniform(0.2, 0.8))  # the scenario: events flow for a random while, then the kill
        daemon.kill()
        for sender in senders:
            sender.stop.set()
            sender.join()
            accepted += sender.accepted
    assert len(accepted) > 1000, f"only {len(accepted)} events were accepted across {KILLS} kills"
    daemon = Daemon(config)
    daemon.start()
    try:
        delivered = wait_until(lambda: _all_delivered(sink, accepted), timeout=120)
    finally:
        daemon.stop()
    counts: dict[int, int] = {}
    for n in delivered:
        counts[n] = counts.get(n, 0) + 1
    duplicates = sum(c - 1 for c in counts.values())
    print(f"\ncrash test: {KILLS} SIGKILLs, {len(accepted)} accepted, {len(delivered)} deliveries, "
          f"0 lost, {duplicates} duplicates")


def _all_delivered(sink: Path, accepted: list[int]) -> list[int] | None:
    delivered = [r["event"]["n"] for r in records(sink)]
    return delivered if set(accepted) <= set(delivered) else None
