"""The directory source end to end: real directories, real inotify, the daemon running recording handlers."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import pytest
from aws_lambda_powertools.utilities.parser.models import S3Model

from bridge.events.s3 import decode_key
from bridge.testing import Daemon, wait_until, write_config, write_handler
from tests.integration.test_async_delivery import RECORDER, records

# Appends only what the big tests need: one line per record, key and event name (fast enough for 40,000).
KEY_LOGGER = """
    import os
    def handler(event, context):
        lines = "".join(r["eventName"] + " " + r["s3"]["object"]["key"] + "\\n" for r in event["Records"])
        fd = os.open(os.environ["RECORD_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        os.write(fd, lines.encode())
        os.close(fd)
"""
# Writes into the tree it is triggered by: every invocation rewrites the key that triggered it.
LOOPING = """
    import json, os
    from urllib.parse import unquote_plus
    def handler(event, context):
        key = unquote_plus(event["Records"][0]["s3"]["object"]["key"])
        with open(os.environ["RECORD_FILE"], "a") as f:
            f.write(json.dumps({"event": event}) + "\\n")
        with open(os.path.join(os.environ["TREE"], key), "a") as f:
            f.write("again\\n")
"""


class Bucket:
    """A watched directory, the daemon on it and what the handlers recorded."""

    def __init__(self, tmp_path: Path, daemon: Daemon, root: Path) -> None:
        self.tmp_path, self.daemon, self.root = tmp_path, daemon, root

    def seen(self, function: str = "rec") -> list[dict[str, Any]]:
        """Every S3 record function ``function`` received, validated against powertools' S3Model."""
        out = []
        for entry in records(self.tmp_path / f"{function}.jsonl"):
            S3Model.model_validate(entry["event"])
            assert len(entry["event"]["Records"]) == 1, "S3 sends one record per event"
            out.extend(entry["event"]["Records"])
        return out

    def names(self, function: str = "rec") -> list[tuple[str, str]]:
        """(eventName, decoded key) in the order received."""
        return [(r["eventName"], unquote_plus(r["s3"]["object"]["key"])) for r in self.seen(function)]

    def wait_names(self, expected: list[tuple[str, str]], function: str = "rec", timeout: float = 20) -> None:
        """Until the handler saw at least ``len(expected)`` records; then they must be exactly ``expected``."""
        try:
            wait_until(lambda: len(self.seen(function)) >= len(expected), timeout=timeout)
        except TimeoutError:
            raise AssertionError(f"saw {self.names(function)}, expected {expected}\n{self.daemon.tail()}") from None
        assert self.names(function) == expected

    def barrier(self, name: str, function: str = "rec") -> None:
        """Write a marker file and wait until it was reported: everything before it has been handled."""
        before = len(self.seen(function))
        (self.root / name).write_text(name)
        wait_until(lambda: ("ObjectCreated:Put", name) in self.names(function)[before:], timeout=20)


def recorder_fn(tmp_path: Path, name: str, source: str = RECORDER, **extra: Any) -> dict[str, Any]:
    code = write_handler(tmp_path, f"code-{name}", source)
    env = {"RECORD_FILE": str(tmp_path / f"{name}.jsonl"), **extra.pop("environment", {})}
    return {"handler": "app.handler", "code": str(code), "environment": env, "reserved_concurrency": 1, **extra}


def config_for(tmp_path: Path, root: Path, sources: list[dict[str, Any]], functions: dict[str, Any]) -> Path:
    config = {"state_dir": str(tmp_path / "state"), "functions": functions,
              "sources": [{"type": "directory", "path": str(root), **s} for s in sources]}
    return write_config(tmp_path / "config.yaml", config)


def start(daemon: Daemon, *sources: str) -> Daemon:
    daemon.start()
    for name in sources or ("uploads",):
        daemon.wait_for("directory.ready", source=name, timeout=60)
    return daemon


@pytest.fixture
def bucket(tmp_path: Path):
    """A daemon watching tmp_path/bucket with one source ``uploads`` -> function ``rec``; overrides apply."""
    daemons: list[Daemon] = []

    def make(function_source: str = RECORDER, **overrides: Any) -> Bucket:
        root = tmp_path / "bucket"
        root.mkdir(exist_ok=True)
        fn = recorder_fn(tmp_path, "rec", function_source, **overrides.pop("function", {}))
        config = config_for(tmp_path, root, [{"name": "uploads", "function": "rec", **overrides}], {"rec": fn})
        daemons.append(daemon := Daemon(config))
        start(daemon)
        return Bucket(tmp_path, daemon, root)

    yield make
    for daemon in daemons:
        daemon.stop()
        daemon.kill()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def test_every_event_type_with_aws_fields(bucket, tmp_path: Path) -> None:
    b = bucket()
    outside = tmp_path / "outside"
    outside.mkdir()
    put, delete = "ObjectCreated:Put", "ObjectRemoved:Delete"
    expected: list[tuple[str, str]] = []

    def step(action: Any, *events: tuple[str, str]) -> None:
        action()
        expected.extend(events)
        b.wait_names(expected)

    step(lambda: (b.root / "red flower.jpg").write_bytes(b"petals" * 1000), (put, "red flower.jpg"))
    step(lambda: (b.root / "red flower.jpg").write_bytes(b"more petals"), (put, "red flower.jpg"))
    step(lambda: os.rename(b.root / "red flower.jpg", b.root / "renamed.jpg"),
         (delete, "red flower.jpg"), (put, "renamed.jpg"))
    step(lambda: (b.root / "gone.txt").write_text("x"), (put, "gone.txt"))
    step(lambda: (b.root / "gone.txt").unlink(), (delete, "gone.txt"))
    (outside / "in.txt").write_text("moved in")
    step(lambda: os.rename(outside / "in.txt", b.root / "in.txt"), (put, "in.txt"))
    step(lambda: os.rename(b.root / "in.txt", outside / "out.txt"), (delete, "in.txt"))
    b.barrier("end")
    assert b.names() == [*expected, (put, "end")]
    seen = b.seen()
    first, second, delete = seen[0], seen[1], seen[2]
    assert first["s3"]["object"]["key"] == "red+flower.jpg"
    assert first["s3"]["object"]["eTag"] in (md5(b"petals" * 1000), md5(b"more petals"))
    assert second["s3"]["object"] | {"sequencer": "x"} == {"key": "red+flower.jpg", "size": 11,
                                                          "eTag": md5(b"more petals"), "sequencer": "x"}
    sequencers = [r["s3"]["object"]["sequencer"] for r in (first, second, delete)]
    assert sequencers == sorted(sequencers) and len(set(sequencers)) == 3, "the sequencer grows per key"
    assert "size" not in delete["s3"]["object"] and "eTag" not in delete["s3"]["object"]
    assert first["eventVersion"] == "2.1" and first["eventSource"] == "aws:s3" and first["awsRegion"] == "us-east-1"
    assert first["eventTime"].endswith("Z") and len(first["eventTime"]) == len("2026-01-01T00:00:00.000Z")
    assert first["s3"]["bucket"] == {"name": "bucket", "arn": "arn:aws:s3:::bucket",
                                     "ownerIdentity": {"principalId": "000000000000"}}
    assert first["s3"]["configurationId"] == "uploads"
    assert first["requestParameters"] == {"sourceIPAddress": "127.0.0.1"}
    assert set(first["responseElements"]) == {"x-amz-request-id", "x-amz-id-2"}


def test_temp_then_rename_is_one_put_and_slow_writer_one_put_after_close(bucket) -> None:
    b = bucket()
    with open(b.root / ".report.csv.tmp", "wb") as temp:  # ignored by the default patterns
        temp.write(b"a,b\n")
    os.rename(b.root / ".report.csv.tmp", b.root / "report.csv")
    with open(b.root / "slow.bin", "wb") as slow:
        for piece in range(5):
            slow.write(bytes([piece]) * 1000)
            slow.flush()
            os.fsync(slow.fileno())
            time.sleep(0.2)  # the writer is slow on purpose: nothing may be reported while it writes
            assert ("ObjectCreated:Put", "slow.bin") not in b.names()
    b.barrier("end")
    assert b.names() == [("ObjectCreated:Put", "report.csv"), ("ObjectCreated:Put", "slow.bin"),
                         ("ObjectCreated:Put", "end")]
    assert b.seen()[1]["s3"]["object"]["size"] == 5000


def test_prefix_suffix_two_sources_share_one_watcher(tmp_path: Path) -> None:
    root = tmp_path / "bucket"
    root.mkdir()
    functions = {"images": recorder_fn(tmp_path, "images"), "docs": recorder_fn(tmp_path, "docs")}
    sources = [{"name": "jpgs", "function": "images", "prefix": "images/", "suffix": ".jpg"},
               {"name": "docs", "function": "docs", "prefix": "docs/"}]
    daemon = Daemon(config_for(tmp_path, root, sources, functions))
    try:
        start(daemon, "jpgs", "docs")
        b = Bucket(tmp_path, daemon, root)
        assert len(daemon.find("directory.watching")) == 1, "one inotify watcher for both sources"
        (root / "images").mkdir()
        (root / "docs" / "deep").mkdir(parents=True)
        for name in ("images/a.jpg", "images/b.png", "a.jpg", "docs/deep/x.txt", "images/c.jpg"):
            (root / name).write_text(name)
        # images/ may be new to the watcher when a.jpg is written (then a.jpg comes after settling): order is
        # kept per key, not across keys.
        wait_until(lambda: len(b.seen("images")) >= 2 and b.seen("docs"), timeout=20)
        b.barrier("docs/end", "docs")
        assert sorted(b.names("images")) == [("ObjectCreated:Put", "images/a.jpg"),
                                             ("ObjectCreated:Put", "images/c.jpg")]
        assert b.names("docs") == [("ObjectCreated:Put", "docs/deep/x.txt"), ("ObjectCreated:Put", "docs/end")]
    finally:
        daemon.stop()
        daemon.kill()


def test_nested_directories_in_quick_succession_and_directory_renames(bucket) -> None:
    b = bucket()
    expected = []
    for depth in range(1, 6):  # each level is created and filled before the watcher can have seen it
        level = b.root.joinpath(*[f"d{i}" for i in range(depth)])
        level.mkdir()
        (level / "f.txt").write_text(str(depth))
        expected.append("/".join([*(f"d{i}" for i in range(depth)), "f.txt"]))
    # Files found in a directory that was new to the watcher are reported once they have settled, so these
    # may come after later events on other keys: wait for the set, then check nothing came twice.
    wait_until(lambda: {k for _, k in b.names()} >= set(expected), timeout=20)
    b.barrier("end1")
    assert sorted(k for _, k in b.names() if k != "end1") == sorted(expected)
    before = len(b.names())
    os.rename(b.root / "d0" / "d1", b.root / "moved")  # a directory rename: delete old keys, put new ones
    renamed = [("ObjectRemoved:Delete", k) for k in expected[1:]] + [
        ("ObjectCreated:Put", k.replace("d0/d1", "moved", 1)) for k in expected[1:]]
    wait_until(lambda: len(b.names()) >= before + len(renamed), timeout=20)
    b.barrier("end2")
    assert sorted(e for e in b.names()[before:] if e[1] != "end2") == sorted(renamed)
    (b.root / "moved" / "d2" / "new.txt").write_text("watched under its new name")
    b.barrier("end3")
    assert ("ObjectCreated:Put", "moved/d2/new.txt") in b.names()
    shutil.rmtree(b.root / "moved")
    b.barrier("end4")
    removed = {k for e, k in b.names() if e == "ObjectRemoved:Delete"}
    assert {"moved/f.txt", "moved/d2/f.txt", "moved/d2/new.txt", "moved/d2/d3/f.txt"} <= removed


def test_downtime_catch_up(bucket) -> None:
    b = bucket()
    for name in ("keep", "change", "remove"):
        (b.root / name).write_text(name)
    b.barrier("end1")
    first = {r["s3"]["object"]["key"]: r["s3"]["object"]["sequencer"] for r in b.seen()}
    assert b.daemon.stop() == 0
    (b.root / "change").write_text("changed while down")
    (b.root / "remove").unlink()
    (b.root / "new").write_text("created while down")
    count = len(b.names())
    start(b.daemon)
    wait_until(lambda: len(b.names()) >= count + 3, timeout=20)
    caught = b.names()[count:]
    assert sorted(caught) == [("ObjectCreated:Put", "change"), ("ObjectCreated:Put", "new"),
                              ("ObjectRemoved:Delete", "remove")]
    after = {r["s3"]["object"]["key"]: r["s3"]["object"]["sequencer"] for r in b.seen()[count:]}
    assert after["change"] > first["change"], "the sequencer grows across restarts"
    b.barrier("end2")
    assert b.names()[count + 3:] == [("ObjectCreated:Put", "end2")], "nothing else: keep was not reported again"


def test_overflow_40000_files_while_stopped_all_reported(bucket) -> None:
    assert int(Path("/proc/sys/fs/inotify/max_queued_events").read_text()) < 40_000, "the burst must overflow"
    b = bucket(KEY_LOGGER, function={"reserved_concurrency": 2})
    target = b.root / "burst"
    target.mkdir()
    log = b.tmp_path / "rec.jsonl"
    (b.root / "ready").write_text("")
    wait_until(lambda: log.exists() and "ObjectCreated:Put ready" in log.read_text())
    b.daemon.signal(signal.SIGSTOP)
    try:
        for i in range(40_000):
            (target / f"{i:05d}.dat").write_bytes(b"%d" % i)
    finally:
        b.daemon.signal(signal.SIGCONT)
    started = time.monotonic()

    def reported() -> set[str]:
        return {line.split(" ", 1)[1] for line in log.read_text().splitlines() if line.startswith("ObjectCreated")}

    # Under 2 minutes on a quiet 2-core machine (the async delivery into 2 workers is the slow part); the
    # deadline leaves room for a machine busy with other test suites.
    wait_until(lambda: len(reported() & {f"burst/{i:05d}.dat" for i in range(40_000)}) == 40_000, timeout=300,
               interval=0.5)
    assert b.daemon.find("directory.overflow"), "the kernel queue overflowed and reconciliation caught up"
    print(f"40,000 files reported {time.monotonic() - started:.1f} s after SIGCONT")


def test_hostile_names_round_trip(bucket) -> None:
    b = bucket()
    names = [b"with space.txt", b"a+b.txt", b"100%.txt", "üñí©ødé €.txt".encode(), b"new\nline.txt",
             b"latin1-\xe9\xff.bin", b"q?#&=.txt"]
    for name in names:
        with open(os.path.join(os.fsencode(b.root), name), "wb") as f:
            f.write(name)
    b.barrier("end")
    seen = b.seen()[:-1]
    assert sorted(decode_key(r["s3"]["object"]["key"]) for r in seen) == sorted(names)
    for record in seen:
        key = record["s3"]["object"]["key"]
        raw = decode_key(key)
        assert record["s3"]["object"]["eTag"] == md5(raw)
        assert " " not in key and "\n" not in key
        with open(os.path.join(b.root, unquote_plus(key, errors="surrogateescape")), "rb") as f:
            assert f.read() == raw, "a handler's unquote_plus(key) opens the very file"
    assert unquote_plus("with+space.txt") in {unquote_plus(r["s3"]["object"]["key"]) for r in seen}


def test_symlinks_out_of_the_root_and_a_fifo_are_skipped(bucket, tmp_path: Path) -> None:
    b = bucket()
    secret = tmp_path / "secret.txt"
    secret.write_text("outside the root")
    (tmp_path / "outside-dir").mkdir()
    (tmp_path / "outside-dir" / "x.txt").write_text("x")
    os.symlink(secret, b.root / "link-out.txt")
    os.symlink(tmp_path / "outside-dir", b.root / "dir-link")
    (b.root / "inside.txt").write_text("inside")
    os.symlink(b.root / "inside.txt", b.root / "link-in.txt")  # not followed by default either
    os.mkfifo(b.root / "pipe")
    os.rename(b.root / "pipe", b.root / "pipe2")  # a FIFO moved in must not be opened (it would block)
    (b.root / "dir-link" / "y.txt").write_text("written through the link, outside the root")
    b.barrier("end")
    assert b.names() == [("ObjectCreated:Put", "inside.txt"), ("ObjectCreated:Put", "end")]


def test_loop_protection_stops_a_handler_that_writes_into_its_own_tree(bucket) -> None:
    b = bucket(LOOPING, loop_threshold=5, loop_window=60, function={"environment": {"TREE": "placeholder"}})
    # The handler needs the tree's path; it is the bucket directory the fixture made.
    b.daemon.stop()
    config = b.tmp_path / "config.yaml"
    config.write_text(config.read_text().replace("placeholder", str(b.root)))
    start(b.daemon)
    (b.root / "echo.txt").write_text("start\n")
    found = b.daemon.wait_for("directory.loop_detected", source="uploads", timeout=30)
    assert found[0]["key"] == "echo.txt"
    wait_until(lambda: len(b.seen()) >= 5)
    b.barrier("end")
    assert [k for _, k in b.names()].count("echo.txt") == 5, "invocations stop at the threshold"


def test_sync_invocation(bucket) -> None:
    b = bucket(invocation="sync")
    (b.root / "one.txt").write_text("1")
    b.barrier("end")
    assert b.names() == [("ObjectCreated:Put", "one.txt"), ("ObjectCreated:Put", "end")]
    assert not b.daemon.find("delivery.succeeded"), "sync invocations bypass the async queue"


def test_poll_mode(bucket) -> None:
    b = bucket(mode="poll", poll_interval=0.2)
    (b.root / "sub").mkdir()
    (b.root / "sub" / "p.txt").write_text("polled")
    b.wait_names([("ObjectCreated:Put", "sub/p.txt")])
    (b.root / "sub" / "p.txt").unlink()
    b.wait_names([("ObjectCreated:Put", "sub/p.txt"), ("ObjectRemoved:Delete", "sub/p.txt")])
    assert not b.daemon.find("directory.watching"), "no inotify watcher in poll mode"
