"""The source types. Each is a package ``bridge/sources/<type>/`` with ``config.py`` (its pydantic ``MODEL``)
and ``source.py`` (``create(config, ctx)``); adding a type is that folder plus one name in ``SOURCE_TYPES``."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bridge.sources.base import Source, SourceContext

SOURCE_TYPES = ("directory", "schedule", "sqs", "mqtt", "http")


def config_models() -> list[type[Any]]:
    """The config model of every registered type (the ``type:`` key tells them apart)."""
    return [importlib.import_module(f"bridge.sources.{name}.config").MODEL for name in SOURCE_TYPES]


def create(source_config: Any, ctx: SourceContext) -> Source:
    """Instantiate the runner for one config entry; runners are imported only when a source of theirs runs."""
    return importlib.import_module(f"bridge.sources.{source_config.type}.source").create(source_config, ctx)
