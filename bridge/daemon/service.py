"""The running daemon's parts (store, functions, dispatcher, sources) and its intake: the HTTP API and sources."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from bridge.cluster.dispatcher import ClusterDispatcher
from bridge.config.model import Config
from bridge.daemon.http_errors import UNCLAIMED, unclaimed, unexpected_errors
from bridge.daemon.invoke_api import serve
from bridge.daemon.systemd import Notifier
from bridge.delivery.dispatcher import Dispatcher
from bridge.errors import ConfigError
from bridge.invokers.memory import MemoryLimits
from bridge.invokers.registry import Functions
from bridge.log import get_logger
from bridge.metrics import Metrics
from bridge.model import Invocation
from bridge.sources.base import SourceContext, SourceStats
from bridge.sources.runner import SourceRunner
from bridge.store import Store


class Service:
    """The running daemon's parts, reachable for tests, the status endpoint and reload."""

    def __init__(self, config: Config, notifier: Notifier, store: Store, config_path: Path | None = None, *,
                 worker_fds: tuple[int, ...] = (), memory: MemoryLimits | None = None) -> None:
        self.config = config
        self.config_path = config_path
        self.notifier = notifier
        self.store = store
        self.metrics = Metrics()
        # worker_fds: the state lock (see lifecycle); memory: how workers' memory_size is enforced
        self.functions = Functions(config, self.metrics, worker_fds=worker_fds, memory=memory)
        self.dispatcher = (ClusterDispatcher if config.cluster else Dispatcher)(store, self.functions, config,
                                                                                metrics=self.metrics)
        self.api_url: str | None = None
        self.sources: SourceRunner | None = None
        self.started = time.time()
        self.stop_by: float | None = None  # the loop time by which a stop must be done (shutdown_timeout)
        # Parts plug in here (see bridge.daemon.lifecycle): objects sources may use, and HTTP routes.
        self.extensions: dict[str, Any] = {}
        self.route_adders: list[Callable[[web.Application], None]] = []
        self.log = get_logger()

    async def accept_async(self, name: str, invocation: Invocation) -> None:
        """Take an Event invocation: durable in the queue before the caller hears 202."""
        await self.dispatcher.accept(name, invocation.payload, request_id=invocation.request_id)

    def build_app(self) -> web.Application:
        """The HTTP app on ``api.listen``: every registered set of routes (Invoke API, operations, extensions)."""
        app = web.Application(client_max_size=7 * 1024 * 1024, middlewares=[unexpected_errors])
        for add_routes in self.route_adders:
            add_routes(app)
        # Last: a route for every path nothing else claimed (the S3 API's keys), answered 404 unless a middleware
        # takes the request. aiohttp builds an HTTPNotFound for each request no route matches: a tenth of a
        # GetObject's CPU.
        app.router.add_route("*", "/{path:.*}", unclaimed, name=UNCLAIMED)
        return app

    def source_context(self, stats: SourceStats, source: Any = None) -> SourceContext:
        """What a source gets to work with (in a cluster, a host-local source gets the local queue)."""
        def ready() -> None:
            if self.sources is not None:
                self.sources.changed.set()

        dispatcher = self.dispatcher.for_source(source) if self.config.cluster else self.dispatcher
        return SourceContext(self.config, self.store, dispatcher, self.functions, stats,
                             on_ready=ready, extensions=self.extensions)

    @contextlib.asynccontextmanager
    async def intake(self) -> AsyncIterator[None]:
        """Everything that brings work in: the HTTP API and the sources. Closing it stops intake."""
        async with contextlib.AsyncExitStack() as stack:
            address = self.config.api.address
            if address is not None:
                app = self.build_app()
                self.api_url = await stack.enter_async_context(
                    serve(app, *address, self.config.shutdown_timeout, lambda: self.stop_by))
            # Closed after the sources, before the API waits for its requests: an Invoke still waiting for
            # room (a full disk, max_queued_events) is then answered (503, not queued), not kept waiting.
            stack.callback(self.dispatcher.stop_intake)
            self.sources = await stack.enter_async_context(SourceRunner(self.source_context, self.extensions))
            try:
                await self.sources.claim(self.config.sources)  # a port in use: refused before any source starts
            except ConfigError as err:
                raise ConfigError(err.problems, source=str(self.config_path or "config")) from None
            for source in self.config.sources:
                self.sources.start(source)
            yield

    def status_line(self) -> str:
        """One line for ``systemctl status``."""
        running = len(self.sources.tasks) if self.sources else 0
        where = f" on {self.api_url}" if self.api_url else ""
        return (f"STATUS=serving {len(self.functions.names())} function(s), {running} source(s){where}; "
                f"{self.dispatcher.depth} queued")
