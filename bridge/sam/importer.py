"""``sam-import``: template + overrides + maps -> the config text and the list of what could not be mapped."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bridge.config.model import parse_listen
from bridge.errors import SamTemplateError, UsageError
from bridge.sam.buckets import local_buckets
from bridge.sam.dependencies import check_no_circle
from bridge.sam.draft import Draft, Mapping, Unmapped
from bridge.sam.events import map_events
from bridge.sam.functions import FUNCTION_TYPE, function_properties, map_function, runtime_of
from bridge.sam.intrinsics import Resolver
from bridge.sam.render import render
from bridge.sam.template import Template, load_template

DEFAULT_LISTEN = "127.0.0.1:9001"
NOT_IMPORTED = {
    "AWS::Lambda::Function": "only AWS::Serverless::Function is imported; add it to functions: by hand",
    "AWS::Lambda::EventSourceMapping": "declare the event under the function's Events, or add a source by hand",
}


@dataclass(frozen=True)
class ImportResult:
    """The config text and what was left out (each with the template path and the fix)."""

    text: str
    unmapped: list[Unmapped]
    functions: list[str]
    sources: int


MAP_FORMS = ("bucket:LOGICAL_ID=DIR, bucket:NAME=DIR, queue:LOGICAL_ID=http(s)://QUEUE_URL, "
             "broker=mqtt://HOST:PORT, api:LOGICAL_ID=HOST:PORT, loggroup:NAME=FILE|journal:UNIT "
             "or code:FUNCTION_ID=DIR")


def parse_maps(items: list[str]) -> Mapping:
    """``bucket:ID=DIR``, ``queue:ID=URL``, ``broker=URL``, ``api:ID=HOST:PORT``, ``code:ID=DIR`` -> a Mapping."""
    buckets: dict[str, Path] = {}
    queues: dict[str, str] = {}
    apis: dict[str, str] = {}
    code: dict[str, Path] = {}
    broker = None
    log_groups: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        kind, _, name = key.partition(":")
        if not sep or not value:
            raise UsageError(f"--map {item!r}: expected {MAP_FORMS}")
        if kind == "bucket" and name:
            buckets[name] = Path(value).expanduser()
        elif kind == "code" and name:
            code[name] = Path(value).expanduser().resolve()
        elif kind == "queue" and name and value.startswith(("http://", "https://")):
            queues[name] = value
        elif kind == "broker" and not name and value.startswith(("mqtt://", "mqtts://")):
            broker = value
        elif kind == "api" and name and value.rpartition(":")[2].isdigit():
            apis[name] = value
        elif kind == "loggroup" and name:
            log_groups[name] = value
        else:
            raise UsageError(f"--map {item!r}: expected {MAP_FORMS}")
    return Mapping(buckets, queues, broker, apis, log_groups, code=code)


def parse_overrides(items: list[str]) -> dict[str, str]:
    """``K=V`` pairs (as ``sam deploy --parameter-overrides`` takes them; ``ParameterKey=K,ParameterValue=V`` too)."""
    out: dict[str, str] = {}
    # Like sam deploy, one argument may hold several pairs: "Stage=dev Name='a b'".
    for item in (word for text in items for word in _words(text)):
        if item.startswith("ParameterKey="):
            key_part, _, value_part = item.partition(",")
            item = f"{key_part.removeprefix('ParameterKey=')}={value_part.removeprefix('ParameterValue=')}"
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--parameter-overrides {item!r}: expected NAME=VALUE")
        out[key] = value
    return out


def _words(text: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError as err:
        raise UsageError(f"--parameter-overrides {text!r}: {err}; close the quote") from None


def parameter_values(template: Template, overrides: dict[str, str]) -> dict[str, Any]:
    """Each parameter's value: the override, else the Default; unknown names and gaps name the line."""
    declared = template.data.get("Parameters") or {}
    for name in overrides:
        if name not in declared:
            raise SamTemplateError(f"{template.where(('Parameters',)) if declared else f'{template.path}:1'}: "
                                   f"--parameter-overrides names {name!r}, which the template does not declare; "
                                   f"declared: {', '.join(declared) or '(none)'}")
    values: dict[str, Any] = {}
    for name, spec in declared.items():
        spec = spec if isinstance(spec, dict) else {}
        if name not in overrides and "Default" not in spec:
            raise SamTemplateError(f"{template.where(('Parameters', name))}: parameter {name} has no Default; "
                                   f"give --parameter-overrides {name}=VALUE")
        value = overrides.get(name, spec.get("Default"))
        allowed = spec.get("AllowedValues")
        if allowed and str(value) not in [str(a) for a in allowed]:
            raise SamTemplateError(f"{template.where(('Parameters', name))}: {name}={value!r} is not one of "
                                   f"{', '.join(map(str, allowed))}")
        values[name] = _typed(spec.get("Type", "String"), value)
    return values


def _typed(kind: str, value: Any) -> Any:
    if "List" in str(kind) and isinstance(value, str):
        return [v.strip() for v in value.split(",")]
    return value if isinstance(value, list) else str(value)


def import_template(template_path: str | Path, *, output: str | Path | None = None,
                    overrides: dict[str, str] | None = None, maps: Mapping | None = None,
                    region: str = "us-east-1", account_id: str = "123456789012",
                    listen: str = DEFAULT_LISTEN) -> ImportResult:
    """Read a SAM template and build the lambda-bridge config for it (not written; the caller does that)."""
    try:
        parse_listen(listen)
    except ValueError as err:
        raise UsageError(f"--listen: {err}") from None
    template = load_template(template_path)
    check_no_circle(template)
    maps = maps or Mapping()
    output_dir = Path(output).resolve().parent if output else Path.cwd()
    draft = _draft(template, parameter_values(template, overrides or {}), maps, output_dir, region,
                   account_id, listen)
    _map_all(draft)
    _check_unused_queue_maps(draft)
    settings: dict[str, Any] = {"region": region, "account_id": account_id, "state_dir": "var/state",
                                "api": {"listen": listen}}
    if buckets := local_buckets(draft):
        settings["buckets"] = buckets
    text = render(draft, _header(template, overrides or {}), settings)
    return ImportResult(text, draft.unmapped, list(draft.functions), len(draft.sources))


def _draft(template: Template, parameters: dict[str, Any], maps: Mapping, output_dir: Path, region: str,
           account_id: str, listen: str) -> Draft:
    def queue_url(logical_id: str, name: str) -> str:
        return maps.queues.get(logical_id) or f"http://{listen}/{account_id}/{name}"

    stack = template.path.resolve().parent.name or "sam-app"
    resolver = Resolver(template, parameters, region=region, account_id=account_id, stack_name=stack,
                        queue_url=queue_url)
    return Draft(template, resolver, maps, output_dir, listen)


def _map_all(draft: Draft) -> None:
    _check_code_maps(draft.template, draft.maps)
    functions, skipped = [], []
    for logical_id, resource in draft.template.resources.items():
        if resource.get("Type") in NOT_IMPORTED:
            draft.report(("Resources", logical_id), f"{resource['Type']} resources are not imported",
                         NOT_IMPORTED[resource["Type"]])
            skipped.append(str(draft.unmapped[-1]))
        if resource.get("Type") != FUNCTION_TYPE:
            continue
        reported = len(draft.unmapped)
        with draft.malformed_at(("Resources", logical_id)):
            runtime, props = _function_runtime(draft, logical_id, resource)
        if runtime is not None:
            functions.append((logical_id, props, runtime))
            draft.importable.add(logical_id)
        else:
            skipped += [str(item) for item in draft.unmapped[reported:]] or [
                f"{draft.template.where(('Resources', logical_id, 'Condition'))}: function {logical_id} is not "
                f"created (its Condition is false); give --parameter-overrides that make it true"]
    for logical_id, props, runtime in functions:  # all names known first: destinations may name any of them
        with draft.malformed_at(("Resources", logical_id, "Properties")):
            draft.functions[logical_id] = map_function(draft, logical_id, props, runtime)
        map_events(draft, logical_id)
    if not functions:
        raise SamTemplateError(_nothing_to_import(draft.template, skipped))


def _nothing_to_import(template: Template, skipped: list[str]) -> str:
    """Name every function left out (its runtime, condition or type) and what to do about each."""
    where = template.where(("Resources",))
    if not skipped:
        return f"{where}: no AWS::Serverless::Function in the template; nothing to import"
    return (f"{where}: no AWS::Serverless::Function this bridge can run; nothing to import. Skipped:\n"
            + "\n".join(f"  {item}" for item in skipped))


def _function_runtime(draft: Draft, logical_id: str, resource: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """The function's runtime and resolved properties; (None, {}) when its Condition is false or its runtime foreign
    (reported)."""
    condition = resource.get("Condition")
    if condition and not draft.resolver.condition(condition, ("Resources", logical_id, "Condition")):
        return None, {}  # CloudFormation would not create it either: not a gap, so not reported
    props = function_properties(draft, logical_id)
    return runtime_of(draft, logical_id, props), props


def _check_code_maps(template: Template, maps: Mapping) -> None:
    functions = [k for k, r in template.resources.items() if r.get("Type") == FUNCTION_TYPE]
    for name in maps.code:
        if name not in functions:
            raise SamTemplateError(f"{template.where(('Resources',))}: --map code:{name}: the template has no "
                                   f"{FUNCTION_TYPE} {name!r}; it has: {', '.join(functions) or '(none)'}")


def _check_unused_queue_maps(draft: Draft) -> None:
    for name in draft.maps.queues:
        if f"queue:{name}" not in draft.used_maps:
            raise SamTemplateError(f"{draft.template.where(('Resources',))}: --map queue:{name}: no SQS event or "
                                   "destination of this template uses that queue; give its logical id or ARN")


def _header(template: Template, overrides: dict[str, str]) -> list[str]:
    lines = [f"lambda-bridge config imported from the SAM template {template.path}",
             "by `lambda-bridge sam-import`. Check it with `lambda-bridge check --config THIS_FILE`;",
             "edit it freely (re-running the import overwrites it). The mapping is explained in docs/sam.md."]
    if overrides:
        lines.append("Parameter overrides: " + " ".join(f"{k}={v}" for k, v in overrides.items()))
    return lines
