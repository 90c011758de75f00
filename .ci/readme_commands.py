#!/usr/bin/env python3
"""Run every shell block of README.md in a fresh clone, each block in a fresh shell, so the README cannot drift.

Usage: python3 .ci/readme_commands.py [--keep]     (from anywhere in the repo; runs what is committed at HEAD)

A ``sh`` block runs as ``bash -eo pipefail`` in the clone's top folder with the machine's environment minus
anything a previous step or an AWS setup would have left (a virtualenv, AWS_* variables, ~/.aws files), as
when pasted into a new terminal on a machine that never had the project. An HTML comment on the line before
a block (invisible on the rendered page) says how to treat it:

  <!-- readme: daemon URL -->   runs in the background; later blocks run once URL answers 200 (readiness poll);
                                it is stopped with SIGTERM at the end and must log service.stopped
  <!-- readme: test-suite -->   the suite's own command: not run here (.ci/run runs it; no recursion)
  <!-- readme: systemd -->      needs root and systemd as PID 1: tests/systemd/ runs it in a booted container

Exit 0 when every block that ran succeeded. Blocks in other languages (yaml, python) are not commands.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

FENCE = re.compile(r"^(?:<!--\s*readme:\s*(?P<mark>[\w-]+)\s*(?P<arg>\S*)\s*-->\n)?```sh\n(?P<body>.*?)^```$",
                   re.M | re.S)
BLOCK_TIMEOUT = 600  # seconds; the set-up block installs the package
READY_TIMEOUT = 600
STOP_TIMEOUT = 60
SKIPPED = {"test-suite": ".ci/run runs the test suite itself", "systemd": "tests/systemd/ runs it in a container"}
# What a fresh shell on a fresh machine does not have: an activated venv, AWS settings, our own variables.
DROPPED = ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "NOTIFY_SOCKET", "JOURNAL_STREAM", "LISTEN_FDS",
           "LISTEN_PID", "WATCHDOG_USEC", "STATE_DIRECTORY")


@dataclass(frozen=True)
class Block:
    """One fenced ``sh`` block: its line in the README, its marker, the marker's argument, its text."""

    line: int
    mark: str
    arg: str
    body: str


def blocks(readme: str) -> list[Block]:
    """The README's ``sh`` blocks in order."""
    return [Block(readme.count("\n", 0, m.start()) + 1, m.group("mark") or "", m.group("arg") or "", m.group("body"))
            for m in FENCE.finditer(readme)]


def fresh_env(home: Path) -> dict[str, str]:
    """The environment of a new terminal: the machine's, without a venv, AWS settings or ours."""
    env = {k: v for k, v in os.environ.items()
           if k not in DROPPED and not k.startswith(("AWS_", "LAMBDA_BRIDGE_", "PYTEST_"))}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if p and not (Path(p) / "activate").exists())
    env["AWS_CONFIG_FILE"] = str(home / "no-aws-config")  # as on a machine where `aws configure` never ran
    env["AWS_SHARED_CREDENTIALS_FILE"] = str(home / "no-aws-credentials")
    return env


def shell(body: str) -> list[str]:
    """A fresh, non-interactive bash that stops at the first failing command."""
    return ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", body]


class Background:
    """The daemon block, running while the later blocks do."""

    def __init__(self, block: Block, cwd: Path, env: dict[str, str], log: Path) -> None:
        self.block, self.log = block, log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(shell(block.body), cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, url: str) -> str | None:
        """None once ``url`` answers 200; else why not (the process exited, or the deadline passed)."""
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return f"exited with {self.proc.returncode} before {url} answered"
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    if resp.status == 200:
                        return None
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)  # a readiness poll with a deadline, not a synchronising sleep
        return f"{url} did not answer 200 within {READY_TIMEOUT} s"

    def stop(self) -> str | None:
        """SIGTERM the block's process group; None when the daemon said it stopped cleanly."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
                return f"did not stop within {STOP_TIMEOUT} s of SIGTERM"
        return None if b"service.stopped" in self.log.read_bytes() else "no service.stopped in its output"

    def tail(self) -> str:
        """The last lines it printed."""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])


def run(clone: Path, home: Path) -> tuple[int, int]:
    """Run the clone's README blocks; returns (passed, failed)."""
    env = fresh_env(home)
    passed = failed = 0
    daemons: list[Background] = []
    try:
        for block in blocks((clone / "README.md").read_text()):
            first = block.body.strip().splitlines()[0]
            if block.mark in SKIPPED:
                print(f"SKIP README.md:{block.line} ({block.mark}: {SKIPPED[block.mark]}): {first}", flush=True)
                continue
            ok, detail = _run_block(block, clone, env, home, daemons)
            passed, failed = passed + ok, failed + (not ok)
            print(f"{'PASS' if ok else 'FAIL'} README.md:{block.line}: {first}", flush=True)
            if detail:
                print(detail, flush=True)
    finally:
        for daemon in daemons:
            problem = daemon.stop()
            passed, failed = passed + (problem is None), failed + (problem is not None)
            print(f"{'PASS' if problem is None else 'FAIL'} README.md:{daemon.block.line}: stopped"
                  + (f": {problem}\n{daemon.tail()}" if problem else ""), flush=True)
    return passed, failed


def _run_block(block: Block, clone: Path, env: dict[str, str], home: Path,
               daemons: list[Background]) -> tuple[bool, str]:
    if block.mark == "daemon":
        daemon = Background(block, clone, env, home / f"daemon-{block.line}.log")
        daemons.append(daemon)
        problem = daemon.wait_ready(block.arg)
        return problem is None, f"  {problem}\n{daemon.tail()}" if problem else ""
    try:
        result = subprocess.run(shell(block.body), cwd=clone, env=env, stdin=subprocess.DEVNULL,
                                capture_output=True, text=True, timeout=BLOCK_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        return False, f"  did not finish within {BLOCK_TIMEOUT} s"
    if result.returncode == 0:
        return True, ""
    return False, f"  exit {result.returncode}\n{result.stdout[-3000:]}{result.stderr[-3000:]}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the clone and logs (printed at the end)")
    args = parser.parse_args()
    repo = Path(subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=Path(__file__).parent, check=True,
                               capture_output=True, text=True).stdout.strip())
    work = Path(tempfile.mkdtemp(prefix="readme-commands-"))
    clone = work / "lambda-bridge"
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(repo), str(clone)], check=True)
    try:
        passed, failed = run(clone, work)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(f"readme: {passed} passed, {failed} failed")
    return 1 if failed or not passed else 0


if __name__ == "__main__":
    sys.exit(main())
