"""AWS schedule expressions (cron, rate, at): parse them, compute their fire times, drive APScheduler."""

from __future__ import annotations

import calendar
import re
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from types import MappingProxyType
from typing import ClassVar, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.base import BaseTrigger

from bridge.errors import ExpressionError

__all__ = [
    "AtExpression",
    "AwsAtTrigger",
    "AwsCronTrigger",
    "AwsRateTrigger",
    "CronExpression",
    "RateExpression",
    "Schedule",
    "ScheduleExpression",
    "local_instant",
    "next_fire",
    "next_fires",
    "parse_expression",
    "parse_schedule",
]

# The smallest step of a datetime: "at or after t" is "strictly after t - _TICK".
_TICK = timedelta(microseconds=1)
_MINUTE = timedelta(minutes=1)
# Earlier than any at() instant, and still safe to convert to any zone.
_BEGINNING = datetime(1, 1, 2, tzinfo=UTC)

# Spelled out rather than taken from calendar.month_abbr, which follows the locale.
_MONTH_NAMES = MappingProxyType(
    {
        name: number
        for number, name in enumerate(
            ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"), 1
        )
    }
)
_DAY_NAMES = MappingProxyType(
    {name: number for number, name in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"), 1)}
)


class _Problem(Exception):
    """What is wrong with one part of an expression; parse_expression prefixes the whole expression."""


# --------------------------------------------------------------------------------------------------------
# Fields and their values
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _FieldSpec:
    """One of the six cron fields: its name, its range, its names and whether '/' is allowed."""

    name: str
    low: int
    high: int
    names: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    steps: bool = True
    allowed: str = ""

    def describe(self) -> str:
        """The allowed values, as AWS's documentation writes them."""
        return self.allowed or f"{self.low}-{self.high}"


_MINUTES = _FieldSpec("minutes", 0, 59)
_HOURS = _FieldSpec("hours", 0, 23)
_DAY_OF_MONTH = _FieldSpec("day-of-month", 1, 31)
_MONTH = _FieldSpec("month", 1, 12, _MONTH_NAMES, allowed="1-12 or JAN-DEC")
# AWS's documented wildcards for day-of-week are ", - * ? L #": no '/'.
_DAY_OF_WEEK = _FieldSpec("day-of-week", 1, 7, _DAY_NAMES, steps=False, allowed="1-7 or SUN-SAT")
_YEAR = _FieldSpec("year", 1970, 2199)


def _bad_token(spec: _FieldSpec, token: str) -> _Problem:
    """The most helpful complaint about a token that is not a value of ``spec``."""
    if not token:
        return _Problem("empty value (check for a stray ',', '-' or '/')")
    if "?" in token:
        return _Problem("'?' must stand alone, and only in day-of-month or day-of-week")
    if any(mark in token for mark in "LW#"):
        return _Problem(
            "'L', 'W' and '#' must make up the whole field ('L', 'LW', '15W' in day-of-month; "
            "'L', '6L', '3#2' in day-of-week)"
        )
    return _Problem(f"{token!r} is not a {spec.name} value ({spec.describe()})")


def _value(spec: _FieldSpec, token: str) -> int:
    """One number or name of ``spec``, range-checked."""
    if token.upper() in spec.names:
        return spec.names[token.upper()]
    if not (token.isascii() and token.isdigit()):
        raise _bad_token(spec, token)
    number = int(token)
    if spec.low <= number <= spec.high:
        return number
    # The classic off-by-one: Unix cron numbers Sunday 0, AWS numbers it 1.
    unix = "; AWS numbers Sunday 1, not 0 as Unix cron does" if spec is _DAY_OF_WEEK and number == 0 else ""
    raise _Problem(f"{number} is outside {spec.describe()}{unix}")


def _step(spec: _FieldSpec, text: str) -> int:
    """The increment after '/'."""
    if not spec.steps:
        raise _Problem(f"'/' is not allowed in {spec.name}; list the days instead, e.g. MON,WED,FRI")
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise _Problem(f"the increment after '/' must be a whole number of at least 1, got {text!r}")
    return int(text)


def _item(spec: _FieldSpec, item: str) -> range:
    """One comma-separated item: ``*``, ``a``, ``a-b``, each optionally ``/n``."""
    base, slash, increment = item.partition("/")
    step = _step(spec, increment) if slash else 1
    if base == "*":
        return range(spec.low, spec.high + 1, step)
    first, dash, last = base.partition("-")
    start = _value(spec, first)
    # 'a/n' runs from a to the end of the field, as in Quartz and AWS ('0/15' = 0,15,30,45).
    stop = _value(spec, last) if dash else (spec.high if slash else start)
    if stop < start:
        raise _Problem(f"range {base!r} runs backwards; split it, e.g. '{first}-{spec.high},{spec.low}-{last}'")
    return range(start, stop + 1, step)


def _values(spec: _FieldSpec, text: str) -> tuple[int, ...]:
    """A whole list field as sorted distinct values."""
    chosen: set[int] = set()
    for item in text.split(","):
        chosen.update(_item(spec, item))
    return tuple(sorted(chosen))


_Parsed = TypeVar("_Parsed")


def _in_field(spec: _FieldSpec, text: str, parse: Callable[[_FieldSpec, str], _Parsed]) -> _Parsed:
    """Run ``parse`` on one field, naming the field and its text in any complaint."""
    try:
        return parse(spec, text)
    except _Problem as problem:
        raise _Problem(f"{spec.name} {text!r}: {problem}") from None


# --------------------------------------------------------------------------------------------------------
# Which days of a month match
# --------------------------------------------------------------------------------------------------------


def _aws_weekday(day: date) -> int:
    """AWS numbering, 1 = Sunday ... 7 = Saturday (Python's weekday() has Monday = 0)."""
    return (day.weekday() + 1) % 7 + 1


def _nearest_weekday(year: int, month: int, day: int) -> int:
    """The weekday (Mon-Fri) nearest to ``day`` without leaving the month: AWS's ``W``."""
    length = calendar.monthrange(year, month)[1]
    weekday = date(year, month, day).weekday()
    if weekday == 5:  # Saturday: the Friday before, unless that is last month (1st -> Monday 3rd)
        return day - 1 if day > 1 else day + 2
    if weekday == 6:  # Sunday: the Monday after, unless that is next month (last -> Friday before)
        return day + 1 if day < length else day - 2
    return day


@dataclass(frozen=True)
class _MonthDays:
    """A day-of-month field: listed days, ``L``, ``LW`` or ``nW``."""

    days: tuple[int, ...] = ()
    last: bool = False
    last_weekday: bool = False
    nearest_to: int | None = None

    def days_in(self, year: int, month: int) -> tuple[int, ...]:
        """The matching days of that month, ascending."""
        length = calendar.monthrange(year, month)[1]
        if self.last:
            return (length,)
        if self.last_weekday:
            return (_nearest_weekday(year, month, length),)
        if self.nearest_to is not None:
            # Like a plain '31', '31W' has nothing to be near in a 30-day month.
            return (_nearest_weekday(year, month, self.nearest_to),) if self.nearest_to <= length else ()
        return self.days[: bisect_right(self.days, length)]


@dataclass(frozen=True)
class _WeekDays:
    """A day-of-week field: listed weekdays, ``nL`` (last n-day) or ``n#k`` (k-th n-day); AWS numbering."""

    weekdays: frozenset[int] = frozenset()
    last_of: int | None = None
    nth: tuple[int, int] | None = None

    def days_in(self, year: int, month: int) -> tuple[int, ...]:
        """The matching days of that month, ascending."""
        length = calendar.monthrange(year, month)[1]
        first = _aws_weekday(date(year, month, 1))
        if self.nth is not None:
            weekday, occurrence = self.nth
            day = 1 + (weekday - first) % 7 + 7 * (occurrence - 1)
            return (day,) if day <= length else ()
        if self.last_of is not None:
            last = _aws_weekday(date(year, month, length))
            return (length - (last - self.last_of) % 7,)
        return tuple(day for day in range(1, length + 1) if (first + day - 2) % 7 + 1 in self.weekdays)


def _day_of_month(spec: _FieldSpec, text: str) -> _MonthDays | None:
    """Parse day-of-month; ``None`` for '?'."""
    if text == "?":
        return None
    if text in ("L", "LW"):
        return _MonthDays(last=text == "L", last_weekday=text == "LW")
    if text.startswith("L-"):
        raise _Problem("'L-n' (n days before the last) is not in AWS's cron dialect; use 'L' or list the days")
    if match := re.fullmatch(r"(\d+)W", text):
        return _MonthDays(nearest_to=_value(spec, match[1]))
    return _MonthDays(days=_values(spec, text))


def _occurrence(text: str) -> int:
    """The k of ``n#k``."""
    if text in ("1", "2", "3", "4", "5"):
        return int(text)
    raise _Problem(f"the occurrence after '#' must be 1-5, got {text!r}")


def _day_of_week(spec: _FieldSpec, text: str) -> _WeekDays | None:
    """Parse day-of-week; ``None`` for '?'."""
    if text == "?":
        return None
    if text == "L":  # 'L' alone is the last day of the week: Saturday
        return _WeekDays(weekdays=frozenset({7}))
    if "#" in text and ("," in text or text.count("#") > 1):
        raise _Problem("only one '#' value is allowed in day-of-week (AWS reads '3#1,6#3' as two expressions)")
    if match := re.fullmatch(r"(\w+)#(\w*)", text):
        return _WeekDays(nth=(_value(spec, match[1]), _occurrence(match[2])))
    if match := re.fullmatch(r"(\d|[A-Za-z]{3})L", text):
        return _WeekDays(last_of=_value(spec, match[1]))
    return _WeekDays(weekdays=frozenset(_values(spec, text)))


def _day_spec(day_of_month: str, day_of_week: str) -> _MonthDays | _WeekDays:
    """Exactly one of the two day fields is '?'; the other one decides the days."""
    month_days = _in_field(_DAY_OF_MONTH, day_of_month, _day_of_month)
    week_days = _in_field(_DAY_OF_WEEK, day_of_week, _day_of_week)
    if month_days is not None and week_days is None:
        return month_days
    if week_days is not None and month_days is None:
        return week_days
    if month_days is None:
        raise _Problem("use '?' in exactly one of day-of-month and day-of-week, not both")
    raise _Problem(
        "use '?' in exactly one of day-of-month and day-of-week "
        f"(got {day_of_month!r} and {day_of_week!r}), e.g. cron(0 9 ? * MON-FRI *) or cron(0 9 1 * ? *)"
    )


# --------------------------------------------------------------------------------------------------------
# Wall clock to instant: the DST policy
# --------------------------------------------------------------------------------------------------------


def local_instant(wall: datetime, tz: ZoneInfo) -> datetime | None:
    """The UTC instant at which the naive local wall-clock time ``wall`` happens in ``tz``.

    DST policy, as AWS documents for EventBridge Scheduler ("How can I adjust my Amazon EventBridge
    schedule for daylight saving?", AWS knowledge center):

    - Spring forward: a wall time inside the gap never happens, so this returns ``None`` and a cron fire
      at that time is **skipped** that day (02:30 in Europe/Berlin on 2025-03-30 does not fire; the next
      fire is 02:30 on 2025-03-31). An ``at()`` inside a gap is rejected when the schedule is parsed.
    - Fall back: a wall time that happens twice maps to its **first** occurrence (before the clocks go
      back), so it fires once and is not repeated.
    """
    instant = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    # zoneinfo maps a gap time with the offset from before the gap; the round trip then lands elsewhere.
    if instant.astimezone(tz).replace(tzinfo=None) != wall.replace(tzinfo=None, fold=0):
        return None
    return instant


# --------------------------------------------------------------------------------------------------------
# The three expression kinds
# --------------------------------------------------------------------------------------------------------


def _from(values: tuple[int, ...], floor: int) -> tuple[int, ...]:
    """The sorted ``values`` that are at least ``floor``."""
    return values[bisect_left(values, floor) :]


@dataclass(frozen=True)
class CronExpression:
    """A parsed ``cron(minutes hours day-of-month month day-of-week year)``, AWS dialect."""

    kind: ClassVar[str] = "cron"
    text: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: _MonthDays | _WeekDays
    months: tuple[int, ...]
    years: tuple[int, ...]

    def next_fire(self, after: datetime, tz: ZoneInfo, anchor: datetime | None = None) -> datetime | None:
        """The first fire strictly after ``after`` (aware), in UTC; ``None`` once the years run out.

        Walks matching local wall times in order (skipping by year, month, day, hour, minute, never
        minute by minute over empty stretches) and maps each through :func:`local_instant`. ``anchor``
        is ignored (only rate() has one).
        """
        after = after.astimezone(UTC)
        wall = after.astimezone(tz).replace(tzinfo=None, second=0, microsecond=0, fold=0)
        while (match := self.first_match(wall)) is not None:
            instant = local_instant(match, tz)
            # In a fall-back overlap, wall times just after ``after`` may name earlier instants.
            if instant is not None and instant > after:
                return instant
            wall = match + _MINUTE
        return None

    def first_match(self, start: datetime) -> datetime | None:
        """The first naive wall-clock minute at or after ``start`` (whole minute) that every field matches."""
        for year in _from(self.years, start.year):
            floor = start if year == start.year else datetime(year, 1, 1)
            if (found := self._in_year(year, floor)) is not None:
                return found
        return None

    def _in_year(self, year: int, floor: datetime) -> datetime | None:
        for month in _from(self.months, floor.month):
            month_floor = floor if month == floor.month else datetime(year, month, 1)
            if (found := self._in_month(year, month, month_floor)) is not None:
                return found
        return None

    def _in_month(self, year: int, month: int, floor: datetime) -> datetime | None:
        for day in _from(self.days.days_in(year, month), floor.day):
            day_floor = floor if day == floor.day else datetime(year, month, day)
            if (found := self._in_day(day_floor)) is not None:
                return found
        return None

    def _in_day(self, floor: datetime) -> datetime | None:
        for hour in _from(self.hours, floor.hour):
            minutes = _from(self.minutes, floor.minute if hour == floor.hour else 0)
            if minutes:
                return floor.replace(hour=hour, minute=minutes[0])
        return None


@dataclass(frozen=True)
class RateExpression:
    """A parsed ``rate(value unit)``: a fixed elapsed interval, unaffected by DST."""

    kind: ClassVar[str] = "rate"
    text: str
    interval: timedelta

    def next_fire(self, after: datetime, tz: ZoneInfo, anchor: datetime | None = None) -> datetime | None:
        """The first ``anchor + k * interval`` (k >= 0) strictly after ``after``, in UTC.

        Elapsed time, like AWS: ``rate(1 day)`` is 24 hours even across a 23- or 25-hour DST day.
        Without an ``anchor`` the grid starts at ``after``, so the first fire is one interval later.
        """
        after = after.astimezone(UTC)
        start = after if anchor is None else anchor.astimezone(UTC)
        if after < start:
            return start
        return start + ((after - start) // self.interval + 1) * self.interval


@dataclass(frozen=True)
class AtExpression:
    """A parsed ``at(yyyy-mm-ddThh:mm:ss)``: one local wall time, fired once."""

    kind: ClassVar[str] = "at"
    text: str
    wall: datetime

    def next_fire(self, after: datetime, tz: ZoneInfo, anchor: datetime | None = None) -> datetime | None:
        """The one instant, in UTC, if it is strictly after ``after``; else ``None``."""
        instant = local_instant(self.wall, tz)
        return instant if instant is not None and instant > after.astimezone(UTC) else None


ScheduleExpression = CronExpression | RateExpression | AtExpression


# --------------------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------------------


def _parse_cron(text: str, body: str) -> CronExpression:
    fields = body.split()
    if len(fields) != 6:
        unix = "; a Unix crontab line has 5: AWS adds a year field, e.g. '*'" if len(fields) == 5 else ""
        raise _Problem(
            "cron expression needs 6 fields (minutes hours day-of-month month day-of-week year), "
            f"got {len(fields)}{unix}"
        )
    minutes, hours, day_of_month, month, day_of_week, year = fields
    return CronExpression(
        text=text,
        minutes=_in_field(_MINUTES, minutes, _values),
        hours=_in_field(_HOURS, hours, _values),
        days=_day_spec(day_of_month, day_of_week),
        months=_in_field(_MONTH, month, _values),
        years=_in_field(_YEAR, year, _values),
    )


_UNIT_SECONDS = MappingProxyType({"minute": 60, "hour": 3600, "day": 86400})


def _parse_rate(text: str, body: str) -> RateExpression:
    parts = body.split()
    if len(parts) != 2:
        raise _Problem("rate() needs a value and a unit, e.g. rate(5 minutes) or rate(1 hour)")
    value_text, unit = parts
    if not (value_text.isascii() and value_text.isdigit()) or int(value_text) < 1:
        raise _Problem(f"the value {value_text!r} must be a positive whole number")
    value, singular = int(value_text), unit.removesuffix("s")
    if singular not in _UNIT_SECONDS:
        raise _Problem(f"unit {unit!r} must be minute(s), hour(s) or day(s)")
    # AWS enforces the grammar: 'rate(1 minutes)' and 'rate(5 minute)' are both rejected.
    if value == 1 and unit != singular:
        raise _Problem(f"use the singular for a value of 1: rate(1 {singular})")
    if value != 1 and unit == singular:
        raise _Problem(f"use the plural for a value other than 1: rate({value} {singular}s)")
    try:
        return RateExpression(text=text, interval=timedelta(seconds=value * _UNIT_SECONDS[singular]))
    except OverflowError:
        raise _Problem(f"the value {value} is too large") from None


def _parse_at(text: str, body: str) -> AtExpression:
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}", body):
        raise _Problem("at() needs a local date and time as yyyy-mm-ddThh:mm:ss, e.g. at(2026-12-24T18:00:00)")
    try:
        return AtExpression(text=text, wall=datetime.strptime(body, "%Y-%m-%dT%H:%M:%S"))
    except ValueError as err:
        raise _Problem(f"{body!r} is not a real date and time ({err})") from None


_PARSERS: Mapping[str, Callable[[str, str], ScheduleExpression]] = MappingProxyType(
    {"cron": _parse_cron, "rate": _parse_rate, "at": _parse_at}
)


def parse_expression(text: str) -> ScheduleExpression:
    """Parse ``cron(...)``, ``rate(...)`` or ``at(...)`` exactly as AWS accepts them.

    Raises :class:`~bridge.errors.ExpressionError` saying what is wrong, prefixed with the expression.
    """
    stripped = text.strip()
    match = re.fullmatch(r"(cron|rate|at)\((.*)\)", stripped, re.DOTALL)
    if match is None:
        raise ExpressionError(f"{stripped!r} is not a schedule expression; expected cron(...), rate(...) or at(...)")
    try:
        return _PARSERS[match[1]](stripped, match[2])
    except _Problem as problem:
        raise ExpressionError(f"{stripped}: {problem}") from None


def _zone(name: str | ZoneInfo) -> ZoneInfo:
    """An IANA time zone, or an ExpressionError naming the bad one."""
    if isinstance(name, ZoneInfo):
        return name
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ExpressionError(
            f"unknown time zone {name!r}; use an IANA name such as 'UTC', 'Europe/Berlin' or 'America/New_York'"
        ) from None


def _as_utc(moment: datetime, tz: ZoneInfo) -> datetime:
    """``moment`` in UTC; a naive ``moment`` is a wall time in ``tz``."""
    return (moment.replace(tzinfo=tz) if moment.tzinfo is None else moment).astimezone(UTC)


def _bound(moment: datetime | str | None, tz: ZoneInfo, label: str) -> datetime | None:
    """A start_date/end_date from config as an aware UTC datetime."""
    if isinstance(moment, str):
        try:
            moment = datetime.fromisoformat(moment)
        except ValueError:
            raise ExpressionError(f"{label} {moment!r} is not an ISO-8601 date and time") from None
    return None if moment is None else _as_utc(moment, tz)


# --------------------------------------------------------------------------------------------------------
# A schedule: expression + time zone + window
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Schedule:
    """A schedule expression bound to a time zone and an optional ``[start_date, end_date]`` window.

    ``start_date``/``end_date`` are aware UTC datetimes (use :func:`parse_schedule` to build one from
    config values); both bounds are inclusive. Fire times come back aware, in ``timezone``.
    """

    expression: ScheduleExpression
    timezone: ZoneInfo
    start_date: datetime | None = None
    end_date: datetime | None = None

    def __post_init__(self) -> None:
        if isinstance(self.expression, AtExpression) and local_instant(self.expression.wall, self.timezone) is None:
            raise ExpressionError(
                f"{self.text}: {self.expression.wall.isoformat()} does not exist in {self.timezone.key} "
                "(the clocks spring forward over it); pick a time outside the gap"
            )

    @property
    def text(self) -> str:
        """The expression as written."""
        return self.expression.text

    @property
    def kind(self) -> str:
        """``"cron"``, ``"rate"`` or ``"at"``."""
        return self.expression.kind

    def next_fire(self, after: datetime) -> datetime | None:
        """The first fire strictly after ``after`` inside the window, or ``None`` if there is none.

        A naive ``after`` is a wall time in this schedule's time zone. For rate() without a start_date
        the grid starts at ``after`` (first fire one interval later).
        """
        after_utc = _as_utc(after, self.timezone)
        if self.start_date is not None and after_utc < self.start_date:
            after_utc = self.start_date - _TICK  # the window opens at start_date, inclusive
        fire = self.expression.next_fire(after_utc, self.timezone, anchor=self.start_date)
        if fire is None or (self.end_date is not None and fire > self.end_date):
            return None
        return fire.astimezone(self.timezone)

    def next_fires(self, after: datetime, n: int) -> list[datetime]:
        """Up to ``n`` consecutive fires strictly after ``after`` (fewer if the schedule ends)."""
        fires: list[datetime] = []
        while len(fires) < n and (fire := self.next_fire(fires[-1] if fires else after)) is not None:
            fires.append(fire)
        return fires

    def trigger(self, *, now: datetime | None = None) -> BaseTrigger:
        """The APScheduler 3 trigger for this schedule.

        A rate() schedule without a start_date is anchored at ``now`` (default: the current time) and
        first fires one interval later, as APScheduler's IntervalTrigger does. (AWS fires such a
        schedule as soon as it is created; pass a start_date to choose, or keep, the phase.)
        """
        if isinstance(self.expression, CronExpression):
            return AwsCronTrigger(self)
        if isinstance(self.expression, AtExpression):
            return AwsAtTrigger(self)
        if self.start_date is None:
            anchor = (now or datetime.now(UTC)).astimezone(UTC) + self.expression.interval
            return AwsRateTrigger(replace(self, start_date=anchor))
        return AwsRateTrigger(self)


def parse_schedule(
    text: str,
    *,
    timezone: str | ZoneInfo = "UTC",
    start_date: datetime | str | None = None,
    end_date: datetime | str | None = None,
) -> Schedule:
    """Parse a schedule expression with its IANA ``timezone`` and optional window.

    Naive ``start_date``/``end_date`` are wall times in ``timezone``. Every problem (expression, time
    zone, window, an at() inside a DST gap) raises :class:`~bridge.errors.ExpressionError`.
    """
    zone = _zone(timezone)
    expression = parse_expression(text)
    start, end = _bound(start_date, zone, "start_date"), _bound(end_date, zone, "end_date")
    if start is not None and end is not None and end < start:
        raise ExpressionError(f"{expression.text}: end_date {end.isoformat()} is before start_date {start.isoformat()}")
    return Schedule(expression=expression, timezone=zone, start_date=start, end_date=end)


def _bind(expression: str | ScheduleExpression, tz: str | ZoneInfo) -> Schedule:
    if isinstance(expression, str):
        return parse_schedule(expression, timezone=tz)
    return Schedule(expression, _zone(tz))


def next_fire(expression: str | ScheduleExpression, after: datetime, tz: str | ZoneInfo = "UTC") -> datetime | None:
    """The first fire of ``expression`` in time zone ``tz`` strictly after ``after``; no window."""
    return _bind(expression, tz).next_fire(after)


def next_fires(
    expression: str | ScheduleExpression, after: datetime, tz: str | ZoneInfo = "UTC", n: int = 5
) -> list[datetime]:
    """Up to ``n`` consecutive fires of ``expression`` in time zone ``tz`` strictly after ``after``."""
    return _bind(expression, tz).next_fires(after, n)


# --------------------------------------------------------------------------------------------------------
# APScheduler triggers: thin shells over Schedule's pure math
# --------------------------------------------------------------------------------------------------------


class _ScheduleTrigger(BaseTrigger):
    """An APScheduler 3 trigger whose every answer comes from :meth:`Schedule.next_fire`."""

    __slots__ = ("schedule",)

    def __init__(self, schedule: Schedule) -> None:
        self.schedule = schedule

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime | None:
        """First fire at or after ``now``; after a fire, the one strictly after it.

        Counting from the previous fire (not from ``now``) means a backward clock jump never repeats a
        fire, and APScheduler's misfire handling sees what a forward jump skipped.
        """
        if previous_fire_time is not None:
            return self.schedule.next_fire(previous_fire_time)
        return self.schedule.next_fire(now - _TICK)

    def __str__(self) -> str:
        return f"{self.schedule.text} [{self.schedule.timezone.key}]"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.schedule.text!r} timezone={self.schedule.timezone.key!r}>"


class AwsCronTrigger(_ScheduleTrigger):
    """APScheduler trigger for an AWS ``cron(...)`` schedule, DST handled as :func:`local_instant` says."""

    __slots__ = ()


class AwsRateTrigger(_ScheduleTrigger):
    """APScheduler trigger for ``rate(...)``: every interval of elapsed time from the start date."""

    __slots__ = ()


class AwsAtTrigger(_ScheduleTrigger):
    """APScheduler trigger for ``at(...)``: DateTrigger semantics, one fire even if already past."""

    __slots__ = ()

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime | None:
        """The one instant before any fire (APScheduler decides on misfire), ``None`` after it."""
        if previous_fire_time is not None:
            return None
        return self.schedule.next_fire(_BEGINNING)
