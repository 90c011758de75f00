"""The directory source: a local folder that behaves like an S3 bucket with event notifications."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential_jitter

from bridge.delivery.dispatcher import new_event
from bridge.errors import InvocationRejected, RemoteUnavailable, Throttled
from bridge.events.s3 import EVENT_NAMES, object_key
from bridge.log import get_logger
from bridge.model import Invocation
from bridge.sources.base import SourceContext
from bridge.sources.directory.cached import NotCached, inline_mode, read_inline
from bridge.sources.directory.changes import DELETE_EVENT, PUT_EVENT, KeyFilter, LoopGuard, RecordMaker
from bridge.sources.directory.config import DirectorySourceConfig
from bridge.sources.directory.provenance import EXTENSION as PROVENANCE
from bridge.sources.directory.provenance import Provenance
from bridge.sources.directory.snapshot import Snapshot
from bridge.sources.directory.tree import ObjectInfo, TreeRules, Version, read_objects, walk
from bridge.sources.directory.watch import PUT, REMOVE, Hint, Subscriber, WatcherHub

HUB = "directory.watchers"  # ctx.extensions key of the shared WatcherHub
BATCH = 512  # hints handled (read, hashed, committed) together
PRUNE_EVERY = 4096  # events between loop-guard clean-ups
Change = tuple[str, bytes, ObjectInfo | None]  # (event name, relative path, what was read for a Put)


def create(config: DirectorySourceConfig, ctx: SourceContext) -> DirectorySource:
    """The source for one ``type: directory`` entry."""
    return DirectorySource(config, ctx)


class DirectorySource:
    """Reports completed files and removals under ``path`` as S3 events, async (default) or sync."""

    def __init__(self, config: DirectorySourceConfig, ctx: SourceContext) -> None:
        self.name = config.name
        self.config = config
        self.ctx = ctx
        self.rules = TreeRules(os.fsencode(config.path), tuple(config.ignore), config.follow_symlinks)
        self.filter = KeyFilter(config.prefix, config.suffix, tuple(config.events))
        self.wanted = {name: self.filter.wants(name) for name in EVENT_NAMES}
        self.made: Provenance | None = ctx.extensions.get(PROVENANCE)  # files the S3 API wrote (provenance.py)
        self.records = RecordMaker(config.name, config.bucket_name, ctx.config.region, ctx.config.account_id,
                                   config.event_version)
        self.loops = LoopGuard(config.loop_threshold, config.loop_window)
        self.inline = inline_mode(self.rules.root)  # which small files may be hashed on the loop (cached.py)
        self.real_root = os.path.realpath(self.rules.root)
        self.snapshot: Snapshot | None = None
        self.log = get_logger(source=config.name, function=config.function)
        self._since_prune = 0
        ctx.stats.extra.update(loops_detected=0, reconciliations=0, overflow=0, queue_full=0, skipped=0)

    async def run(self) -> None:
        """Catch up with what changed while down, then report changes until cancelled."""
        self.snapshot = await Snapshot.load(self.ctx.store, self.name, self.rules.root)
        if self.config.mode == "poll":
            await self._poll()
        else:
            await self._watch()

    # --- inotify ----------------------------------------------------------------------------------------

    async def _watch(self) -> None:
        hub: WatcherHub = self.ctx.extensions.setdefault(HUB, WatcherHub())
        subscriber = Subscriber()
        async with hub.subscribe(self.rules, subscriber) as watcher, asyncio.TaskGroup() as group:
            group.create_task(_raise_when_done(hub.failure(self.rules)))  # a dying watcher takes us down too
            await watcher.ready.wait()
            await self._reconcile(await self._list(), reason="start")
            self._announce_ready(watches=watcher.watch_count)
            if self.config.rescan_interval:
                group.create_task(self._rescan_timer(subscriber, self.config.rescan_interval))
            await self._consume(subscriber)

    async def _consume(self, subscriber: Subscriber) -> None:
        while True:
            await subscriber.wake.wait()
            subscriber.wake.clear()
            while subscriber.hints or subscriber.reconcile:
                if subscriber.hints:
                    await self._process(subscriber.take(BATCH))
                    continue
                reason, subscriber.reconcile = subscriber.reconcile, None
                if reason in ("overflow", "queue_full"):
                    self.ctx.stats.extra[reason] += 1
                await self._reconcile(await self._list(), reason=reason or "")

    @staticmethod
    async def _rescan_timer(subscriber: Subscriber, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            subscriber.request_reconcile("rescan")

    # --- polling ----------------------------------------------------------------------------------------

    async def _poll(self) -> None:
        """``mode: poll``: list the tree every ``poll_interval``; a file counts once unchanged for one interval."""
        previous = await self._list()
        await self._reconcile(previous, reason="start", stable={})
        self._announce_ready(watches=0)
        while True:
            await asyncio.sleep(self.config.poll_interval)
            listing = await self._list()
            stable = {k: v for k, v in listing.items() if previous.get(k) == v}
            await self._reconcile(listing, reason="poll", stable=stable)
            previous = listing

    # --- reconciliation ---------------------------------------------------------------------------------

    async def _list(self) -> dict[bytes, Version]:
        return await asyncio.to_thread(walk, self.rules)

    async def _reconcile(self, listing: dict[bytes, Version], *, reason: str,
                         stable: dict[bytes, Version] | None = None) -> None:
        """Compare the snapshot with ``listing``: report removed, created and changed files.

        With ``stable`` (polling) only files unchanged since the previous listing count as created or changed,
        so a file still being written is never reported half-written.
        """
        snapshot = self._snapshot()
        listing = {k: v for k, v in listing.items() if self.filter.matches(k)}
        if snapshot.fresh:
            await self._baseline(listing)
            return
        removed = sorted(k for k in snapshot.objects if k not in listing)
        candidates = listing if stable is None else stable
        changed = sorted(k for k, v in candidates.items() if snapshot.objects.get(k) != v)
        hints = [(REMOVE, k) for k in removed] + [(PUT, k) for k in changed]
        for start in range(0, len(hints), BATCH):
            await self._process(hints[start:start + BATCH])
        if reason != "poll" or hints:
            self.ctx.stats.extra["reconciliations"] += 1
            self.log.info("directory.reconciled", reason=reason, removed=len(removed), changed=len(changed))

    async def _baseline(self, listing: dict[bytes, Version]) -> None:
        """No snapshot yet: what exists now is the starting point, reported by nothing (as S3 does)."""
        snapshot = self._snapshot()
        for key, version in listing.items():
            snapshot.put(key, version)
        await self.ctx.store.call(snapshot.take_op())
        self.log.info("directory.baseline", objects=len(listing))

    # --- hints -> changes -> events ---------------------------------------------------------------------

    async def _process(self, hints: list[Hint]) -> None:
        """Read the files a batch of hints names, turn them into changes (in order) and deliver them."""
        hints = [h for h in hints if h[0] != PUT or self.filter.matches(h[1])]
        puts = [rel for kind, rel in hints if kind == PUT]
        infos = iter(await self._read(puts))
        changes: list[Change] = []
        for kind, rel in hints:
            if kind == PUT:
                self._put(rel, next(infos), changes)
            elif kind == REMOVE:
                self._remove(rel, changes)
            else:
                for key in self._snapshot().under(rel):
                    self._remove(key, changes)
        await self._deliver(changes)

    async def _read(self, rels: list[bytes]) -> list[ObjectInfo | None]:
        """Read and hash the files: small cached ones on the loop (see cached.py), the rest on a thread."""
        infos = read_inline(self.rules, rels, self.inline, self.real_root)
        rest = [rel for rel, info in zip(rels, infos, strict=True) if isinstance(info, NotCached)]
        if not rest:
            return infos  # type: ignore[return-value]  # no NotCached left
        read = iter(await asyncio.to_thread(read_objects, self.rules, rest))
        return [next(read) if isinstance(info, NotCached) else info for info in infos]

    def _put(self, rel: bytes, info: ObjectInfo | None, changes: list[Change]) -> None:
        snapshot = self._snapshot()
        if info is None:
            self.ctx.stats.extra["skipped"] += 1  # gone before it could be read, or not a regular file
        elif snapshot.objects.get(rel) != info.version:  # the same version again (e.g. seen by a scan): no news
            snapshot.put(rel, info.version)
            changes.append(self._created(rel, info))

    def _created(self, rel: bytes, info: ObjectInfo) -> Change:
        """A Put, unless the S3 API wrote this very version: then its call's name and S3's ETag."""
        made = self.made.lookup(self.rules.path(rel), info.version) if self.made is not None else None
        if made is None:
            return (PUT_EVENT, rel, info)
        return (made.event_name, rel, replace(info, etag=made.etag))

    def _remove(self, rel: bytes, changes: list[Change]) -> None:
        snapshot = self._snapshot()
        if rel in snapshot.objects:
            snapshot.remove(rel)
            changes.append((DELETE_EVENT, rel, None))

    def _payloads(self, changes: Iterable[Change]) -> list[tuple[str, bytes]]:
        """(event id, payload) for each change that is configured and not part of a runaway loop."""
        now = time.monotonic()
        out = []
        for event_name, rel, info in changes:
            if not self.wanted[event_name] or not self._allowed(rel, now):
                continue
            sequencer, key = self._snapshot().next_sequencer(), object_key(rel)
            out.append((f"s3:{self.name}:{key}:{sequencer}", self.records.payload(event_name, rel, info, sequencer,
                                                                                key=key)))
        self._maybe_prune(now, len(out))
        return out

    def _allowed(self, rel: bytes, now: float) -> bool:
        allowed, newly_blocked = self.loops.check(rel, now)
        if newly_blocked:
            self.ctx.stats.extra["loops_detected"] += 1
            self.log.warning("directory.loop_detected", key=object_key(rel), threshold=self.loops.threshold,
                             window_s=self.loops.window)
        return allowed

    def _maybe_prune(self, now: float, count: int) -> None:
        self._since_prune += count
        if self._since_prune >= PRUNE_EVERY:
            self._since_prune = 0
            self.loops.prune(now)

    async def _deliver(self, changes: list[Change]) -> None:
        payloads = self._payloads(changes)
        snapshot = self._snapshot()
        if self.config.invocation == "sync":
            for _, payload in payloads:
                await self._invoke(payload)
        elif payloads:
            events = [new_event(self.config.function, payload, event_id=eid) for eid, payload in payloads]
            await self.ctx.dispatcher.accept_many(events, also=snapshot.take_op())
        if snapshot.dirty:
            await self.ctx.store.call(snapshot.take_op())
        self.ctx.stats.events += len(payloads)

    async def _invoke(self, payload: bytes) -> None:
        """``invocation: sync``: one record per call, in order; a busy or unreachable function is waited for."""
        function = self.ctx.functions.get(self.config.function)
        retrying = AsyncRetrying(retry=retry_if_exception_type((Throttled, RemoteUnavailable)),
                                 wait=wait_exponential_jitter(initial=0.5, max=30), reraise=True)
        try:
            async for attempt in retrying:
                with attempt:
                    result = await function.invoke(Invocation(payload), wait=True)
        except InvocationRejected as err:
            self.log.error("directory.invoke_rejected", error=str(err))
            return
        if not result.ok:
            self.log.warning("directory.invoke_failed", request_id=result.request_id,
                             error=result.payload.decode(errors="replace")[:500])

    # --- helpers ----------------------------------------------------------------------------------------

    def _snapshot(self) -> Snapshot:
        assert self.snapshot is not None, "run() loads the snapshot first"
        return self.snapshot

    def _announce_ready(self, **details: Any) -> None:
        self.ctx.ready()
        self.log.info("directory.ready", path=str(self.config.path), mode=self.config.mode,
                      objects=len(self._snapshot().objects), **details)


async def _raise_when_done(failure: asyncio.Future[None]) -> None:
    await failure
