"""What every config section and every source's model shares: strictness, and a source's name and function."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

SOURCE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class Strict(BaseModel):
    """Base for config sections: frozen, and unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


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
