"""The mqtt source against a real mosquitto, with the daemon as a subprocess and recording handlers."""

from __future__ import annotations

import base64
import json
import random
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bridge.testing import Daemon, wait_until, write_config
from tests.integration.mosquitto import PASSWORD, USER, Mosquitto, Publisher
from tests.integration.test_async_delivery import cli, recorder, records


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A mosquitto of this test's own (it FAILS, never skips, when mosquitto is not installed)."""
    with Mosquitto(tmp_path / "broker") as mosquitto:
        yield mosquitto


def source(name: str, broker_url: str, sql: str, function: str = "sink", **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": "mqtt", "broker": broker_url, "sql": sql, "function": function, **extra}


def daemon_config(tmp_path: Path, sources: list[dict], functions: list[str]) -> Path:
    config = {"state_dir": str(tmp_path / "state"), "log_level": "info", "sources": sources,
              "functions": {name: recorder(tmp_path, name, reserved_concurrency=2) for name in functions}}
    return write_config(tmp_path / "config.yaml", config)


def events(tmp_path: Path, function: str) -> list[dict]:
    return [r["event"] for r in records(tmp_path / f"{function}.jsonl")]


def numbers_seen(tmp_path: Path, function: str = "sink") -> set[int]:
    return {e["n"] for e in events(tmp_path, function)}


def test_projection_where_wildcards_binary_and_retained(tmp_path: Path, broker: Mosquitto) -> None:
    sources = [
        source("temps", broker.url, "SELECT topic(2) AS device_id, timestamp() AS ts, temperature, meta.fw AS fw "
               "FROM 'sensors/+/data' WHERE temperature > 30 AND NOT (meta.fw = '0.9')", "temps"),
        source("everything", broker.url, "SELECT *, topic() AS topic, clientid() AS publisher FROM 'site/#'", "site"),
        source("cams", broker.url, "SELECT encode(*, 'base64') AS data, topic(2) AS cam FROM 'cams/+'", "cams"),
    ]
    config = daemon_config(tmp_path, sources, ["temps", "site", "cams"])
    with Publisher(broker.plain_port) as pub:
        pub.send("sensors/old/data", json.dumps({"temperature": 99}), retain=True)  # retained before subscribing
        with Daemon(config) as daemon:
            daemon.wait_for("mqtt.subscribed", count=3)
            before = int(time.time() * 1000)
            pub.send("sensors/d1/data", json.dumps({"temperature": 31.5, "meta": {"fw": "1.2"}, "extra": 1}))
            pub.send("sensors/d2/data", json.dumps({"temperature": 20, "meta": {"fw": "1.2"}}))  # WHERE false
            pub.send("sensors/d3/data", json.dumps({"temperature": 40, "meta": {"fw": "0.9"}}))  # NOT (...) false
            pub.send("sensors/d4/status", json.dumps({"temperature": 50}))  # topic does not match the filter
            pub.send("sensors/d5/data", b"\xff\x00 not json")  # the rule reads fields of a binary payload
            pub.send("sensors/a/b/data", json.dumps({"temperature": 50}))  # '+' is exactly one level
            pub.send("site", json.dumps({"level": 0}))  # '#' matches the parent level too
            pub.send("site/a/b/c", json.dumps({"level": 3}))
            pub.send("cams/front", b"\x89PNG\r\n\x1a\n\x00\xff")
            pub.send("sensors/d6/data", json.dumps({"temperature": 35.0, "meta": {"fw": "2"}}))  # the last one
            daemon.wait_for("mqtt.non_json_payload", source="temps", topic="sensors/d5/data")
            wait_until(lambda: len(events(tmp_path, "temps")) >= 2 and len(events(tmp_path, "site")) >= 2
                       and events(tmp_path, "cams"), timeout=30)
            after = int(time.time() * 1000)
            daemon.wait_for("delivery.succeeded", count=5)

    temps = sorted(events(tmp_path, "temps"), key=lambda e: e["device_id"])
    assert [{k: v for k, v in e.items() if k != "ts"} for e in temps] == [
        {"device_id": "d1", "temperature": 31.5, "fw": "1.2"},
        {"device_id": "d6", "temperature": 35, "fw": "2"},  # 35.0 is an Int in SQL 2016-03-23
    ]
    assert all(before <= e["ts"] <= after for e in temps), (before, temps, after)
    assert list(temps[0]) == ["device_id", "ts", "temperature", "fw"], "keys in SELECT order"
    assert sorted(events(tmp_path, "site"), key=lambda e: e["level"]) == [
        {"level": 0, "topic": "site", "publisher": "n/a"},
        {"level": 3, "topic": "site/a/b/c", "publisher": "n/a"},
    ]
    [cam] = events(tmp_path, "cams")
    assert cam == {"data": base64.b64encode(b"\x89PNG\r\n\x1a\n\x00\xff").decode(), "cam": "front"}
    for seen in records(tmp_path / "temps.jsonl"):
        uuid.UUID(seen["request_id"])  # the handler sees a Lambda-style request id


def test_qos1_survives_broker_restarts(tmp_path: Path, broker: Mosquitto) -> None:
    config = daemon_config(tmp_path, [source("counter", broker.url, "SELECT n FROM 'count/#'", qos=1)], ["sink"])
    with Daemon(config) as daemon:
        daemon.wait_for("mqtt.subscribed")
        with Publisher(broker.plain_port) as pub:
            for n in range(20):
                pub.send(f"count/{n % 3}", json.dumps({"n": n}))
        wait_until(lambda: numbers_seen(tmp_path) == set(range(20)), timeout=30)

    # The bridge is down: the broker queues for its persistent session, and keeps the queue across a restart.
    with Publisher(broker.plain_port) as pub:
        for n in range(20, 50):
            pub.send("count/x", json.dumps({"n": n}))
    broker.restart()
    with Daemon(config) as daemon:
        wait_until(lambda: numbers_seen(tmp_path) == set(range(50)), timeout=30)
        # The broker restarts under a running bridge: it reconnects with backoff and resumes its session.
        broker.restart()
        daemon.wait_for("mqtt.disconnected", source="counter")
        daemon.wait_for("mqtt.subscribed", count=2, source="counter", timeout=60)
        with Publisher(broker.plain_port) as pub:
            for n in range(50, 70):
                pub.send("count/y", json.dumps({"n": n}))
        wait_until(lambda: numbers_seen(tmp_path) == set(range(70)), timeout=30)


KILLS = 6


class Stream(threading.Thread):
    """Publishes {"n": 0, 1, 2, ...} with QoS 1 and records every n the broker acknowledged (PUBACK)."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.acknowledged: list[int] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with Publisher(self.port, client_id="stream") as pub:
            n = 0
            while not self.stop.is_set():
                infos = [(i, pub.publish("stream/data", json.dumps({"n": i}))) for i in range(n, n + 20)]
                for i, info in infos:
                    info.wait_for_publish(timeout=10)
                    self.acknowledged.append(i)
                n += 20
                self.stop.wait(0.005)  # a steady stream, not a flood: the scenario is the kills


def test_sigkill_of_the_daemon_loses_nothing(tmp_path: Path, broker: Mosquitto) -> None:
    config = daemon_config(tmp_path, [source("stream", broker.url, "SELECT n FROM 'stream/#'")], ["sink"])
    daemon = Daemon(config).start()
    daemon.wait_for("mqtt.subscribed")  # the persistent session exists from here on
    stream = Stream(broker.plain_port)
    stream.start()
    rng = random.Random(9)
    try:
        for _ in range(KILLS):
            daemon.wait_for("mqtt.subscribed")
            time.sleep(rng.uniform(0.1, 0.8))  # the scenario: the kill lands at a random moment of the flow
            daemon.kill()
            daemon = Daemon(config).start()
        stream.stop.set()
        stream.join(30)
        acknowledged = set(stream.acknowledged)
        assert len(acknowledged) > 500, f"only {len(acknowledged)} messages were published"
        wait_until(lambda: numbers_seen(tmp_path) >= acknowledged, timeout=120)
    finally:
        stream.stop.set()
        daemon.stop()
        daemon.kill()
    seen = records(tmp_path / "sink.jsonl")
    ids: dict[int, set[str]] = {}
    for record in seen:
        ids.setdefault(record["event"]["n"], set()).add(record["request_id"])
    assert not [n for n, rids in ids.items() if len(rids) > 1], "a duplicate must carry the original request id"
    print(f"{len(acknowledged)} published, {len(seen)} invocations, {len(seen) - len(ids)} duplicates")


def test_tls_and_credentials(tmp_path: Path, broker: Mosquitto) -> None:
    certs = broker.certs
    secret = tmp_path / "mqtt-password"  # as systemd's LoadCredential= would provide it
    secret.write_text(PASSWORD + "\n")
    sources = [
        source("tls-ok", broker.tls_url, "SELECT n, topic() AS t FROM 'secure/ok'", tls={"ca_file": str(certs.ca)}),
        source("tls-wrong-ca", broker.tls_url, "SELECT n FROM 'secure/wrong'", tls={"ca_file": str(certs.other_ca)}),
        source("tls-insecure", broker.tls_url, "SELECT n, topic() AS t FROM 'secure/insecure'",
               tls={"ca_file": str(certs.other_ca), "insecure": True}),
        source("auth-ok", broker.auth_url, "SELECT n, topic() AS t FROM 'auth/ok'", username=USER,
               password="${MQTT_PASSWORD}"),
        source("auth-bad", broker.auth_url, "SELECT n FROM 'auth/bad'", username=USER, password="not-the-password"),
        source("auth-file", broker.auth_url, "SELECT n, topic() AS t FROM 'auth/file'", username=USER,
               password_file=str(secret)),
    ]
    config = daemon_config(tmp_path, sources, ["sink"])
    with Daemon(config, env={"MQTT_PASSWORD": PASSWORD}) as daemon:
        daemon.wait_for("mqtt.subscribed", count=4)
        for name in ("tls-wrong-ca", "auth-bad"):  # refused again and again, with a clear reason; no crash
            daemon.wait_for("mqtt.connect_failed", count=3, source=name, timeout=60)
        with Publisher(broker.plain_port) as pub:
            for n, topic in enumerate(("secure/ok", "secure/insecure", "auth/ok", "secure/wrong", "auth/bad",
                                       "auth/file")):
                pub.send(topic, json.dumps({"n": n}))
        wait_until(lambda: len(events(tmp_path, "sink")) >= 4, timeout=30)
        assert daemon.proc is not None and daemon.proc.poll() is None, "the daemon keeps running"
    assert sorted(e["t"] for e in events(tmp_path, "sink")) == ["auth/file", "auth/ok", "secure/insecure", "secure/ok"]
    [tls_error] = daemon.find("mqtt.connect_failed", source="tls-wrong-ca")[:1]
    assert "CERTIFICATE_VERIFY_FAILED" in tls_error["error"] and "tls.ca_file" in tls_error["hint"]
    [auth_error] = daemon.find("mqtt.connect_failed", source="auth-bad")[:1]
    assert "not authori" in auth_error["error"].lower() and "username and password" in auth_error["hint"]
    log = "".join(daemon.raw)
    assert PASSWORD not in log and "not-the-password" not in log, "credentials never reach the log"


@pytest.mark.parametrize(("sql", "message"), [
    ("SELECT upper(name) AS n FROM 'a/b'", "unsupported function 'upper'"),
    ("SELECT * FROM 'a/#/b'", "'#' must be a whole level and the last one"),
    ("SELECT * FROM a", "FROM"),
])
def test_bad_sql_is_rejected_by_check(tmp_path: Path, sql: str, message: str) -> None:
    config = daemon_config(tmp_path, [source("rule", "mqtt://127.0.0.1:1883", sql)], ["sink"])
    result = cli(config, "check")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "sources[0].sql" in result.stderr or "sources.0.sql" in result.stderr, result.stderr
    assert message in result.stderr, result.stderr


@pytest.mark.parametrize(("changes", "message"), [
    ({"broker": "mqtt://device:s3cret@127.0.0.1:1883"}, "credentials go in username/password"),
    ({"broker": "tcp://127.0.0.1:1883"}, "is not mqtt://HOST[:PORT] or mqtts://HOST[:PORT]"),
    ({"tls": {"ca_file": "missing-ca.pem"}}, "missing-ca.pem' does not exist"),
    ({"tls": {"key_file": "config.yaml"}}, "key_file needs cert_file"),
    ({"broker": "mqtt://127.0.0.1", "tls": {"insecure": True}}, "tls settings apply only to mqtts://"),
])
def test_bad_broker_settings_are_rejected_by_check(tmp_path: Path, changes: dict, message: str) -> None:
    entry = {**source("rule", "mqtts://127.0.0.1", "SELECT * FROM 'a/b'"), **changes}
    config = daemon_config(tmp_path, [entry], ["sink"])
    result = cli(config, "check")
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr, result.stderr
    assert "s3cret" not in result.stdout + result.stderr, "a password in the URL is never echoed"
