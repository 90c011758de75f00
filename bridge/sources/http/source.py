"""The http source: serves its routes on the shared listener for its address until cancelled."""

from __future__ import annotations

import asyncio
from typing import Any

from bridge.errors import ConfigError
from bridge.log import get_logger
from bridge.sources.base import SourceContext
from bridge.sources.http.api import HttpApi
from bridge.sources.http.config import HttpSourceConfig, listen_problem
from bridge.sources.http.server import HUB, AddressTaken, Claim, ListenerHub


def create(config: HttpSourceConfig, ctx: SourceContext) -> HttpSource:
    """The source for one ``type: http`` entry."""
    return HttpSource(config, ctx)


async def claim(indexed: list[tuple[int, HttpSourceConfig]], extensions: dict[str, Any]) -> None:
    """Listen on the addresses of these sources (the config's http sources, by index) before any of them
    starts; close those no source needs any more. Raises ConfigError, changing nothing, when one is taken."""
    hub: ListenerHub = extensions.setdefault(HUB, ListenerHub())
    groups: dict[tuple[str, int], list[tuple[int, HttpSourceConfig]]] = {}
    for i, source in indexed:
        groups.setdefault(source.address, []).append((i, source))
    try:
        await hub.claim({address: _claim([s for _, s in group]) for address, group in groups.items()})
    except AddressTaken as err:
        i, first = groups[err.address][0]
        raise ConfigError([listen_problem(i, first, err.error)]) from None


def _claim(sources: list[HttpSourceConfig]) -> Claim:
    """One address's wants: check() made header_timeout one value per address."""
    return Claim(frozenset(s.name for s in sources), sources[0].header_timeout, max(s.timeout for s in sources))


class HttpSource:
    """Local HTTP requests on ``listen`` as API Gateway / function-URL events, each invoked synchronously."""

    def __init__(self, config: HttpSourceConfig, ctx: SourceContext) -> None:
        self.name, self.config, self.ctx = config.name, config, ctx
        self.api = HttpApi(config, ctx)
        self.log = get_logger(source=config.name, function=config.function)

    async def run(self) -> None:
        """Attach the routes to the listener (binding it if nothing claimed it) and serve until cancelled."""
        hub: ListenerHub = self.ctx.extensions.setdefault(HUB, ListenerHub())
        try:
            attached = hub.attach(self.config.address, self.api, _claim([self.config]))
            async with attached:
                self.ctx.ready()
                self.log.info("http.ready", listen=self.config.listen, format=self.config.format,
                              routes=[r.key for r in self.api.routes])
                await asyncio.Future()  # serve until cancelled
        except OSError as err:
            raise ConfigError([listen_problem(self._index(), self.config, err)]) from None

    def _index(self) -> int | None:
        names = [s.name for s in self.ctx.config.sources]
        return names.index(self.name) if self.name in names else None
