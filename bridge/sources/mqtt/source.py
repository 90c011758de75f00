"""The mqtt source: an AWS IoT topic rule on a local broker; a message is acknowledged only once it is durable."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import sqlite3
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import aiomqtt
import paho.mqtt.client as paho
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_random_exponential

from bridge.delivery.dispatcher import new_event
from bridge.log import get_logger
from bridge.model import ASYNC_LIMIT
from bridge.sources.base import SourceContext
from bridge.sources.mqtt.config import MqttSourceConfig
from bridge.sources.mqtt.iot_sql import NonJsonPayload, parse_rule

UNKNOWN_PUBLISHER = "n/a"  # clientid(): MQTT never tells a subscriber who published; AWS says "n/a" then
MAX_BATCH = 256  # messages made durable in one commit: the first one and those that arrived meanwhile
MAX_BATCHES = 4  # batches being made durable at once (so at most 1,024 messages; a broker's window is smaller)
READ_BURST = 64  # packets read in one wake-up of the socket's reader, at most
BACKOFF = wait_random_exponential(multiplier=0.5, max=30)  # seconds: U(0, 0.5), U(0, 1), ... capped at 30
PACKETS_TABLE = """CREATE TABLE IF NOT EXISTS mqtt_packets (
    source TEXT NOT NULL, mid INTEGER NOT NULL, event_id TEXT NOT NULL, PRIMARY KEY (source, mid))"""


def create(config: MqttSourceConfig, ctx: SourceContext) -> MqttSource:
    """The source for one ``type: mqtt`` entry."""
    return MqttSource(config, ctx)


class _Client(aiomqtt.Client):
    """aiomqtt's client, but QoS 1 messages are acknowledged by ``ack()``, and messages keep their DUP flag.

    aiomqtt 2.5 acknowledges on receipt and has no option against it; the paho 2.x client it wraps does
    (``manual_ack``), so it is switched on here. aiomqtt's ``Message`` drops the DUP flag, which tells a
    redelivery from a new message, so the queue carries paho's own ``MQTTMessage`` instead.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._client.manual_ack_set(True)
        self._read_one = self._client.loop_read
        self._client.loop_read = self._read_burst  # type: ignore[method-assign]  # what aiomqtt's reader calls

    def _read_burst(self, max_packets: int = 1) -> paho.MQTTErrorCode:
        """Read packets while each one read was a message, up to READ_BURST.

        paho reads one packet per call when nothing of ours is in flight (QoS 1 with manual acks), and aiomqtt
        calls it once per wake-up of the socket's reader: one pass of the event loop per message. A burst
        reads what is already waiting in that one pass; a call that read no message (the socket is drained,
        a packet is incomplete, or it was no PUBLISH) ends it, and the next wake-up goes on.
        """
        for _ in range(READ_BURST):
            waiting = self._queue.qsize()
            rc = self._read_one(max_packets)
            if rc != paho.MQTT_ERR_SUCCESS or self._queue.qsize() == waiting:
                return rc
        return paho.MQTT_ERR_SUCCESS

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        self._queue.put_nowait(cast(aiomqtt.Message, message))

    def ack(self, mid: int) -> None:
        """Send the PUBACK for QoS 1 message ``mid`` (a no-op when the connection is gone)."""
        self._client.ack(mid, 1)

    def queued(self, limit: int) -> list[paho.MQTTMessage]:
        """Up to ``limit`` messages already received and waiting, without waiting for more."""
        waiting: list[paho.MQTTMessage] = []
        while len(waiting) < limit and not self._queue.empty():
            waiting.append(cast(paho.MQTTMessage, self._queue.get_nowait()))
        return waiting


@dataclass(eq=False, slots=True)
class _Slot:
    mid: int
    settled: bool = False


class _AckWindow:
    """Sends PUBACKs in the order the messages arrived (MQTT 3.1.1 §4.6), each once its message is settled."""

    def __init__(self, send: Callable[[int], None]) -> None:
        self._send = send
        self._pending: deque[_Slot] = deque()

    def open(self, mid: int) -> _Slot:
        """Reserve the place of a message just received."""
        slot = _Slot(mid)
        self._pending.append(slot)
        return slot

    def settle(self, slot: _Slot) -> None:
        """The message is handled (durable, or skipped): acknowledge it and any settled ones behind it."""
        slot.settled = True
        while self._pending and self._pending[0].settled:
            self._send(self._pending.popleft().mid)


class MqttSource:
    """Subscribes to the rule's topic filter with a persistent session and invokes the function per result."""

    def __init__(self, config: MqttSourceConfig, ctx: SourceContext) -> None:
        self.name = config.name
        self.config = config
        self.ctx = ctx
        self.rule = parse_rule(config.sql)
        self.client_id = config.effective_client_id
        self.topic_filter = self.rule.topic_filter
        cluster = ctx.config.cluster
        if cluster is not None:  # one message to one node: a shared subscription, a session per node
            self.client_id = f"{self.client_id}-{cluster.node_id}"[:128]
            self.topic_filter = f"$share/{config.effective_client_id}/{self.rule.topic_filter}"
        self.tls = config.tls.ssl_context() if config.address[2] else None
        self.room = asyncio.Semaphore(MAX_BATCHES)
        host, port, _ = config.address
        self.log = get_logger(source=config.name, function=config.function)
        self.broker = f"{host}:{port}"
        self.subscribed = False
        ctx.stats.extra.update(connected=False, received=0, skipped=0)

    async def run(self) -> None:
        """Connect, subscribe and handle messages until cancelled; reconnect with capped, jittered backoff."""
        await self.ctx.store.call(lambda conn: conn.execute(PACKETS_TABLE))
        retrying = AsyncRetrying(retry=retry_if_exception_type(aiomqtt.MqttError), wait=BACKOFF,
                                 before_sleep=self._before_retry, reraise=True)
        async for attempt in retrying:
            with attempt:
                await self._session(attempt.retry_state)

    # --- connection ----------------------------------------------------------------------------------

    def _client(self) -> _Client:
        host, port, _ = self.config.address
        try:
            password = self.config.read_password()
        except OSError as err:  # retried with backoff, like a broker that cannot be reached
            raise aiomqtt.MqttError(f"cannot read password_file: {err.strerror}") from None
        return _Client(host, port, identifier=self.client_id, username=self.config.username,
                       password=password, clean_session=False, keepalive=self.config.keepalive,
                       tls_context=self.tls, protocol=aiomqtt.ProtocolVersion.V311)

    async def _session(self, retry_state: RetryCallState) -> None:
        """One connection: subscribe, then handle messages until the connection drops (MqttError)."""
        self.subscribed = False
        client = self._client()
        try:
            async with client:
                await self._subscribe(client)
                retry_state.attempt_number = 1  # a session that worked resets the backoff: a drop retries soon
                await self._consume(client)
        finally:
            self.ctx.stats.extra["connected"] = False

    async def _subscribe(self, client: _Client) -> None:
        granted = await client.subscribe(self.topic_filter, qos=self.config.qos)
        if any(getattr(code, "is_failure", False) for code in granted):
            raise aiomqtt.MqttError(f"the broker refused the subscription to {self.topic_filter!r}; "
                                    "check the broker's ACL for this client id and user")
        self.subscribed = True
        self.ctx.stats.extra["connected"] = True
        self.ctx.stats.last_error = None
        self.log.info("mqtt.subscribed", broker=self.broker, client_id=self.client_id,
                      topic_filter=self.topic_filter, qos=self.config.qos)
        self.ctx.ready()

    def _before_retry(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        self.ctx.stats.state = "retrying"
        self.ctx.stats.last_error = str(error)
        event = "mqtt.disconnected" if self.subscribed else "mqtt.connect_failed"
        sleep = state.next_action.sleep if state.next_action else 0.0
        self.log.warning(event, broker=self.broker, client_id=self.client_id, error=str(error),
                         hint=_hint(error), retry_in_s=round(sleep, 3), attempt=state.attempt_number)

    # --- messages ------------------------------------------------------------------------------------

    async def _consume(self, client: _Client) -> None:
        """Handle messages concurrently; when the connection drops, let the handlers finish, then raise."""
        window = _AckWindow(client.ack)
        async with asyncio.TaskGroup() as handlers:
            error = await self._read(client, window, handlers)
        raise error

    async def _read(self, client: _Client, window: _AckWindow, handlers: asyncio.TaskGroup) -> aiomqtt.MqttError:
        """Take messages in batches: the next one, and those that arrived while the last batch was committing.

        Under load a batch grows to what the broker sent during one commit, so a message costs a share of a
        commit and of a task instead of one each; when messages are sparse, a batch is one message.
        """
        try:
            async for received in client.messages:
                await self.room.acquire()
                batch = [cast(paho.MQTTMessage, received), *client.queued(MAX_BATCH - 1)]
                slots = [window.open(m.mid) if m.qos > 0 else None for m in batch]
                handlers.create_task(self._handle(batch, window, slots))
        except aiomqtt.MqttError as err:
            return err
        return aiomqtt.MqttError("the message stream ended")  # aiomqtt ends it only by raising

    async def _handle(self, batch: list[paho.MQTTMessage], window: _AckWindow, slots: list[_Slot | None]) -> None:
        """Make the batch durable (or decide to skip its messages), then let the ack window acknowledge it."""
        try:
            await self._process(batch)
        finally:
            self.room.release()
        for slot in slots:  # only after success: an error or a cancel leaves it to the broker to resend
            if slot is not None:
                window.settle(slot)

    async def _process(self, batch: list[paho.MQTTMessage]) -> None:
        """One commit for the batch's events and, for QoS 1, the ids a redelivery must reuse."""
        stats = self.ctx.stats
        stats.extra["received"] += len(batch)
        events, packets = [], []
        for message in batch:
            payload = self._evaluate(message)
            if payload is None:
                stats.extra["skipped"] += 1
            elif message.qos == 0:  # at most once: nothing to recognise a redelivery by
                events.append(new_event(self.config.function, payload))
            else:
                event_id = await self._event_id(message)
                events.append(new_event(self.config.function, payload, event_id=event_id,
                                        request_id=request_id_for(event_id)))
                packets.append((self.name, message.mid, event_id))
        if events:
            await self.ctx.dispatcher.accept_many(events, also=functools.partial(_remember, packets))
        stats.events += len(events)

    def _evaluate(self, message: paho.MQTTMessage) -> bytes | None:
        """The event for this message, or None when the rule does not fire (logged when it is a surprise)."""
        if message.retain:  # sent because we (re)subscribed, not because someone published: no rule fires
            self.log.debug("mqtt.retained_skipped", topic=message.topic)
            return None
        try:
            result = self.rule.evaluate(message.payload, topic=message.topic, client_id=UNKNOWN_PUBLISHER,
                                        now_ms=time.time_ns() // 1_000_000)
        except NonJsonPayload as err:
            self.log.warning("mqtt.non_json_payload", topic=message.topic, bytes=len(message.payload), error=str(err))
            return None
        except Exception as err:  # one message never stops the source: the rule fails for it alone (AWS: error action)
            self.log.error("mqtt.rule_failed", topic=message.topic, bytes=len(message.payload),
                           error=f"{type(err).__name__}: {err}"[:1024])
            return None
        if result is None:
            return None
        payload = json.dumps(result, separators=(",", ":")).encode()
        if len(payload) > ASYNC_LIMIT:
            self.log.warning("mqtt.payload_too_large", topic=message.topic, bytes=len(payload), limit=ASYNC_LIMIT,
                             hint="Lambda's async limit is 1 MB (AWS IoT refuses messages above 128 KB)")
            return None
        return payload

    async def _event_id(self, message: paho.MQTTMessage) -> str:
        """A redelivery (DUP) of a message we queued reuses its id; any other message gets a new one."""
        base = fingerprint(self.client_id, message.topic, message.mid, message.payload)
        if message.dup:
            known = await self.ctx.store.call(functools.partial(_recall, self.name, message.mid))
            if known is not None and known.startswith(base):
                self.log.info("mqtt.redelivered", topic=message.topic, event_id=known)
                return known
        return f"{base}-{uuid.uuid4().hex[:8]}"


def fingerprint(client_id: str, topic: str, mid: int, payload: bytes) -> str:
    """What a redelivery shares with the original: session (client id), topic, packet id and payload."""
    digest = hashlib.sha256(f"{client_id}\0{topic}\0{mid}\0".encode())
    digest.update(payload)
    return f"mqtt-{digest.hexdigest()[:24]}"


def request_id_for(event_id: str) -> str:
    """A UUID derived from the event id, so a duplicate reaches the handler with the same aws_request_id."""
    return str(uuid.UUID(bytes=hashlib.sha256(event_id.encode()).digest()[:16], version=4))


def _remember(packets: list[tuple[str, int, str]], conn: sqlite3.Connection) -> None:
    """(source, mid, event id) of QoS 1 messages: the id a redelivery (DUP) of each must reuse.

    Runs in the enqueue's transaction, so the events and these ids are durable together; one statement for
    the batch (a mid appears once in it: the broker reuses a mid only after its PUBACK).
    """
    if packets:
        rows = ",".join(["(?,?,?)"] * len(packets))
        conn.execute(f"INSERT OR REPLACE INTO mqtt_packets (source, mid, event_id) VALUES {rows}",
                     [value for packet in packets for value in packet])


def _recall(source: str, mid: int, conn: sqlite3.Connection) -> str | None:
    row = conn.execute("SELECT event_id FROM mqtt_packets WHERE source = ? AND mid = ?", (source, mid)).fetchone()
    return row[0] if row else None


def _hint(error: BaseException | None) -> str:
    """What to check for a connection failure; never includes credentials."""
    text = str(error).lower()
    if "certificate" in text or "ssl" in text or "tls" in text:
        return ("check tls.ca_file (the CA that signed the broker's certificate) and that the broker's name "
                "matches its certificate; tls.insecure: true turns verification off (tests only)")
    if "not authori" in text or "bad user" in text or "password" in text:
        return "the broker refused the credentials: check username and password"
    if "subscription" in text:
        return "the broker's ACL must allow this client to subscribe to the rule's FROM topic filter"
    return "check that the broker runs and listens at the configured broker address"
