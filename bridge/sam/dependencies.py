"""Which resources each resource refers to (Ref, Fn::GetAtt, Fn::Sub, DependsOn), and CloudFormation's check
that these references form no circle."""

from __future__ import annotations

import graphlib
from typing import Any

from bridge.errors import SamTemplateError
from bridge.sam.functions import FUNCTION_TYPE
from bridge.sam.intrinsics import SUB_VARIABLE
from bridge.sam.template import Template


def check_no_circle(template: Template) -> None:
    """Refuse a template whose resources refer to each other in a circle, as CloudFormation does.

    A function's ``Events`` are left out: SAM turns them into resources of their own (permissions, event
    source mappings) that depend on both ends, so they close no circle through the function itself.
    """
    graph = {logical_id: references(template, logical_id) for logical_id in template.resources}
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as err:
        cycle = sorted(set(err.args[1]))
        raise SamTemplateError(f"{template.where(('Resources', cycle[0]))}: Circular dependency between resources: "
                               f"[{', '.join(cycle)}]; each needs the next (Ref, Fn::GetAtt, Fn::Sub or DependsOn): "
                               "break the circle, as CloudFormation would refuse it") from None


def references(template: Template, logical_id: str) -> set[str]:
    """The resources of the template that ``logical_id`` refers to (itself included, if it does)."""
    resource = template.resources[logical_id]
    properties = dict(resource.get("Properties") or {})
    if resource.get("Type") == FUNCTION_TYPE:  # Globals.Function applies to every function
        properties = {**(((template.data.get("Globals") or {}).get("Function")) or {}), **properties}
        properties.pop("Events", None)
    found: set[str] = set()
    _walk(properties, found)
    depends_on = resource.get("DependsOn")
    found.update(depends_on if isinstance(depends_on, list) else [depends_on])
    return {name for name in found if isinstance(name, str) and name in template.resources}


def _walk(value: Any, found: set[str]) -> None:
    if isinstance(value, list):
        for item in value:
            _walk(item, found)
    if not isinstance(value, dict):
        return
    if len(value) == 1:
        (key, arg), = value.items()
        if key == "Ref" and isinstance(arg, str):
            found.add(arg)
        elif key == "Fn::GetAtt":
            _get_att(arg, found)
        elif key == "Fn::Sub":
            _sub(arg, found)
    for item in value.values():
        _walk(item, found)


def _get_att(arg: Any, found: set[str]) -> None:
    if isinstance(arg, str):
        found.add(arg.split(".", 1)[0])
    elif isinstance(arg, list) and arg and isinstance(arg[0], str):
        found.add(arg[0])


def _sub(arg: Any, found: set[str]) -> None:
    text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1]) if (
        isinstance(arg, list) and len(arg) == 2 and isinstance(arg[0], str) and isinstance(arg[1], dict)) \
        else ("", {})
    for match in SUB_VARIABLE.finditer(text):
        name = match.group(2).strip().split(".", 1)[0]
        if not match.group(1) and name not in variables:  # ${!Literal} and the Sub's own variables are not refs
            found.add(name)
