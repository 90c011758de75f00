"""Function log entries (one record, multi-line text) and the daemon log's rendering and journal priorities."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge import log
from bridge.function_logs import Entry, as_text, format_line, history, parse_line, split_lines

# What awslambdaric 4 writes to stdout for an exception (bootstrap.log_error with StandardLogSink).
RECORD = ('[ERROR] ValueError: boom\rTraceback (most recent call last):\r'
          '\xa0\xa0File "/var/task/app.py", line 3, in handler\r\xa0\xa0\xa0\xa0raise ValueError("boom")\r')


def test_a_runtime_record_is_one_entry_shown_as_lines() -> None:
    line = format_line("rid-1", RECORD.rstrip("\r"), now=0)
    lines, used = split_lines((line + "\n" + format_line("rid-1", "END RequestId: rid-1", now=0) + "\n").encode())
    assert len(lines) == 2 and used > len(line)
    entry = parse_line(lines[0])
    assert entry == Entry("1970-01-01T00:00:00.000Z", "rid-1", RECORD.rstrip("\r"))
    assert as_text(entry.text) == ('[ERROR] ValueError: boom\nTraceback (most recent call last):\n'
                                   '  File "/var/task/app.py", line 3, in handler\n    raise ValueError("boom")')
    assert entry.render().startswith("1970-01-01T00:00:00.000Z rid-1 [ERROR] ValueError: boom\nTraceback")


def test_a_line_still_being_written_waits_and_plain_text_is_untouched() -> None:
    lines, used = split_lines(b"a\tb\tc\npartial\tline")
    assert lines == ["a\tb\tc"] and used == 6
    assert split_lines(b"no newline yet") == ([], 0)
    assert as_text("plain \xa0inner no-break space stays") == "plain \xa0inner no-break space stays"


def test_history_reads_rotated_files_oldest_first(tmp_path: Path) -> None:
    path = tmp_path / "fn.log"
    for suffix, text in (("", "newest"), (".1", "older"), (".2", "oldest")):
        Path(str(path) + suffix).write_text(format_line("r", text + "\rsecond line", now=0) + "\n")
    assert [as_text(e.text) for e in history(path)] == [f"{t}\nsecond line" for t in ("oldest", "older", "newest")]


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_characters="\n", blacklist_categories=("Cs",)), max_size=200))
def test_any_record_survives_the_file_whole(text: str) -> None:
    lines, _ = split_lines((format_line("rid", text, now=0) + "\n").encode())
    assert len(lines) == 1 and parse_line(lines[0]).text == text


def test_priority_prefix_only_on_the_journals_stream(tmp_path: Path) -> None:
    with open(tmp_path / "out", "w") as stream:
        stat = os.fstat(stream.fileno())
        assert log.connected_to_journal(stream, {"JOURNAL_STREAM": f"{stat.st_dev}:{stat.st_ino}"})
        assert not log.connected_to_journal(stream, {"JOURNAL_STREAM": f"{stat.st_dev}:{stat.st_ino + 1}"})
        assert not log.connected_to_journal(stream, {})
        assert not log.connected_to_journal(stream, {"JOURNAL_STREAM": "garbage"})
        os.environ["JOURNAL_STREAM"] = f"{stat.st_dev}:{stat.st_ino}"
        try:
            log.configure("debug", stream, json=True)
            logger = log.get_logger(function="f")
            logger.debug("d")
            logger.info("i")
            logger.warning("w")
            logger.error("e")
        finally:
            del os.environ["JOURNAL_STREAM"]
            structlog.reset_defaults()
    lines = (tmp_path / "out").read_text().splitlines()
    assert [line[:3] for line in lines] == ["<7>", "<6>", "<4>", "<3>"]
    assert [json.loads(line[3:])["event"] for line in lines] == ["d", "i", "w", "e"]


def test_console_shows_a_multi_line_value_as_lines_each_with_its_priority() -> None:
    rendered = log.MultilineConsoleRenderer()(None, "warning", {"event": "function.output", "line": "a\n  b"})
    assert rendered.endswith("\n  line:\n    a\n      b") and "'a" not in rendered
    assert log.prefix_priority(None, "warning", rendered).split("\n")[-1] == "<4>      b"
    stream = io.StringIO()
    try:
        log.configure("info", stream, json=False)
        log.get_logger().info("function.output", line=as_text(RECORD))
    finally:
        structlog.reset_defaults()
    assert '\n      File "/var/task/app.py", line 3, in handler\n' in stream.getvalue()
