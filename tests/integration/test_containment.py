"""The dispatcher's containment rule: an error while handling one event dead-letters that event, the rest go on.

No known input raises past the bounded decoders any more, so the error is injected (labelled fault
injection: ``invocation_record`` raises once, standing in for any future bug); store, dispatcher, worker
and handler are the real ones.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from bridge.config.model import parse_config
from bridge.delivery import dispatcher as dispatcher_module
from bridge.delivery.dispatcher import Dispatcher
from bridge.events.invocation_record import HANDLING_FAILED
from bridge.invokers.registry import Functions
from bridge.store import Store
from bridge.testing import write_handler

FAILING = """
    def handler(event, context):
        raise RuntimeError("failing on purpose: " + str(event.get("n")))
"""


async def test_an_error_building_the_record_fails_that_event_only(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    code = write_handler(tmp_path, "failing", FAILING)
    config = parse_config(json.dumps({"state_dir": str(tmp_path / "state"), "functions": {"f": {
        "handler": "app.handler", "code": str(code), "async": {"maximum_retry_attempts": 0}}}}))
    real, calls = dispatcher_module.invocation_record, []

    def broken_once(**kwargs: object) -> dict:
        calls.append(kwargs)
        if len(calls) == 1:
            raise RuntimeError("injected: building the record failed")
        return real(**kwargs)

    monkeypatch.setattr(dispatcher_module, "invocation_record", broken_once)
    functions = Functions(config)
    async with Store(tmp_path / "store.sqlite3") as store:
        dispatcher = Dispatcher(store, functions, config)
        running = asyncio.create_task(dispatcher.run())
        try:
            for n in (1, 2):
                await dispatcher.accept("f", json.dumps({"n": n}).encode())
            async with asyncio.timeout(30):
                # The store signals no dead letter, so it is polled (with the deadline above).
                while len(entries := await store.call(_dead_letters, durable=False)) < 2:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            assert not running.done(), "the dispatcher goes on"
        finally:
            dispatcher.stop()
            await running
            await functions.close()
    by_condition = {condition: reason for condition, reason in entries}
    assert set(by_condition) == {HANDLING_FAILED, "RetriesExhausted"}
    assert "injected: building the record failed" in by_condition[HANDLING_FAILED]


def _dead_letters(conn) -> list[tuple[str, str]]:
    return conn.execute("SELECT condition, reason FROM dead_letters").fetchall()
