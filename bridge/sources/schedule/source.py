"""The schedule source: APScheduler wakes it at each fire time; it hands the fire to durable async delivery."""

from __future__ import annotations

import asyncio
import contextlib
import random
import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger

from bridge.log import get_logger
from bridge.sources.base import SourceContext
from bridge.sources.schedule import fire, policy
from bridge.sources.schedule.config import ScheduleSourceConfig
from bridge.sources.schedule.expressions import Schedule
from bridge.sources.schedule.policy import Plan

SCHEDULER_KEY = "schedule.scheduler"  # the shared scheduler's key in ctx.extensions
CLAIMS_KEY = "cluster.claims"  # cluster mode: the claim hook (bridge.cluster.claims), absent on a single box
# Python 3.11 has no clock-change notification (timerfd CANCEL_ON_SET arrives in 3.13) and APScheduler
# sleeps on the monotonic clock, so once a minute it re-reads the wall clock: a forward jump is noticed
# within a minute instead of only at the next fire.
RECHECK_SECONDS = 60.0


def _utcnow() -> datetime:
    return datetime.now(UTC)


class _CoalescingScheduler(AsyncIOScheduler):
    """AsyncIOScheduler whose wakeups coalesce and stay on the loop thread.

    APScheduler's own ``wakeup`` (called by every ``add_job``) goes through ``call_soon_threadsafe``, which
    writes a byte to the event loop's self-pipe each time. Thousands of schedules starting together fill
    that pipe, and the kernel then drops the byte a signal handler writes there: SIGTERM and SIGHUP were
    lost. Every caller here is on the loop thread, so one ``call_soon`` per burst does the same work.
    """

    _wakeup_pending = False

    def wakeup(self) -> None:
        """Process jobs and re-arm the timer once, soon (however many times this is called meanwhile)."""
        if not self._wakeup_pending:
            self._wakeup_pending = True
            self._eventloop.call_soon(self._coalesced_wakeup)

    def _coalesced_wakeup(self) -> None:
        self._wakeup_pending = False
        self._stop_timer()
        self._start_timer(self._process_jobs())


class SharedScheduler:
    """One AsyncIOScheduler for every schedule source of a service (10,000 schedules: one timer, not 10,000)."""

    def __init__(self) -> None:
        self.scheduler = _CoalescingScheduler(timezone=UTC)
        self._recheck: asyncio.TimerHandle | None = None

    @classmethod
    def of(cls, extensions: dict[str, Any]) -> SharedScheduler:
        """The service's shared scheduler, created by the first schedule source that asks."""
        return extensions.setdefault(SCHEDULER_KEY, cls())

    def add(self, name: str, trigger: BaseTrigger, wake: Callable[[], Any]) -> None:
        """Run coroutine function ``wake`` at each fire time of ``trigger`` (late runs coalesce into one)."""
        if not self.scheduler.running:
            self.scheduler.start()
            self._arm_recheck()
        self.scheduler.add_job(wake, trigger, id=name, name=name, coalesce=True, misfire_grace_time=None,
                               max_instances=1, replace_existing=True)

    def remove(self, name: str) -> None:
        """Stop waking ``name``; the scheduler itself idles (no timer) once it has no jobs."""
        with contextlib.suppress(JobLookupError):
            self.scheduler.remove_job(name)

    def _arm_recheck(self) -> None:
        loop = asyncio.get_running_loop()
        self._recheck = loop.call_later(RECHECK_SECONDS, self._on_recheck)

    def _on_recheck(self) -> None:
        if self.scheduler.get_jobs():
            self.scheduler.wakeup()
        self._arm_recheck()


class ScheduleSource:
    """An EventBridge rule / Scheduler schedule: fires recorded atomically with their enqueue, never twice."""

    def __init__(self, cfg: ScheduleSourceConfig, ctx: SourceContext, *, rng: random.Random | None = None,
                 clock: Callable[[], datetime] = _utcnow, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.name = cfg.name
        self.cfg = cfg
        self.ctx = ctx
        self.rng = rng or random.Random()
        self.clock = clock
        self.monotonic = monotonic
        self.log = get_logger(source=cfg.name, function=cfg.function)
        self._wakes = asyncio.Event()
        self._seen = (clock(), monotonic())  # (wall, monotonic) at the last look, to measure clock jumps
        self._cursor = self._seen[0]
        self._schedule: Schedule | None = None

    async def run(self) -> None:
        """Catch up after downtime, then fire on schedule until cancelled."""
        now = self._look()
        last = await self.ctx.store.call(self._prepare_store)
        claims = self.ctx.extensions.get(CLAIMS_KEY)
        if claims is not None:  # cluster: the shared ledger knows the newest fire of every node
            last = max((t for t in (last, await claims.last_fire(self.name)) if t is not None), default=None)
        self._schedule = fire.effective_schedule(self.cfg, last, now)
        previous = await self.ctx.store.get_state(self.name, "watermark")
        if self.cfg.enabled:
            await self._fire(self._downtime_plan(last, previous, now))
        # Written after the catch-up: a crash in between leaves the old mark, so nothing missed is forgotten.
        await self.ctx.store.put_state(self.name, "watermark", {"at": now.isoformat(), "enabled": self.cfg.enabled})
        if not self.cfg.enabled:
            await self._idle()
            return
        shared = SharedScheduler.of(self.ctx.extensions)
        shared.add(self.name, self._schedule.trigger(now=now), self._signal)
        try:
            self._report_ready()
            await self._serve()
        finally:
            shared.remove(self.name)

    def _prepare_store(self, conn: sqlite3.Connection) -> datetime | None:
        fire.create_table(conn)
        return fire.last_fire(conn, self.name)

    def _downtime_plan(self, last: datetime | None, previous: Any, now: datetime) -> Plan:
        """What was missed since the last fire or the last start, whichever is later (a disabled run: nothing)."""
        assert self._schedule is not None
        if isinstance(previous, dict) and not previous.get("enabled", True):
            return Plan((), now, reason="was disabled")
        started = datetime.fromisoformat(previous["at"]) if isinstance(previous, dict) else None
        cursor = max((t for t in (last, started) if t is not None), default=None)
        return policy.after_downtime(self._schedule, cursor, now, self.cfg.catch_up,
                                              self.cfg.catch_up_window)

    async def _idle(self) -> None:
        self.ctx.stats.extra["enabled"] = False
        self.ctx.ready()
        self.log.info("schedule.disabled", schedule=self.cfg.schedule)
        await asyncio.get_running_loop().create_future()  # until cancelled

    def _report_ready(self) -> None:
        assert self._schedule is not None
        upcoming = self._schedule.next_fire(self._cursor)
        self.ctx.stats.extra.update(enabled=True, next_fire=upcoming.isoformat() if upcoming else None)
        self.ctx.ready()
        self.log.info("schedule.armed", schedule=self.cfg.schedule, timezone=self.cfg.timezone,
                      next_fire=upcoming.isoformat() if upcoming else None)

    async def _signal(self) -> None:
        """The APScheduler job: only wakes this source's task, so shutdown never waits on a job."""
        self._wakes.set()

    async def _serve(self) -> None:
        assert self._schedule is not None
        while True:
            await self._wakes.wait()
            self._wakes.clear()
            wall_before, mono_before = self._seen
            now = self._look()
            jump = policy.clock_jump(wall_before, mono_before, now, self._seen[1])
            await self._fire(policy.on_wake(self._schedule, self._cursor, now, jump))

    def _look(self) -> datetime:
        """Read both clocks now and remember them."""
        self._seen = (self.clock(), self.monotonic())
        return self._seen[0]

    async def _fire(self, plan: Plan) -> None:
        """Hand the plan's fires to delivery, recorded in the same transaction; then advance the cursor."""
        if plan.skipped:
            self.log.warning("schedule.skipped", count=plan.skipped, reason=plan.reason)
        if plan.fires:
            await self._enqueue(plan.fires)
        self._cursor = max(self._cursor, plan.cursor)

    async def _enqueue(self, fires: tuple[datetime, ...]) -> None:
        now = self.clock()
        events = [fire.queued_fire(self.cfg, self.ctx.config, t, now, self.rng) for t in fires]
        claims = self.ctx.extensions.get(CLAIMS_KEY)
        if claims is not None:  # cluster: hand over only the times this node claimed (the ledger's event)
            won = await claims.claim(self.name, list(zip(fires, events, strict=True)), retry=self._enqueue)
            if not won:
                return
            fires, events = tuple(t for t, _ in won), [e for _, e in won]
        record = fire.record_fires(self.name, [(t, e.id) for t, e in zip(fires, events, strict=True)],
                                            now.timestamp())
        try:
            await self.ctx.dispatcher.accept_many(events, also=record)
        except sqlite3.IntegrityError:
            # Only reachable if the store already holds one of these times (e.g. a second daemon on the same
            # state_dir): the whole batch was rolled back, and firing nothing is the safe answer.
            self.log.warning("schedule.already_fired", scheduled=[t.isoformat() for t in fires])
            return
        if claims is not None:
            await claims.handed(self.name, [(t, e.id) for t, e in zip(fires, events, strict=True)])
        self.ctx.stats.events += len(events)
        for t, event in zip(fires, events, strict=True):
            late = round(now.timestamp() - t.timestamp(), 3)
            self.log.info("schedule.fired", scheduled=t.isoformat(), event_id=event.id,
                          request_id=event.request_id, due_at=event.next_at, late_s=late)


def create(config: ScheduleSourceConfig, ctx: SourceContext) -> ScheduleSource:
    """The source for one ``type: schedule`` entry."""
    return ScheduleSource(config, ctx)
