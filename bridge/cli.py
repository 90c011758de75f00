"""The ``lambda-bridge`` command: the only place that prints for humans or exits."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from bridge import log
from bridge.config import Config, load_config
from bridge.errors import BridgeError, ConfigError, UsageError

INVOCATION_TYPES = ("RequestResponse", "Event", "DryRun")


def default_config_path() -> str:
    """``$LAMBDA_BRIDGE_CONFIG``, else ``/etc/lambda-bridge/config.yaml`` if present, else config/example.yaml."""
    if os.environ.get("LAMBDA_BRIDGE_CONFIG"):
        return os.environ["LAMBDA_BRIDGE_CONFIG"]
    system = Path("/etc/lambda-bridge/config.yaml")
    return str(system) if system.exists() else "config/example.yaml"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="lambda-bridge", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", "-c", default=None, help="config file (default: %(default)s → "
                        "$LAMBDA_BRIDGE_CONFIG, /etc/lambda-bridge/config.yaml, config/example.yaml)")
    sub.add_parser("check", parents=[common], help="validate the config file and explain every mistake")
    sub.add_parser("run", parents=[common], help="run the daemon in the foreground")
    inv = sub.add_parser("invoke", parents=[common], help="invoke a function, like `aws lambda invoke`")
    inv.add_argument("function")
    payload = inv.add_mutually_exclusive_group()
    payload.add_argument("--payload", help="the event as JSON text")
    payload.add_argument("--payload-file", type=Path, help="read the event from this file ('-' = stdin)")
    inv.add_argument("--invocation-type", choices=INVOCATION_TYPES, default="RequestResponse")
    inv.add_argument("--log-type", choices=("None", "Tail"), default="None",
                     help="Tail: print the last 4 KB of the function's log to stderr")
    _dlq_parser(sub, common)
    return parser


def _dlq_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    dlq = sub.add_parser("dlq", help="inspect, redrive and purge the dead-letter store")
    actions = dlq.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", parents=[common], help="entries not yet redriven")
    listing.add_argument("--function")
    listing.add_argument("--json", action="store_true", help="a JSON array instead of a table")
    show = actions.add_parser("show", parents=[common], help="one entry's full AWS invocation record")
    show.add_argument("id")
    for name, text in (("redrive", "queue the original events again"), ("purge", "delete entries for good")):
        action = actions.add_parser(name, parents=[common], help=text)
        action.add_argument("ids", nargs="*", metavar="ID")
        action.add_argument("--all", action="store_true")
        action.add_argument("--function")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except ConfigError as err:
        print(err.render(), file=sys.stderr)
        return err.exit_code
    except BridgeError as err:
        print(f"lambda-bridge: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        return 130


def _load(args: argparse.Namespace) -> Config:
    return load_config(args.config or default_config_path())


def cmd_check(args: argparse.Namespace) -> int:
    """Validate the config; exit 0 when valid, 2 with every error listed when not."""
    config = _load(args)
    path = args.config or default_config_path()
    print(f"{path}: OK ({len(config.functions)} function(s), state_dir {config.state_dir})")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Run the daemon until SIGTERM/SIGINT."""
    from bridge.service import run_until_signalled

    config = _load(args)
    log.configure(config.log_level)
    asyncio.run(run_until_signalled(config))
    return 0


def cmd_invoke(args: argparse.Namespace) -> int:
    """Invoke through the running daemon when it listens, else run the function in this process."""
    from bridge.client import invoke_command

    config = _load(args)
    log.configure("warning", sys.stderr)
    return asyncio.run(invoke_command(config, args.function, _read_payload(args), args.invocation_type,
                                      args.log_type == "Tail"))


def _read_payload(args: argparse.Namespace) -> bytes:
    if args.payload_file is not None:
        if str(args.payload_file) == "-":
            return sys.stdin.buffer.read()
        try:
            return args.payload_file.read_bytes()
        except OSError as err:
            raise UsageError(f"--payload-file {args.payload_file}: {err.strerror}") from None
    return (args.payload if args.payload is not None else "{}").encode()


def cmd_dlq(args: argparse.Namespace) -> int:
    """``dlq list|show|redrive|purge`` straight on the store file (the daemon may be running)."""
    from bridge import cli_dlq

    return cli_dlq.run(_load(args), args)


COMMANDS = {"check": cmd_check, "run": cmd_run, "invoke": cmd_invoke, "dlq": cmd_dlq}

if __name__ == "__main__":
    sys.exit(main())
