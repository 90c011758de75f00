"""The project's own test kit: run the daemon as a subprocess, wait on its log, write configs and handlers."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

Event = dict[str, Any]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_handler(root: Path, name: str, source: str, filename: str = "app.py") -> Path:
    """Create ``root/name/filename`` with ``source`` (dedented); returns the code directory."""
    code = root / name
    code.mkdir(parents=True, exist_ok=True)
    (code / filename).write_text(textwrap.dedent(source))
    return code


def lambda_client(url: str, region: str = "us-east-1", **config: Any) -> Any:
    """boto3's Lambda client on a daemon's Invoke API, without retries (a test sees every answer)."""
    import boto3  # only the tests that invoke pay for boto3's import
    from botocore.config import Config

    return boto3.client("lambda", endpoint_url=url, region_name=region, aws_access_key_id="x",
                        aws_secret_access_key="x", config=Config(retries={"max_attempts": 0}, **config))


def invoke(client: Any, name: str, event: object = None, **kwargs: Any) -> tuple[dict[str, Any], Any]:
    """Invoke ``name`` with ``event`` (JSON); the response and its decoded payload."""
    response = client.invoke(FunctionName=name, Payload=json.dumps(event or {}), **kwargs)
    return response, json.loads(response["Payload"].read())


def write_config(path: Path, config: dict[str, Any]) -> Path:
    """Write ``config`` as YAML to ``path``."""
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@contextlib.contextmanager
def moto_server(command: list[str], cwd: Path | None = None) -> Iterator[str]:
    """moto in server mode as a subprocess (``command`` ends with its port); yields its URL once it answers."""
    port = command[command.index("-p") + 1]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=cwd)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: answers(f"{url}/moto-api/"), timeout=30)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def answers(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except OSError:
        return False


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.01) -> Any:
    """Poll ``predicate`` until it returns something truthy; raise TimeoutError at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout} s")
        time.sleep(interval)


def _configured_level(config_path: Path) -> str | None:
    with contextlib.suppress(OSError, yaml.YAMLError, AttributeError):
        return str((yaml.safe_load(config_path.read_text()) or {}).get("log_level", "info"))
    return None


def _parse_event(line: str) -> Event:
    """A JSON log line; a ``<N>`` syslog priority before it (as journald reads it) goes to ``priority``."""
    priority = None
    if line.startswith("<") and (end := line.find(">")) in (2, 3) and line[1:end].isdigit():
        priority, line = int(line[1:end]), line[end + 1:]
    event = json.loads(line)
    if priority is not None:
        event["priority"] = priority
    return event


# A benchmark's daemon logs as one in production does (info): the kit's default for tests is debug, which
# writes a line per success and per REPORT, and the kit parses every line.
PRODUCTION_LOGS = {"LAMBDA_BRIDGE_LOG_LEVEL": "info"}


class Daemon:
    """``lambda-bridge run`` as a subprocess whose JSON log lines are collected as they arrive.

    A config at the default ``info`` level runs at ``debug`` here (LAMBDA_BRIDGE_LOG_LEVEL), so that tests
    can wait for per-event lines such as ``delivery.succeeded``; pass that variable in ``env`` to choose.
    """

    def __init__(self, config_path: Path, env: dict[str, str] | None = None, *, journal: bool = False) -> None:
        """``journal``: make the daemon's stdout look like journald's stream (``JOURNAL_STREAM`` naming it), so
        its lines carry ``<N>`` priorities; each event then has them under ``priority``, as journald files it."""
        self.config_path = config_path
        self.journal = journal
        self.env = {**os.environ, **(env or {})}
        if "LAMBDA_BRIDGE_LOG_LEVEL" not in (env or {}) and _configured_level(config_path) == "info":
            self.env["LAMBDA_BRIDGE_LOG_LEVEL"] = "debug"
        self.events: list[Event] = []
        self.raw: list[str] = []
        self.proc: subprocess.Popen[str] | None = None
        self.notifications: list[str] = []
        self._cond = threading.Condition()
        self._eof = False
        self._notify: socket.socket | None = None

    def start(self, timeout: float = 20.0) -> Daemon:
        """Start and wait for ``READY=1`` on a test-owned NOTIFY_SOCKET, as systemd would."""
        self.events.clear()
        self.notifications.clear()
        self._eof = False
        sock_path = Path(tempfile.mkdtemp(prefix="notify-")) / "notify.sock"
        self._notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._notify.bind(str(sock_path))
        cmd = [sys.executable, "-m", "bridge.cli", "run", "--config", str(self.config_path)]
        env = {**self.env, "NOTIFY_SOCKET": str(sock_path)}
        read_end, write_end = os.pipe()
        if self.journal:
            stat = os.fstat(write_end)
            env["JOURNAL_STREAM"] = f"{stat.st_dev}:{stat.st_ino}"
        try:
            self.proc = subprocess.Popen(cmd, stdout=write_end, stderr=subprocess.STDOUT, env=env,
                                         start_new_session=True)
        finally:
            os.close(write_end)
        stream = os.fdopen(read_end, encoding="utf-8", errors="replace")
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()
        threading.Thread(target=self._listen, args=(self._notify,), daemon=True).start()
        try:
            self.wait_notified("READY=1", timeout=timeout)
        except BaseException:
            self.kill()  # never leave a daemon behind when it did not come up
            raise
        return self

    def _listen(self, sock: socket.socket) -> None:
        while True:
            try:
                data = sock.recv(65536)
            except OSError:
                return
            with self._cond:
                self.notifications.append(data.decode())
                self._cond.notify_all()

    def wait_notified(self, line: str, count: int = 1, timeout: float = 20.0) -> list[str]:
        """Block until ``count`` sd_notify datagrams containing ``line`` arrived."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(found := [n for n in self.notifications if line in n.splitlines()]) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._eof:
                    raise AssertionError(f"no {count}x {line} (got {self.notifications}):\n{self.tail()}")
                self._cond.wait(remaining)
            return found

    def _read(self, stream: Any) -> None:
        with stream:
            for line in stream:
                with self._cond:
                    self.raw.append(line)
                    with contextlib.suppress(ValueError):
                        self.events.append(_parse_event(line))
                    self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def find(self, event: str, **keys: Any) -> list[Event]:
        """Log events named ``event`` whose fields equal ``keys``."""
        with self._cond:
            return [e for e in self.events if e.get("event") == event and all(e.get(k) == v for k, v in keys.items())]

    def wait_for(self, event: str, count: int = 1, timeout: float = 20.0, **keys: Any) -> list[Event]:
        """Block until ``count`` matching events were logged; fail with the log tail on timeout or exit."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(found := self.find(event, **keys)) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no {count}x {event} {keys} within {timeout} s:\n{self.tail()}")
                if self._eof:
                    code = self.proc.poll() if self.proc else None
                    raise AssertionError(f"daemon exited ({code}) before {event}:\n{self.tail()}")
                self._cond.wait(remaining)
            return found

    def tail(self, lines: int = 40) -> str:
        """The last log lines, for failure messages."""
        return "".join(self.raw[-lines:])

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the daemon."""
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        """SIGKILL the daemon's whole process group (workers included)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def __enter__(self) -> Daemon:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        try:
            self.stop()
        finally:
            self.kill()
