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
