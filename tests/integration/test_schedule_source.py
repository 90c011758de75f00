"""Schedules end to end: the daemon as a subprocess fires at() schedules and `fire` into a real handler."""

from __future__ import annotations

import itertools
import json
import math
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from aws_lambda_powertools.utilities.parser.models import EventBridgeModel

from bridge.testing import Daemon, wait_until, write_config, write_handler
from tests.integration.test_async_delivery import RECORDER, cli, records

BERLIN = ZoneInfo("Europe/Berlin")


def at_expr(moment: float, tz: ZoneInfo = UTC) -> str:
    """``at(...)`` for the epoch second ``moment``, as wall time in ``tz``."""
    return f"at({datetime.fromtimestamp(moment, tz).strftime('%Y-%m-%dT%H:%M:%S')})"


def iso_z(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def setup(tmp_path: Path, sources: list[dict]) -> Path:
    code = write_handler(tmp_path, "recorder", RECORDER)
    fn = {"handler": "app.handler", "code": str(code), "reserved_concurrency": 2,
          "environment": {"RECORD_FILE": str(tmp_path / "seen.jsonl"), "FAIL": "no"}}
    config = {"region": "eu-west-1", "account_id": "123456789012", "state_dir": str(tmp_path / "state"),
              "functions": {"fn": fn}, "sources": [{"type": "schedule", "function": "fn", **s} for s in sources]}
    return write_config(tmp_path / "config.yaml", config)


def seen(tmp_path: Path) -> list[dict]:
    return [r["event"] for r in records(tmp_path / "seen.jsonl")]


def wait_seen(tmp_path: Path, count: int, timeout: float = 30) -> list[dict]:
    return wait_until(lambda: len(found := seen(tmp_path)) >= count and found, timeout=timeout)


def test_at_and_fire_deliver_eventbridge_events_in_both_styles(tmp_path: Path) -> None:
    due = math.ceil(time.time()) + 5
    template = {"arn": "<aws.scheduler.schedule-arn>", "at": "<aws.scheduler.scheduled-time>",
                "run": "<aws.scheduler.execution-id>"}
    config = setup(tmp_path, [
        {"name": "rule-at", "schedule": at_expr(due)},
        {"name": "sched-at", "schedule": at_expr(due, BERLIN), "timezone": "Europe/Berlin", "style": "scheduler"},
        {"name": "sched-input", "schedule": at_expr(due), "style": "scheduler", "input": template},
        {"name": "manual", "schedule": "cron(0 3 1 1 ? 2199)", "style": "scheduler"},
        {"name": "manual-rule", "schedule": "cron(0 3 1 1 ? 2199)", "input": {"mode": "full"}},
    ])
    with Daemon(config) as daemon:
        daemon.wait_for("schedule.armed", count=5)
        assert time.time() < due, "the daemon must be armed before the fire time (machine too slow?)"
        fired = cli(config, "fire", "manual", "--json")
        assert fired.returncode == 0, fired.stderr
        fired_rule = cli(config, "fire", "manual-rule")
        events = wait_seen(tmp_path, 5)
        daemon.wait_for("delivery.succeeded", count=5, timeout=30)
    by_source = {e.get("resources", [e.get("arn") or "constant"])[0].rsplit("/", 1)[-1]: e for e in events}
    for name in ("rule-at", "sched-at", "manual"):
        EventBridgeModel.model_validate(by_source[name])
        assert by_source[name]["detail-type"] == "Scheduled Event"
    rule, sched = by_source["rule-at"], by_source["sched-at"]
    assert rule["time"] == sched["time"] == iso_z(due), "time is the scheduled second, in UTC"
    assert rule["source"] == "aws.events" and rule["detail"] == {}
    assert rule["resources"] == ["arn:aws:events:eu-west-1:123456789012:rule/rule-at"]
    assert sched["source"] == "aws.scheduler" and sched["detail"] == "{}"
    assert sched["resources"] == ["arn:aws:scheduler:eu-west-1:123456789012:schedule/default/sched-at"]
    assert by_source["manual"]["id"] == json.loads(fired.stdout)["event_id"], "fire prints the event id"
    assert by_source["constant"] == {"mode": "full"} and fired_rule.returncode == 0
    assert by_source["sched-input"] == {
        "arn": "arn:aws:scheduler:eu-west-1:123456789012:schedule/default/sched-input", "at": iso_z(due),
        "run": by_source["sched-input"]["run"]}
    assert len({e.get("id") or e.get("run") for e in events}) == 5, "each fire has its own id"


def store_rows(tmp_path: Path, sql: str) -> list[tuple]:
    conn = sqlite3.connect(tmp_path / "state" / "bridge.sqlite3")
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_restart_around_fire_times_never_duplicates_and_honours_catch_up(tmp_path: Path) -> None:
    start = math.ceil(time.time())
    early, missed = start + 6, start + 14
    config = setup(tmp_path, [
        {"name": "early", "schedule": at_expr(early), "catch_up": "all"},
        {"name": "skip", "schedule": at_expr(missed)},  # catch_up: none is the default, as in cron
        {"name": "latest", "schedule": at_expr(missed), "catch_up": "latest"},
        {"name": "all", "schedule": at_expr(missed), "catch_up": "all", "style": "scheduler"},
        {"name": "stale", "schedule": at_expr(missed), "catch_up": "all", "catch_up_window": 1},
    ])
    with Daemon(config) as daemon:
        daemon.wait_for("schedule.armed", count=5)
        assert time.time() < early, "the daemon must be armed before the first fire (machine too slow?)"
        wait_seen(tmp_path, 1)
    assert time.time() < missed, "the daemon must be down before the second fire time (machine too slow?)"
    manual = json.loads(cli(config, "fire", "skip", "--json").stdout)["event_id"]  # queued while the daemon is down
    wait_until(lambda: time.time() > missed + 1.5, timeout=30)

    with Daemon(config) as daemon:
        daemon.wait_for("schedule.armed", count=5)
        events = wait_seen(tmp_path, 4)
        daemon.wait_for("delivery.succeeded", count=3, timeout=30)
        skipped = daemon.find("schedule.skipped")
    names = sorted(e["resources"][0].rsplit("/", 1)[1] for e in events)
    assert names == ["all", "early", "latest", "skip"], "early once; latest and all caught up; skip only manual"
    assert next(e for e in events if e["id"] == manual)["time"] < iso_z(missed), "timed when fired by hand"
    assert {e["resources"][0].rsplit("/", 1)[1]: e["time"] for e in events if e["id"] != manual} == {
        "early": iso_z(early), "latest": iso_z(missed), "all": iso_z(missed)}
    assert {s["source"] for s in skipped} == {"skip"}, "none skips; stale's time is outside its window"

    with Daemon(config) as daemon:
        daemon.wait_for("schedule.armed", count=5)
    assert len(seen(tmp_path)) == 4, "a third start fires nothing again"
    assert store_rows(tmp_path, "SELECT COUNT(*) FROM async_events") == [(0,)]
    fires = store_rows(tmp_path, "SELECT source, scheduled_time FROM schedule_fires ORDER BY source")
    assert fires == [("all", missed), ("early", early), ("latest", missed)]


def test_disabled_schedule_never_fires_and_lists_no_times(tmp_path: Path) -> None:
    due = math.ceil(time.time()) + 3
    config = setup(tmp_path, [
        {"name": "off", "schedule": at_expr(due), "enabled": False},
        {"name": "berlin", "schedule": "cron(30 2 * * ? *)", "timezone": "Europe/Berlin"},
    ])
    listed = json.loads(cli(config, "schedules", "--json", "--next", "3").stdout)
    assert listed[0] == {"name": "off", "next": []}
    berlin = [datetime.fromisoformat(t) for t in listed[1]["next"]]
    assert len(berlin) == 3 and all(t.astimezone(BERLIN).strftime("%H:%M") == "02:30" for t in berlin)
    assert all(b - a == timedelta(days=1) for a, b in itertools.pairwise(berlin))
    with Daemon(config) as daemon:
        daemon.wait_for("schedule.disabled", source="off")
        daemon.wait_for("schedule.armed", source="berlin")
        wait_until(lambda: time.time() > due + 1.5, timeout=30)
    assert seen(tmp_path) == []
    assert cli(config, "fire", "nope").returncode == 2


def test_retry_policy_ends_in_the_dead_letter_store_with_eventbridge_attributes(tmp_path: Path) -> None:
    """A target that cannot take the event: Scheduler's RetryPolicy bounds the hand-over retries."""
    from bridge.testing import free_port

    nobody = free_port()  # nothing listens there: every hand-over fails to connect
    arn = "arn:aws:lambda:us-east-1:123456789012:function:far"
    config = write_config(tmp_path / "config.yaml", {
        "state_dir": str(tmp_path / "state"),
        "functions": {"far": {"arn": arn, "endpoint_url": f"http://127.0.0.1:{nobody}", "retry_timeout": 0.2}},
        "sources": [{"name": "nightly", "type": "schedule", "schedule": "cron(0 3 * * ? *)", "function": "far",
                     "retry_policy": {"maximum_retry_attempts": 2, "maximum_event_age": 60}}],
    })
    with Daemon(config) as daemon:
        assert cli(config, "fire", "nightly").returncode == 0
        daemon.wait_for("delivery.failed", function="far", timeout=60)
    assert len(daemon.find("delivery.throttled", function="far")) == 3, "the first try and 2 retries"
    [entry] = json.loads(cli(config, "dlq", "list", "--json").stdout)
    assert entry["condition"] == "RetriesExhausted"
    attributes = entry["attributes"]
    assert attributes["RULE_ARN"] == "arn:aws:events:us-east-1:000000000000:rule/nightly"
    assert attributes["TARGET_ARN"] == arn
    assert attributes["EXHAUSTED_RETRY_CONDITION"] == "MaximumRetryAttempts"
    assert attributes["RETRY_ATTEMPTS"] == "2"
    assert attributes["ERROR_CODE"] == "RemoteUnavailable" and attributes["ERROR_MESSAGE"]
    assert entry["record"]["requestPayload"]["source"] == "aws.events"
