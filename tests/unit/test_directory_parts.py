"""The directory source's pure parts and its tree helpers on real files: filters, loops, listing, snapshot."""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

import pytest
from aws_lambda_powertools.utilities.parser.models import S3Model

from bridge.sources.directory.changes import KeyFilter, LoopGuard, RecordMaker
from bridge.sources.directory.snapshot import Snapshot
from bridge.sources.directory.tree import ObjectInfo, TreeRules, Version, read_object, walk
from bridge.sources.directory.watch import InotifyWatcher, WatchLimitReached
from bridge.store import Store


@pytest.mark.parametrize(("prefix", "suffix", "rel", "expected"), [
    ("images/", ".jpg", b"images/cat.jpg", True),
    ("images/", ".jpg", b"images/cat.png", False),
    ("my photos/", "", b"my photos/a", True),  # the plain path, as the directory shows it
    ("my+photos/", "", b"my photos/a", True),  # the URL-encoded key, as an AWS configuration has it
    ("", ".jpg", b"a.JPG", False),
    ("", "", b"anything", True),
])
def test_key_filter(prefix: str, suffix: str, rel: bytes, expected: bool) -> None:
    assert KeyFilter(prefix, suffix).matches(rel) is expected


def test_key_filter_event_types() -> None:
    only_removed = KeyFilter(events=("s3:ObjectRemoved:*",))
    assert only_removed.wants("ObjectRemoved:Delete") and not only_removed.wants("ObjectCreated:Put")


def test_loop_guard_blocks_after_threshold_until_quiet_for_a_window() -> None:
    guard = LoopGuard(threshold=3, window=10)
    results = [guard.check(b"k", t) for t in (0, 1, 2, 3, 4)]
    assert results == [(True, False)] * 3 + [(False, True), (False, False)]
    assert guard.check(b"other", 4) == (True, False), "other keys are unaffected"
    assert guard.check(b"k", 15) == (True, False), "quiet for a window: allowed again"
    guard.prune(100)
    assert guard.seen == {}


def test_record_validates_against_powertools() -> None:
    info = ObjectInfo(Version(3, 0, 1), 3, hashlib.md5(b"abc").hexdigest())
    maker = RecordMaker("src", "bucket", "eu-west-1", "123456789012")
    S3Model.model_validate_json(maker.payload("ObjectCreated:Put", "a b/ü+.txt".encode(), info, "00000000000000A1"))
    S3Model.model_validate_json(maker.payload("ObjectRemoved:Delete", b"x\xff", None, "00000000000000A2"))


def test_walk_skips_ignored_symlinks_fifos_and_reads_only_regular_files(tmp_path: Path) -> None:
    (tmp_path / "sub" / ".git").mkdir(parents=True)
    (tmp_path / "sub" / ".git" / "HEAD").write_text("ref")
    (tmp_path / "sub" / "a.txt").write_text("a")
    (tmp_path / "b.tmp").write_text("temp")
    os.mkfifo(tmp_path / "fifo")
    os.symlink(tmp_path / "sub" / "a.txt", tmp_path / "link.txt")
    os.symlink("/etc/hostname", tmp_path / "escape")
    rules = TreeRules(os.fsencode(tmp_path), (".*", "*.tmp"))
    assert set(walk(rules)) == {b"sub/a.txt"}
    following = TreeRules(os.fsencode(tmp_path), (".*", "*.tmp"), follow_symlinks=True)
    assert set(walk(following)) == {b"sub/a.txt", b"link.txt"}, "inside the root only"
    assert read_object(rules, b"fifo") is None, "never opened (it would block)"
    assert read_object(rules, b"link.txt") is None and read_object(following, b"escape") is None
    assert read_object(following, b"link.txt").etag == hashlib.md5(b"a").hexdigest()  # type: ignore[union-attr]
    assert read_object(rules, b"vanished") is None


async def test_snapshot_round_trip_and_sequencer_grows(tmp_path: Path) -> None:
    async with Store(tmp_path / "s.sqlite3") as store:
        snap = await Snapshot.load(store, "src", b"/root")
        assert snap.fresh and snap.objects == {}
        snap.put(b"a", Version(1, 2, 3))
        snap.put(b"b\xff", Version(4, 5, 6))
        first = snap.next_sequencer()
        await store.call(snap.take_op())
        snap.remove(b"a")
        await store.call(snap.take_op())
        again = await Snapshot.load(store, "src", b"/root")
        assert not again.fresh and again.objects == {b"b\xff": Version(4, 5, 6)}
        assert again.next_sequencer() > first
        assert (await Snapshot.load(store, "src", b"/elsewhere")).fresh, "a new path starts a new baseline"


async def test_watch_limit_error_names_the_sysctl(tmp_path: Path) -> None:
    watcher = InotifyWatcher(TreeRules(os.fsencode(tmp_path)))

    class Full:
        def add_watch(self, path: bytes, mask: int) -> None:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    watcher._inotify = Full()  # type: ignore[assignment]  # the kernel's answer, without exhausting the machine
    with pytest.raises(WatchLimitReached, match=r"fs\.inotify\.max_user_watches.*mode: poll"):
        watcher._add_watch(b"")
