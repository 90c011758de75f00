"""Live reload: re-read the config on SIGHUP or file change, apply only the difference; watchdog pings."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from bridge.config.model import Config, load_config
from bridge.errors import BuildFailed, ConfigError
from bridge.invokers.nodejs_build import build_missing
from bridge.log import get_logger


class Reloadable(Protocol):
    """What a reload changes in the running daemon (the daemon's Service has these parts)."""

    config: Config
    config_path: Path | None
    notifier: Any
    metrics: Any
    sources: Any
    functions: Any
    dispatcher: Any

    def status_line(self) -> str:
        """The STATUS= line for sd_notify."""

# Changing these needs a restart: they shape the store, the listening socket or every ARN.
RESTART_KEYS = ("region", "account_id", "state_dir", "api", "queues", "max_queued_events", "log_level")
DEBOUNCE = 0.1  # seconds: an editor's save is often several writes and a rename


@dataclass(frozen=True)
class Plan:
    """What a reload changes: functions and sources added, changed and removed; keys needing a restart."""

    functions_added: frozenset[str] = frozenset()
    functions_changed: frozenset[str] = frozenset()
    functions_removed: frozenset[str] = frozenset()
    sources_added: frozenset[str] = frozenset()
    sources_changed: frozenset[str] = frozenset()
    sources_removed: frozenset[str] = frozenset()
    needs_restart: tuple[str, ...] = field(default=())

    @property
    def empty(self) -> bool:
        """True when nothing would change."""
        return not any((self.functions_added, self.functions_changed, self.functions_removed,
                        self.sources_added, self.sources_changed, self.sources_removed))

    def summary(self) -> dict[str, list[str]]:
        """The non-empty parts, for the log."""
        return {k: sorted(v) for k, v in self.__dict__.items() if v and k != "needs_restart"}


def plan(old: Config, new: Config) -> tuple[Plan, Config]:
    """The difference between two configs, and the config to apply (restart-only keys kept as running)."""
    restart = tuple(k for k in RESTART_KEYS if getattr(old, k) != getattr(new, k))
    effective = new.model_copy(update={k: getattr(old, k) for k in restart})
    fns_old, fns_new = old.functions, effective.functions
    f_changed = {n for n in fns_old.keys() & fns_new.keys() if fns_old[n] != fns_new[n]}
    f_added = set(fns_new) - set(fns_old)
    src_old = {s.name: s for s in old.sources}
    src_new = {s.name: s for s in effective.sources}
    touched = f_changed | f_added
    s_changed = {n for n in src_old.keys() & src_new.keys()
                 if src_old[n] != src_new[n] or src_new[n].function in touched}
    return Plan(frozenset(f_added), frozenset(f_changed), frozenset(set(fns_old) - set(fns_new)),
                frozenset(set(src_new) - set(src_old)), frozenset(s_changed),
                frozenset(set(src_old) - set(src_new)), restart), effective


class Reloader:
    """Applies reload requests one at a time, keeping the running config when the new one is invalid."""

    def __init__(self, service: Reloadable, on_result: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.service = service
        self.log = get_logger()
        self._digest = _digest(service.config_path)
        self.on_result = on_result  # told each outcome (the runtime file records it for the CLI)

    async def serve(self, requests: asyncio.Queue[str]) -> None:
        """Handle reload requests until cancelled; bursts (an editor's save) coalesce into one reload."""
        while True:
            reason = await requests.get()
            if reason == "file changed":
                await asyncio.sleep(DEBOUNCE)  # let the editor finish writing; SIGHUP is applied at once
            while not requests.empty():
                extra = requests.get_nowait()
                reason = "SIGHUP" if "SIGHUP" in (reason, extra) else reason
            if reason == "file changed" and _digest(self.service.config_path) == self._digest:
                continue  # touched but not changed
            await self.reload(reason)

    async def reload(self, reason: str) -> bool:
        """Re-read the config file and apply the difference; False (old config kept) when it is invalid."""
        service = self.service
        if service.config_path is None:
            return False
        service.notifier.notify("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}",
                                "STATUS=reloading the config")
        started = time.perf_counter()
        self._digest = _digest(service.config_path)
        try:
            new = await asyncio.to_thread(load_config, service.config_path)
        except ConfigError as err:
            return self._rejected(err)
        changes, effective = plan(service.config, new)
        rebuilt = await asyncio.to_thread(service.functions.rebuilt, effective)  # a manifest changed: build again
        changes = dataclasses.replace(changes, functions_changed=changes.functions_changed | rebuilt)
        try:
            # Node.js runtimes and packages a new function needs, built off the loop (as `run` builds them).
            await asyncio.to_thread(build_missing, effective, lambda line: self.log.info("build.progress", line=line))
            if service.sources is not None:  # before anything stops: a port in use refuses the whole reload
                await service.sources.claim(effective.sources)
        except ConfigError as err:
            return self._rejected(err)
        except BuildFailed as err:
            return self._rejected(ConfigError([f"functions.{err.function}: {err.reason}"]))
        await self._apply(changes, effective)
        service.metrics.count_reload("applied")
        if self.on_result:
            self.on_result({"result": "applied", "config_sha256": self._digest,
                            "needs_restart": list(changes.needs_restart)})
        self.log.info("reload.applied", reason=reason, ms=round((time.perf_counter() - started) * 1000, 1),
                      needs_restart=list(changes.needs_restart), **changes.summary())
        service.notifier.notify("READY=1", service.status_line())
        return True

    def _rejected(self, err: ConfigError) -> bool:
        service = self.service
        service.metrics.count_reload("invalid")
        if self.on_result:
            self.on_result({"result": "invalid", "config_sha256": self._digest, "problems": err.problems})
        for problem in err.problems:
            self.log.error("reload.invalid", problem=problem, config=str(service.config_path))
        first = err.problems[0] if err.problems else str(err)
        service.notifier.notify("READY=1", f"STATUS=reload failed, still running the previous config: {first}")
        return False

    async def _apply(self, changes: Plan, config: Config) -> None:
        service = self.service
        runner = service.sources
        for name in changes.sources_removed | changes.sources_changed:
            if runner is not None:
                await runner.stop(name)
        touched = set(changes.functions_added | changes.functions_changed)
        removed = set(changes.functions_removed)
        service.functions.apply(config, touched, removed, config.shutdown_timeout)
        service.dispatcher.apply(config, touched, removed)
        service.config = config
        for source in config.sources:
            if runner is not None and source.name in changes.sources_added | changes.sources_changed:
                runner.start(source)


def _digest(path: Path | None) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest() if path else None
    except OSError:
        return None


class ConfigWatcher:
    """Requests a reload whenever the config file is written or replaced (editors rename over it).

    The watch is added on construction, so a change right after READY=1 is not missed.
    """

    def __init__(self, path: Path, requests: asyncio.Queue[str]) -> None:
        from asyncinotify import Inotify, Mask

        self.path, self.requests = path, requests
        self._inotify = Inotify()
        self._inotify.add_watch(path.parent, Mask.CLOSE_WRITE | Mask.MOVED_TO | Mask.CREATE)

    async def run(self) -> None:
        """Forward matching events until cancelled."""
        with self._inotify:
            async for event in self._inotify:
                if event.name is not None and event.name.name == self.path.name:
                    self.requests.put_nowait("file changed")


async def watchdog(notifier: Any) -> None:
    """WATCHDOG=1 from the event loop at half of systemd's WatchdogSec, so a blocked loop is caught."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and int(pid) != os.getpid()):
        return
    interval = int(usec) / 2_000_000
    while True:
        notifier.notify("WATCHDOG=1")
        await asyncio.sleep(interval)
