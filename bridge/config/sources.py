"""The ``sources:`` list: one model per registered source type, and the rules across sources."""

from __future__ import annotations

from typing import Annotated, Any, Union

from pydantic import Field

from bridge.sources.registry import config_models

MODELS = config_models()
SourceConfig = Annotated[Union[tuple(MODELS)], Field(discriminator="type")]  # noqa: UP007 -- built at run time


def check_sources(sources: list[Any], functions: Any, queues: Any) -> list[str]:
    """Cross-source rules: unique names, known functions, and each type's own rules (queues, S3 overlaps).

    ``sources`` may hold raw mappings (entries that failed validation, so that ``check`` still reports their
    references in the same pass); each type's own rules run on the validated entries only.
    """
    problems = []
    seen: set[str] = set()
    for i, source in enumerate(sources):
        name = _field(source, "name")
        if isinstance(name, str) and name in seen:
            problems.append(f"sources[{i}].name: {name!r} is used by another source; names are unique")
        if isinstance(name, str):
            seen.add(name)
        # a source that failed validation is a raw mapping: only its top-level function can be named
        refs = (source.function_refs() if hasattr(source, "function_refs")
                else [("function", _field(source, "function"))])
        problems += [f"sources[{i}].{path}: {function!r} is not a configured function; "
                     f"configured: {', '.join(functions) or '(none)'}"
                     for path, function in refs if isinstance(function, str) and function not in functions]
    for model in MODELS:
        problems += model.check([(i, s) for i, s in enumerate(sources) if isinstance(s, model)], queues)
    return problems


def _field(source: Any, key: str) -> Any:
    return source.get(key) if isinstance(source, dict) else getattr(source, key, None)
