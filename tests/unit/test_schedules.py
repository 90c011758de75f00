"""Next-fire math and validation of AWS schedule expressions; every test passes its own ``now``."""

from __future__ import annotations

import pickle
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from apscheduler.triggers.base import BaseTrigger

from bridge.errors import ExpressionError
from bridge.sources.schedule.expressions import (
    AwsAtTrigger,
    AwsCronTrigger,
    AwsRateTrigger,
    CronExpression,
    local_instant,
    next_fire,
    next_fires,
    parse_expression,
    parse_schedule,
)

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def at(text: str) -> datetime:
    """An aware datetime from ISO text with an offset."""
    moment = datetime.fromisoformat(text)
    assert moment.tzinfo is not None
    return moment


def iso(fires: list[datetime]) -> list[str]:
    """Fire times as ISO text with their UTC offset: compares instants, never ambiguous wall times."""
    return [fire.isoformat() for fire in fires]


# AWS's documented examples ("Cron expressions reference", EventBridge User Guide), all UTC.
# 2025-01-17 is a Friday.
AWS_EXAMPLES = [
    # "Run at 10:00 am (UTC+0) every day"
    ("cron(0 10 * * ? *)", "2025-01-15T09:00:00+00:00", ["2025-01-15T10:00:00+00:00", "2025-01-16T10:00:00+00:00"]),
    # "Run at 12:15 pm (UTC+0) every day": a fire exactly at `after` is not "next"
    ("cron(15 12 * * ? *)", "2025-01-15T12:15:00+00:00", ["2025-01-16T12:15:00+00:00", "2025-01-17T12:15:00+00:00"]),
    # "Run at 6:00 pm (UTC+0) every Monday through Friday"
    (
        "cron(0 18 ? * MON-FRI *)",
        "2025-01-17T18:00:00+00:00",
        ["2025-01-20T18:00:00+00:00", "2025-01-21T18:00:00+00:00"],
    ),
    # "Run at 8:00 am (UTC+0) every 1st day of the month"
    ("cron(0 8 1 * ? *)", "2025-01-15T00:00:00+00:00", ["2025-02-01T08:00:00+00:00", "2025-03-01T08:00:00+00:00"]),
    # "Run every 15 minutes"
    (
        "cron(0/15 * * * ? *)",
        "2025-01-15T10:07:00+00:00",
        [
            "2025-01-15T10:15:00+00:00",
            "2025-01-15T10:30:00+00:00",
            "2025-01-15T10:45:00+00:00",
            "2025-01-15T11:00:00+00:00",
        ],
    ),
    # "Run every 10 minutes Monday through Friday"
    (
        "cron(0/10 * ? * MON-FRI *)",
        "2025-01-17T23:45:00+00:00",
        ["2025-01-17T23:50:00+00:00", "2025-01-20T00:00:00+00:00", "2025-01-20T00:10:00+00:00"],
    ),
    # "Run every 5 minutes Monday through Friday between 8:00 am and 5:55 pm (UTC+0)"
    (
        "cron(0/5 8-17 ? * MON-FRI *)",
        "2025-01-17T17:50:00+00:00",
        ["2025-01-17T17:55:00+00:00", "2025-01-20T08:00:00+00:00", "2025-01-20T08:05:00+00:00"],
    ),
    # "Run at 9 a.m. (UTC) the first Monday of each month"
    (
        "cron(0 9 ? * 2#1 *)",
        "2025-01-10T00:00:00+00:00",
        ["2025-02-03T09:00:00+00:00", "2025-03-03T09:00:00+00:00", "2025-04-07T09:00:00+00:00"],
    ),
]


@pytest.mark.parametrize(("expression", "after", "expected"), AWS_EXAMPLES)
def test_aws_documented_examples(expression: str, after: str, expected: list[str]) -> None:
    assert iso(next_fires(expression, at(after), "UTC", len(expected))) == expected


# Hand-checked against a calendar. 2025: Feb 1 and Mar 1 are Saturdays, Jun 15 and Aug 31 Sundays,
# May 31 a Saturday; 2024 is a leap year, 2100 is not.
HAND_CHECKED = [
    # L: the last day of the month, leap year or not
    (
        "cron(0 12 L * ? *)",
        "2024-02-01T00:00:00+00:00",
        ["2024-02-29T12:00:00+00:00", "2024-03-31T12:00:00+00:00", "2024-04-30T12:00:00+00:00"],
    ),
    ("cron(0 12 L 2 ? *)", "2025-01-01T00:00:00+00:00", ["2025-02-28T12:00:00+00:00", "2026-02-28T12:00:00+00:00"]),
    # 6L: the last Friday
    (
        "cron(0 12 ? * 6L *)",
        "2025-01-01T00:00:00+00:00",
        ["2025-01-31T12:00:00+00:00", "2025-02-28T12:00:00+00:00", "2025-03-28T12:00:00+00:00"],
    ),
    ("cron(0 12 ? * FRIL *)", "2025-01-01T00:00:00+00:00", ["2025-01-31T12:00:00+00:00"]),
    # L alone in day-of-week: the last day of the week, Saturday
    ("cron(0 12 ? * L *)", "2025-01-15T00:00:00+00:00", ["2025-01-18T12:00:00+00:00", "2025-01-25T12:00:00+00:00"]),
    # 15W: Saturday the 15th -> Friday 14th; Sunday the 15th -> Monday 16th; a weekday stays
    (
        "cron(0 9 15W * ? *)",
        "2025-02-01T00:00:00+00:00",
        ["2025-02-14T09:00:00+00:00", "2025-03-14T09:00:00+00:00", "2025-04-15T09:00:00+00:00"],
    ),
    ("cron(0 9 15W * ? *)", "2025-06-01T00:00:00+00:00", ["2025-06-16T09:00:00+00:00"]),
    # 1W on Saturday the 1st -> Monday the 3rd, never back into the previous month
    (
        "cron(0 9 1W * ? *)",
        "2025-01-15T00:00:00+00:00",
        ["2025-02-03T09:00:00+00:00", "2025-03-03T09:00:00+00:00", "2025-04-01T09:00:00+00:00"],
    ),
    # 31W on Sunday the 31st -> Friday 29th, never forward into the next month; skips 30-day months
    ("cron(0 9 31W * ? *)", "2025-08-01T00:00:00+00:00", ["2025-08-29T09:00:00+00:00", "2025-10-31T09:00:00+00:00"]),
    # LW: last weekday; Sunday 31st -> Fri 29th, Tuesday 30th stays, Saturday 31st -> Fri 30th
    (
        "cron(0 9 LW * ? *)",
        "2025-08-01T00:00:00+00:00",
        ["2025-08-29T09:00:00+00:00", "2025-09-30T09:00:00+00:00", "2025-10-31T09:00:00+00:00"],
    ),
    ("cron(0 9 LW * ? *)", "2025-05-01T00:00:00+00:00", ["2025-05-30T09:00:00+00:00"]),
    # 3#2: the second Tuesday (3 = TUE, since 1 = SUN)
    (
        "cron(0 9 ? * 3#2 *)",
        "2025-01-01T00:00:00+00:00",
        ["2025-01-14T09:00:00+00:00", "2025-02-11T09:00:00+00:00", "2025-03-11T09:00:00+00:00"],
    ),
    ("cron(0 9 ? * TUE#2 *)", "2025-01-01T00:00:00+00:00", ["2025-01-14T09:00:00+00:00"]),
    # 2#5: a fifth Monday exists only in some months
    ("cron(0 9 ? * 2#5 *)", "2025-01-01T00:00:00+00:00", ["2025-03-31T09:00:00+00:00", "2025-06-30T09:00:00+00:00"]),
    # leap years: Feb 29 only in leap years, and 2100 is not one
    ("cron(0 0 29 2 ? *)", "2025-01-01T00:00:00+00:00", ["2028-02-29T00:00:00+00:00", "2032-02-29T00:00:00+00:00"]),
    ("cron(0 0 29 2 ? *)", "2024-01-01T00:00:00+00:00", ["2024-02-29T00:00:00+00:00"]),
    # day-of-week 1 is SUNDAY (Unix cron's 1 is Monday: the classic off-by-one), 7 is SATURDAY
    ("cron(0 12 ? * 1 *)", "2025-01-15T00:00:00+00:00", ["2025-01-19T12:00:00+00:00"]),
    ("cron(0 12 ? * SUN *)", "2025-01-15T00:00:00+00:00", ["2025-01-19T12:00:00+00:00"]),
    ("cron(0 12 ? * 7 *)", "2025-01-15T00:00:00+00:00", ["2025-01-18T12:00:00+00:00"]),
    ("cron(0 12 ? * 2-6 *)", "2025-01-18T00:00:00+00:00", ["2025-01-20T12:00:00+00:00"]),
    ("cron(0 12 ? * mon-fri *)", "2025-01-18T00:00:00+00:00", ["2025-01-20T12:00:00+00:00"]),
    # names, lists and steps
    (
        "cron(0 0 1 JAN,jul ? *)",
        "2025-02-01T00:00:00+00:00",
        ["2025-07-01T00:00:00+00:00", "2026-01-01T00:00:00+00:00"],
    ),
    (
        "cron(5/20 * * * ? *)",
        "2025-01-01T10:00:00+00:00",
        ["2025-01-01T10:05:00+00:00", "2025-01-01T10:25:00+00:00", "2025-01-01T10:45:00+00:00"],
    ),
    (
        "cron(0 0-12/6 * * ? *)",
        "2025-01-01T00:00:00+00:00",
        ["2025-01-01T06:00:00+00:00", "2025-01-01T12:00:00+00:00", "2025-01-02T00:00:00+00:00"],
    ),
    ("cron(*/30 9,17 * * ? *)", "2025-01-01T09:31:00+00:00", ["2025-01-01T17:00:00+00:00"]),
]


@pytest.mark.parametrize(("expression", "after", "expected"), HAND_CHECKED)
def test_hand_checked_cases(expression: str, after: str, expected: list[str]) -> None:
    assert iso(next_fires(expression, at(after), "UTC", len(expected))) == expected


# DST, both directions, two zones. Policy (AWS EventBridge Scheduler's): a wall time in the
# spring-forward gap is skipped that day; a wall time that happens twice fires once, at its first
# occurrence. Berlin: 2025-03-30 02:00 -> 03:00, 2025-10-26 03:00 -> 02:00.
# New York: 2025-03-09 02:00 -> 03:00, 2025-11-02 02:00 -> 01:00.
DST_CASES = [
    # Berlin gap: 02:30 does not exist on the 30th
    (
        "cron(30 2 * * ? *)",
        BERLIN,
        "2025-03-28T12:00:00+01:00",
        ["2025-03-29T02:30:00+01:00", "2025-03-31T02:30:00+02:00"],
    ),
    (
        "cron(0/30 * * * ? *)",
        BERLIN,
        "2025-03-30T01:00:00+01:00",
        ["2025-03-30T01:30:00+01:00", "2025-03-30T03:00:00+02:00", "2025-03-30T03:30:00+02:00"],
    ),
    # Berlin overlap: 02:30 happens twice on the 26th and fires at the first one only
    (
        "cron(30 2 * * ? *)",
        BERLIN,
        "2025-10-25T12:00:00+02:00",
        ["2025-10-26T02:30:00+02:00", "2025-10-27T02:30:00+01:00"],
    ),
    (
        "cron(0/30 * * * ? *)",
        BERLIN,
        "2025-10-26T01:45:00+02:00",
        ["2025-10-26T02:00:00+02:00", "2025-10-26T02:30:00+02:00", "2025-10-26T03:00:00+01:00"],
    ),
    # New York gap and overlap
    (
        "cron(30 2 * * ? *)",
        NEW_YORK,
        "2025-03-08T00:00:00-05:00",
        ["2025-03-08T02:30:00-05:00", "2025-03-10T02:30:00-04:00"],
    ),
    (
        "cron(30 1 * * ? *)",
        NEW_YORK,
        "2025-11-01T12:00:00-04:00",
        ["2025-11-02T01:30:00-04:00", "2025-11-03T01:30:00-05:00"],
    ),
    # a fixed local time stays local across the change (its UTC time moves)
    (
        "cron(0 9 ? * MON-FRI *)",
        NEW_YORK,
        "2025-03-07T12:00:00-05:00",
        ["2025-03-10T09:00:00-04:00", "2025-03-11T09:00:00-04:00"],
    ),
    # rate() is elapsed time: 24 hours across the 23-hour day
    (
        "rate(1 day)",
        BERLIN,
        "2025-03-29T12:00:00+01:00",
        ["2025-03-30T13:00:00+02:00", "2025-03-31T13:00:00+02:00"],
    ),
]


@pytest.mark.parametrize(("expression", "zone", "after", "expected"), DST_CASES)
def test_dst(expression: str, zone: ZoneInfo, after: str, expected: list[str]) -> None:
    assert iso(next_fires(expression, at(after), zone, len(expected))) == expected


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        # 2100 is not a leap year
        (
            "cron(0 0 29 2 ? 2096-2104)",
            "2090-01-01T00:00:00+00:00",
            ["2096-02-29T00:00:00+00:00", "2104-02-29T00:00:00+00:00"],
        ),
        (
            "cron(0 0 1 1 ? 2025-2026)",
            "2024-06-01T00:00:00+00:00",
            ["2025-01-01T00:00:00+00:00", "2026-01-01T00:00:00+00:00"],
        ),
        ("cron(0 0 1 1 ? 2199)", "2199-01-01T00:00:00+00:00", []),
        ("cron(0 0 31 2 ? *)", "2025-01-01T00:00:00+00:00", []),
    ],
)
def test_year_field_ends_the_schedule(expression: str, after: str, expected: list[str]) -> None:
    assert iso(next_fires(expression, at(after), "UTC", 10)) == expected


def test_dst_starting_inside_the_second_pass_of_an_overlap() -> None:
    # 01:40 EST (fold=1) is after 01:45 EDT already happened: today's fire is gone, not repeated.
    after = datetime(2025, 11, 2, 1, 40, fold=1, tzinfo=NEW_YORK)
    assert iso(next_fires("cron(45 1 * * ? *)", after, NEW_YORK, 1)) == ["2025-11-03T01:45:00-05:00"]


def test_rate_over_fall_back_counts_real_hours() -> None:
    schedule = parse_schedule("rate(1 hour)", timezone=NEW_YORK, start_date=at("2025-11-02T00:00:00-04:00"))
    fires = schedule.next_fires(at("2025-11-01T00:00:00-04:00"), 4)
    assert iso(fires) == [
        "2025-11-02T00:00:00-04:00",
        "2025-11-02T01:00:00-04:00",
        "2025-11-02T01:00:00-05:00",
        "2025-11-02T02:00:00-05:00",
    ]


def test_local_instant_policy() -> None:
    assert local_instant(datetime(2025, 3, 30, 2, 30), BERLIN) is None
    first = local_instant(datetime(2025, 10, 26, 2, 30), BERLIN)
    assert first == datetime(2025, 10, 26, 0, 30, tzinfo=UTC)
    assert local_instant(datetime(2025, 7, 1, 12, 0), NEW_YORK) == datetime(2025, 7, 1, 16, 0, tzinfo=UTC)


# rate(), at() and the start/end window


def test_rate_with_start_date_fires_on_its_grid() -> None:
    schedule = parse_schedule("rate(5 minutes)", start_date=at("2025-01-01T00:02:00+00:00"))
    assert iso(schedule.next_fires(at("2024-12-31T23:00:00+00:00"), 3)) == [
        "2025-01-01T00:02:00+00:00",
        "2025-01-01T00:07:00+00:00",
        "2025-01-01T00:12:00+00:00",
    ]
    assert iso(schedule.next_fires(at("2025-01-01T00:08:00+00:00"), 1)) == ["2025-01-01T00:12:00+00:00"]


def test_rate_without_start_date_counts_from_after() -> None:
    assert next_fire("rate(2 hours)", at("2025-01-01T10:17:00+00:00")) == at("2025-01-01T12:17:00+00:00")


def test_naive_start_date_is_a_wall_time_in_the_schedule_zone() -> None:
    schedule = parse_schedule("cron(0 10 * * ? *)", timezone="Europe/Berlin", start_date="2025-01-05T10:00:00")
    assert iso(schedule.next_fires(at("2025-01-01T00:00:00+00:00"), 1)) == ["2025-01-05T10:00:00+01:00"]


def test_at_fires_once_then_never() -> None:
    schedule = parse_schedule("at(2025-12-24T18:00:00)", timezone="Europe/Berlin")
    fire = schedule.next_fire(at("2025-12-01T00:00:00+00:00"))
    assert fire is not None and fire.isoformat() == "2025-12-24T18:00:00+01:00"
    assert schedule.next_fire(fire) is None
    assert schedule.next_fires(at("2025-12-01T00:00:00+00:00"), 5) == [fire]
    assert schedule.next_fire(at("2026-01-01T00:00:00+00:00")) is None


def test_at_inside_a_fall_back_overlap_means_the_first_occurrence() -> None:
    schedule = parse_schedule("at(2025-10-26T02:30:00)", timezone="Europe/Berlin")
    assert iso(schedule.next_fires(at("2025-10-01T00:00:00+00:00"), 2)) == ["2025-10-26T02:30:00+02:00"]


def test_at_inside_a_spring_forward_gap_is_a_config_error() -> None:
    with pytest.raises(ExpressionError, match=r"does not exist in Europe/Berlin"):
        parse_schedule("at(2025-03-30T02:30:00)", timezone="Europe/Berlin")


def test_end_date_is_inclusive_and_stops_the_schedule() -> None:
    schedule = parse_schedule("cron(0 10 * * ? *)", end_date=at("2025-01-03T10:00:00+00:00"))
    assert iso(schedule.next_fires(at("2025-01-01T00:00:00+00:00"), 10)) == [
        "2025-01-01T10:00:00+00:00",
        "2025-01-02T10:00:00+00:00",
        "2025-01-03T10:00:00+00:00",
    ]
    assert schedule.next_fire(at("2025-01-03T10:00:00+00:00")) is None


def test_start_date_opens_the_window_inclusively() -> None:
    schedule = parse_schedule("cron(0 10 * * ? *)", start_date=at("2025-01-05T10:00:00+00:00"))
    assert schedule.next_fire(at("2025-01-01T00:00:00+00:00")) == at("2025-01-05T10:00:00+00:00")


def test_schedule_value_describes_itself() -> None:
    schedule = parse_schedule("  cron(0 10 * * ? *) ", timezone="America/New_York")
    assert (schedule.kind, schedule.text, schedule.timezone.key) == ("cron", "cron(0 10 * * ? *)", "America/New_York")
    assert isinstance(schedule.expression, CronExpression)
    assert parse_schedule("rate(1 minute)").kind == "rate"
    assert parse_schedule("at(2030-01-01T00:00:00)").kind == "at"


def test_next_fire_accepts_a_parsed_expression() -> None:
    expression = parse_expression("cron(0 10 * * ? *)")
    assert next_fire(expression, at("2025-01-01T00:00:00+00:00"), "UTC") == at("2025-01-01T10:00:00+00:00")


# Invalid expressions: each names what is wrong.
INVALID = [
    ("cron(0 10 * * ?)", "cron expression needs 6 fields (minutes hours day-of-month month day-of-week year), got 5"),
    ("cron(0 10 * * ? * *)", "needs 6 fields"),
    ("cron(0 10 * * * *)", "use '?' in exactly one of day-of-month and day-of-week"),
    ("cron(0 9 1 * MON *)", "use '?' in exactly one of day-of-month and day-of-week"),
    ("cron(0 10 ? * ? *)", "use '?' in exactly one of day-of-month and day-of-week, not both"),
    ("cron(0 18 ? * 0 *)", "day-of-week '0': 0 is outside 1-7 or SUN-SAT; AWS numbers Sunday 1"),
    ("cron(0 18 ? * 8 *)", "day-of-week '8': 8 is outside 1-7 or SUN-SAT"),
    ("cron(0 18 ? * MON-FRY *)", "day-of-week 'MON-FRY': 'FRY' is not a day-of-week value (1-7 or SUN-SAT)"),
    ("cron(60 * * * ? *)", "minutes '60': 60 is outside 0-59"),
    ("cron(0 24 * * ? *)", "hours '24': 24 is outside 0-23"),
    ("cron(0 0 32 * ? *)", "day-of-month '32': 32 is outside 1-31"),
    ("cron(0 0 1 13 ? *)", "month '13': 13 is outside 1-12 or JAN-DEC"),
    ("cron(0 0 1 JANUARY ? *)", "month 'JANUARY'"),
    ("cron(0 0 1 * ? 1969)", "year '1969': 1969 is outside 1970-2199"),
    ("cron(0 0 1 * ? 2200)", "year '2200': 2200 is outside 1970-2199"),
    ("cron(0 0 ? * 3#1,6#3 *)", "only one '#' value is allowed in day-of-week"),
    ("cron(0 0 ? * 3#6 *)", "the occurrence after '#' must be 1-5"),
    ("cron(0 0 L-3 * ? *)", "'L-n' (n days before the last) is not in AWS's cron dialect"),
    ("cron(0 0 1,L * ? *)", "'L', 'W' and '#' must make up the whole field"),
    ("cron(0 0 ? * */2 *)", "'/' is not allowed in day-of-week"),
    ("cron(0 0 ? * FRI-MON *)", "range 'FRI-MON' runs backwards"),
    ("cron(0/0 * * * ? *)", "the increment after '/' must be a whole number of at least 1"),
    ("cron(? 0 * * ? *)", "'?' must stand alone, and only in day-of-month or day-of-week"),
    ("cron(a 0 * * ? *)", "minutes 'a': 'a' is not a minutes value (0-59)"),
    ("cron(0 0 1,,2 * ? *)", "empty value"),
    ("cron(0 0 0W * ? *)", "day-of-month '0W': 0 is outside 1-31"),
    ("rate(1 minutes)", "use the singular for a value of 1: rate(1 minute)"),
    ("rate(5 minute)", "use the plural for a value other than 1: rate(5 minutes)"),
    ("rate(0 minutes)", "the value '0' must be a positive whole number"),
    ("rate(-5 minutes)", "must be a positive whole number"),
    ("rate(1.5 hours)", "the value '1.5' must be a positive whole number"),
    ("rate(5 weeks)", "unit 'weeks' must be minute(s), hour(s) or day(s)"),
    ("rate(5)", "rate() needs a value and a unit"),
    ("at(2025-13-01T00:00:00)", "is not a real date and time"),
    ("at(2025-02-30T00:00:00)", "is not a real date and time"),
    ("at(2025-12-24 18:00)", "at() needs a local date and time as yyyy-mm-ddThh:mm:ss"),
    ("every 5 minutes", "expected cron(...), rate(...) or at(...)"),
    ("0 10 * * ? *", "expected cron(...), rate(...) or at(...)"),
    ("CRON(0 10 * * ? *)", "expected cron(...), rate(...) or at(...)"),
]


@pytest.mark.parametrize(("expression", "fragment"), INVALID)
def test_invalid_expressions_say_what_is_wrong(expression: str, fragment: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        parse_schedule(expression)
    assert fragment in str(caught.value)
    assert isinstance(caught.value, ValueError)  # so pydantic reports it at the config path


def test_messages_start_with_the_expression() -> None:
    with pytest.raises(ExpressionError, match=r"^cron\(0 18 \? \* 0 \*\): day-of-week '0'"):
        parse_expression("cron(0 18 ? * 0 *)")


def test_unknown_time_zone_is_named() -> None:
    with pytest.raises(ExpressionError, match=r"unknown time zone 'Mars/Olympus'"):
        parse_schedule("rate(5 minutes)", timezone="Mars/Olympus")


def test_end_before_start_is_an_error() -> None:
    with pytest.raises(ExpressionError, match="is before start_date"):
        parse_schedule("rate(5 minutes)", start_date="2025-02-01T00:00:00", end_date="2025-01-01T00:00:00")


def test_bad_start_date_text_is_an_error() -> None:
    with pytest.raises(ExpressionError, match="start_date 'tomorrow' is not an ISO-8601"):
        parse_schedule("rate(5 minutes)", start_date="tomorrow")


# The APScheduler triggers delegate to the pure functions.


def _trigger_fires(trigger: BaseTrigger, now: datetime, n: int) -> list[datetime]:
    fires: list[datetime] = []
    previous = None
    while len(fires) < n and (fire := trigger.get_next_fire_time(previous, now)) is not None:
        fires.append(fire)
        previous = fire
    return fires


@pytest.mark.parametrize(
    ("text", "zone", "trigger_type"),
    [
        ("cron(0/30 * * * ? *)", "Europe/Berlin", AwsCronTrigger),
        ("cron(30 2 * * ? *)", "Europe/Berlin", AwsCronTrigger),
        ("cron(30 1 * * ? *)", "America/New_York", AwsCronTrigger),
        ("cron(0 9 ? * 6L *)", "America/New_York", AwsCronTrigger),
        ("rate(7 hours)", "Europe/Berlin", AwsRateTrigger),
        ("at(2025-03-31T08:00:00)", "Europe/Berlin", AwsAtTrigger),
    ],
)
def test_trigger_agrees_with_the_pure_function(text: str, zone: str, trigger_type: type) -> None:
    schedule = parse_schedule(text, timezone=zone)
    now = at("2025-03-29T12:00:30+00:00")
    trigger = schedule.trigger(now=now)
    assert isinstance(trigger, trigger_type) and isinstance(trigger, BaseTrigger)
    assert iso(_trigger_fires(trigger, now, 8)) == iso(schedule.next_fires(now, 8))


def test_trigger_honours_start_and_end_dates() -> None:
    schedule = parse_schedule(
        "cron(0 * * * ? *)", start_date="2025-01-01T10:00:00+00:00", end_date="2025-01-01T12:00:00+00:00"
    )
    fires = _trigger_fires(schedule.trigger(), at("2024-06-01T00:00:00+00:00"), 10)
    assert iso(fires) == ["2025-01-01T10:00:00+00:00", "2025-01-01T11:00:00+00:00", "2025-01-01T12:00:00+00:00"]


def test_trigger_fires_at_now_when_now_is_a_fire_time() -> None:
    trigger = parse_schedule("cron(0 10 * * ? *)").trigger()
    assert trigger.get_next_fire_time(None, at("2025-01-01T10:00:00+00:00")) == at("2025-01-01T10:00:00+00:00")


def test_trigger_never_repeats_a_fire_after_the_clock_goes_back() -> None:
    trigger = parse_schedule("cron(0 10 * * ? *)").trigger()
    previous = at("2025-01-01T10:00:00+00:00")
    assert trigger.get_next_fire_time(previous, previous - timedelta(minutes=30)) == at("2025-01-02T10:00:00+00:00")


def test_at_trigger_returns_a_past_time_like_date_trigger() -> None:
    trigger = parse_schedule("at(2025-01-01T00:00:00)").trigger()
    assert trigger.get_next_fire_time(None, at("2025-06-01T00:00:00+00:00")) == at("2025-01-01T00:00:00+00:00")


def test_rate_trigger_without_start_date_is_anchored_one_interval_after_now() -> None:
    now = at("2025-01-01T10:00:00+00:00")
    trigger = parse_schedule("rate(5 minutes)").trigger(now=now)
    assert iso(_trigger_fires(trigger, now, 2)) == ["2025-01-01T10:05:00+00:00", "2025-01-01T10:10:00+00:00"]


def test_triggers_pickle_for_persistent_job_stores() -> None:
    trigger = parse_schedule("cron(0 9 ? * 2#1 *)", timezone="Europe/Berlin").trigger()
    copy = pickle.loads(pickle.dumps(trigger))
    now = at("2025-01-10T00:00:00+00:00")
    assert copy.get_next_fire_time(None, now) == trigger.get_next_fire_time(None, now)
    assert "cron(0 9 ? * 2#1 *)" in str(copy) and "Europe/Berlin" in repr(copy)


def test_ten_thousand_schedules_are_cheap() -> None:
    expressions = [
        (
            f"cron({i % 60} {i % 24} ? * MON-FRI *)",
            f"cron(0/{i % 30 + 1} {i % 24}-23 {i % 28 + 1} * ? *)",
            f"cron(0 {i % 24} ? * {i % 7 + 1}#{i % 4 + 1} *)",
            f"cron(0 {i % 24} LW * ? *)",
        )[i % 4]
        for i in range(10_000)
    ]
    now = at("2025-03-29T12:00:00+00:00")
    started = time.perf_counter()
    schedules = [parse_schedule(text, timezone="Europe/Berlin") for text in expressions]
    parsed = time.perf_counter()
    fires = [schedule.next_fire(now) for schedule in schedules]
    done = time.perf_counter()
    print(f"10,000 schedules: parse {parsed - started:.3f}s, next fire {done - parsed:.3f}s")
    assert all(fire is not None for fire in fires)
    assert done - started < 20  # a generous sanity bound; the printed figure is what matters
