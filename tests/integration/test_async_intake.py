"""Intake hands fresh events straight to delivery: retries are not starved, and a repeated id is not run twice.

The dispatcher runs in-process (its internals are what is tested) with the real store, real worker processes
and a real handler.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path

from bridge.config.model import parse_config
from bridge.delivery.dispatcher import Dispatcher, new_event
from bridge.invokers.registry import Functions
from bridge.store import Store
from bridge.testing import write_handler

HANDLER = """
    import json, os, time
    def handler(event, context):
        fd = os.open(os.environ["RECORD_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        os.write(fd, (json.dumps({"n": event["n"], "time": time.time()}) + "\\n").encode())
        os.close(fd)
        marker = os.path.join(os.environ["MARKERS"], str(event["n"]))
        if event.get("fail_once") and not os.path.exists(marker):
            open(marker, "w").close()
            raise RuntimeError("failing once: " + str(event["n"]))
"""


def seen(record: Path) -> list[dict]:
    return [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []


async def until(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    """Poll a condition of the handler's record file (no event to await there) with a deadline."""
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110 -- a file written by another process
            await asyncio.sleep(0.01)


class InProcess:
    """A dispatcher with the real store delivering to one local function ``f`` of this handler and settings."""

    def __init__(self, tmp_path: Path, handler: str, function: dict) -> None:
        code = write_handler(tmp_path, "h", handler)
        self.config = parse_config(json.dumps({"state_dir": str(tmp_path / "state"), "functions": {"f": {
            "handler": "app.handler", "code": str(code), **function}}}))
        self.functions = Functions(self.config)
        self.store = Store(tmp_path / "store.sqlite3")

    async def __aenter__(self) -> Dispatcher:
        await self.store.__aenter__()
        self.dispatcher = Dispatcher(self.store, self.functions, self.config)
        self.task = asyncio.create_task(self.dispatcher.run())
        return self.dispatcher

    async def __aexit__(self, *exc: object) -> None:
        self.dispatcher.stop()
        await self.task
        await self.store.close()
        await self.functions.close()


class Running(InProcess):
    """One local function (2 workers) whose first failure is retried after 0.3 s."""

    def __init__(self, tmp_path: Path) -> None:
        (tmp_path / "markers").mkdir()
        self.record = tmp_path / "seen.jsonl"
        super().__init__(tmp_path, HANDLER, {
            "reserved_concurrency": 2,
            "environment": {"RECORD_FILE": str(self.record), "MARKERS": str(tmp_path / "markers")},
            "async": {"maximum_retry_attempts": 1, "retry_delays": [0.3]}})


async def test_a_retry_is_delivered_while_a_steady_stream_keeps_the_buffer_busy(tmp_path: Path) -> None:
    """The stream keeps the lane's buffer between 100 and 200 events, so it never runs dry and never overflows:
    only the periodic re-read of the store (REFETCH) can find the retry that became due meanwhile."""
    running = Running(tmp_path)
    async with running as dispatcher:
        await dispatcher.accept("f", json.dumps({"n": -1, "fail_once": True}).encode())
        n, deadline = 0, time.monotonic() + 20
        while sum(r["n"] == -1 for r in seen(running.record)) < 2 and time.monotonic() < deadline:
            if dispatcher.depth < 150:  # top up: the stream goes on as long as the retry has not run
                await dispatcher.accept_many([new_event("f", json.dumps({"n": n + i}).encode()) for i in range(50)])
                n += 50
            await asyncio.sleep(0.01)  # pacing the stream (the scenario), not waiting for a result
        retried = [r for r in seen(running.record) if r["n"] == -1]
        assert len(retried) == 2, f"the retry ran while {n} fresh events streamed past it"


async def test_an_id_accepted_again_while_its_retry_waits_runs_only_as_that_retry(tmp_path: Path) -> None:
    """A source repeating an event (same id) after the first attempt failed: the queue already holds it."""
    running = Running(tmp_path)
    async with running as dispatcher:
        first = new_event("f", json.dumps({"n": 7, "fail_once": True}).encode(), event_id="repeat-7")
        await dispatcher.accept_many([first])
        await until(lambda: bool(seen(running.record)))
        assert await dispatcher.accept_many([first]) == 0, "the queue already holds this id"
        await dispatcher.accept_many([new_event("f", json.dumps({"n": 8}).encode())])  # the lane is caught up
        # A wrongly buffered repeat would run before n=8 (the buffer is first in, first out): wait for n=8
        # and for the retry, then count.
        await until(lambda: 8 in {r["n"] for r in seen(running.record)} and len(seen(running.record)) >= 3)
        runs = [r for r in seen(running.record) if r["n"] == 7]
        assert len(runs) == 2, runs
        assert runs[1]["time"] - runs[0]["time"] >= 0.25, "the second run is the retry, after retry_delays[0]"
