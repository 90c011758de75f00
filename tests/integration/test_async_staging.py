"""The async queue keeps one event staged for a local function's next free worker, and throttles as Lambda does.

A lane has one consumer more than the function's concurrency: that event waits in ``handover`` for the first
slot the queue's own deliveries free, instead of being throttled by them. A slot held by anyone else (a
synchronous invoke) still throttles it. The dispatcher runs in-process with the real store, real worker
processes and a real handler.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from pathlib import Path

import pytest

from bridge.errors import Throttled
from bridge.model import Invocation
from tests.integration.test_async_intake import InProcess, seen, until

HANDLER = """
    import json, os, time
    def handler(event, context):
        started = time.time()
        if event.get("hold"):  # keep the only slot until the test lets go
            deadline = started + 20
            while not os.path.exists(os.environ["RELEASE"]) and time.time() < deadline:
                time.sleep(0.01)
        else:
            time.sleep(0.005)
        fd = os.open(os.environ["RECORD_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        os.write(fd, (json.dumps({"n": event["n"], "start": started, "end": time.time()}) + "\\n").encode())
        os.close(fd)
"""


class OneSlot(InProcess):
    """A local function with reserved_concurrency 1 (one worker)."""

    def __init__(self, tmp_path: Path) -> None:
        self.record, self.release = tmp_path / "seen.jsonl", tmp_path / "release"
        super().__init__(tmp_path, HANDLER, {"reserved_concurrency": 1, "environment": {
            "RECORD_FILE": str(self.record), "RELEASE": str(self.release)}})

    async def __aexit__(self, *exc: object) -> None:
        self.release.touch()  # a held invocation must not keep the workers from stopping
        await super().__aexit__(*exc)


async def test_the_queues_own_deliveries_wait_for_the_slot_and_never_overlap(tmp_path: Path) -> None:
    """40 events, one slot: each runs once, one at a time, and none is throttled by the one before it."""
    running = OneSlot(tmp_path)
    async with running as dispatcher:
        assert dispatcher.lanes["f"].width == 2, "one consumer per slot, plus the staged one"
        for n in range(40):
            await dispatcher.accept("f", json.dumps({"n": n}).encode())
        await until(lambda: len(seen(running.record)) >= 40)
        await until(lambda: dispatcher.depth == 0)
        assert dispatcher.summary.counts["throttled"] == 0
    runs = sorted(seen(running.record), key=lambda r: r["start"])
    assert sorted(r["n"] for r in runs) == list(range(40)), "each event exactly once"
    overlaps = [(a["n"], b["n"]) for a, b in itertools.pairwise(runs) if b["start"] < a["end"]]
    assert overlaps == [], "reserved_concurrency 1: never two invocations at once"


async def test_a_synchronous_invoke_holding_the_slot_still_throttles_the_queue(tmp_path: Path) -> None:
    """Lambda's semantics: concurrency taken by another caller throttles an async delivery (retried later)."""
    running = OneSlot(tmp_path)
    async with running as dispatcher:
        held = asyncio.create_task(running.functions.get("f").invoke(
            Invocation(json.dumps({"n": -1, "hold": True}).encode()), wait=True))
        await until(lambda: running.functions.get("f").in_flight == 1)
        await dispatcher.accept("f", json.dumps({"n": 1}).encode())
        await until(lambda: dispatcher.summary.counts["throttled"] >= 1)
        assert seen(running.record) == [], "nothing ran while the synchronous call held the slot"
        running.release.touch()
        assert (await held).ok
        await until(lambda: [r["n"] for r in seen(running.record)] == [-1, 1])  # the throttled event, retried


async def test_a_delivery_not_staged_is_throttled_by_the_queues_own(tmp_path: Path) -> None:
    """The cluster's deliveries (not staged) hold an SQS message: they are throttled as before, never kept waiting."""
    running = OneSlot(tmp_path)
    async with running:
        fn = running.functions.get("f")
        held = asyncio.create_task(fn.handover(Invocation(json.dumps({"n": 1, "hold": True}).encode()), staged=True))
        await until(lambda: fn.in_flight == 1)
        with pytest.raises(Throttled):
            await fn.handover(Invocation(json.dumps({"n": 2}).encode()))
        staged = asyncio.create_task(fn.handover(Invocation(json.dumps({"n": 3}).encode()), staged=True))
        running.release.touch()
        assert (await held).ok and (await staged).ok, "the staged one waited for the slot instead"
        assert sorted(r["n"] for r in seen(running.record)) == [1, 3]
