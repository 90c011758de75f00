"""AWS::Serverless::Function properties (after Globals) -> a local function of the config."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from bridge.config.model import HANDLER, RESERVED_ENV
from bridge.errors import SamTemplateError
from bridge.sam.draft import Draft, Entry
from bridge.sam.intrinsics import Unresolved, find_unresolved
from bridge.sam.template import Path_

FUNCTION_TYPE = "AWS::Serverless::Function"
# Globals.Function keys whose values are merged as maps with the function's own (the function wins).
MERGED_GLOBALS = ("Environment",)
PREPENDED_GLOBALS = ("Layers",)  # lists: SAM puts the global entries first


def function_properties(draft: Draft, logical_id: str) -> dict[str, Any]:
    """The function's properties with ``Globals.Function`` applied, intrinsics resolved."""
    globals_ = ((draft.template.data.get("Globals") or {}).get("Function")) or {}
    own = draft.template.resources[logical_id].get("Properties") or {}
    merged = {**globals_, **own}
    for key in MERGED_GLOBALS:
        if isinstance(globals_.get(key), dict) and isinstance(own.get(key), dict):
            merged[key] = _deep_merge(globals_[key], own[key])
    for key in PREPENDED_GLOBALS:
        if isinstance(globals_.get(key), list) and isinstance(own.get(key), list):
            merged[key] = [*globals_[key], *own[key]]
    path = ("Resources", logical_id, "Properties")
    return {key: draft.resolver.resolve(value, (*path, key)) for key, value in merged.items()
            if key != "Events"}


def _deep_merge(base: dict[str, Any], own: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in own.items():
        out[key] = _deep_merge(base[key], value) if isinstance(base.get(key), dict) and isinstance(value, dict) \
            else value
    return out


def runtime_of(draft: Draft, logical_id: str, props: dict[str, Any]) -> str | None:
    """``python`` or ``provided``; None (reported) for a runtime the bridge cannot run."""
    path = ("Resources", logical_id, "Properties", "Runtime")
    runtime = props.get("Runtime")
    if props.get("PackageType") == "Image":
        draft.report(path[:-1], "container-image functions are not run locally",
                     "give the function's ARN in functions: to invoke it remotely, or package it as a zip")
        return None
    if isinstance(runtime, str) and re.fullmatch(r"python3\.\d+", runtime):
        return runtime  # that interpreter when installed here, else the daemon's (check warns)
    if isinstance(runtime, str) and runtime.startswith("provided"):
        return "provided"
    draft.report(path, f"runtime {runtime!r} is not supported locally (python3.x and provided* are)",
                 "the function and its events are skipped; run it elsewhere and add it by ARN (docs/remote.md)")
    return None


def map_function(draft: Draft, logical_id: str, props: dict[str, Any], runtime: str) -> Entry:
    """The ``functions.<id>`` entry; a missing or absent CodeUri is an error naming its line."""
    path: Path_ = ("Resources", logical_id, "Properties")
    value: dict[str, Any] = {"handler": _handler(draft, logical_id, props, runtime),
                             "code": draft.relative(_code_dir(draft, logical_id, props)), "runtime": runtime}
    for key, target, low, high in (("Timeout", "timeout", 1, 900), ("MemorySize", "memory_size", 128, 10240),
                                   ("ReservedConcurrentExecutions", "reserved_concurrency", 0, 1000)):
        number = _number(draft, (*path, key), props.get(key), low, high)
        if number is not None:
            value[target] = number
    environment = _environment(draft, path, props.get("Environment"))
    if environment:
        value["environment"] = environment
    if props.get("Layers"):
        from bridge.sam.layers import map_layers

        layers = map_layers(draft, logical_id, props["Layers"])
        if layers:
            value["layers"] = layers
    if isinstance(props.get("FunctionUrlConfig"), dict):
        from bridge.sam.http import map_function_url

        map_function_url(draft, logical_id, props["FunctionUrlConfig"])
    settings = async_settings(draft, logical_id, props)
    if settings:
        value["async"] = settings
    return Entry(value, [draft.origin(("Resources", logical_id))])


def _handler(draft: Draft, logical_id: str, props: dict[str, Any], runtime: str) -> str:
    handler = props.get("Handler")
    if isinstance(handler, str) and HANDLER.match(handler):
        return handler
    if runtime == "provided":  # a custom runtime reads _HANDLER itself: Lambda accepts any string
        return handler if isinstance(handler, str) and handler.strip() else "bootstrap"
    raise SamTemplateError(f"{draft.template.where(('Resources', logical_id, 'Properties', 'Handler'))}: "
                           f"Handler {handler!r} is not module.function (e.g. app.lambda_handler); fix it")


def _code_dir(draft: Draft, logical_id: str, props: dict[str, Any]) -> Path:
    path = ("Resources", logical_id, "Properties", "CodeUri")
    if logical_id in draft.maps.code:  # --map code:ID=DIR: the user's own choice, anywhere
        return _folder(draft, path, draft.maps.code[logical_id], f"--map code:{logical_id}")
    code_uri = props.get("CodeUri")
    if code_uri is None:
        where = draft.template.where(path[:-1])
        fix = "add CodeUri: ./src (the folder of your handler)" if "InlineCode" not in props else \
            "move InlineCode into a folder and point CodeUri at it"
        raise SamTemplateError(f"{where}: function {logical_id} has no CodeUri (in Globals or its Properties); {fix}")
    if not isinstance(code_uri, str) or code_uri.startswith("s3://"):
        raise SamTemplateError(f"{draft.template.where(path)}: CodeUri {code_uri} is not a local folder; point it "
                               "at the folder of your handler (relative to the template)")
    root = draft.template.path.parent.resolve()
    directory = (root / code_uri).resolve()  # symbolic links followed: where the worker would really run
    if not directory.is_relative_to(root):
        raise SamTemplateError(f"{draft.template.where(path)}: CodeUri {code_uri!r} -> {directory} is outside the "
                               f"template's folder {root}; a template may only point into its own folder. If that "
                               f"code is what you mean, say so: --map code:{logical_id}={directory}")
    return _folder(draft, path, directory, f"CodeUri {code_uri!r}")


def _folder(draft: Draft, path: Path_, directory: Path, given: str) -> Path:
    if not directory.is_dir():
        raise SamTemplateError(f"{draft.template.where(path)}: {given} -> {directory} is not a folder; fix the path "
                               "(CodeUri is relative to the template)")
    return directory


def _number(draft: Draft, path: Path_, raw: Any, low: int, high: int) -> int | None:
    if raw is None:
        return None
    try:
        number = int(str(raw))
    except ValueError:
        raise SamTemplateError(f"{draft.template.where(path)}: {raw!r} is not a whole number") from None
    if not low <= number <= high:
        raise SamTemplateError(f"{draft.template.where(path)}: {number} is outside {low}-{high}")
    return number


def _environment(draft: Draft, path: Path_, raw: Any) -> dict[str, str]:
    variables = (raw or {}).get("Variables") if isinstance(raw, dict) else None
    out: dict[str, str] = {}
    for key, item in (variables or {}).items():
        where = (*path, "Environment", "Variables", key)
        if find_unresolved(item) is not None:
            draft.report(where, f"{find_unresolved(item).reason} has no local value",  # type: ignore[union-attr]
                         f"set {key} under the function's environment: in the config")
        elif key in RESERVED_ENV:
            draft.report(where, f"{key} is reserved (Lambda sets it)", "rename the variable")
        else:
            out[key] = ("true" if item else "false") if isinstance(item, bool) else str(item)
    return out


def async_settings(draft: Draft, logical_id: str, props: dict[str, Any]) -> dict[str, Any]:
    """EventInvokeConfig and DeadLetterQueue -> the function's ``async:`` section."""
    path: Path_ = ("Resources", logical_id, "Properties", "EventInvokeConfig")
    invoke = props.get("EventInvokeConfig") or {}
    out: dict[str, Any] = {}
    retries = _number(draft, (*path, "MaximumRetryAttempts"), invoke.get("MaximumRetryAttempts"), 0, 2)
    if retries is not None:
        out["maximum_retry_attempts"] = retries
    age = _number(draft, (*path, "MaximumEventAgeInSeconds"), invoke.get("MaximumEventAgeInSeconds"), 60, 21600)
    if age is not None:
        out["maximum_event_age"] = age
    destinations = invoke.get("DestinationConfig") or {}
    for key, target in (("OnSuccess", "on_success"), ("OnFailure", "on_failure")):
        if isinstance(destinations.get(key), dict):
            mapped = destination(draft, logical_id, (*path, "DestinationConfig", key), destinations[key])
            if mapped:
                out[target] = mapped
    dead_letter = props.get("DeadLetterQueue")
    if isinstance(dead_letter, dict) and "on_failure" not in out:
        dl_path = ("Resources", logical_id, "Properties", "DeadLetterQueue")
        mapped = destination(draft, logical_id, dl_path, {"Type": dead_letter.get("Type"),
                                                          "Destination": dead_letter.get("TargetArn")})
        if mapped:
            out["on_failure"] = mapped
    return out


def destination(draft: Draft, logical_id: str, path: Path_, config: dict[str, Any]) -> str | None:
    """A destination (``{Type, Destination}``) as the config spells it: sqs:URL or function:NAME."""
    kind, target = str(config.get("Type", "")), config.get("Destination")
    if isinstance(target, Unresolved):
        draft.report(path, f"destination {target.reason} is unknown here",
                     "map it with --map queue:ARN=URL or edit async: in the config")
        return None
    origin = draft.resolver.origin(target) if target is not None else None
    if kind == "SQS":
        from bridge.sam.events import queue_reference

        if target is None:  # SAM creates the queue; here it is an embedded queue of the same role
            name = f"{logical_id}-{path[-1]}"
            draft.queues.setdefault(name, Entry({}, [f"the queue SAM creates for {path[-1]}", draft.origin(path)]))
            return f"sqs:{draft.queue_url(name)}"
        queue = queue_reference(draft, path, target)
        return f"sqs:{queue if queue.startswith(('http://', 'https://')) else draft.queue_url(queue)}" if queue \
            else None
    if kind == "Lambda" and origin in draft.importable:
        return f"function:{origin}"
    draft.report(path, f"destination type {kind} ({target}) cannot be reached locally",
                 "failed events stay in the bridge's dead-letter store (lambda-bridge dlq list)")
    return None
