"""The tailer on real files: lines, partial lines, multiline records, truncation, identity, recovery."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

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
