"""Which scheduled times to fire: catch-up after downtime and the wall-clock-jump policy, as pure functions of now.

Nothing here reads a clock: every function takes ``now`` (and, for jumps, the clock readings) as arguments,
so the policy is tested with tables and no test waits for a real minute.

The policy, in one place (docs/schedules.md, "Running schedules", says the same for users):

- A scheduled time fires at most once, ever: each fire is recorded with its enqueue, and the schedule only
  ever looks at times strictly after its *cursor* (the latest time it has handled, fired or skipped).
- Downtime (the daemon was not running): ``catch_up`` decides. ``none`` fires nothing that was missed
  (like cron), ``latest`` fires the most recent missed time once, ``all`` fires every missed time; both
  only within ``catch_up_window`` seconds before now.
- Wall-clock jumps while running (cron's rule, measured against the monotonic clock): a forward jump
  under 3 hours runs what it skipped once (the latest skipped time); a forward jump of 3 hours or more
  resets (skipped times are dropped, the schedule continues from the new time); a backward jump never
  repeats a time already handled, whatever its size, because the cursor never moves backwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from bridge.sources.schedule.expressions import Schedule

CatchUp = Literal["none", "latest", "all"]

RESET_JUMP = timedelta(hours=3)  # cron's threshold: a bigger jump is taken as "the time was set on purpose"
# Differences below this between wall and monotonic time are NTP slewing and event-loop lateness, not jumps.
JUMP_NOISE = timedelta(seconds=60)
# After a reset, a time this close before now is still the fire that woke us, not a skipped one.
ON_TIME = timedelta(seconds=60)
MAX_FIRES = 100_000  # a bound on one batch, so a silly window with rate(1 minute) cannot exhaust memory


@dataclass(frozen=True)
class Plan:
    """What to do now: fire these scheduled times (oldest first), then move the cursor to ``cursor``."""

    fires: tuple[datetime, ...]
    cursor: datetime
    skipped: int = 0
    reason: str = "due"


def fires_between(schedule: Schedule, after: datetime, until: datetime) -> Iterator[datetime]:
    """Scheduled times in ``(after, until]``, oldest first, in UTC (at most MAX_FIRES)."""
    count, fire = 0, schedule.next_fire(after)
    while fire is not None and fire <= until and count < MAX_FIRES:
        yield fire.astimezone(UTC)
        count += 1
        fire = schedule.next_fire(fire)


def after_downtime(schedule: Schedule, cursor: datetime | None, now: datetime, catch_up: CatchUp,
                   window: float) -> Plan:
    """On start: the times missed since ``cursor`` (None: never ran before, nothing was missed)."""
    if cursor is None or cursor >= now:
        return Plan((), max(cursor or now, now), reason="first start" if cursor is None else "nothing missed")
    missed = list(fires_between(schedule, max(cursor, now - timedelta(seconds=window)), now))
    chosen = [] if catch_up == "none" else missed[-1:] if catch_up == "latest" else missed
    # ``skipped`` counts only inside the window: older times are not even enumerated (a long outage of a
    # rate(1 minute) schedule would be a long walk for a log line).
    return Plan(tuple(chosen), now, skipped=len(missed) - len(chosen), reason=f"catch_up {catch_up}")


def clock_jump(wall_before: datetime, mono_before: float, wall_now: datetime, mono_now: float) -> timedelta:
    """How far the wall clock moved beyond the elapsed (monotonic) time; positive = forward."""
    return (wall_now - wall_before) - timedelta(seconds=mono_now - mono_before)


def on_wake(schedule: Schedule, cursor: datetime, now: datetime, jump: timedelta) -> Plan:
    """While running: the times due in ``(cursor, now]`` under the clock-jump policy.

    The cursor never moves backwards, so after a backward jump nothing already handled fires again.
    """
    due = list(fires_between(schedule, cursor, now))
    new_cursor = max(cursor, now)
    if jump >= RESET_JUMP:
        on_time = tuple(f for f in due if now - f <= ON_TIME)
        return Plan(on_time, new_cursor, skipped=len(due) - len(on_time), reason="clock reset (jump >= 3 h)")
    if jump > JUMP_NOISE and len(due) > 1:
        return Plan(tuple(due[-1:]), new_cursor, skipped=len(due) - 1, reason="clock jumped forward")
    return Plan(tuple(due), new_cursor)
