"""The source types. Each is a package ``bridge/sources/<type>/`` with ``config.py`` (its pydantic ``MODEL``)
and ``source.py`` (``create(config, ctx)``, and optionally ``claim(indexed, extensions)``); adding a type is
that folder plus one name in ``SOURCE_TYPES``."""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bridge.sources.base import Source, SourceContext

SOURCE_TYPES = ("directory", "schedule", "sqs", "mqtt", "http", "logs")


def config_models() -> list[type[Any]]:
    """The config model of every registered type (the ``type:`` key tells them apart)."""
    return [importlib.import_module(f"bridge.sources.{name}.config").MODEL for name in SOURCE_TYPES]


def create(source_config: Any, ctx: SourceContext) -> Source:
    """Instantiate the runner for one config entry; runners are imported only when a source of theirs runs."""
    return importlib.import_module(f"bridge.sources.{source_config.type}.source").create(source_config, ctx)


async def claim(sources: list[Any], extensions: dict[str, Any]) -> None:
    """Before ``sources`` (a config's whole list) start, and before a reload stops any running source: each
    type that holds something for its sources (http: listening sockets) takes what these need and releases
    the rest. Raises ConfigError, having changed nothing, when it cannot (a port in use)."""
    for name in SOURCE_TYPES:
        indexed = [(i, s) for i, s in enumerate(sources) if s.type == name]
        module_name = f"bridge.sources.{name}.source"
        module = importlib.import_module(module_name) if indexed else sys.modules.get(module_name)
        hook = getattr(module, "claim", None)
        if hook is not None:
            await hook(indexed, extensions)
