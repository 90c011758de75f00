"""Runs the configured sources as tasks of one task group; starts and stops them one by one (for reload)."""

from __future__ import annotations

import asyncio
import importlib
import sys
from collections.abc import Callable
from typing import Any

from bridge.log import get_logger
from bridge.sources.base import Source, SourceContext, SourceStats
from bridge.sources.registry import SOURCE_TYPES


def create_source(source_config: Any, ctx: SourceContext) -> Source:
    """Instantiate the runner for one config entry; runners are imported only when a source of theirs runs."""
    return importlib.import_module(f"bridge.sources.{source_config.type}.source").create(source_config, ctx)


async def claim_sources(sources: list[Any], extensions: dict[str, Any]) -> None:
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


class SourceRunner:
    """The inner task group of the service: a source that raises takes the service down."""

    def __init__(self, make_context: Callable[[SourceStats, Any], SourceContext],
                 extensions: dict[str, Any] | None = None) -> None:
        self._make_context = make_context
        self._extensions = {} if extensions is None else extensions  # what the sources share (SourceContext's)
        self._group = asyncio.TaskGroup()
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.configs: dict[str, Any] = {}
        self.stats: dict[str, SourceStats] = {}
        self.changed = asyncio.Event()  # set whenever a source reports it is running
        self.log = get_logger()

    async def __aenter__(self) -> SourceRunner:
        await self._group.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> bool | None:
        for task in self.tasks.values():
            task.cancel()
        try:
            return await self._group.__aexit__(*exc)
        finally:
            await claim_sources([], self._extensions)  # all stopped: release (http: in-flight requests finish)

    async def claim(self, configs: list[Any]) -> None:
        """Take what the sources of ``configs`` (the config's whole list) need before any of them starts, and
        release what no source needs any more. Raises ConfigError, changing nothing, when it cannot."""
        await claim_sources(configs, self._extensions)

    def start(self, config: Any) -> None:
        """Build and start the source for ``config``."""
        stats = SourceStats()
        source = create_source(config, self._make_context(stats, config))
        self.configs[config.name], self.stats[config.name] = config, stats
        self.tasks[config.name] = self._group.create_task(self._run(config.name, source, stats),
                                                          name=f"source:{config.name}")
        self.log.info("source.started", source=config.name, type=config.type, function=config.function)

    async def _run(self, name: str, source: Any, stats: SourceStats) -> None:
        try:
            await source.run()
        except Exception:
            self.log.exception("source.crashed", source=name)  # an error: it takes the service down
            raise
        finally:
            stats.state = "stopped"

    async def stop(self, name: str) -> None:
        """Cancel one source and wait until it has stopped."""
        task = self.tasks.pop(name)
        task.cancel()
        await asyncio.wait({task})
        self.configs.pop(name, None)
        self.stats.pop(name, None)
        self.log.info("source.stopped", source=name)

    def all_ready(self) -> bool:
        """True when every source reported it is running."""
        return all(s.state == "running" for s in self.stats.values())

    def not_ready(self) -> list[str]:
        """Names of sources that have not reported running yet."""
        return [name for name, s in self.stats.items() if s.state != "running"]

    async def wait_ready(self, timeout: float) -> bool:
        """Wait until every source runs, at most ``timeout`` seconds; True when they all do."""
        try:
            async with asyncio.timeout(timeout):
                while not self.all_ready():
                    self.changed.clear()
                    await self.changed.wait()
        except TimeoutError:
            return False
        return True
