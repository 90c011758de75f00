"""What every config section and every source's model shares: strictness, and a source's name and function."""

from __future__ import annotations

import re
import types
import typing
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, field_validator, model_validator
from pydantic_core import PydanticCustomError

SOURCE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class Strict(BaseModel):
    """Base for config sections: frozen, and unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _no_bool_for_number(cls, data: Any) -> Any:
        # pydantic takes true as 1; `reserved_concurrency: true` is a mistake, not one worker.
        if not isinstance(data, dict):
            return data
        for name, field in cls.model_fields.items():
            value = data.get(field.alias or name)
            if isinstance(value, bool) and wants_number(field.annotation):
                raise error_at(field.alias or name, f"expected a number, got {str(value).lower()}")
        return data


def error_at(key: str, message: str) -> PydanticCustomError:
    """An error a model-level rule raises about one of its keys, so the message names ``path.key``."""
    return PydanticCustomError("at_key", "{key}: {message}", {"key": key, "message": message})


def wants_number(annotation: Any) -> bool:
    """True when a field takes a number but not a boolean (``int``, ``float``, ``Annotated[int, ...] | None``)."""
    while get_origin(annotation) is typing.Annotated:
        annotation = get_args(annotation)[0]
    if get_origin(annotation) in (Union, types.UnionType):
        members = get_args(annotation)
        return bool not in members and any(wants_number(m) for m in members)
    return annotation in (int, float)


class SourceBase(Strict):
    """What every source has: a unique name and the function it invokes."""

    name: str
    function: str

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not SOURCE_NAME.match(value):
            raise ValueError(f"{value!r} must be 1-64 letters, digits, '.', '-' or '_'")
        return value

    def function_refs(self) -> list[tuple[str, str]]:
        """(path inside this source, function name) of every function it invokes; checked against ``functions``."""
        return [("function", self.function)]

    @classmethod
    def check(cls, indexed: list[tuple[int, Any]], queues: dict[str, Any]) -> list[str]:
        """Rules across the sources of this type (given with their index in ``sources``); problems found."""
        return []
