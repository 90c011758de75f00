"""Cluster mode's pure parts: the message codec (fuzzed: bytes from the queue are hostile) and the config section."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.cluster import messages
from bridge.config.model import parse_config
from bridge.errors import ConfigError
from bridge.store import QueuedEvent

events = st.builds(
    QueuedEvent,
    id=st.text(min_size=1, max_size=64), function=st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True),
    payload=st.binary(max_size=512), request_id=st.uuids().map(str),
    received_at=st.floats(0, 4e9), next_at=st.floats(0, 4e9), invoke_count=st.integers(0, 200),
    function_errors=st.integers(0, 200), throttles=st.integers(0, 200),
    last_response=st.none() | st.text(max_size=64), handover=st.none() | st.text(max_size=64),
)


@settings(max_examples=200, deadline=None)
@given(events)
def test_an_event_survives_the_queue_unchanged(event: QueuedEvent) -> None:
    assert messages.decode(messages.encode(event)) == event


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300) | st.binary(max_size=300).map(lambda b: b.decode("latin-1")))
def test_any_other_body_is_malformed_never_a_crash(body: str) -> None:
    try:
        messages.decode(body)
    except messages.MalformedMessage:
        return


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["v", "id", "function", "request_id", "payload", "encoding", "received_at",
                                        "next_at", "invoke_count", "last_response"]),
                       st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20), max_size=10))
def test_a_body_with_wrong_fields_is_malformed(fields: dict) -> None:
    try:
        event = messages.decode(json.dumps({"v": 1, **fields}))
    except messages.MalformedMessage:
        return
    assert event.id and event.function and event.request_id  # only a complete event gets through


def test_a_wait_beyond_sqs_delay_limit_is_sent_in_hops() -> None:
    event = QueuedEvent("e", "f", b"{}", "r", 0.0, 1000.0 + 3600)
    assert messages.delay_for(event, now=1000.0) == messages.MAX_DELAY == 900
    assert messages.delay_for(event.after_attempt(1000.5), now=1000.0) == 1
    assert messages.delay_for(event.after_attempt(10.0), now=1000.0) == 0


CLUSTER = """
functions: {f: {handler: app.handler, code: .}}
cluster:
  async_queue: QUEUE
  table: TABLE
  lease_seconds: 5
"""


def _cluster(queue: str, table: str) -> str:
    return CLUSTER.replace("QUEUE", queue).replace("TABLE", table)


def test_the_cluster_section_defaults_the_node_id_to_the_hostname() -> None:
    import socket

    config = parse_config(_cluster("https://sqs.eu-west-1.amazonaws.com/123456789012/q", "t-1"))
    assert config.cluster is not None
    assert config.cluster.node_id == socket.gethostname()
    assert config.cluster.queue_name == "q" and config.cluster.lease_seconds == 5


@pytest.mark.parametrize(("queue", "table", "says"), [
    ("bridge-async", "t-1", "is not an SQS queue URL"),
    ("https://sqs.eu-west-1.amazonaws.com/123456789012/q", "x", "is not a DynamoDB table name"),
])
def test_a_wrong_cluster_section_names_the_path_and_the_fix(queue: str, table: str, says: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(_cluster(queue, table))
    assert "cluster" in str(err.value) and says in str(err.value)


def test_without_a_cluster_section_nothing_changes() -> None:
    config = parse_config("functions: {f: {handler: app.handler, code: .}}")
    assert config.cluster is None


async def test_concurrent_calls_share_batches_and_a_failed_batch_fails_only_its_callers() -> None:
    import asyncio

    from bridge.cluster.batcher import Batcher

    batches: list[list[int]] = []

    async def flush(items: list[int]) -> None:
        batches.append(items)
        await asyncio.sleep(0.01)
        if 13 in items:
            raise OSError("SQS said no")

    batcher: Batcher[int] = Batcher(flush)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(25)), return_exceptions=True)
    assert sorted(i for b in batches for i in b) == list(range(25))
    assert len(batches) == 3 and max(len(b) for b in batches) == 10
    failed = {i for i, r in enumerate(results) if isinstance(r, OSError)}
    assert failed == set(next(b for b in batches if 13 in b))
    await batcher.submit(99)  # a lone caller still gets through, alone
    assert batches[-1] == [99]


async def test_the_backlog_lets_events_in_up_to_the_cap_then_waits_for_room() -> None:
    """SQS's count is a function here (the daemons' test covers the real queue): the rule alone."""
    import asyncio

    import structlog

    from bridge.cluster.backlog import Backlog

    queue = {"depth": 2}
    asked: list[int] = []

    async def count() -> int:
        asked.append(queue["depth"])
        return queue["depth"]

    with structlog.testing.capture_logs() as logs:
        backlog = Backlog(count, cap=5, log=structlog.get_logger(), check=0.05)
        await asyncio.gather(backlog.reserve(1), backlog.reserve(1), backlog.reserve(1))
        assert backlog.estimate == 5 and len(asked) == 1  # concurrent callers share one look; own sends counted
        queue["depth"] = 5  # the three sent are in SQS's count now
        waiting = asyncio.create_task(backlog.reserve(2))
        async with asyncio.timeout(2):
            while len(asked) < 3:  # noqa: ASYNC110 - the waiter has looked at SQS's count again (and again)
                await asyncio.sleep(0.01)
        assert not waiting.done(), "over the cap: intake waits"
        queue["depth"] = 3  # delivery made room for two
        await asyncio.wait_for(waiting, 2)
        assert backlog.estimate == 5
        backlog.release(2)  # those two were not sent after all
        assert backlog.estimate == 3
    assert [e["event"] for e in logs] == ["queue.full", "queue.resumed"]
    assert logs[0]["max_queued_events"] == 5 and logs[0]["shared"] is True
