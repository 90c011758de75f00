"""The ``sam-import`` command: a SAM template -> a commented lambda-bridge config (logic in bridge.sam)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bridge.errors import UsageError


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add ``sam-import``."""
    cmd = sub.add_parser("sam-import", help="turn an AWS SAM template's functions and event sources into a config")
    cmd.add_argument("template", type=Path, help="the SAM template (YAML or JSON)")
    cmd.add_argument("-o", "--output", type=Path, help="write the config here (default: stdout)")
    cmd.add_argument("--parameter-overrides", nargs="+", action="extend", default=[], metavar="NAME=VALUE",
                     help="template parameter values, as for `sam deploy`")
    cmd.add_argument("--map", action="append", default=[], metavar="WHAT=WHERE",
                     help="bucket:LOGICAL_ID=DIR | queue:LOGICAL_ID=QUEUE_URL | broker=mqtt://HOST:PORT | "
                     "api:LOGICAL_ID=HOST:PORT (repeatable)")
    cmd.add_argument("--listen", default="127.0.0.1:9001", metavar="HOST:PORT",
                     help="api.listen of the config: Invoke API and the embedded queues (default %(default)s)")
    cmd.add_argument("--strict", action="store_true", help="exit 2 (and write nothing) if anything is not mapped")
    cmd.set_defaults(handler=cmd_sam_import)


def cmd_sam_import(args: argparse.Namespace) -> int:
    """Import, print what was not mapped on stderr, write the config; exit 2 on errors (or gaps with --strict)."""
    from bridge.sam import import_template, parse_maps
    from bridge.sam.importer import parse_overrides

    maps = parse_maps(args.map)
    result = import_template(args.template, output=args.output, overrides=parse_overrides(args.parameter_overrides),
                             maps=maps, listen=args.listen)
    for item in result.unmapped:
        print(f"sam-import: not mapped: {item}", file=sys.stderr)
    if args.strict and result.unmapped:
        print(f"sam-import: {len(result.unmapped)} item(s) not mapped; nothing written (--strict)", file=sys.stderr)
        return 2
    for path in maps.buckets.values():
        path.mkdir(parents=True, exist_ok=True)  # the folder stands in for the bucket; the config needs it
    if args.output is None:
        sys.stdout.write(result.text)
        return 0
    try:
        args.output.write_text(result.text)
    except OSError as err:
        raise UsageError(f"-o {args.output}: {err.strerror}") from None
    print(f"{args.output}: {len(result.functions)} function(s), {result.sources} source(s); "
          f"check it with: lambda-bridge check --config {args.output}", file=sys.stderr)
    return 0
