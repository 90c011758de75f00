"""The http source under reload and at start: routes added and removed while requests flow; a port in use."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp

from bridge.testing import Daemon, free_port, write_config, write_handler

HANDLER = """
def handler(event, context):
    return {"statusCode": 200, "body": event["routeKey"]}
"""


def _config(root: Path, port: int, routes: list[str]) -> dict:
    code = write_handler(root, "fn", HANDLER)
    return {"state_dir": str(root / "state"),
            "functions": {"fn": {"handler": "app.handler", "code": str(code)}},
            "sources": [{"name": "api", "type": "http", "listen": f"127.0.0.1:{port}", "function": "fn",
                         "routes": [{"route": r} for r in routes]}]}


async def _hammer(url: str, stop: asyncio.Event, failures: list[str]) -> int:
    """Request ``url`` back to back until ``stop``; every non-200 answer or connection error is a failure."""
    count = 0
    async with aiohttp.ClientSession() as session:
        while not stop.is_set():
            try:
                async with session.get(url) as response:
                    if response.status != 200:
                        failures.append(f"{response.status} {await response.text()}")
            except aiohttp.ClientError as err:
                failures.append(repr(err))
            count += 1
    return count


async def _status(url: str) -> int:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status


async def test_routes_added_and_removed_while_requests_flow(tmp_path: Path) -> None:
    port = free_port()
    path = write_config(tmp_path / "config.yaml", _config(tmp_path, port, ["GET /a"]))
    base = f"http://127.0.0.1:{port}"
    with Daemon(path) as daemon:
        stop, failures = asyncio.Event(), []
        flows = [asyncio.create_task(_hammer(base + "/a", stop, failures)) for _ in range(4)]
        for n, routes in enumerate((["GET /a", "GET /b"], ["GET /a"], ["GET /a", "GET /b"]), start=1):
            write_config(path, _config(tmp_path, port, routes))
            daemon.signal(signal.SIGHUP)
            await asyncio.to_thread(daemon.wait_for, "reload.applied", n)
            assert await _status(base + "/b") == (200 if "GET /b" in routes else 404)
        stop.set()
        counts = await asyncio.gather(*flows)
    assert sum(counts) > 20
    assert failures == []


def test_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        path = write_config(tmp_path / "config.yaml", _config(tmp_path, port, ["GET /a"]))
        for command in ("check", "run"):
            run = subprocess.run([sys.executable, "-m", "bridge.cli", command, "--config", str(path)],
                                 capture_output=True, text=True, timeout=60)
            assert run.returncode == 2, run.stderr[-2000:]
            assert f"sources[0].listen: 127.0.0.1:{port} cannot be listened on" in run.stderr


def test_check_beside_the_running_daemon_is_not_port_in_use(tmp_path: Path) -> None:
    port = free_port()
    path = write_config(tmp_path / "config.yaml", _config(tmp_path, port, ["GET /a"]))
    with Daemon(path):
        run = subprocess.run([sys.executable, "-m", "bridge.cli", "check", "--config", str(path)],
                             capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
