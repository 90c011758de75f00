"""Turn pydantic validation errors into messages that name the config path, its line and the fix."""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

Loc = tuple[Any, ...]


def format_path(loc: Loc) -> str:
    """``("sources", 2, "type")`` -> ``sources[2].type``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def describe_errors(err: ValidationError, root: type[BaseModel], lines: dict[Loc, int]) -> list[str]:
    """One message per error, ordered by line, each ``line N: path: what is wrong; the fix``."""
    described = []
    for item in err.errors(include_url=False):
        loc = _data_loc(item["loc"], root)
        if item["type"] in ("union_tag_invalid", "union_tag_not_found"):  # the path names the missing/bad key
            loc = (*loc, item.get("ctx", {}).get("discriminator", "'type'").strip("'"))
        if item["type"] == "at_key":  # raised by a rule on the whole mapping about one of its keys
            loc = (*loc, item["ctx"]["key"])
        line = _nearest_line(loc, lines)
        prefix = f"line {line}: " if line else ""
        where = f"{format_path(loc)}: " if loc else ""
        described.append((line or 0, f"{prefix}{where}{_message(item, loc, root)}"))
    return [text for _, text in sorted(described, key=lambda pair: pair[0])]


def _message(item: dict[str, Any], loc: Loc, root: type[BaseModel]) -> str:
    kind, ctx = item["type"], item.get("ctx", {})
    value: Any = _Hidden() if is_secret(root, loc) else item.get("input")
    if kind == "extra_forbidden":
        # The raw loc still names the union member (local or remote function), so only its keys are listed.
        return unknown_key(str(loc[-1]) if loc else "", allowed_keys(root, tuple(item["loc"][:-1])))
    if kind == "missing":
        return "required key is missing"
    if kind == "at_key":
        return str(ctx["message"]).rstrip(": ")
    if kind in ("greater_than_equal", "greater_than"):
        return f"{value!r} is below the minimum {ctx.get('ge', ctx.get('gt'))}"
    if kind in ("less_than_equal", "less_than"):
        return f"{value!r} is above the maximum {ctx.get('le', ctx.get('lt'))}"
    if kind == "union_tag_invalid":
        return f"unknown {ctx.get('tag')!r}; expected one of: {_tags(ctx.get('expected_tags', ''))}"
    if kind == "union_tag_not_found":
        tags = [str(tag) for member in _members(_type_at(root, loc[:-1])) if isinstance(member, type)
                and issubclass(member, BaseModel) for tag in _tags_of(member)]
        return "required key is missing" + (f"; expected one of: {', '.join(tags)}" if tags else "")
    if kind == "literal_error":
        return f"unknown {value!r}; expected one of: {', '.join(map(str, literal_choices(root, loc)))}"
    if kind == "value_error":
        return str(ctx.get("error", item["msg"])).rstrip(": ")
    if kind.endswith("_type") or kind.endswith("_parsing"):
        return f"expected {_expected(kind)}, got {value!r}"
    if kind == "string_pattern_mismatch":
        return f"{value!r} does not match the pattern {ctx.get('pattern')}"
    return str(item["msg"])


class _Hidden:
    """Stands for a secret's value in a message: the journal must never see a password."""

    def __repr__(self) -> str:
        return "the value (not shown: it is a secret)"


def unknown_key(key: str, keys: list[str]) -> str:
    """``unknown key; did you mean 'handler'? expected one of: ...`` (the suggestion only when one is close)."""
    if not keys:
        return "unknown key"
    close = difflib.get_close_matches(key, keys, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown key; {hint}expected one of: {', '.join(keys)}"


def is_secret(root: type[BaseModel], loc: Loc) -> bool:
    """True when the key at ``loc`` holds a secret (a field declared with ``repr=False``)."""
    if not loc:
        return False
    for member in _members(_type_at(root, loc[:-1]) or object):
        if isinstance(member, type) and issubclass(member, BaseModel):
            field = _field(member, loc[-1])
            if field is not None and field.repr is False:
                return True
    return False


def _tags(expected: str) -> str:
    return ", ".join(t.strip().strip("'") for t in expected.split(","))


def _expected(kind: str) -> str:
    names = {"int": "a whole number", "float": "a number", "string": "a string", "bool": "true or false",
             "dict": "a mapping (key: value)", "model": "a mapping (key: value)", "list": "a list",
             "path": "a path", "model_attributes": "a mapping (key: value)"}
    return names.get(kind.split("_")[0], kind.replace("_", " "))


def _nearest_line(loc: Loc, lines: dict[Loc, int]) -> int | None:
    for end in range(len(loc), 0, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None


def _data_loc(loc: Loc, root: type[BaseModel]) -> Loc:
    """Drop the union-member tags pydantic inserts into ``loc`` so the path matches the YAML."""
    out: list[Any] = []
    tp: Any = root
    for part in loc:
        nxt = _step(tp, part)
        if nxt is _TAG:
            tp = _member_for_tag(tp, part)
            continue
        out.append(part)
        tp = nxt
    return tuple(out)


_TAG = object()


def _unwrap(tp: Any) -> Any:
    while get_origin(tp) is typing.Annotated:
        tp = get_args(tp)[0]
    return tp


def _members(tp: Any) -> tuple[Any, ...]:
    tp = _unwrap(tp)
    if get_origin(tp) in (Union, types.UnionType):
        return tuple(_unwrap(m) for m in get_args(tp) if m is not type(None))
    return (tp,)


def _tag_annotation(model: type[BaseModel]) -> str | None:
    """Function configs are told apart by a callable discriminator: 'local' or 'remote'."""
    return {"LocalFunctionConfig": "local", "RemoteFunctionConfig": "remote"}.get(model.__name__)


def _step(tp: Any, part: Any) -> Any:
    """The type found at ``tp[part]``, ``_TAG`` when ``part`` names a union member, or None."""
    # A tag first: ``schedule`` is both the schedule source's tag and one of its keys.
    if len(_members(tp)) > 1 and _member_for_tag(tp, part) is not None:
        return _TAG
    for member in _members(tp):
        origin = get_origin(member)
        if isinstance(member, type) and issubclass(member, BaseModel) and (field := _field(member, part)):
            return field.annotation
        if origin is dict:
            return get_args(member)[1]
        if origin in (list, tuple) and isinstance(part, int):
            return get_args(member)[0]
    if _member_for_tag(tp, part) is not None:
        return _TAG
    return None


def _field(model: type[BaseModel], key: Any) -> Any:
    """The field named ``key`` in the YAML (its alias if it has one)."""
    for name, field in model.model_fields.items():
        if (field.alias or name) == key:
            return field
    return None


def _member_for_tag(tp: Any, tag: Any) -> Any:
    for member in _members(tp):
        is_model = isinstance(member, type) and issubclass(member, BaseModel)
        if is_model and (tag in (member.__name__, _tag_annotation(member)) or tag in _tags_of(member)):
            return member
    return None


def _tags_of(model: type[BaseModel]) -> tuple[Any, ...]:
    field = model.model_fields.get("type")
    if field is None:
        return ()
    return tuple(get_args(_unwrap(field.annotation))) if get_origin(_unwrap(field.annotation)) is Literal else ()


def _type_at(root: type[BaseModel], loc: Loc) -> Any:
    tp: Any = root
    for part in loc:
        nxt = _step(tp, part)
        tp = _member_for_tag(tp, part) if nxt is _TAG else nxt
        if tp is None:
            return None
    return tp


def allowed_keys(root: type[BaseModel], loc: Loc) -> list[str]:
    """The keys a mapping at ``loc`` accepts, for 'unknown key' messages."""
    keys: list[str] = []
    for member in _members(_type_at(root, loc)):
        if isinstance(member, type) and issubclass(member, BaseModel):
            keys += [f.alias or k for k, f in member.model_fields.items() if (f.alias or k) not in keys]
    return keys


def literal_choices(root: type[BaseModel], loc: Loc) -> list[Any]:
    """The values a Literal-typed key at ``loc`` accepts."""
    choices: list[Any] = []
    for member in _members(_type_at(root, loc)):
        if get_origin(member) is Literal:
            choices += list(get_args(member))
    return choices
