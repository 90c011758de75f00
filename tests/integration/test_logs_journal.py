"""The journal as a logs origin: a real systemd-journald (its own journal namespace, so the machine's journal is
untouched and none needs to run), lines written by the real systemd-cat, followed by the daemon's journalctl."""

from __future__ import annotations

import glob
import os
import random
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from aws_lambda_powertools.utilities.parser.models import CloudWatchLogsModel

from bridge.testing import Daemon, wait_until, write_config, write_handler
from tests.integration.test_async_delivery import RECORDER, records
from tests.integration.test_logs_source import _repeats

JOURNALD = "/lib/systemd/systemd-journald"


@pytest.fixture
def namespace() -> Iterator[str]:
    """A journald of its own: ``systemd-journald NAMESPACE`` listens on /run/systemd/journal.NAMESPACE/."""
    assert os.path.exists(JOURNALD) and shutil.which("systemd-cat"), "needs systemd (journald, systemd-cat)"
    name = f"lb{uuid.uuid4().hex[:10]}"
    proc = subprocess.Popen([JOURNALD, name], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: os.path.exists(f"/run/systemd/journal.{name}/stdout"), timeout=10)
        yield name
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(f"/run/systemd/journal.{name}", ignore_errors=True)
        for path in glob.glob(f"/var/log/journal/*.{name}"):
            shutil.rmtree(path, ignore_errors=True)


def systemd_cat(namespace: str, identifier: str, lines: list[str]) -> None:
    """``systemd-cat -t IDENTIFIER`` writing into the namespace's journald (its stdout socket bound, in a private
    mount namespace, where systemd-cat looks for journald)."""
    keep = tempfile.mkdtemp()
    script = (f"mount --bind /run/systemd/journal.{namespace} {keep} && mount -t tmpfs tmpfs /run/systemd && "
              f"mkdir /run/systemd/journal && mount --bind {keep} /run/systemd/journal && "
              f"systemd-cat -t {identifier}")
    subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                   input="".join(f"{line}\n" for line in lines), text=True, check=True, timeout=30)
    os.rmdir(keep)


def test_journal_follows_with_a_durable_cursor(tmp_path: Path, namespace: str) -> None:
    code = write_handler(tmp_path, "sink", RECORDER)
    config = write_config(tmp_path / "config.yaml", {
        "state_dir": str(tmp_path / "state"), "log_level": "info", "account_id": "123456789012",
        "functions": {"sink": {"handler": "app.handler", "code": str(code),
                               "environment": {"RECORD_FILE": str(tmp_path / "sink.jsonl")}}},
        "sources": [{"name": "journal", "type": "logs", "function": "sink", "filter_pattern": "ERROR",
                     "journal": {"identifier": "lbtest", "namespace": namespace}, "batch_window": 0.05}],
    })
    systemd_cat(namespace, "lbtest", ["ERROR before the first start"])  # a subscription sees what comes after it
    expected: set[str] = set()
    with Daemon(config) as daemon:
        daemon.wait_for("logs.journal_following")
        batch = [f"ERROR running {n}" for n in range(20)]
        systemd_cat(namespace, "lbtest", [*batch, "INFO not matching"])
        systemd_cat(namespace, "other", ["ERROR from another identifier"])
        expected |= set(batch)
        _wait(tmp_path, expected)
    batch = [f"ERROR while stopped {n}" for n in range(10)]
    systemd_cat(namespace, "lbtest", batch)
    expected |= set(batch)
    with Daemon(config) as daemon:
        got = _wait(tmp_path, expected)
    assert set(got) == expected, set(got) ^ expected
    assert not [m for m, c in Counter(got).items() if c > 1]
    for record in records(tmp_path / "sink.jsonl"):
        data = CloudWatchLogsModel.model_validate(record["event"]).awslogs.decoded_data
        assert (data.logGroup, data.logStream, data.subscriptionFilters) == ("/journal/lbtest", "lbtest", ["journal"])


def _wait(tmp_path: Path, expected: set[str]) -> list[str]:
    def messages() -> list[str]:
        return [e.message for r in records(tmp_path / "sink.jsonl")
                for e in CloudWatchLogsModel.model_validate(r["event"]).awslogs.decoded_data.logEvents]
    return wait_until(lambda: (got := messages()) and expected <= set(got) and got, timeout=30)


def test_journal_kill9_loses_no_entry(tmp_path: Path, namespace: str) -> None:
    """SIGKILL while entries flow: the cursor is saved with the events, so none is lost or read twice."""
    code = write_handler(tmp_path, "sink", RECORDER)
    config = write_config(tmp_path / "config.yaml", {
        "state_dir": str(tmp_path / "state"), "log_level": "info",
        "functions": {"sink": {"handler": "app.handler", "code": str(code),
                               "environment": {"RECORD_FILE": str(tmp_path / "sink.jsonl")}}},
        "sources": [{"name": "journal", "type": "logs", "function": "sink", "batch_window": 0.05,
                     "journal": {"identifier": "lbkill", "namespace": namespace}}],
    })
    written: list[str] = []
    stop = threading.Event()

    def write() -> None:
        n = 0
        while not stop.is_set():
            batch = [f"entry {n + i}" for i in range(25)]
            systemd_cat(namespace, "lbkill", batch)
            written.extend(batch)
            n += 25

    writer = threading.Thread(target=write, daemon=True)
    rng = random.Random(4)
    for round_ in range(4):
        daemon = Daemon(config).start()
        daemon.wait_for("logs.journal_following")
        if round_ == 0:
            writer.start()
        time.sleep(rng.uniform(0.3, 0.8))  # the scenario: entries flow for a random while, then the kill
        daemon.kill()
    stop.set()
    writer.join()
    with Daemon(config):
        got = _wait(tmp_path, set(written))
    redelivered, read_twice = _repeats(tmp_path)
    assert read_twice == 0 and redelivered <= 8, (redelivered, read_twice)
    assert len(set(got)) == len(written)
