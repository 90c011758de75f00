"""The tailer on real files: lines, partial lines, multiline records, truncation, identity, recovery."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.sources.logs.tail import Tailer


@pytest.fixture
def warnings() -> list[tuple[str, Any]]:
    return []


def tailer(path: Path, warnings: list[tuple[str, Any]], **options: Any) -> Tailer:
    options = {"follow_symlinks": False, "multiline_start": None, "partial_timeout": 0.2, **options}
    return Tailer(str(path), warn=lambda event, once, **fields: warnings.append((event, fields)), **options)


def texts(t: Tailer) -> list[str]:
    records, _ = t.read(None)
    return [r.text for r in records]


def test_lines_and_a_partial_last_line(tmp_path: Path, warnings: list) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(b"one\r\ntwo\nthr")
    t = tailer(log, warnings)
    t.scan()
    assert texts(t) == ["one", "two"]
    with open(log, "ab") as f:
        f.write(b"ee\n")
    assert texts(t) == ["three"]
    with open(log, "ab") as f:
        f.write(b"no newline")
    assert texts(t) == []
    assert t.next_timer() is not None
    time.sleep(0.25)  # the partial-line timeout itself is what is tested
    assert texts(t) == ["no newline"]


def test_multiline_records(tmp_path: Path, warnings: list) -> None:
    log = tmp_path / "app.log"
    log.write_text("2026-01-01 ERROR boom\nTraceback:\n  line 1\n2026-01-01 INFO next\n")
    t = tailer(log, warnings, multiline_start=r"^\d{4}-")
    t.scan()
    assert texts(t) == ["2026-01-01 ERROR boom\nTraceback:\n  line 1"]
    assert t.state()[next(iter(t.files))]["offset"] == len("2026-01-01 ERROR boom\nTraceback:\n  line 1\n")
    time.sleep(0.25)
    assert texts(t) == ["2026-01-01 INFO next"]


def test_copytruncate_reads_from_the_start(tmp_path: Path, warnings: list) -> None:
    log = tmp_path / "app.log"
    log.write_text("a long first line\nsecond\n")
    t = tailer(log, warnings)
    t.scan()
    assert texts(t) == ["a long first line", "second"]
    os.truncate(log, 0)
    log.write_text("new\n")
    assert texts(t) == ["new"]
    assert warnings[-1][0] == "logs.truncated"
    log.write_text("rewritten at the same length!!!!\nmore\n")  # not shorter, but its first bytes changed
    assert texts(t) == ["rewritten at the same length!!!!", "more"]


def test_resume_checks_the_fingerprint(tmp_path: Path, warnings: list) -> None:
    log = tmp_path / "app.log"
    log.write_text("first\nsecond\n")
    t = tailer(log, warnings)
    t.scan()
    texts(t)
    saved = t.state()
    t.close()
    with open(log, "a") as f:
        f.write("third\n")
    again = tailer(log, warnings)
    again.resume(saved, first_start=False, from_end=True)
    assert texts(again) == ["third"]
    again.close()
    key = next(iter(saved))
    saved[key]["fp"] = "0" * 24  # same inode, other first bytes: another file
    other = tailer(log, warnings)
    other.resume(saved, first_start=False, from_end=True)
    assert texts(other) == ["first", "second", "third"]


def test_rotated_while_down_is_found_by_inode(tmp_path: Path, warnings: list) -> None:
    log = tmp_path / "app.log"
    log.write_text("first\n")
    t = tailer(log, warnings)
    t.scan()
    texts(t)
    saved = t.state()
    t.close()
    with open(log, "a") as f:
        f.write("written before the rotation\n")
    os.rename(log, tmp_path / "app.log.1")
    log.write_text("in the new file\n")
    again = tailer(log, warnings)
    again.resume(saved, first_start=False, from_end=True)
    records, _ = again.read(None)
    assert sorted((r.text, r.path) for r in records) == [("in the new file", str(log)),
                                                          ("written before the rotation", str(log))]


def test_first_start_at_the_end_and_new_files_from_their_start(tmp_path: Path, warnings: list) -> None:
    (tmp_path / "a.log").write_text("old\n")
    t = tailer(tmp_path / "*.log", warnings)
    t.resume({}, first_start=True, from_end=True)
    assert texts(t) == []
    (tmp_path / "b.log").write_text("new file\n")
    t.scan()
    assert texts(t) == ["new file"]
    assert t.matches("c.log") and not t.matches("c.txt")


def test_an_unreadable_file_is_reported_and_the_others_are_read() -> None:
    """As a user who may not read it (the test drops root in a child process: root reads anything). The
    tailer reports it under one key each time (the source logs a key once)."""
    tmp_path = Path(tempfile.mkdtemp(dir="/tmp"))  # beside pytest's 0700 folders: nobody must reach it
    (tmp_path / "secret.log").write_text("hidden\n")
    (tmp_path / "secret.log").chmod(0o000)
    (tmp_path / "open.log").write_text("visible\n")
    tmp_path.chmod(0o755)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: nobody, then the tailer; its findings go back through the pipe
        try:
            os.close(read_end)
            if os.getuid() == 0:
                os.setgroups([])
                os.setresgid(65534, 65534, 65534)
                os.setresuid(65534, 65534, 65534)
            found: set = set()
            t = Tailer(str(tmp_path / "*.log"), follow_symlinks=False, multiline_start=None, partial_timeout=1,
                       warn=lambda event, once, **fields: found.add((event, once, fields["path"])))
            for _ in range(3):
                t.scan()
            out = {"texts": texts(t), "warnings": sorted(found)}
            os.write(write_end, json.dumps(out).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        result = json.loads(pipe.read())
    os.waitpid(pid, 0)
    assert result["texts"] == ["visible"]
    secret = str(tmp_path / "secret.log")
    assert result["warnings"] == [["logs.unreadable", secret, secret]]
    shutil.rmtree(tmp_path)


def test_links_are_followed_only_inside_the_directory(tmp_path: Path, warnings: list) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "2026-12-07.txt").write_text("today\n")
    (tmp_path / "outside.txt").write_text("not ours\n")
    os.symlink(logs / "2026-12-07.txt", logs / "current.log")
    os.symlink(tmp_path / "outside.txt", logs / "escape.log")
    t = tailer(logs / "*.log", warnings, follow_symlinks=True)
    t.scan()
    records, _ = t.read(None)
    assert [(r.text, r.path) for r in records] == [("today", str(logs / "current.log"))]
    escape = str(logs / "escape.log")
    assert [(event, fields["path"]) for event, fields in warnings] == [("logs.symlink_outside", escape)]
    plain = tailer(logs / "*.log", warnings, follow_symlinks=False)
    plain.scan()
    assert texts(plain) == []


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.binary(max_size=300), max_size=12))
def test_any_bytes_in_any_chunks_come_out_as_their_lines(tmp_path: Path, chunks: list[bytes]) -> None:
    """Whatever the bytes and however the writes split them: every whole line once, in order, as text."""
    log = tmp_path / f"fuzz-{uuid.uuid4().hex}.log"
    log.touch()
    t = tailer(log, [])
    t.scan()
    got: list[str] = []
    with open(log, "ab") as f:
        for chunk in chunks:
            f.write(chunk)
            f.flush()
            got += texts(t)
    t.close()
    data = b"".join(chunks)
    whole = data[:data.rfind(b"\n") + 1].split(b"\n")[:-1] if b"\n" in data else []
    assert got == [line.removesuffix(b"\r").decode("utf-8", "replace") for line in whole]


def test_damaged_saved_state_is_a_fresh_start(tmp_path: Path, warnings: list) -> None:
    log = tmp_path / "app.log"
    log.write_text("one\n")
    t = tailer(log, warnings)
    key = f"{log.stat().st_dev}:{log.stat().st_ino}"
    t.resume({key: {"offset": "x", "fp_len": None}, "1:2": "not a dict", "3:4": {"path": 5}},
             first_start=False, from_end=False)
    assert texts(t) == ["one"]


def test_journal_entries_as_journalctl_prints_them() -> None:
    """journalctl -o json: MESSAGE is text, an array of bytes (binary), or null; the cursor orders entries."""
    from bridge.sources.logs.journal import entry_record

    text, cursor, ms = entry_record({"MESSAGE": "ERROR x", "__CURSOR": "s=ab;i=1f;b=cd", "_SYSTEMD_UNIT": "a.service",
                                     "__REALTIME_TIMESTAMP": "1796685675783085"})
    assert (text.text, text.position, text.path, cursor, ms) == ("ERROR x", 31, "a.service", "s=ab;i=1f;b=cd",
                                                                 1796685675783)
    binary, _, _ = entry_record({"MESSAGE": [69, 82, 0, 255, 300, "x"], "SYSLOG_IDENTIFIER": "b"})
    assert (binary.text, binary.path) == ("ER\x00\ufffd", "b")
    empty, _, _ = entry_record({"MESSAGE": None, "__CURSOR": "garbage"})
    assert empty.text == "" and empty.position == 0
