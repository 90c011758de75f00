"""The running daemon's runtime file: written at READY, updated on each reload, removed at stop."""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import time
from typing import Any

from bridge import runtime_file, runtime_index
from bridge.config.model import Config
from bridge.errors import ListenError
from bridge.log import get_logger
from bridge.sources.http.server import HUB


class RuntimePublisher:
    """Publishes where this daemon listens and which config it runs (``state_dir/daemon.json``)."""

    def __init__(self, service: Any) -> None:
        self.service = service
        self.state_dir = service.config.state_dir
        self.info: dict[str, Any] = {}

    def publish(self) -> None:
        """Write the file at READY: pid, API address, config path and the digest of the file it loaded."""
        service = self.service
        path = service.config_path
        self.info = {
            "pid": os.getpid(), "api_url": service.api_url, "listen": service.config.api.listen,
            "config": str(path) if path else None, "config_sha256": runtime_file.file_digest(path),
            "state_dir": str(self.state_dir), "started": time.time(), "version": _version(),
            "http_listen": self._http_listen(),
        }
        self._write()
        self._register()

    def on_reload(self, outcome: dict[str, Any]) -> None:
        """Record a reload: an applied one moves the digest; a rejected one says why the file is not running."""
        if outcome.get("result") == "applied":
            self.info["config_sha256"] = outcome.get("config_sha256")
            self.info["http_listen"] = self._http_listen()
        self.info["reload"] = {**outcome, "at": time.time()}
        if "pid" in self.info:
            self._write()

    def _http_listen(self) -> list[list[Any]]:
        """The addresses the http sources listen on, [host, port] each: ``check`` beside this daemon knows
        them as this daemon's, not as taken by another program (a reload keeps its listeners)."""
        hub = self.service.extensions.get(HUB)
        return [[host, port] for host, port in hub.addresses()] if hub is not None else []

    def withdraw(self) -> None:
        """Remove the file and the index entry (at stop): the CLI then no longer sends work here."""
        with contextlib.suppress(OSError):
            runtime_file.remove(self.state_dir, os.getpid())
        if self.service.config_path:
            runtime_index.unregister(self.service.config_path, os.getpid())

    def _register(self) -> None:
        """The index entry: how the CLI finds this daemon while its config file does not parse."""
        path = self.service.config_path
        if not path:
            return
        try:
            runtime_index.register(path, self.state_dir, os.getpid())
        except OSError as err:  # the CLI then finds this daemon only while the file parses
            get_logger().warning("runtime_file.unindexed", config=str(path), error=str(err),
                                 places=[str(p) for p in runtime_index.index_dirs(writing=True)])

    def _write(self) -> None:
        try:
            runtime_file.write(self.state_dir, self.info)
        except OSError as err:  # the daemon works without it; the CLI then falls back to api.listen
            get_logger().warning("runtime_file.unwritable", path=str(runtime_file.runtime_path(self.state_dir)),
                                 error=str(err))


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lambda-bridge")
    except PackageNotFoundError:
        return "unknown"


def check_listen(config: Config) -> None:
    """Fail with one clear line when ``api.listen`` cannot be bound (in use, not a local address)."""
    if config.api.address is None:
        return
    host, port = config.api.address
    try:
        with socket.create_server((host, port)):  # SO_REUSEADDR, as aiohttp binds it
            pass
    except OSError as err:
        raise listen_error(config.api.listen or "", err) from None


def listen_error(listen: str, err: OSError) -> ListenError:
    """The error a user reads for an address the API cannot listen on."""
    hints = {errno.EADDRINUSE: "another process listens there: stop it, or change api.listen",
             errno.EADDRNOTAVAIL: "it is not an address of this machine: change api.listen",
             errno.EACCES: "ports below 1024 need privileges: change api.listen"}
    reason = os.strerror(err.errno) if err.errno else str(err)
    return ListenError(f"api.listen: cannot listen on {listen}: {reason.lower()}; "
                       f"{hints.get(err.errno or 0, 'change api.listen')}")
