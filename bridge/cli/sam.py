"""The ``sam-import`` command: a SAM template -> a commented lambda-bridge config (logic in bridge.sam)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from bridge.cli.context import global_options
from bridge.errors import UsageError


@click.command("sam-import", short_help="turn a SAM template's functions and event sources into a config")
@click.argument("template", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), metavar="FILE",
              help="write the config here (default: stdout)")
@click.option("--parameter-overrides", multiple=True, metavar="'NAME=VALUE ...'",
              help="template parameter values, as for `sam deploy` (several pairs per value, repeatable)")
@click.option("--map", "maps", multiple=True, metavar="WHAT=WHERE",
              help="bucket:LOGICAL_ID=DIR | queue:LOGICAL_ID=QUEUE_URL | broker=mqtt://HOST:PORT | "
                   "api:LOGICAL_ID=HOST:PORT | code:FUNCTION_ID=DIR (repeatable)")
@click.option("--listen", default="127.0.0.1:9001", show_default=True, metavar="HOST:PORT",
              help="api.listen of the config: Invoke API and the embedded queues")
@click.option("--strict", is_flag=True, help="exit 2 (and write nothing) if anything is not mapped")
@global_options
def sam_import(template: Path, output: Path | None, parameter_overrides: tuple[str, ...], maps: tuple[str, ...],
               listen: str, strict: bool) -> int:
    """Turn the AWS SAM template TEMPLATE (YAML or JSON) into a commented lambda-bridge config.

    What cannot be mapped is listed on stderr; exit 2 on errors (or on gaps with --strict).
    """
    from bridge.sam import import_template, parse_maps
    from bridge.sam.importer import parse_overrides

    mapped = parse_maps(list(maps))
    result = import_template(template, output=output, overrides=parse_overrides(list(parameter_overrides)),
                             maps=mapped, listen=listen)
    for item in result.unmapped:
        print(f"sam-import: not mapped: {item}", file=sys.stderr)
    if strict and result.unmapped:
        print(f"sam-import: {len(result.unmapped)} item(s) not mapped; nothing written (--strict)", file=sys.stderr)
        return 2
    for path in mapped.buckets.values():
        path.mkdir(parents=True, exist_ok=True)  # the folder stands in for the bucket; the config needs it
    if output is None:
        sys.stdout.write(result.text)
        return 0
    try:
        output.write_text(result.text)
    except OSError as err:
        raise UsageError(f"-o {output}: {err.strerror}") from None
    print(f"{output}: {len(result.functions)} function(s), {result.sources} source(s); "
          f"check it with: lambda-bridge check --config {output}", file=sys.stderr)
    return 0


COMMANDS = (sam_import,)
