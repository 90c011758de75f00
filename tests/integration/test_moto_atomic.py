"""The test kit's moto patches keep SQS's FIFO guarantee, which the cluster's SQS tests rely on: moto's
backend in this process, its clock made to move during a receive scan as it does on a loaded machine."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
from moto.sqs import models

from tests.integration import moto_atomic

ACCOUNT, REGION = "123456789012", "us-east-1"


@pytest.fixture
def backend(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """An SQS backend with ``--fifo-receives``'s patches, undone afterwards (they patch moto's classes)."""
    for name in ("receive_message", *moto_atomic.SQS_CHANGES):
        monkeypatch.setattr(models.SQSBackend, name, getattr(models.SQSBackend, name))
    monkeypatch.setattr(models.Message, "visible", models.Message.visible)
    moto_atomic.patch_fifo_receives()
    backend = models.SQSBackend(REGION, ACCOUNT)
    yield backend
    backend.reset()


def test_a_groups_messages_back_from_flight_together_come_in_order_while_the_clock_moves(
        backend: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    backend.create_queue("jobs.fifo", FifoQueue="true", ContentBasedDeduplication="true")
    for seq in range(3):
        backend.send_message("jobs.fifo", str(seq), group_id="g")
    assert _bodies(backend.receive_message("jobs.fifo", 10, 0, 30)) == ["0", "1", "2"]
    # The batch failed: its messages come back one millisecond apart (moto marked them received one by one),
    # and each look at the clock during the scan finds it a millisecond later.
    queue = backend.get_queue("jobs.fifo")
    start = 1_000_000_000_000.0
    for offset, message in enumerate(queue._messages, start=1):
        message.visible_at = start + offset
    ticks = itertools.count(start + 1.5)
    monkeypatch.setattr(models, "unix_time_millis", lambda: next(ticks))

    received: list[str] = []
    for _ in range(10):  # each receive is one scan at one instant (wait 0); a group's message may come late
        received += _bodies(backend.receive_message("jobs.fifo", 10, 0, 30))
        if received:
            break
    assert received == ["0", "1", "2"], "a group's messages come in order, none while an earlier one is in flight"


def _bodies(messages: list[Any]) -> list[str]:
    return [m.body for m in messages]
