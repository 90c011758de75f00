"""``lambda-bridge run``: the daemon in the foreground, with start-up failures as one line and exit 2."""

from __future__ import annotations

import asyncio
import errno
import os
from pathlib import Path

import click

from bridge import log
from bridge.cli.context import State, global_options, pass_state
from bridge.errors import BridgeError, UsageError

LISTEN_ERRNOS = (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES)


@click.command("run", short_help='run the daemon in the foreground')
@global_options
@pass_state
def run(state: State) -> int:
    """Run the daemon until SIGTERM/SIGINT (SIGHUP or a saved config file reloads it).

    Logs go to stdout as JSON lines (console lines on a terminal); under systemd the journal keeps them.
    """
    from bridge.daemon.lifecycle import run_until_signalled
    from bridge.invokers.nodejs_build import build_missing

    config = state.config()
    log.configure(_log_level(config.log_level))
    builds = log.get_logger()
    build_missing(config, progress=lambda line: builds.info("build.progress", line=line))  # Node.js runtimes
    try:
        asyncio.run(run_until_signalled(config, Path(state.config_path).resolve()))
    except BaseExceptionGroup as group:
        raise _start_error(group, config.api.listen) or group from None
    return 0


LOG_LEVEL_ENV = "LAMBDA_BRIDGE_LOG_LEVEL"


def _log_level(configured: str) -> str:
    """``LAMBDA_BRIDGE_LOG_LEVEL`` overrides ``log_level`` (e.g. debug for one run, without editing the file)."""
    wanted = os.environ.get(LOG_LEVEL_ENV, "").strip().lower() or configured
    if wanted not in log.LEVELS:
        raise UsageError(f"{LOG_LEVEL_ENV}={wanted!r}: expected one of: {', '.join(log.LEVELS)}")
    return wanted


def _start_error(group: BaseExceptionGroup, listen: str | None) -> BridgeError | None:
    """The one error a user must read, when the task groups wrapped it (a bridge error, or the API's bind)."""
    from bridge.daemon.runtime import listen_error

    bridge_errors, _ = group.split(BridgeError)
    if bridge_errors is not None:
        return _leaves(bridge_errors)[0]  # type: ignore[return-value]
    bind, _ = group.split(lambda e: isinstance(e, OSError) and e.errno in LISTEN_ERRNOS)
    if bind is not None and listen:
        return listen_error(listen, _leaves(bind)[0])  # type: ignore[arg-type]
    return None


def _leaves(group: BaseExceptionGroup) -> list[BaseException]:
    found: list[BaseException] = []
    for err in group.exceptions:
        found += _leaves(err) if isinstance(err, BaseExceptionGroup) else [err]
    return found


COMMANDS = (run,)
