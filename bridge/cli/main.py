"""The ``lambda-bridge`` command: the only place that prints for humans or exits."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from bridge import log
from bridge.config.model import Config, load_config
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
    parser = argparse.ArgumentParser(prog="lambda-bridge", description="Local origins (directories, queues, "
                                     "schedules, MQTT) invoke functions with AWS Lambda's events and semantics.")
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
    for module in _command_modules():
        module.register(sub, common)
    return parser


# Each feature's commands live in their own module with ``register(subparsers, common_parent)``; the
# subparsers it adds set ``handler`` (a callable taking the parsed args and returning an exit code).
COMMAND_MODULES = ("bridge.cli.dlq", "bridge.cli.schedules", "bridge.cli.queue", "bridge.cli.ops", "bridge.cli.sam",
                   "bridge.cli.cluster")


def _command_modules() -> list[object]:
    import importlib

    modules = []
    for name in COMMAND_MODULES:
        try:
            modules.append(importlib.import_module(name))
        except ModuleNotFoundError as err:
            if err.name != name:  # a real import error inside the module must not be hidden
                raise
    return modules


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    args = build_parser().parse_args(argv)
    try:
        handler = getattr(args, "handler", None) or COMMANDS[args.command]
        return handler(args)
    except ConfigError as err:
        print(err.render(), file=sys.stderr)
        return err.exit_code
    except BridgeError as err:
        print(f"lambda-bridge: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        return 130


def load(args: argparse.Namespace) -> Config:
    """The config named by ``--config`` (or the default path), validated."""
    return _load(args)


def _load(args: argparse.Namespace) -> Config:
    return load_config(args.config or default_config_path())


def cmd_check(args: argparse.Namespace) -> int:
    """Validate the config; exit 0 when valid, 2 with every error listed when not."""
    config = _load(args)
    path = args.config or default_config_path()
    print(f"{path}: OK ({len(config.functions)} function(s), {len(config.sources)} source(s), "
          f"{len(config.queues)} queue(s), state_dir {config.state_dir})")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Run the daemon until SIGTERM/SIGINT."""
    from bridge.daemon.lifecycle import run_until_signalled

    config = _load(args)
    log.configure(_log_level(config.log_level))
    asyncio.run(run_until_signalled(config, Path(args.config or default_config_path()).resolve()))
    return 0


def _log_level(configured: str) -> str:
    """``LAMBDA_BRIDGE_LOG_LEVEL`` overrides ``log_level`` (e.g. debug for one run, without editing the file)."""
    wanted = os.environ.get(LOG_LEVEL_ENV, "").strip().lower() or configured
    if wanted not in log.LEVELS:
        raise UsageError(f"{LOG_LEVEL_ENV}={wanted!r}: expected one of: {', '.join(log.LEVELS)}")
    return wanted


LOG_LEVEL_ENV = "LAMBDA_BRIDGE_LOG_LEVEL"


def cmd_invoke(args: argparse.Namespace) -> int:
    """Invoke through the running daemon when it listens, else run the function in this process."""
    from bridge.cli.client import invoke_command

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


COMMANDS = {"check": cmd_check, "run": cmd_run, "invoke": cmd_invoke}
