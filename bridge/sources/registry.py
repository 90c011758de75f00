"""The source types. Each is a package ``bridge/sources/<type>/`` with ``config.py`` (its pydantic ``MODEL``)
and ``source.py`` (``create(config, ctx)``, and optionally ``claim(indexed, extensions)``, which
``bridge.sources.runner`` calls); adding a type is that folder plus one name in ``SOURCE_TYPES``.

This module is a leaf (the config layer reads it): it imports no other module of the bridge, even for types."""

from __future__ import annotations

import importlib
from typing import Any

SOURCE_TYPES = ("directory", "schedule", "sqs", "mqtt", "http", "logs")


def config_models() -> list[type[Any]]:
    """The config model of every registered type (the ``type:`` key tells them apart)."""
    return [importlib.import_module(f"bridge.sources.{name}.config").MODEL for name in SOURCE_TYPES]
