"""The http source: serves its routes on the shared listener for its address until cancelled."""

from __future__ import annotations

import asyncio

from bridge.errors import ConfigError
from bridge.log import get_logger
from bridge.sources.base import SourceContext
from bridge.sources.http.api import HttpApi
from bridge.sources.http.config import HttpSourceConfig
from bridge.sources.http.server import HUB, ListenerHub


def create(config: HttpSourceConfig, ctx: SourceContext) -> HttpSource:
    """The source for one ``type: http`` entry."""
    return HttpSource(config, ctx)


class HttpSource:
    """Local HTTP requests on ``listen`` as API Gateway / function-URL events, each invoked synchronously."""

    def __init__(self, config: HttpSourceConfig, ctx: SourceContext) -> None:
        self.name, self.config, self.ctx = config.name, config, ctx
        self.api = HttpApi(config, ctx)
        self.log = get_logger(source=config.name, function=config.function)

    async def run(self) -> None:
        """Attach the routes to the listener (binding it if new) and serve until cancelled."""
        hub: ListenerHub = self.ctx.extensions.setdefault(HUB, ListenerHub())
        try:
            attached = hub.attach(self.config.address, self.api)
            async with attached:
                self.ctx.ready()
                self.log.info("http.ready", listen=self.config.listen, format=self.config.format,
                              routes=[r.key for r in self.api.routes])
                await asyncio.Future()  # serve until cancelled
        except OSError as err:
            raise ConfigError([f"{self._path()}.listen: cannot listen on {self.config.listen}: {err.strerror}; "
                               "stop what uses it or choose another port"]) from None

    def _path(self) -> str:
        names = [s.name for s in self.ctx.config.sources]
        return f"sources[{names.index(self.name)}]" if self.name in names else f"sources.{self.name}"
