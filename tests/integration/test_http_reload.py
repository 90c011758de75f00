"""The http source under reload and at start: routes added and removed while requests flow; a port in use."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp

from bridge.testing import Daemon, free_port, wait_until, write_config, write_handler

HANDLER = """
import pathlib, time

def handler(event, context):
    query = event.get("queryStringParameters") or {}
    if "marker" in query:  # the test waits for it: the request is in flight
        pathlib.Path(query["marker"]).touch()
    time.sleep(float(query.get("sleep", 0)))
    return {"statusCode": 200, "body": event["routeKey"]}
"""
NOT_FOUND = '{"message": "Not Found"}'  # the HTTP API's unmatched answer


def _source(name: str, port: int, routes: list[str], function: str = "fn") -> dict:
    return {"name": name, "type": "http", "listen": f"127.0.0.1:{port}", "function": function,
            "routes": [{"route": r} for r in routes]}


def _config(root: Path, port: int, routes: list[str], *more: dict, state: str = "state") -> dict:
    code = write_handler(root, "fn", HANDLER)
    return {"state_dir": str(root / state),
            "functions": {"fn": {"handler": "app.handler", "code": str(code)},
                          "slow": {"handler": "app.handler", "code": str(code)}},
            "sources": [_source("api", port, routes), *more]}


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


async def _get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text()


def _reload(daemon: Daemon, path: Path, config: dict, n: int, event: str = "reload.applied") -> None:
    write_config(path, config)
    daemon.signal(signal.SIGHUP)
    daemon.wait_for(event, n)


def _cli(command: str, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bridge.cli", command, "--config", str(path)],
                          capture_output=True, text=True, timeout=60)


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def _in_use(port: int) -> str:
    return (f"sources[0].listen: cannot listen on 127.0.0.1:{port} (source 'api'): address already in use; "
            f"another program listens there (`ss -ltnp 'sport = :{port}'` names it): stop it, or give this "
            "source another port")


async def test_routes_added_and_removed_while_requests_flow(tmp_path: Path) -> None:
    port = free_port()
    path = write_config(tmp_path / "config.yaml", _config(tmp_path, port, ["GET /a"]))
    base = f"http://127.0.0.1:{port}"
    with Daemon(path) as daemon:
        stop, failures = asyncio.Event(), []
        flows = [asyncio.create_task(_hammer(base + "/a", stop, failures)) for _ in range(4)]
        for n, routes in enumerate((["GET /a", "GET /b"], ["GET /a"], ["GET /a", "GET /b"]), start=1):
            await asyncio.to_thread(_reload, daemon, path, _config(tmp_path, port, routes), n)
            assert (await _get(base + "/b"))[0] == (200 if "GET /b" in routes else 404)
        stop.set()
        counts = await asyncio.gather(*flows)
    assert sum(counts) > 20
    assert failures == []


async def test_removal_takes_effect_when_the_reload_is_applied(tmp_path: Path) -> None:
    """A removed route, a removed source and a listener's last source go at once; in-flight requests finish."""
    port, solo = free_port(), free_port()
    path = write_config(tmp_path / "config.yaml", _config(
        tmp_path, port, ["GET /a", "GET /b"], _source("extra", port, ["GET /c"], "slow"),
        _source("solo", solo, ["GET /s"], "slow")))
    base = f"http://127.0.0.1:{port}"
    with Daemon(path) as daemon:
        stop, failures = asyncio.Event(), []
        flows = [asyncio.create_task(_hammer(base + "/a", stop, failures)) for _ in range(3)]
        markers = [tmp_path / "c.started", tmp_path / "s.started"]
        slow = [asyncio.create_task(_get(f"{url}?sleep=1.5&marker={marker}")) for url, marker in
                zip((base + "/c", f"http://127.0.0.1:{solo}/s"), markers, strict=True)]
        await asyncio.to_thread(wait_until, lambda: all(m.exists() for m in markers), 15)
        await asyncio.to_thread(_reload, daemon, path, _config(tmp_path, port, ["GET /a"]), 1)
        assert await _get(base + "/b") == (404, NOT_FOUND)  # at once, not after a linger
        assert await _get(base + "/c") == (404, NOT_FOUND)
        assert _refused(solo)
        assert await asyncio.gather(*slow) == [(200, "GET /c"), (200, "GET /s")]
        stop.set()
        counts = await asyncio.gather(*flows)
    assert sum(counts) > 10
    assert failures == []


def test_port_taken_after_check_passed_is_one_clear_error(tmp_path: Path) -> None:
    port = free_port()
    path = write_config(tmp_path / "config.yaml", _config(tmp_path, port, ["GET /a"]))
    assert _cli("check", path).returncode == 0
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        for command in ("run", "check"):
            done = _cli(command, path)
            assert done.returncode == 2, done.stderr[-2000:]
            assert done.stderr == f"{path}: 1 error\n  {_in_use(port)}\n"
            assert "Traceback" not in done.stdout + done.stderr and "source.crashed" not in done.stdout


def test_a_second_daemon_on_the_port_is_refused(tmp_path: Path) -> None:
    """Another daemon (another state_dir) on the same port must not share it: the kernel would split the
    requests between the two."""
    port = free_port()
    first = write_config(tmp_path / "first.yaml", _config(tmp_path, port, ["GET /a"]))
    second = write_config(tmp_path / "second.yaml", _config(tmp_path, port, ["GET /b"], state="other"))
    with Daemon(first):
        for command in ("check", "run"):
            done = _cli(command, second)
            assert done.returncode == 2 and _in_use(port) in done.stderr, done.stderr[-2000:]
        answers = asyncio.run(_many(f"http://127.0.0.1:{port}/a", 20))
    assert answers == [(200, "GET /a")] * 20


async def _many(url: str, n: int) -> list[tuple[int, str]]:
    return [await _get(url) for _ in range(n)]


async def test_reload_adding_a_source_on_a_taken_port_is_refused(tmp_path: Path) -> None:
    port = free_port()
    path = write_config(tmp_path / "config.yaml", _config(tmp_path, port, ["GET /a"]))
    base = f"http://127.0.0.1:{port}"
    with Daemon(path) as daemon, socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        other = taken.getsockname()[1]
        wanted = _config(tmp_path, port, ["GET /a", "GET /b"], _source("more", other, ["GET /m"]))
        await asyncio.to_thread(_reload, daemon, path, wanted, 1, "reload.invalid")
        [invalid] = daemon.find("reload.invalid")
        assert invalid["problem"] == _in_use(other).replace("sources[0]", "sources[1]").replace("'api'", "'more'")
        assert invalid["config"] == str(path)
        await asyncio.to_thread(daemon.wait_notified,
                                f"STATUS=reload failed, still running the previous config: {invalid['problem']}")
        assert await _get(base + "/a") == (200, "GET /a")  # the old config runs on, none of the new applied
        assert (await _get(base + "/b"))[0] == 404
        assert daemon.find("reload.applied") == [] and daemon.find("source.crashed") == []
        taken.close()
        daemon.signal(signal.SIGHUP)  # the port is free now: the same file applies
        await asyncio.to_thread(daemon.wait_for, "reload.applied")
        assert await _get(f"http://127.0.0.1:{other}/m") == (200, "GET /m")
        assert await _get(base + "/b") == (200, "GET /b")


def test_check_beside_the_running_daemon_is_not_port_in_use(tmp_path: Path) -> None:
    port = free_port()
    path = write_config(tmp_path / "config.yaml", _config(tmp_path, port, ["GET /a"]))
    with Daemon(path):
        run = _cli("check", path)
    assert run.returncode == 0, run.stderr
