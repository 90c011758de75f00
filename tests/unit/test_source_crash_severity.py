"""A source that crashes is logged as an error, naming it, with its traceback, before the service goes down."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from structlog.testing import capture_logs

from bridge.sources import runner as runner_module


class Crashing:
    async def run(self) -> None:
        raise RuntimeError("the origin vanished")


async def test_a_crashed_source_is_an_error(monkeypatch) -> None:
    monkeypatch.setattr(runner_module, "create_source", lambda config, ctx: Crashing())
    config = SimpleNamespace(name="uploads", type="directory", function="thumbnails")
    with capture_logs() as logs, pytest.raises(ExceptionGroup):
        async with runner_module.SourceRunner(lambda stats, config: SimpleNamespace(stats=stats)) as sources:
            sources.start(config)
            await asyncio.wait({sources.tasks["uploads"]})  # it crashes at its first step
    [crash] = [e for e in logs if e["event"] == "source.crashed"]
    assert crash["log_level"] == "error" and crash["source"] == "uploads" and crash["exc_info"] is True
    assert sources.stats["uploads"].state == "stopped"
