"""The logs source: matching log lines, batched per log group and stream, queued durably with their offsets."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
from typing import Any

from asyncinotify import Inotify, Mask

from bridge.log import get_logger
from bridge.sources.base import SourceContext
from bridge.sources.logs.batcher import Batcher, Stream
from bridge.sources.logs.config import LogsSourceConfig
from bridge.sources.logs.journal import follow_journal
from bridge.sources.logs.tail import Record, Tailer

DIR_MASK = (Mask.MODIFY | Mask.CREATE | Mask.MOVED_FROM | Mask.MOVED_TO | Mask.DELETE | Mask.ATTRIB
            | Mask.CLOSE_WRITE | Mask.DELETE_SELF | Mask.MOVE_SELF | Mask.ONLYDIR)
_RESCAN = int(Mask.CREATE | Mask.MOVED_FROM | Mask.MOVED_TO | Mask.DELETE | Mask.ATTRIB)
_LOST = int(Mask.DELETE_SELF | Mask.MOVE_SELF | Mask.IGNORED)
_OVERFLOW = int(Mask.Q_OVERFLOW)
_GROUP_CHARS = re.compile(r"[^\.\-_/#A-Za-z0-9]")
_STREAM_CHARS = re.compile(r"[:*]")


def create(config: LogsSourceConfig, ctx: SourceContext) -> LogsSource:
    """The source for one ``type: logs`` entry."""
    return LogsSource(config, ctx)


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
