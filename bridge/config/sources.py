"""The ``sources:`` list: one model per registered source type, and the rules across sources."""

from __future__ import annotations

from typing import Annotated, Any, Union

from pydantic import Field

from bridge.sources.registry import config_models

MODELS = config_models()
SourceConfig = Annotated[Union[tuple(MODELS)], Field(discriminator="type")]  # noqa: UP007 -- built at run time


def check_sources(sources: list[Any], functions: dict[str, Any], queues: dict[str, Any]) -> list[str]:
    """Cross-source rules: unique names, known functions, and each type's own rules (queues, S3 overlaps)."""
    problems = []
    seen: set[str] = set()
    for i, source in enumerate(sources):
        if source.name in seen:
            problems.append(f"sources[{i}].name: {source.name!r} is used by another source; names are unique")
        seen.add(source.name)
        problems += [f"sources[{i}].{path}: {name!r} is not a configured function; "
                     f"configured: {', '.join(functions) or '(none)'}"
                     for path, name in source.function_refs() if name not in functions]
    for model in MODELS:
        problems += model.check([(i, s) for i, s in enumerate(sources) if isinstance(s, model)], queues)
    return problems
