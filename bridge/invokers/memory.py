"""memory_size enforced on the memory a worker uses: a cgroup v2 per worker, or its resident memory watched.

Lambda limits what a function uses, never what it maps (V8, Go and the JVM reserve gigabytes of address space
they never touch), so there is no ``RLIMIT_AS``. Where the daemon owns a delegated cgroup v2 subtree with the
memory controller (systemd's ``Delegate=yes``), each worker gets ``workers/<function>-<id>`` with
``memory.max`` = memory_size, ``memory.swap.max`` = 0 and ``memory.oom.group`` = 1: the kernel enforces it on
the worker and everything it forks, ``memory.events`` tells an OOM kill from any other SIGKILL, and
``memory.peak`` is the real high-water mark. The daemon itself moves into the leaf ``daemon`` (cgroup v2 lets
a cgroup with processes have no children with controllers). Elsewhere the resident memory of the worker's
process tree is read from procfs on a timer that runs only while the worker initialises or an invocation
runs, faster as the usage nears the limit, and the worker is SIGKILLed past it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import select
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol

from bridge.errors import ConfigError
from bridge.log import get_logger

MODE_ENV = "LAMBDA_BRIDGE_MEMORY"
MODES = ("auto", "cgroup", "rss")
MB = 1024 * 1024
PAGE = os.sysconf("SC_PAGE_SIZE")
# The watch's pace: it assumes a worker can fault in memory at up to 4 GB/s and looks again before the headroom
# left could be used up, between these bounds. A Python loop of 1 MB bytearrays faults 2.3 GB/s on a quiet
# 2-core machine; at an assumed 2 GB/s, a fresh 128 MB worker's first look came after 62 ms, at 181 MB.
FILL_BYTES_PER_S = 4 * 1024 * MB
MIN_INTERVAL, MAX_INTERVAL = 0.005, 0.1
RELEASE_TRIES = 40  # a killed worker's cgroup is removed once its processes are gone: ~2 s of 50 ms tries


class WorkerMemory(Protocol):
    """The memory limit of one worker process (and everything it starts)."""

    def adopt(self, pid: int) -> None:
        """Put the freshly spawned worker under the limit."""
        ...

    def watch(self) -> None:
        """The worker runs code now (init or an invocation): enforce the limit actively if that needs a timer."""
        ...

    def unwatch(self) -> None:
        """The worker waits for its next event: stop any timer."""
        ...

    def out_of_memory(self) -> bool:
        """True when the worker was killed for using more than memory_size."""
        ...

    def peak_mb(self, hwm_mb: int | None) -> int | None:
        """The high-water mark in MB, given the main process's own (VmHWM or rusage; None: unknown)."""
        ...

    def release(self) -> None:
        """The worker is gone (or being stopped): free what the limit holds."""
        ...


class MemoryLimits(Protocol):
    """The daemon-wide way of enforcing memory_size: hands out one WorkerMemory per worker."""

    mode: str

    def for_worker(self, function: str, limit_mb: int, on_exceeded: Callable[[], None]) -> WorkerMemory:
        """A limit for one new worker of ``function``; ``on_exceeded`` must kill it (the watch calls it)."""
        ...


def choose(environ: Mapping[str, str]) -> MemoryLimits:
    """The daemon's memory limits: ``LAMBDA_BRIDGE_MEMORY`` = auto (cgroup where delegated, else the watch),
    cgroup (required: the start fails when it cannot be used) or rss (always the watch)."""
    mode = environ.get(MODE_ENV, "auto") or "auto"
    if mode not in MODES:
        raise ConfigError([f"{MODE_ENV}={mode!r} is not one of {', '.join(MODES)}; unset it for auto"],
                          source="environment")
    log = get_logger()
    if mode == "rss":
        log.info("memory.limits", mode="rss", reason=f"{MODE_ENV}=rss")
        return ResidentWatchLimits()
    try:
        tree = CgroupTree.delegated(required=mode == "cgroup")
    except OSError as err:
        if mode == "cgroup":
            raise ConfigError([f"{MODE_ENV}=cgroup: cannot use cgroup v2 memory limits: {err}; run the daemon "
                               "in a cgroup delegated to it (systemd: Delegate=yes), or unset it"],
                              source="environment") from None
        log.info("memory.limits", mode="rss", reason=str(err))
        return ResidentWatchLimits()
    log.info("memory.limits", mode="cgroup", cgroup=str(tree.base), stale_removed=tree.stale_removed)
    return tree


# --- the resident-memory watch (no cgroup) ---------------------------------------------------------------------


class ResidentWatchLimits:
    """memory_size enforced by watching each worker's resident memory (VmRSS summed over its process tree)."""

    mode = "rss"

    def for_worker(self, function: str, limit_mb: int, on_exceeded: Callable[[], None]) -> WorkerMemory:
        """A watch for one worker."""
        return ResidentWatch(limit_mb, on_exceeded)


class ResidentWatch:
    """Reads the worker tree's resident memory on a timer while it runs code; kills it past the limit.

    The sum of each process's RSS counts pages shared between them (a forked child's copy-on-write pages,
    shared libraries) once per process: it errs towards too much, never too little. Memory used between two
    looks can pass the limit by what the worker faults in meanwhile (a few MB: the pace quickens near it).
    """

    def __init__(self, limit_mb: int, on_exceeded: Callable[[], None]) -> None:
        self.limit = limit_mb * MB
        self._on_exceeded = on_exceeded
        self._pid: int | None = None
        self._statm: int | None = None  # the main process's statm, kept open: one pread per look
        self._timer: asyncio.TimerHandle | None = None
        self._peak = 0
        self._last = 0  # bytes resident at the last look (0 before the first: a full headroom)
        self._exceeded = False

    def adopt(self, pid: int) -> None:
        """Remember the worker's pid (its statm is opened at the first look)."""
        self._pid = pid

    def watch(self) -> None:
        """Start looking, at the pace the headroom left at the last look sets: an invocation shorter than
        that costs one timer, and a worker can fill no more than that headroom before the first look."""
        if self._timer is None and not self._exceeded:
            self._timer = asyncio.get_running_loop().call_later(self._pace(self._last), self._look)

    def unwatch(self) -> None:
        """Stop looking until the next watch()."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _look(self) -> None:
        self._timer = None
        used = self.resident()
        if used is None:  # the process is gone; its exit is handled elsewhere
            return
        self._peak, self._last = max(self._peak, used), used
        if used > self.limit:
            self._exceeded = True
            self._on_exceeded()
            return
        self._timer = asyncio.get_running_loop().call_later(self._pace(used), self._look)

    def _pace(self, used: int) -> float:
        """Seconds until the next look: the time the headroom left would take to fill, within bounds."""
        return min(MAX_INTERVAL, max(MIN_INTERVAL, (self.limit - used) / FILL_BYTES_PER_S))

    def resident(self) -> int | None:
        """Bytes resident in the worker and its descendants now; None when the worker is gone."""
        if self._pid is None:
            return None
        try:
            if self._statm is None:
                self._statm = os.open(f"/proc/{self._pid}/statm", os.O_RDONLY)
            total = _pages(os.pread(self._statm, 256, 0))
        except OSError:
            return None
        for child in _descendants(self._pid):
            with contextlib.suppress(OSError, ValueError, IndexError):
                total += _pages(_read(f"/proc/{child}/statm"))
        return total * PAGE

    def out_of_memory(self) -> bool:
        """True once the watch found the worker past its limit (and had it killed)."""
        return self._exceeded

    def peak_mb(self, hwm_mb: int | None) -> int | None:
        """The larger of the main process's own high-water mark and the largest tree sum the watch saw."""
        seen = self._peak // MB if self._peak else None
        if hwm_mb is None or seen is None:
            return hwm_mb if seen is None else seen
        return max(hwm_mb, seen)

    def release(self) -> None:
        """Stop the timer and close the kept descriptor."""
        self.unwatch()
        if self._statm is not None:
            os.close(self._statm)
            self._statm = None


def _pages(statm: bytes) -> int:
    """Resident pages: the second field of /proc/PID/statm."""
    return int(statm.split(maxsplit=2)[1])


def _descendants(pid: int) -> list[int]:
    """Every descendant of ``pid`` (children of any of its threads, recursively); gone processes are skipped."""
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for tid in tasks:
            with contextlib.suppress(OSError):
                kids = [int(k) for k in _read(f"/proc/{parent}/task/{tid}/children").split()]
                found += kids
                todo += kids
    return found


def _read(path: str) -> bytes:
    """A small procfs file in one read (no buffered file object: this runs on every look)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, 4096)
    finally:
        os.close(fd)


# --- cgroup v2 ------------------------------------------------------------------------------------------------


class CgroupTree:
    """The daemon's delegated cgroup v2: the daemon in ``daemon/``, one cgroup per worker in ``workers/``."""

    mode = "cgroup"

    def __init__(self, base: Path) -> None:
        self.base = base
        self.workers = base / "workers"
        self.stale_removed = 0

    @classmethod
    def delegated(cls, *, required: bool = False) -> CgroupTree:
        """Set up the tree in the daemon's own cgroup; OSError says why it cannot be used.

        Unless ``required``, the cgroup must have been delegated to the daemon (see ``usable``).
        """
        base = own_cgroup()
        if base.name == "daemon" and (base.parent / "workers").is_dir():
            base = base.parent  # already set up by this process
        usable(base, required=required)
        tree = cls(base)
        tree._set_up()
        return tree

    def _set_up(self) -> None:
        others = set((self.base / "cgroup.procs").read_text().split()) - {str(os.getpid())}
        if others:  # checked before anything changes: never rearrange a cgroup shared with other processes
            raise OSError(errno.EBUSY, f"other processes share {self.base} (pids {' '.join(sorted(others)[:5])}): "
                                       "the daemon needs a cgroup of its own (a systemd service with Delegate=yes)")
        leaf = self.base / "daemon"
        leaf.mkdir(exist_ok=True)
        (leaf / "cgroup.procs").write_text(str(os.getpid()))  # every thread of the daemon moves with it
        (self.base / "cgroup.subtree_control").write_text("+memory")
        self.workers.mkdir(exist_ok=True)
        (self.workers / "cgroup.subtree_control").write_text("+memory")
        for stale in [p for p in self.workers.iterdir() if p.is_dir()]:  # a previous daemon's workers
            _kill_all(stale)
            self.stale_removed += _remove(stale, tries=RELEASE_TRIES)

    def for_worker(self, function: str, limit_mb: int, on_exceeded: Callable[[], None]) -> WorkerMemory:
        """A new cgroup for one worker (the kernel enforces it: ``on_exceeded`` is never called); the watch
        for this worker when its cgroup cannot be made (the subtree was taken away)."""
        try:
            return WorkerCgroup(self.workers / f"{function}-{uuid.uuid4().hex[:12]}", limit_mb, on_exceeded)
        except OSError as err:
            get_logger(function=function).warning("memory.cgroup_failed", error=str(err), fallback="rss")
            return ResidentWatch(limit_mb, on_exceeded)


class WorkerCgroup:
    """One worker's cgroup: memory.max, no swap, the whole group killed together on OOM.

    Should the worker not be let in (the subtree was changed behind the daemon's back), it is watched instead.
    """

    def __init__(self, path: Path, limit_mb: int, on_exceeded: Callable[[], None]) -> None:
        self.path = path
        self._instead: ResidentWatch | None = None
        self._fallback = ResidentWatch(limit_mb, on_exceeded)
        path.mkdir()
        try:
            (path / "memory.max").write_text(str(limit_mb * MB))
            for name, value in (("memory.swap.max", "0"), ("memory.oom.group", "1")):
                with contextlib.suppress(FileNotFoundError):  # no swap accounting, or an old kernel
                    (path / name).write_text(value)
        except OSError:
            path.rmdir()
            raise

    def adopt(self, pid: int) -> None:
        """Move the worker in. It is done right after the spawn returns: setpriv has not exec'd the worker yet
        in practice, and whatever the worker forks from then on is inside."""
        try:
            (self.path / "cgroup.procs").write_text(str(pid))
        except ProcessLookupError:
            raise
        except OSError as err:
            get_logger().warning("memory.cgroup_failed", cgroup=str(self.path), error=str(err), fallback="rss")
            self._instead = self._fallback
            self._instead.adopt(pid)

    def watch(self) -> None:
        """Nothing to do: the kernel enforces memory.max (unless the worker is watched instead)."""
        if self._instead is not None:
            self._instead.watch()

    def unwatch(self) -> None:
        """Nothing to do (unless the worker is watched instead)."""
        if self._instead is not None:
            self._instead.unwatch()

    def out_of_memory(self) -> bool:
        """True when the kernel's OOM killer acted in this cgroup."""
        if self._instead is not None:
            return self._instead.out_of_memory()
        events = _read_keyed(self.path / "memory.events")
        return events.get("oom_kill", 0) > 0 or events.get("oom_group_kill", 0) > 0

    def peak_mb(self, hwm_mb: int | None) -> int | None:
        """memory.peak (kernel 5.19+: the whole group's high-water mark), else the main process's."""
        if self._instead is not None:
            return self._instead.peak_mb(hwm_mb)
        try:
            return int((self.path / "memory.peak").read_text()) // MB
        except (OSError, ValueError):
            return hwm_mb

    def release(self) -> None:
        """Kill whatever is left in the cgroup and remove it, trying again while its processes die."""
        self._fallback.release()
        _kill_all(self.path)
        if not _remove(self.path, tries=1):
            asyncio.get_running_loop().call_later(0.05, self._retry, RELEASE_TRIES)

    def _retry(self, tries: int) -> None:
        if _remove(self.path, tries=1):
            return
        if tries > 1:
            asyncio.get_running_loop().call_later(0.05, self._retry, tries - 1)
        else:
            get_logger().warning("memory.cgroup_left", cgroup=str(self.path),
                                 fix="it is removed when the daemon starts next")


def usable(base: Path, *, required: bool = False) -> None:
    """Raise OSError unless ``base`` offers the memory controller and (unless ``required``) was delegated to
    this process: systemd marks a delegated cgroup with ``trusted.delegate`` or ``user.delegate`` and gives it
    to a service's own user. A cgroup someone else manages (a login session's scope) is never rearranged."""
    controllers = (base / "cgroup.controllers").read_text().split()
    if "memory" not in controllers:
        raise OSError(errno.ENOTSUP, f"the memory controller is not available in {base} "
                                     f"(it has: {' '.join(controllers) or 'none'})")
    if not required and not _is_delegated(base):
        raise OSError(errno.EPERM, f"{base} is not delegated to the daemon (systemd: Delegate=yes)")


def own_cgroup() -> Path:
    """The daemon's cgroup v2 directory (from /proc/self/cgroup and the cgroup2 mount in mountinfo)."""
    relative = next((line[3:] for line in Path("/proc/self/cgroup").read_text().splitlines()
                     if line.startswith("0::")), None)
    mount = _cgroup2_mount()
    if relative is None or mount is None:
        raise OSError(errno.ENOTSUP, "no cgroup v2 hierarchy is mounted")
    return mount / relative.lstrip("/")


def _cgroup2_mount() -> Path | None:
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields, _, rest = line.partition(" - ")
        if rest.split(maxsplit=1)[:1] == ["cgroup2"]:
            return Path(fields.split()[4])
    return None


def _is_delegated(path: Path) -> bool:
    for attribute in ("trusted.delegate", "user.delegate"):
        with contextlib.suppress(OSError):
            if os.getxattr(path, attribute) == b"1":
                return True
    return os.geteuid() != 0 and path.stat().st_uid == os.geteuid()


def _read_keyed(path: Path) -> dict[str, int]:
    """A cgroup ``key value`` file (memory.events) as a dict; empty when unreadable."""
    try:
        pairs = (line.split() for line in path.read_text().splitlines())
        return {p[0]: int(p[1]) for p in pairs if len(p) == 2}
    except (OSError, ValueError):
        return {}


def _kill_all(path: Path) -> None:
    """SIGKILL every process in the cgroup (cgroup.kill, kernel 5.14+; without it the worker's group kill is
    all there is)."""
    with contextlib.suppress(OSError):
        (path / "cgroup.kill").write_text("1")


def _remove(path: Path, *, tries: int) -> int:
    """rmdir the cgroup; 1 when it is gone. EBUSY while killed processes are still being reaped."""
    for _ in range(tries):
        try:
            path.rmdir()
            return 1
        except FileNotFoundError:
            return 1
        except OSError as err:
            if err.errno != errno.EBUSY:
                return 0
        if tries > 1:
            _wait_unpopulated(path)
    return 0


def _wait_unpopulated(path: Path) -> None:
    """Wait up to 50 ms (at start only) for the cgroup's processes to be gone: cgroup.events says populated 0."""
    with contextlib.suppress(OSError), open(path / "cgroup.events", "rb") as events:
        poller = select.poll()
        poller.register(events, select.POLLPRI)
        if b"populated 0" not in events.read():
            poller.poll(50)
