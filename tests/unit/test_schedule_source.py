"""Catch-up after downtime and the wall-clock-jump policy, as tables; every case passes its own ``now``."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

import pytest
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel

from bridge.config.model import parse_config
from bridge.sources.schedule import fire as schedule_fire
from bridge.sources.schedule.expressions import parse_schedule
from bridge.sources.schedule.policy import after_downtime, clock_jump, on_wake


def t(text: str) -> datetime:
    """A UTC instant from ``HH:MM`` on 2026-01-05 (a Monday) or a full ISO text."""
    if len(text) == 5:
        text = f"2026-01-05T{text}:00+00:00"
    return datetime.fromisoformat(text).astimezone(UTC)


def hhmm(fires: tuple[datetime, ...]) -> list[str]:
    return [f.strftime("%H:%M") for f in fires]


HOURLY = parse_schedule("cron(0 * * * ? *)")
DAILY_3 = parse_schedule("cron(0 3 * * ? *)")

# (schedule, cursor, now, catch_up, window seconds, fired, skipped)
DOWNTIME = [
    (HOURLY, None, "10:30", "all", 86400, [], 0),  # never ran: nothing was missed
    (HOURLY, "10:30", "10:45", "all", 86400, [], 0),  # no fire time inside the downtime
    (HOURLY, "06:30", "10:30", "none", 86400, [], 4),  # like cron: missed fires are gone
    (HOURLY, "06:30", "10:30", "latest", 86400, ["10:00"], 3),
    (HOURLY, "06:30", "10:30", "all", 86400, ["07:00", "08:00", "09:00", "10:00"], 0),
    (HOURLY, "06:30", "10:30", "all", 2 * 3600, ["09:00", "10:00"], 0),  # only within catch_up_window
    (HOURLY, "06:30", "10:30", "latest", 1200, [], 0),  # the latest (10:00) is outside a 20-minute window
    (HOURLY, "10:00", "10:30", "all", 86400, [], 0),  # cursor = the last fire: 10:00 never fires twice
    (HOURLY, "09:00", "10:00", "all", 86400, ["10:00"], 0),  # a fire exactly at now is missed, not future
    (DAILY_3, "2026-01-03T12:00:00+00:00", "10:00", "all", 3 * 86400, ["03:00", "03:00"], 0),
    (HOURLY, "11:00", "10:00", "all", 86400, [], 0),  # clock went back while down: nothing repeats
]


@pytest.mark.parametrize(("schedule", "cursor", "now", "catch_up", "window", "fired", "skipped"), DOWNTIME)
def test_catch_up_after_downtime(schedule, cursor, now, catch_up, window, fired, skipped) -> None:
    plan = after_downtime(schedule, t(cursor) if cursor else None, t(now), catch_up, window)
    assert hhmm(plan.fires) == fired
    assert plan.skipped == skipped
    assert plan.cursor >= t(now), "the cursor never lags now, so nothing before it can fire later"


def test_catch_up_all_is_oldest_first_with_dates() -> None:
    plan = after_downtime(DAILY_3, t("2026-01-02T12:00:00+00:00"), t("10:00"), "all", 7 * 86400)
    assert [f.isoformat() for f in plan.fires] == [
        "2026-01-03T03:00:00+00:00", "2026-01-04T03:00:00+00:00", "2026-01-05T03:00:00+00:00"]


def test_at_in_the_past_is_caught_up_only_when_asked() -> None:
    once = parse_schedule("at(2026-01-05T09:15:00)")
    assert hhmm(after_downtime(once, t("09:00"), t("10:00"), "latest", 86400).fires) == ["09:15"]
    assert after_downtime(once, t("09:00"), t("10:00"), "none", 86400).fires == ()
    assert after_downtime(once, t("09:30"), t("10:00"), "all", 86400).fires == ()  # already past the cursor


def test_rate_downtime_follows_its_grid() -> None:
    rate = parse_schedule("rate(15 minutes)", start_date="2026-01-05T08:05:00")
    plan = after_downtime(rate, t("09:00"), t("10:00"), "all", 86400)
    assert hhmm(plan.fires) == ["09:05", "09:20", "09:35", "09:50"]


# Wall-clock jumps while running: (schedule, cursor, now, jump, fired, skipped)
H = timedelta(hours=1)
M = timedelta(minutes=1)
WAKES = [
    (HOURLY, "09:00", "10:00", timedelta(0), ["10:00"], 0),  # the ordinary wake
    (HOURLY, "09:00", "10:00", 30 * M, ["10:00"], 0),  # a small forward jump that skipped nothing extra
    (HOURLY, "07:30", "10:10", 2 * H, ["10:00"], 2),  # forward 2 h: 08, 09, 10 skipped -> run once
    (HOURLY, "07:30", "10:10", 2 * H + 59 * M, ["10:00"], 2),  # just under 3 h: still "once"
    (HOURLY, "07:30", "11:00", 3 * H, ["11:00"], 3),  # 3 h or more resets: only what is due now runs
    (HOURLY, "07:30", "10:30", 5 * H, [], 3),  # a reset drops everything skipped
    (HOURLY, "10:00", "09:30", -H, [], 0),  # backward: 10:00 was fired, must not repeat
    (HOURLY, "10:00", "07:30", -5 * H, [], 0),  # a big backward jump repeats nothing either
    (HOURLY, "07:30", "10:00", 30 * timedelta(seconds=1), ["08:00", "09:00", "10:00"], 0),  # lateness, no jump
]


@pytest.mark.parametrize(("schedule", "cursor", "now", "jump", "fired", "skipped"), WAKES)
def test_clock_jump_policy(schedule, cursor, now, jump, fired, skipped) -> None:
    plan = on_wake(schedule, t(cursor), t(now), jump)
    assert hhmm(plan.fires) == fired
    assert plan.skipped == skipped
    assert plan.cursor == max(t(cursor), t(now)), "the cursor never moves backwards"


def test_after_a_backward_jump_the_next_wake_fires_the_next_time_only() -> None:
    first = on_wake(HOURLY, t("09:00"), t("10:00"), timedelta(0))
    back = on_wake(HOURLY, first.cursor, t("09:10"), -H)  # the clock went back 1 h after the 10:00 fire
    later = on_wake(HOURLY, back.cursor, t("11:00"), timedelta(0))
    assert hhmm(first.fires + back.fires + later.fires) == ["10:00", "11:00"]


def test_clock_jump_measures_wall_against_monotonic() -> None:
    wall = t("10:00")
    assert clock_jump(wall, 100.0, wall + 10 * M, 700.0) == timedelta(0)
    assert clock_jump(wall, 100.0, wall + H + 10 * M, 700.0) == H
    assert clock_jump(wall, 100.0, wall - 50 * M, 700.0) == -H


# --- the fire itself -------------------------------------------------------------------------------

CONFIG = """
region: eu-central-1
account_id: "123456789012"
state_dir: {state}
functions:
  fn: {{handler: app.handler, code: {code}}}
sources:
  - {{name: nightly, type: schedule, schedule: "cron(0 3 * * ? *)", function: fn}}
  - {{name: sched, type: schedule, schedule: "cron(0 3 * * ? *)", function: fn, style: scheduler}}
  - {{name: templated, type: schedule, schedule: "rate(1 hour)", function: fn, style: scheduler,
      input: {{"arn": "<aws.scheduler.schedule-arn>", "at": "<aws.scheduler.scheduled-time>",
               "run": "<aws.scheduler.execution-id>", "try": "<aws.scheduler.attempt-number>"}}}}
  - {{name: constant, type: schedule, schedule: "rate(1 hour)", function: fn, input: {{"mode": "full"}}}}
  - {{name: flexible, type: schedule, schedule: "rate(1 hour)", function: fn, flexible_time_window: 10}}
"""


@pytest.fixture
def config(tmp_path):
    (tmp_path / "code").mkdir()
    return parse_config(CONFIG.format(state=tmp_path / "state", code=tmp_path / "code"))


def source(config, name: str):
    return next(s for s in config.sources if s.name == name)


def payload(event) -> dict:
    return json.loads(event.payload)


def test_fire_ids_are_stable_per_source_and_time() -> None:
    at = t("03:00")
    assert schedule_fire.fire_id("a", at) == schedule_fire.fire_id("a", at.astimezone(UTC))
    assert schedule_fire.fire_id("a", at) != schedule_fire.fire_id("b", at)
    assert schedule_fire.fire_id("a", at) != schedule_fire.fire_id("a", at + M)


def test_rule_and_scheduler_events_validate_and_carry_the_scheduled_time(config) -> None:
    at = t("03:00")
    rule = payload(schedule_fire.queued_fire(source(config, "nightly"), config, at, at + M))
    sched = payload(schedule_fire.queued_fire(source(config, "sched"), config, at, at + M))
    for event in (rule, sched):
        EventBridgeModel.model_validate(event)
        assert event["time"] == "2026-01-05T03:00:00Z"
        assert event["id"] == schedule_fire.fire_id(event["resources"][0].rsplit("/", 1)[1], at)
    assert rule["source"] == "aws.events" and rule["detail"] == {}
    assert rule["resources"] == ["arn:aws:events:eu-central-1:123456789012:rule/nightly"]
    assert sched["source"] == "aws.scheduler" and sched["detail"] == "{}"
    assert sched["resources"] == ["arn:aws:scheduler:eu-central-1:123456789012:schedule/default/sched"]


def test_input_replaces_the_event(config) -> None:
    at = t("03:00")
    templated = schedule_fire.queued_fire(source(config, "templated"), config, at, at)
    assert payload(templated) == {"arn": "arn:aws:scheduler:eu-central-1:123456789012:schedule/default/templated",
                                  "at": "2026-01-05T03:00:00Z", "run": templated.id, "try": "1"}
    assert payload(schedule_fire.queued_fire(source(config, "constant"), config, at, at)) == {"mode": "full"}


def test_flexible_window_lands_within_the_window_and_counts_age_from_there(config) -> None:
    cfg, at = source(config, "flexible"), t("03:00")
    landings = [schedule_fire.queued_fire(cfg, config, at, at, random.Random(seed)) for seed in range(50)]
    offsets = [e.next_at - at.timestamp() for e in landings]
    assert all(0 <= o <= 600 for o in offsets) and max(offsets) - min(offsets) > 300
    assert all(e.received_at == e.next_at for e in landings)
    again = schedule_fire.queued_fire(cfg, config, at, at, random.Random(7))
    assert again.next_at == landings[7].next_at, "a seeded rng makes the landing reproducible"


def test_record_refuses_a_time_twice(tmp_path) -> None:
    from bridge.store import connect, transaction

    conn = connect(tmp_path / "s.sqlite3")
    schedule_fire.create_table(conn)
    op = schedule_fire.record_fires("a", [(t("03:00"), "id-1")], 0.0)
    with transaction(conn):
        op(conn)
    assert schedule_fire.last_fire(conn, "a") == t("03:00")
    with pytest.raises(Exception, match="UNIQUE"), transaction(conn):
        op(conn)
    assert schedule_fire.last_fire(conn, "b") is None


def test_rate_without_start_date_continues_from_its_last_fire(config) -> None:
    cfg = source(config, "constant")
    last = t("09:17")
    assert schedule_fire.effective_schedule(cfg, last, t("12:00")).next_fire(t("12:00")) == t("12:17")
    fresh = schedule_fire.effective_schedule(cfg, None, t("2026-01-05T12:00:00.5+00:00"))
    assert fresh.next_fire(t("12:00")) == t("13:00"), "never fired: one interval after now, whole seconds"
