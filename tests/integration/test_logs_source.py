"""The logs source end to end: the daemon as a subprocess tails real files (real inotify) while a writer appends,
rotates by rename and by copytruncate, with the daemon running, stopped, and killed with SIGKILL."""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from aws_lambda_powertools.utilities.parser.models import CloudWatchLogsModel

from bridge.events.cloudwatch_logs import MAX_MESSAGE_BYTES
from bridge.testing import Daemon, wait_until, write_config, write_handler
from tests.integration.test_async_delivery import RECORDER, cli, records


def logs_config(tmp_path: Path, path: str, **source: Any) -> Path:
    code = write_handler(tmp_path, "sink", RECORDER)
    return write_config(tmp_path / "config.yaml", {
        "state_dir": str(tmp_path / "state"), "log_level": "info", "account_id": "123456789012",
        "functions": {"sink": {"handler": "app.handler", "code": str(code), "reserved_concurrency": 2,
                               "environment": {"RECORD_FILE": str(tmp_path / "sink.jsonl")}}},
        "sources": [{"name": "applog", "type": "logs", "path": path, "function": "sink", "batch_window": 0.05,
                     **source}],
    })


def delivered(tmp_path: Path) -> list[tuple[str, str, str, dict | None]]:
    """(log group, stream, message, extractedFields) of every log event delivered, checked by Powertools' model."""
    out = []
    for record in records(tmp_path / "sink.jsonl"):
        data = CloudWatchLogsModel.model_validate(record["event"]).awslogs.decoded_data
        assert data.messageType == "DATA_MESSAGE" and data.owner == "123456789012"
        assert data.subscriptionFilters == ["applog"]
        for event in data.logEvents:
            assert len(event.id) == 56 and event.id.isdigit()
            out.append((data.logGroup, data.logStream, event.message, None))
    return out


def messages(tmp_path: Path) -> list[str]:
    return [message for _, _, message, _ in delivered(tmp_path)]


def wait_delivered(tmp_path: Path, expected: set[str], timeout: float = 30.0) -> list[str]:
    def complete() -> list[str] | None:
        got = messages(tmp_path)
        return got if expected <= set(got) else None
    try:
        return wait_until(complete, timeout=timeout)
    except TimeoutError:
        missing = sorted(expected - set(messages(tmp_path)))
        raise AssertionError(f"{len(missing)} lines never delivered, e.g. {missing[:5]}") from None


class Writer:
    """Appends numbered lines to the live log, half of them matching; rotates it on request."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.n = 0
        self.rotations = 0
        self.lock = threading.Lock()

    def lines(self, count: int, path: Path | None = None) -> set[str]:
        """Write ``count`` ERROR lines (and as many INFO lines between them); the ERROR lines."""
        wanted = set()
        with self.lock, open(path or self.path, "a") as f:
            for _ in range(count):
                self.n += 1
                f.write(f"ERROR line {self.n}\nINFO line {self.n}\n")
                wanted.add(f"ERROR line {self.n}")
        return wanted

    def rotate(self) -> Path:
        """logrotate's default: rename the live file away; the next write creates a new one."""
        with self.lock:
            self.rotations += 1
            rotated = self.path.with_name(f"{self.path.name}.{self.rotations}")
            os.rename(self.path, rotated)
            return rotated

    def copytruncate(self) -> None:
        """logrotate's copytruncate: copy, then truncate the live file in place."""
        with self.lock:
            self.rotations += 1
            self.path.with_name(f"{self.path.name}.{self.rotations}").write_bytes(self.path.read_bytes())
            os.truncate(self.path, 0)


def test_append_rotate_copytruncate_while_running_and_stopped(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    live = logs / "app.log"
    live.write_text("INFO written before the first start\n")
    config = logs_config(tmp_path, str(live), filter_pattern="ERROR")
    writer = Writer(live)
    expected: set[str] = set()
    daemon = Daemon(config).start()
    try:
        daemon.wait_for("logs.watching")
        expected |= writer.lines(20)
        wait_delivered(tmp_path, expected)
        expected |= writer.lines(10)
        rotated = writer.rotate()
        expected |= writer.lines(5, rotated)  # a late write to the renamed file: still read to its end
        expected |= writer.lines(10)
        wait_delivered(tmp_path, expected)
        writer.copytruncate()
        expected |= writer.lines(10)
        wait_delivered(tmp_path, expected)
        assert daemon.stop() == 0
        expected |= writer.lines(10)  # while stopped: appended, then rotated away, then a new file
        rotated = writer.rotate()
        expected |= writer.lines(7)
        daemon.start()
        wait_delivered(tmp_path, expected)
        assert daemon.stop() == 0
        writer.copytruncate()  # while stopped, after everything was read: the shorter file is read from 0
        expected |= writer.lines(3)
        daemon.start()
        got = wait_delivered(tmp_path, expected)
    finally:
        daemon.stop()
        daemon.kill()
    assert not [m for m in got if not m.startswith("ERROR")]
    repeated = [m for m, c in Counter(got).items() if c > 1]
    assert not repeated, f"delivered twice: {repeated[:5]}"
    groups = {(group, stream) for group, stream, _, _ in delivered(tmp_path)}
    assert groups == {(str(live), "app.log")}


def test_kill9_loop_loses_no_line(tmp_path: Path) -> None:
    """SIGKILL at random moments while lines flow, rotations while it runs and while it is down: every line
    arrives; a repeat is at most a whole batch per kill (the async queue's at-least-once delivery)."""
    logs = tmp_path / "logs"
    logs.mkdir()
    live = logs / "app.log"
    live.touch()
    config = logs_config(tmp_path, str(live), filter_pattern="ERROR")
    writer = Writer(live)
    stop = threading.Event()
    written: set[str] = set()

    def write() -> None:
        while not stop.wait(0.002):
            written.update(writer.lines(2))

    rng = random.Random(27)
    thread = threading.Thread(target=write, daemon=True)
    kills = 6
    for round_ in range(kills):
        daemon = Daemon(config).start()
        if round_ == 0:
            thread.start()
        time.sleep(rng.uniform(0.2, 0.6))  # the scenario: lines flow for a random while, then the kill
        if round_ % 2:
            writer.rotate()
            time.sleep(rng.uniform(0.0, 0.2))
        daemon.kill()
        if round_ % 3 == 2:
            writer.rotate()  # while it is down
    stop.set()
    thread.join()
    with Daemon(config) as daemon:
        got = wait_delivered(tmp_path, written, timeout=120)
        daemon.wait_for("logs.watching")
    assert len(written) > 500
    redelivered, source_repeats = _repeats(tmp_path)
    assert source_repeats == 0, f"{source_repeats} lines read twice into new batches"
    assert redelivered <= 2 * kills, f"{redelivered} in-flight batches redelivered after {kills} kills"
    print(f"\nlogs kill -9: {kills} kills, {len(written)} lines, {writer.rotations} rotations, "
          f"{len(got)} lines delivered, {redelivered} in-flight batches redelivered, {source_repeats} lines read twice")


def _repeats(tmp_path: Path) -> tuple[int, int]:
    """(deliveries of a queued batch beyond its first, as the async queue retries what a kill interrupted;
    lines that reached more than one queued batch, which would be the source reading them twice)."""
    by_request: dict[str, list[str]] = {}
    deliveries = 0
    for record in records(tmp_path / "sink.jsonl"):
        data = CloudWatchLogsModel.model_validate(record["event"]).awslogs.decoded_data
        by_request[record["request_id"]] = [e.message for e in data.logEvents]
        deliveries += 1
    lines = Counter(m for batch in by_request.values() for m in batch)
    return deliveries - len(by_request), sum(c - 1 for c in lines.values())


def test_hostile_files_are_logged_once_and_the_source_goes_on(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    config = logs_config(tmp_path, str(logs / "*.log"), filter_pattern="ERROR", partial_line_timeout=0.5)
    with Daemon(config) as daemon:
        daemon.wait_for("logs.watching")
        (logs / "junk.log").write_bytes(os.urandom(4096).replace(b"ERROR", b"") + b"\nERROR \xff\xfe binary\x00\n")
        with open(logs / "long.log", "wb") as f:
            f.write(b"ERROR " + b"x" * (10 << 20))  # 10 MB, no newline yet
        os.symlink("/etc/shadow", logs / "shadow.log")
        (logs / "swap.log").write_text("ERROR before the swap\n")
        wait_delivered(tmp_path, {"ERROR before the swap"})
        os.symlink("/etc/shadow", logs / "swap.tmp")
        os.rename(logs / "swap.tmp", logs / "swap.log")  # the tailed file swapped for a link to /etc/shadow
        os.mkfifo(logs / "fifo.log")
        with open(logs / "long.log", "ab") as f:
            f.write(b"\nERROR after the long line\n")
        (logs / "ok.log").write_text("ERROR still running\n")
        long_line = "ERROR " + "x" * (MAX_MESSAGE_BYTES - 6)  # its first 256 KB
        wait_delivered(tmp_path, {"ERROR \ufffd\ufffd binary\x00", "ERROR after the long line",
                                  "ERROR still running", long_line})
        (logs / "ok.log").write_text("ERROR and again\n")
        for name in ("shadow.log", "swap.log"):
            os.utime(logs / name, follow_symlinks=False)
        wait_delivered(tmp_path, {"ERROR and again"})
        assert len(daemon.find("logs.symlink_skipped", path=str(logs / "shadow.log"))) == 1
        assert len(daemon.find("logs.symlink_skipped", path=str(logs / "swap.log"))) == 1
        assert len(daemon.find("logs.not_a_file", path=str(logs / "fifo.log"))) == 1
        assert len(daemon.find("logs.line_truncated")) == 1
        assert len(daemon.find("logs.invalid_utf8")) == 1
    assert [m for m in messages(tmp_path) if m.startswith("ERROR xxx")] == [long_line]
    assert not [m for m in messages(tmp_path) if "root:" in m]


def test_space_delimited_pattern_sends_extracted_fields(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    config = logs_config(tmp_path, str(logs / "access.log"), filter_pattern="[ip, user, ..., status=5*, bytes>1000]",
                         log_group="/web/access", log_stream="frontend")
    with Daemon(config) as daemon:
        daemon.wait_for("logs.watching")
        with open(logs / "access.log", "a") as f:
            f.write('10.0.0.1 - [07/Dec/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 5000\n')
            f.write('10.0.0.2 frank [07/Dec/2026:10:00:01 +0000] "GET /x HTTP/1.1" 503 1534\n')
        wait_until(lambda: records(tmp_path / "sink.jsonl"), timeout=20)
    data = CloudWatchLogsModel.model_validate(records(tmp_path / "sink.jsonl")[0]["event"]).awslogs.decoded_data
    assert (data.logGroup, data.logStream) == ("/web/access", "frontend")
    from bridge.events.cloudwatch_logs import decode
    raw = decode(records(tmp_path / "sink.jsonl")[0]["event"])
    assert [e["extractedFields"] for e in raw["logEvents"]] == [
        {"$ip": "10.0.0.2", "$user": "frank", "$3": "07/Dec/2026:10:00:01 +0000", "$4": "GET /x HTTP/1.1",
         "$status": "503", "$bytes": "1534"}]


def test_pattern_error_names_the_column(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    config = logs_config(tmp_path, str(logs / "app.log"), filter_pattern='{ $.level = "ERROR" && }')
    result = cli(config, "check", "--skip-handlers")
    assert result.returncode == 2
    assert "sources[0].filter_pattern" in result.stderr + result.stdout
    assert "column 24" in result.stderr + result.stdout


def test_watched_directory_removed_and_recreated(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    config = logs_config(tmp_path, str(logs / "*.log"), filter_pattern="ERROR")
    with Daemon(config) as daemon:
        daemon.wait_for("logs.watching")
        (logs / "a.log").write_text("ERROR before\n")
        wait_delivered(tmp_path, {"ERROR before"})
        for path in logs.iterdir():
            path.unlink()
        logs.rmdir()
        daemon.wait_for("logs.directory_missing")
        logs.mkdir()
        daemon.wait_for("logs.watching", count=2)
        (logs / "b.log").write_text("ERROR after\n")
        wait_delivered(tmp_path, {"ERROR before", "ERROR after"})


def test_multiline_records_and_a_line_that_never_ends(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    config = logs_config(tmp_path, str(logs / "app.log"), filter_pattern="ERROR", multiline_start=r"^\d{4}-",
                         partial_line_timeout=0.5)
    with Daemon(config) as daemon:
        daemon.wait_for("logs.watching")
        with open(logs / "app.log", "a") as f:
            f.write("2026-12-07 ERROR boom\nTraceback (most recent call last):\n  File \"x\"\n")
            f.write("2026-12-07 INFO fine\n2026-12-07 ERROR last, without a newline")
        got = wait_delivered(tmp_path, {"2026-12-07 ERROR boom\nTraceback (most recent call last):\n  File \"x\"",
                                        "2026-12-07 ERROR last, without a newline"})
    assert len(got) == 2
