"""The embedded queue engine on a real store file: visibility, receive counts, redrive, FIFO, dedup, long polling."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from bridge.config.queues import QueueConfig, RedrivePolicy
from bridge.events.sqs import md5_hex, md5_of_message_attributes
from bridge.queues.engine import QueueEngine
from bridge.queues.errors import (
    InvalidParameterValue,
    MessageNotInflight,
    MissingParameter,
    QueueDoesNotExist,
    QueueNameExists,
    ReceiptHandleIsInvalid,
    SqsError,
)
from bridge.store import Store

ALL = ["All"]


@pytest.fixture
async def engine(tmp_path: Path):
    async with Store(tmp_path / "bridge.sqlite3") as store:
        engine = QueueEngine(store, region="eu-west-1", account="123456789012")
        await engine.start({
            "jobs": QueueConfig(visibility_timeout=1,
                                redrive_policy=RedrivePolicy(dead_letter_queue="dlq", max_receive_count=2)),
            "dlq": QueueConfig(),
            "orders.fifo": QueueConfig(fifo=True, content_based_deduplication=True, visibility_timeout=30),
            "plain.fifo": QueueConfig(fifo=True),
        })
        yield engine


async def send(engine: QueueEngine, queue: str, *bodies: str, **extra: object) -> list[dict]:
    results = await engine.send(queue, [{"MessageBody": b, **extra} for b in bodies])
    assert not [r for r in results if isinstance(r, SqsError)], results
    return results


async def receive(engine: QueueEngine, queue: str, n: int = 10, wait: int = 0, visibility: int | None = None):
    return await engine.receive(queue, max_messages=n, wait=wait, visibility=visibility, system_names=ALL,
                                attribute_names=ALL)


async def test_send_receive_delete_with_md5s(engine: QueueEngine) -> None:
    attrs = {"kind": {"DataType": "String", "StringValue": "order"}, "n": {"DataType": "Number", "StringValue": "3"},
             "raw": {"DataType": "Binary", "BinaryValue": "AAEC"}}
    [sent] = await send(engine, "jobs", "hello", MessageAttributes=attrs)
    assert sent["MD5OfMessageBody"] == md5_hex("hello")
    assert sent["MD5OfMessageAttributes"] == md5_of_message_attributes(attrs)
    [got] = await receive(engine, "jobs")
    assert got["MessageId"] == sent["MessageId"] and got["Body"] == "hello"
    assert got["MD5OfMessageAttributes"] == sent["MD5OfMessageAttributes"]
    assert got["Attributes"]["ApproximateReceiveCount"] == "1"
    assert got["MessageAttributes"] == attrs
    assert await receive(engine, "jobs") == [], "in flight: invisible"
    assert await engine.delete("jobs", [got["ReceiptHandle"]]) == [None]
    assert await engine.counts("jobs") == (0, 0, 0)


async def test_visibility_timeout_and_receive_count(engine: QueueEngine) -> None:
    await send(engine, "jobs", "a")
    [first] = await receive(engine, "jobs")
    assert await engine.counts("jobs") == (0, 1, 0)
    [again] = await receive(engine, "jobs", wait=3)  # long poll: wakes when the visibility timeout ends
    assert again["MessageId"] == first["MessageId"]
    assert again["Attributes"]["ApproximateReceiveCount"] == "2"
    first_seen = "ApproximateFirstReceiveTimestamp"
    assert again["Attributes"][first_seen] == first["Attributes"][first_seen]
    # the stale receipt neither deletes nor changes visibility of the newer receive
    assert await engine.delete("jobs", [first["ReceiptHandle"]]) == [None]
    assert await engine.counts("jobs") == (0, 1, 0)
    [error] = await engine.change_visibility("jobs", [(first["ReceiptHandle"], 5)])
    assert isinstance(error, InvalidParameterValue)


async def test_redrive_after_max_receive_count(engine: QueueEngine) -> None:
    [sent] = await send(engine, "jobs", "poison")
    for _ in range(2):
        [got] = await receive(engine, "jobs", visibility=0)
        assert got["MessageId"] == sent["MessageId"]
    assert await receive(engine, "jobs") == [], "third receive moves it to the DLQ instead"
    [dead] = await receive(engine, "dlq")
    assert dead["MessageId"] == sent["MessageId"] and dead["Body"] == "poison"
    assert dead["Attributes"]["DeadLetterQueueSourceArn"] == "arn:aws:sqs:eu-west-1:123456789012:jobs"


async def test_change_visibility(engine: QueueEngine) -> None:
    await send(engine, "jobs", "a")
    [got] = await receive(engine, "jobs", visibility=30)
    assert await engine.change_visibility("jobs", [(got["ReceiptHandle"], 0)]) == [None]
    [back] = await receive(engine, "jobs", visibility=0)
    [error] = await engine.change_visibility("jobs", [(back["ReceiptHandle"], 10)])
    assert isinstance(error, MessageNotInflight), "visibility 0: no longer in flight"
    [bad] = await engine.change_visibility("jobs", [("garbage", 10)])
    assert isinstance(bad, ReceiptHandleIsInvalid)


async def test_fifo_groups_order_and_blocking(engine: QueueEngine) -> None:
    for body, group in (("a1", "A"), ("b1", "B"), ("a2", "A"), ("b2", "B"), ("a3", "A")):
        await send(engine, "orders.fifo", body, MessageGroupId=group)
    first = await receive(engine, "orders.fifo", n=2)
    assert [m["Body"] for m in first] == ["a1", "b1"]
    assert await receive(engine, "orders.fifo") == [], "both groups have a message in flight"
    await engine.delete("orders.fifo", [first[1]["ReceiptHandle"]])  # B's message done, A's still in flight
    got = await receive(engine, "orders.fifo")
    assert [m["Body"] for m in got] == ["b2"], "A stays blocked while a1 is in flight"
    seqs = [int(m["Attributes"]["SequenceNumber"]) for m in first]
    assert seqs == sorted(seqs)
    assert first[0]["Attributes"]["MessageGroupId"] == "A"


async def test_fifo_deduplication(engine: QueueEngine) -> None:
    one = await send(engine, "orders.fifo", "same", MessageGroupId="g")
    two = await send(engine, "orders.fifo", "same", MessageGroupId="g")
    assert one[0]["MessageId"] == two[0]["MessageId"], "content-based dedup: SHA-256 of the body"
    assert one[0]["SequenceNumber"] == two[0]["SequenceNumber"]
    [dedup] = (await receive(engine, "orders.fifo"))
    assert len(dedup["Attributes"]["MessageDeduplicationId"]) == 64
    a = await send(engine, "plain.fifo", "x", MessageGroupId="g", MessageDeduplicationId="id-1")
    b = await send(engine, "plain.fifo", "y", MessageGroupId="g", MessageDeduplicationId="id-1")
    assert a[0]["MessageId"] == b[0]["MessageId"]
    [error] = await engine.send("plain.fifo", [{"MessageBody": "z", "MessageGroupId": "g"}])
    assert isinstance(error, InvalidParameterValue) and "ContentBasedDeduplication" in str(error)
    [missing] = await engine.send("plain.fifo", [{"MessageBody": "z"}])
    assert isinstance(missing, MissingParameter)


async def test_delay_and_long_poll_wakes_on_send(engine: QueueEngine) -> None:
    await send(engine, "dlq", "later", DelaySeconds=1)
    assert await engine.counts("dlq") == (0, 0, 1)
    start = time.monotonic()
    [late] = await receive(engine, "dlq", wait=5)
    assert late["Body"] == "later" and 0.8 < time.monotonic() - start < 3
    waiter = asyncio.create_task(receive(engine, "dlq", wait=10))
    # Wait until the receiver is parked on the queue's event (asyncio.Event keeps its waiters in _waiters),
    # so the send below must wake it rather than be found by its first look.
    deadline = time.monotonic() + 5
    while not engine.queues["dlq"].changed._waiters:
        assert time.monotonic() < deadline, "the receiver never parked"
        await asyncio.sleep(0)
    start = time.monotonic()
    await send(engine, "dlq", "now")
    [got] = await waiter
    assert got["Body"] == "now" and time.monotonic() - start < 1.0, "woken by the send, not by the timeout"


async def test_retention_expires_messages(engine: QueueEngine) -> None:
    await engine.set_attributes("dlq", {"MessageRetentionPeriod": "60"})
    await send(engine, "dlq", "old")
    await engine.store.call(lambda conn: conn.execute("UPDATE queue_messages SET expires=? WHERE body='old'",
                                                      (time.time() - 1,)))
    assert await receive(engine, "dlq") == []
    assert await engine.counts("dlq") == (0, 0, 0)


async def test_queue_management_errors(engine: QueueEngine) -> None:
    with pytest.raises(QueueDoesNotExist):
        await engine.send("nope", [{"MessageBody": "x"}])
    created = await engine.create_queue("extra", {"VisibilityTimeout": "7"})
    assert await engine.create_queue("extra", {"VisibilityTimeout": "7"}) is created, "idempotent"
    with pytest.raises(QueueNameExists):
        await engine.create_queue("extra", {"VisibilityTimeout": "8"})
    attrs = await engine.get_attributes("extra", ["VisibilityTimeout", "QueueArn"])
    assert attrs == {"VisibilityTimeout": "7", "QueueArn": "arn:aws:sqs:eu-west-1:123456789012:extra"}
    with pytest.raises(SqsError) as bad:
        await engine.set_attributes("extra", {"VisibilityTimeout": "99999"})
    assert bad.value.code == "InvalidAttributeValue"
    with pytest.raises(SqsError) as unknown:
        await engine.get_attributes("extra", ["Nope"])
    assert unknown.value.code == "InvalidAttributeName"
    await engine.delete_queue("extra")
    assert "extra" not in engine.names()


async def test_runtime_queues_persist(tmp_path: Path) -> None:
    path = tmp_path / "bridge.sqlite3"
    async with Store(path) as store:
        engine = QueueEngine(store, region="us-east-1", account="123456789012")
        await engine.start({})
        await engine.create_queue("made", {"DelaySeconds": "3"})
        await engine.send("made", [{"MessageBody": "kept"}])
    async with Store(path) as store:
        engine = QueueEngine(store, region="us-east-1", account="123456789012")
        await engine.start({})
        assert engine.get("made").settings.delay == 3
        assert await engine.counts("made") == (0, 0, 1)
