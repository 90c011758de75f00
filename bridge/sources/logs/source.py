"""The logs source: matching log lines, batched per log group and stream, queued durably with their offsets."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import os
import re
import sqlite3
import time
from collections.abc import Callable
from typing import Any

from asyncinotify import Inotify, Mask

from bridge.delivery.dispatcher import new_event
from bridge.events.cloudwatch_logs import LogEvent, event_id, payloads, truncate_message
from bridge.log import get_logger
from bridge.model import ASYNC_LIMIT
from bridge.sources.base import SourceContext
from bridge.sources.logs.config import LogsSourceConfig
from bridge.sources.logs.pattern import compile_pattern
from bridge.sources.logs.tail import Record, Tailer
from bridge.store import QueuedEvent

STATE_INTERVAL = 1.0  # seconds lines that matched nothing may wait before their offsets are saved
MAX_PENDING_BYTES = 4 << 20  # matching bytes held before a commit, whatever the window
DIR_MASK = (Mask.MODIFY | Mask.CREATE | Mask.MOVED_FROM | Mask.MOVED_TO | Mask.DELETE | Mask.ATTRIB
            | Mask.CLOSE_WRITE | Mask.DELETE_SELF | Mask.MOVE_SELF | Mask.ONLYDIR)
_RESCAN = int(Mask.CREATE | Mask.MOVED_FROM | Mask.MOVED_TO | Mask.DELETE | Mask.ATTRIB)
_LOST = int(Mask.DELETE_SELF | Mask.MOVE_SELF | Mask.IGNORED)
_OVERFLOW = int(Mask.Q_OVERFLOW)
_GROUP_CHARS = re.compile(r"[^\.\-_/#A-Za-z0-9]")
_STREAM_CHARS = re.compile(r"[:*]")
SAVE_SQL = "INSERT OR REPLACE INTO source_state (source, key, value) VALUES (?, ?, ?)"
Stream = tuple[str, str]  # (log group, log stream)


def create(config: LogsSourceConfig, ctx: SourceContext) -> LogsSource:
    """The source for one ``type: logs`` entry."""
    return LogsSource(config, ctx)


def _save(source: str, key: str, value: str, conn: sqlite3.Connection) -> None:
    """The resume point, written in the same transaction as the events that hold the lines before it."""
    conn.execute(SAVE_SQL, (source, key, value))


class Batcher:
    """Matching records wait here for the batch window; a commit queues them and saves the resume point."""

    def __init__(self, config: LogsSourceConfig, ctx: SourceContext, state_key: str) -> None:
        self.config = config
        self.ctx = ctx
        self.state_key = state_key
        self.pattern = compile_pattern(config.filter_pattern)
        self.events: dict[Stream, list[LogEvent]] = {}
        self.pending_bytes = 0
        self.first_event: float | None = None  # monotonic time of the oldest matching record waiting
        self.first_line: float | None = None  # ... of the oldest record read since the last commit
        self.log = get_logger(source=config.name, function=config.function)
        ctx.stats.extra.update(lines=0, matched=0, batches=0)

    def offer(self, records: list[Record], stream_of: Callable[[Record], Stream], now: float,
              wall_ms: int | None = None) -> None:
        """Filter the records; keep the matches for the next batch of their log group and stream."""
        if not records:
            return
        self.first_line = self.first_line or now
        match = self.pattern.match
        extracts = self.pattern.extracts
        wall_ms = wall_ms or time.time_ns() // 1_000_000  # the time read, as the CloudWatch agent stamps lines
        matched = 0
        for record in records:
            try:
                fields = match(record.text)
            except Exception as err:  # a bug in matching one line never stops the source: that line is skipped
                self.log.error("logs.match_failed", path=record.path, position=record.position,
                               error=f"{type(err).__name__}: {err}"[:500])
                continue
            if fields is None:
                continue
            message = truncate_message(record.text)
            entry = LogEvent(event_id(wall_ms, record.origin, record.position), wall_ms, message,
                             fields if extracts else None)
            self.events.setdefault(stream_of(record), []).append(entry)
            self.pending_bytes += len(message)
            matched += 1
        extra = self.ctx.stats.extra
        extra["lines"] += len(records)
        extra["matched"] += matched
        if matched and self.first_event is None:
            self.first_event = now

    def deadline(self) -> float | None:
        """When the waiting records must be committed (monotonic)."""
        if self.first_event is not None:
            return self.first_event + self.config.batch_window
        return self.first_line + STATE_INTERVAL if self.first_line is not None else None

    def due(self, now: float) -> bool:
        """The window has passed, or enough is waiting to fill a batch."""
        deadline = self.deadline()
        full = self.pending_bytes >= MAX_PENDING_BYTES or sum(map(len, self.events.values())) >= \
            self.config.batch_size
        return full or (deadline is not None and now >= deadline)

    async def commit(self, state: Any) -> None:
        """Queue the waiting batches and save ``state`` in one transaction; a crash repeats none of them."""
        queued = self._queued_events()
        save = functools.partial(_save, self.config.name, self.state_key, json.dumps(state))
        if queued:
            await self.ctx.dispatcher.accept_many(queued, also=save)
        else:
            await self.ctx.store.call(save)
        self.events.clear()
        self.pending_bytes = 0
        self.first_event = self.first_line = None
        self.ctx.stats.events += len(queued)
        self.ctx.stats.extra["batches"] += len(queued)

    def _queued_events(self) -> list[QueuedEvent]:
        owner, name = self.ctx.config.account_id, self.config.subscription_filter
        queued = []
        for (group, stream), events in self.events.items():
            for batch, payload in payloads(owner, group, stream, name, events, ASYNC_LIMIT):
                digest = hashlib.sha256(f"{self.config.name}\0{group}\0{stream}\0{batch[0].id}".encode()).hexdigest()
                queued.append(new_event(self.config.function, payload, event_id=f"logs-{digest[:40]}"))
        return queued


class LogsSource:
    """Log files (a path or glob) or the journal as a CloudWatch Logs subscription filter."""

    def __init__(self, config: LogsSourceConfig, ctx: SourceContext) -> None:
        self.name = config.name
        self.config = config
        self.ctx = ctx
        self.log = get_logger(source=config.name, function=config.function)
        self.warned: set[str] = set()
        self._wake = asyncio.Event()
        self._dirty: set[str] = set()
        self._rescan = False

    async def run(self) -> None:
        """Follow the origin until cancelled."""
        if self.config.journal is not None:
            from bridge.sources.logs.journal import follow_journal

            await follow_journal(self)
            return
        await self._follow_files()

    def warn(self, event: str, once: str | None, **fields: Any) -> None:
        """Log a problem with one file once (per kind and file), never stopping the source."""
        if once is not None:
            if once in self.warned:
                return
            self.warned.add(once)
        self.log.warning(event, **fields)

    # --- files -----------------------------------------------------------------------------------------

    def _stream_of(self, record: Record) -> Stream:
        group = self.config.log_group or _GROUP_CHARS.sub("_", record.path)[:512]
        stream = self.config.log_stream or _STREAM_CHARS.sub("_", os.path.basename(record.path))[:512]
        return group, stream

    async def _follow_files(self) -> None:
        assert self.config.path is not None
        tailer = Tailer(self.config.path, follow_symlinks=self.config.follow_symlinks,
                        multiline_start=self.config.multiline_start, warn=self.warn,
                        partial_timeout=self.config.partial_line_timeout)
        batcher = Batcher(self.config, self.ctx, "files")
        saved = await self.ctx.store.get_state(self.name, "files")
        if saved is not None and not isinstance(saved, dict):  # not ours (a hand-edited store): start afresh
            self.warn("logs.state_ignored", None, state=str(saved)[:200])
            saved = None
        try:
            while True:  # once per life of the watched directory
                await self._watch_directory(tailer, batcher, saved)
                saved = tailer.state()
        finally:
            tailer.close()

    async def _watch_directory(self, tailer: Tailer, batcher: Batcher, saved: dict[str, Any] | None) -> None:
        directory = tailer.directory
        with Inotify() as inotify:
            try:
                inotify.add_watch(directory, DIR_MASK)
            except OSError as err:
                self.warn("logs.directory_missing", f"dir:{directory}", path=directory, error=err.strerror)
                await asyncio.sleep(1.0)  # a directory that comes back later is watched then
                return
            self.warned.discard(f"dir:{directory}")
            tailer.resume(saved or {}, first_start=saved is None, from_end=self.config.start_position == "end")
            if saved is None:  # the first start's positions, so lines written before the next start are not skipped
                await self.ctx.store.put_state(self.name, "files", tailer.state())
            pump = asyncio.create_task(self._pump(inotify, tailer))
            self.ctx.ready()
            self.log.info("logs.watching", path=self.config.path, files=len(tailer.files))
            try:
                await self._loop(tailer, batcher, pump)
            finally:
                pump.cancel()
                await self._pump_ended(pump)

    async def _pump_ended(self, pump: asyncio.Task[None]) -> None:
        """Wait for the kernel-event reader; an error of its own is logged and the directory watched anew."""
        try:
            await pump
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # the source itself is being stopped
        except Exception as err:  # e.g. the inotify descriptor failing: a new watch after a pause
            self.log.warning("logs.watch_failed", error=f"{type(err).__name__}: {err}"[:500])
            await asyncio.sleep(1.0)

    async def _pump(self, inotify: Inotify, tailer: Tailer) -> None:
        """Kernel events -> which files to read, whether to rescan; one wake-up for many events."""
        async for event in inotify:
            mask = int(event.mask)
            if mask & _LOST:
                self._rescan = True
                self._wake.set()
                return  # the directory itself is gone: the loop ends and watches it again
            if mask & (_RESCAN | _OVERFLOW):
                self._rescan = True
            elif event.name is not None:
                key = tailer.key_of(str(event.name))
                if key is not None:
                    self._dirty.add(key)
                elif tailer.matches(str(event.name)):
                    self._rescan = True
            self._wake.set()

    async def _loop(self, tailer: Tailer, batcher: Batcher, pump: asyncio.Task[None]) -> None:
        more = True  # catch up first: whatever was written while the daemon was down
        while not pump.done() or self._rescan:
            now = time.monotonic()
            if more:
                await asyncio.sleep(0)  # catching up: the loop's other tasks run between passes
            else:
                await self._sleep(now, tailer, batcher)
                now = time.monotonic()
            timer = tailer.next_timer()
            everything = more or self._rescan or (timer is not None and now >= timer)
            if self._rescan:
                self._rescan = False
                tailer.scan()
            keys, self._dirty = (None if everything else list(self._dirty)), set()
            records, more = tailer.read(keys)
            tailer.close_drained(now)
            batcher.offer(records, self._stream_of, now)
            if batcher.due(time.monotonic()):
                await batcher.commit(tailer.state())

    async def _sleep(self, now: float, tailer: Tailer, batcher: Batcher) -> None:
        deadlines = [t for t in (tailer.next_timer(), batcher.deadline()) if t is not None]
        timeout = max(0.0, min(deadlines) - now) if deadlines else None
        if not self._wake.is_set() and timeout != 0.0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
        self._wake.clear()
