"""``lambda-bridge invoke``: one invocation, like ``aws lambda invoke``, through the daemon when it runs."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click

from bridge.cli.context import State, global_options, pass_state
from bridge.errors import UsageError

INVOCATION_TYPES = ("RequestResponse", "Event", "DryRun")


@click.command("invoke", short_help='invoke a function, like `aws lambda invoke`')
@click.argument("function")
@click.option("--payload", metavar="JSON", help="the event as JSON text (default: {})")
@click.option("--payload-file", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path), metavar="FILE",
              help="read the event from this file ('-' = stdin)")
@click.option("--invocation-type", type=click.Choice(INVOCATION_TYPES), default="RequestResponse", show_default=True,
              help="RequestResponse waits for the result; Event queues it (202); DryRun only checks")
@click.option("--log-type", type=click.Choice(("None", "Tail")), default="None", show_default=True,
              help="Tail: print the last 4 KB of the function's log to stderr")
@global_options
@pass_state
def invoke(state: State, function: str, payload: str | None, payload_file: Path | None, invocation_type: str,
           log_type: str) -> int:
    """Invoke FUNCTION (a name under functions: in the config) and print its response on stdout.

    Goes through the running daemon's API when one runs; otherwise runs the function in this process
    (Event: queues it for the daemon's next start) and says so on stderr. Exit 1 on a function error.
    """
    from bridge.cli.client import invoke_command

    if payload is not None and payload_file is not None:
        raise UsageError("give --payload or --payload-file, not both")
    body = _read_payload(payload, payload_file)
    return asyncio.run(invoke_command(state, function, body, invocation_type, log_type == "Tail"))


def _read_payload(payload: str | None, payload_file: Path | None) -> bytes:
    if payload_file is not None:
        if str(payload_file) == "-":
            return sys.stdin.buffer.read()
        try:
            return payload_file.read_bytes()
        except OSError as err:
            raise UsageError(f"--payload-file {payload_file}: {err.strerror}") from None
    return (payload if payload is not None else "{}").encode()


COMMANDS = (invoke,)
