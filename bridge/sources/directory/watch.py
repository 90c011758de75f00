"""One recursive inotify watcher per directory, shared by the sources on it, turning kernel events into hints."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import stat
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asyncinotify import Inotify, Mask
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential_jitter

from bridge.errors import BridgeError
from bridge.log import get_logger
from bridge.sources.directory.tree import TreeRules, Version, current_version, join, walk

PUT, REMOVE, REMOVE_TREE = 0, 1, 2  # hint kinds: a file may be new/changed, a file is gone, a directory is gone
Hint = tuple[int, bytes]
QUEUE_LIMIT = 65_536  # hints buffered per source; beyond it the source reconciles instead (nothing is dropped)
READ_CACHE = 64  # full-size events asyncinotify reads per system call
SETTLE = 0.05  # seconds a file found in a new directory must stay unchanged before it is reported

DIR_MASK = (Mask.CLOSE_WRITE | Mask.MOVED_FROM | Mask.MOVED_TO | Mask.CREATE | Mask.DELETE | Mask.DELETE_SELF
            | Mask.MOVE_SELF | Mask.ONLYDIR | Mask.DONT_FOLLOW | Mask.EXCL_UNLINK)
_ISDIR, _OVERFLOW, _IGNORED = int(Mask.ISDIR), int(Mask.Q_OVERFLOW), int(Mask.IGNORED)
_CLOSE_WRITE, _MOVED_TO, _MOVED_FROM = int(Mask.CLOSE_WRITE), int(Mask.MOVED_TO), int(Mask.MOVED_FROM)
_CREATE, _DELETE, _SELF = int(Mask.CREATE), int(Mask.DELETE), int(Mask.DELETE_SELF | Mask.MOVE_SELF)


class WatchLimitReached(BridgeError):
    """The kernel refused another inotify watch or instance (a per-user limit)."""

    exit_code = 2

    def __init__(self, path: bytes, setting: str) -> None:
        super().__init__(
            f"cannot watch {os.fsdecode(path)!r}: the inotify limit fs.{setting} is exhausted; raise it "
            f"(sysctl -w fs.{setting}=524288, and in /etc/sysctl.d/ to keep it) or set mode: poll for this source"
        )


class WatchLost(BridgeError):
    """The root of a watched tree was removed, moved or unmounted; the watcher starts over after a pause."""


@dataclass(eq=False)
class Subscriber:
    """One source's end of a watcher: a bounded queue of hints, and a flag asking for a reconciliation."""

    limit: int = QUEUE_LIMIT
    hints: deque[Hint] = field(default_factory=deque)
    reconcile: str | None = None  # why a full comparison with the tree is needed (overflow, queue full, ...)
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def offer(self, hint: Hint) -> None:
        """Queue a hint without ever blocking the watcher; when full, ask for a reconciliation instead."""
        if len(self.hints) < self.limit:
            self.hints.append(hint)
        elif self.reconcile is None:
            self.reconcile = "queue_full"
        self.wake.set()

    def request_reconcile(self, reason: str) -> None:
        """Ask the source to compare its snapshot with the tree (hints queued before are handled first)."""
        self.reconcile = self.reconcile or reason
        self.wake.set()

    def take(self, count: int) -> list[Hint]:
        """Up to ``count`` queued hints, oldest first."""
        return [self.hints.popleft() for _ in range(min(count, len(self.hints)))]


class InotifyWatcher:
    """Watches a tree recursively and hands hints to every subscriber; restarts itself when the root is lost."""

    def __init__(self, rules: TreeRules) -> None:
        self.rules = rules
        self.subscribers: set[Subscriber] = set()
        self.ready = asyncio.Event()
        self.watch_count = 0
        self._dirs: dict[int, bytes] = {}  # watch descriptor -> relative directory
        self._wds: dict[bytes, int] = {}
        self._inotify: Inotify | None = None
        self._started = False
        self.log = get_logger(path=os.fsdecode(rules.root))

    async def run(self) -> None:
        """Watch until cancelled; a lost root is retried with capped, jittered backoff."""
        retrying = AsyncRetrying(retry=retry_if_exception_type(WatchLost), reraise=True,
                                 wait=wait_exponential_jitter(initial=0.5, max=30), before_sleep=self._lost)
        async for attempt in retrying:
            with attempt:
                await self._watch()

    def _lost(self, state: Any) -> None:
        self.log.warning("directory.watch_lost", error=str(state.outcome.exception()), attempt=state.attempt_number)
        self.ready.clear()

    async def _watch(self) -> None:
        with _inotify(self.rules.root) as inotify:
            self._inotify, self._dirs, self._wds = inotify, {}, {}
            await asyncio.to_thread(walk, self.rules, b"", self._add_watch)
            if not self._wds:
                raise WatchLost(f"{os.fsdecode(self.rules.root)} is not a directory now")
            self.ready.set()
            if self._started:  # whatever happened while there was no watch is found by comparing
                self._broadcast_reconcile("watch_restarted")
            self._started = True
            self.log.info("directory.watching", watches=self.watch_count)
            async for event in inotify:
                await self._handle(int(event.mask), event.watch.wd if event.watch else -1, event.name)

    def _add_watch(self, rel: bytes) -> None:
        assert self._inotify is not None
        try:
            watch = self._inotify.add_watch(self.rules.path(rel), DIR_MASK)
        except OSError as err:
            if err.errno == errno.ENOSPC:
                raise WatchLimitReached(self.rules.path(rel), "inotify.max_user_watches") from None
            if err.errno in (errno.ENOENT, errno.ENOTDIR, errno.EACCES):
                return  # gone or unreadable already: its parent's events or the listing cover it
            raise
        self._dirs[watch.wd] = rel
        self._wds[rel] = watch.wd
        self.watch_count = len(self._wds)

    async def _handle(self, mask: int, wd: int, name: Path | None) -> None:
        if mask & _OVERFLOW:
            self.log.warning("directory.overflow")
            self._broadcast_reconcile("overflow")
            return
        parent = self._dirs.get(wd)
        if mask & (_IGNORED | _SELF):
            self._forget_watch(wd, parent, mask)
            return
        if parent is None or name is None:
            return
        raw = os.fsencode(name)
        if not self.rules.ignored(raw):
            await self._entry(mask, join(parent, raw))

    async def _entry(self, mask: int, rel: bytes) -> None:
        if mask & _ISDIR:
            if mask & (_CREATE | _MOVED_TO):
                await self._add_tree(rel)
            elif mask & (_MOVED_FROM | _DELETE):
                self._drop_tree(rel, remove_watches=bool(mask & _MOVED_FROM))
        elif mask & (_CLOSE_WRITE | _MOVED_TO):
            self._broadcast((PUT, rel))
        elif mask & (_MOVED_FROM | _DELETE):
            self._broadcast((REMOVE, rel))
        elif mask & _CREATE and self._complete_on_create(rel):
            self._broadcast((PUT, rel))

    def _complete_on_create(self, rel: bytes) -> bool:
        """A symlink (when followed) or a hard link is complete when it appears: no close-after-write follows."""
        try:
            st = os.lstat(self.rules.path(rel))
        except OSError:
            return False
        return (stat.S_ISLNK(st.st_mode) and self.rules.follow_symlinks) or (
            stat.S_ISREG(st.st_mode) and st.st_nlink > 1)

    async def _add_tree(self, rel: bytes) -> None:
        """A directory appeared: watch it and everything below, then report the files already inside.

        A file found there may still be open for writing (then its close event follows, as the watch now
        exists). So each is reported only if it is unchanged ``SETTLE`` seconds later; one that changed in
        between is left to its close event.
        """
        files = await asyncio.to_thread(walk, self.rules, rel, self._add_watch)
        if files:
            asyncio.get_running_loop().call_later(SETTLE, self._settled, files)

    def _settled(self, files: dict[bytes, Version]) -> None:
        for key in sorted(files):
            if current_version(self.rules, key) == files[key]:
                self._broadcast((PUT, key))

    def _drop_tree(self, rel: bytes, *, remove_watches: bool) -> None:
        start = rel + b"/"
        for sub in [d for d in self._wds if d == rel or d.startswith(start)]:
            wd = self._wds.pop(sub)
            self._dirs.pop(wd, None)
            if remove_watches and self._inotify is not None:
                with contextlib.suppress(OSError):  # already gone in the kernel
                    self._inotify.rm_watch(_WatchRef(wd))  # type: ignore[arg-type]
        self.watch_count = len(self._wds)
        self._broadcast((REMOVE_TREE, rel))

    def _forget_watch(self, wd: int, rel: bytes | None, mask: int) -> None:
        if rel == b"":
            raise WatchLost(f"{os.fsdecode(self.rules.root)} was removed, moved or unmounted")
        if mask & _IGNORED and rel is not None:
            self._dirs.pop(wd, None)
            self._wds.pop(rel, None)
            self.watch_count = len(self._wds)

    def _broadcast(self, hint: Hint) -> None:
        for subscriber in self.subscribers:
            subscriber.offer(hint)

    def _broadcast_reconcile(self, reason: str) -> None:
        for subscriber in self.subscribers:
            subscriber.request_reconcile(reason)


@dataclass(frozen=True)
class _WatchRef:
    """What ``Inotify.rm_watch`` needs of a watch: its descriptor."""

    wd: int


@contextlib.contextmanager
def _inotify(root: bytes) -> Any:
    try:
        inotify = Inotify(cache_size=READ_CACHE)
    except OSError as err:
        if err.errno == errno.EMFILE:
            raise WatchLimitReached(root, "inotify.max_user_instances") from None
        raise
    with inotify:
        yield inotify


@dataclass
class _Shared:
    watcher: InotifyWatcher
    task: asyncio.Task[None]
    users: int = 0


class WatcherHub:
    """The running watchers by tree and settings, so that sources on the same directory share one."""

    def __init__(self, factory: Callable[[TreeRules], InotifyWatcher] = InotifyWatcher) -> None:
        self._factory = factory
        self._shared: dict[TreeRules, _Shared] = {}

    @contextlib.asynccontextmanager
    async def subscribe(self, rules: TreeRules, subscriber: Subscriber) -> AsyncIterator[InotifyWatcher]:
        """Join (or start) the watcher for ``rules``; leaving as the last user stops it."""
        shared = self._shared.get(rules)
        if shared is None:
            watcher = self._factory(rules)
            task = asyncio.get_running_loop().create_task(watcher.run(), name=f"watch:{os.fsdecode(rules.root)}")
            shared = self._shared[rules] = _Shared(watcher, task)
        shared.users += 1
        shared.watcher.subscribers.add(subscriber)
        try:
            yield shared.watcher
        finally:
            shared.watcher.subscribers.discard(subscriber)
            shared.users -= 1
            if shared.users == 0:
                del self._shared[rules]
                shared.task.cancel()
                await asyncio.wait({shared.task})

    def failure(self, rules: TreeRules) -> asyncio.Future[None]:
        """Completes (with the watcher's exception) only if the shared watcher dies; cancelling it is harmless."""
        return asyncio.shield(self._shared[rules].task)
