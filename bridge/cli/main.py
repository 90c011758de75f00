"""The ``lambda-bridge`` command: the root group, its global options, and how errors become exit codes."""

from __future__ import annotations

import importlib
import sys

import click

from bridge import log
from bridge.cli.context import State, global_options
from bridge.errors import BridgeError, ConfigError

# Each module lists its click commands (or groups) in ``COMMANDS``; adding a command is adding its module
# here. A module that is not installed is skipped; an import error inside one is not hidden.
COMMAND_MODULES = ("bridge.cli.check", "bridge.cli.run", "bridge.cli.invoke", "bridge.cli.ops", "bridge.cli.dlq",
                   "bridge.cli.queue", "bridge.cli.schedules", "bridge.cli.generate", "bridge.cli.sam",
                   "bridge.cli.cluster", "bridge.cli.build")

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 110}


@click.group(context_settings=CONTEXT)
@click.version_option(package_name="lambda-bridge", prog_name="lambda-bridge", message="%(prog)s %(version)s")
@global_options
def cli() -> None:
    """Local origins (directories, queues, schedules, MQTT) invoke functions with AWS Lambda's events and
    semantics.

    Global options (--config, --json) go before or after the command.
    """
    # Only `run` logs to stdout (the journal); every other command keeps stdout for its output.
    log.configure("warning", sys.stderr)


def _add_commands(group: click.Group) -> None:
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name != name:  # a real import error inside the module must not be hidden
                raise
            continue
        for command in module.COMMANDS:
            group.add_command(command)


_add_commands(cli)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    try:
        result = cli.main(args=argv, prog_name="lambda-bridge", standalone_mode=False, obj=State())
    except click.ClickException as err:
        err.show()
        return err.exit_code
    except click.exceptions.Abort:
        return 130
    except ConfigError as err:
        click.echo(err.render(), err=True)
        return err.exit_code
    except BridgeError as err:
        click.echo(f"lambda-bridge: {err}", err=True)
        return err.exit_code
    except KeyboardInterrupt:
        return 130
    return result if isinstance(result, int) else 0  # a command returns its exit code; --help returns None
