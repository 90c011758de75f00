"""The daemon's lifecycle: resources in an exit stack, delivery and intake in nested task groups."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

from aiohttp import web

from bridge.api import InvokeApi, serve
from bridge.config import Config
from bridge.delivery.dispatcher import Dispatcher
from bridge.invokers.registry import Functions
from bridge.log import get_logger
from bridge.model import Invocation
from bridge.sources.base import SourceContext, SourceStats
from bridge.sources.runner import SourceRunner
from bridge.store import Store, store_path
from bridge.systemd import Notifier

ShutdownTrigger = Callable[[], Awaitable[object]]


class Service:
    """The running daemon's parts, reachable for tests and the status endpoint."""

    def __init__(self, config: Config, notifier: Notifier, store: Store) -> None:
        self.config = config
        self.notifier = notifier
        self.store = store
        self.functions = Functions(config)
        self.dispatcher = Dispatcher(store, self.functions, config)
        self.api_url: str | None = None
        self.sources: SourceRunner | None = None
        # Optional features plug in here (see EXTENSIONS): objects sources may use, and HTTP routes.
        self.extensions: dict[str, Any] = {}
        self.route_adders: list[Callable[[web.Application], None]] = []
        self.log = get_logger()

    async def accept_async(self, name: str, invocation: Invocation) -> None:
        """Take an Event invocation: durable in the queue before the caller hears 202."""
        await self.dispatcher.accept(name, invocation.payload, request_id=invocation.request_id)

    def build_app(self) -> web.Application:
        """The HTTP app on ``api.listen``: the Invoke API and friends."""
        app = web.Application(client_max_size=7 * 1024 * 1024)
        InvokeApi(self.functions, self.accept_async).add_routes(app)
        for add_routes in self.route_adders:
            add_routes(app)
        return app

    def source_context(self, stats: SourceStats) -> SourceContext:
        """What a source gets to work with."""
        return SourceContext(self.config, self.store, self.dispatcher, self.functions, stats,
                             extensions=self.extensions)

    @contextlib.asynccontextmanager
    async def intake(self) -> AsyncIterator[None]:
        """Everything that brings work in: the HTTP API and the sources. Closing it stops intake."""
        async with contextlib.AsyncExitStack() as stack:
            address = self.config.api.address
            if address is not None:
                app = self.build_app()
                self.api_url = await stack.enter_async_context(
                    serve(app, *address, shutdown_timeout=self.config.shutdown_timeout))
            self.sources = await stack.enter_async_context(SourceRunner(self.source_context))
            for source in self.config.sources:
                self.sources.start(source)
            yield


async def run(
    config: Config, *, shutdown_trigger: ShutdownTrigger | None = None, notifier: Notifier | None = None,
    on_ready: Callable[[Service], None] | None = None,
) -> None:
    """Run the daemon until ``shutdown_trigger`` returns; then stop intake, drain, and close."""
    async with contextlib.AsyncExitStack() as stack:
        store = await stack.enter_async_context(Store(store_path(config.state_dir)))
        service = Service(config, notifier or Notifier(), store)
        stack.push_async_callback(service.functions.close)
        await setup_extensions(service, stack)
        async with asyncio.TaskGroup() as background:
            delivery = background.create_task(service.dispatcher.run())
            async with service.intake():
                _announce_ready(service)
                if on_ready:
                    on_ready(service)
                await (shutdown_trigger or asyncio.get_running_loop().create_future)()
                service.notifier.notify("STOPPING=1", "STATUS=stopping: draining in-flight invocations")
                service.log.info("service.stopping")
            await _drain(service, delivery)
    service.log.info("service.stopped")


async def _drain(service: Service, delivery: asyncio.Task[None]) -> None:
    """Let in-flight deliveries finish within shutdown_timeout; what remains stays queued on disk."""
    service.dispatcher.stop()
    done, _ = await asyncio.wait({delivery}, timeout=service.config.shutdown_timeout)
    if not done:
        service.log.warning("service.drain_timeout", shutdown_timeout=service.config.shutdown_timeout)
        delivery.cancel()


# Optional components, each a module with ``async def setup(service, stack) -> None`` that may put objects in
# ``service.extensions``, append to ``service.route_adders`` and push its cleanup onto ``stack``.
EXTENSIONS = ("bridge.queues.component",)


async def setup_extensions(service: Service, stack: contextlib.AsyncExitStack) -> None:
    """Set up every optional component that is installed."""
    import importlib

    for name in EXTENSIONS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name is None or not name.startswith(err.name):  # a real import error inside must surface
                raise
            continue
        await module.setup(service, stack)


def _announce_ready(service: Service) -> None:
    names = service.functions.names()
    service.log.info("service.ready", api=service.api_url, functions=names)
    status = f"STATUS=serving {len(names)} function(s)" + (f" on {service.api_url}" if service.api_url else "")
    service.notifier.notify("READY=1", status)


@contextlib.contextmanager
def stop_on_signals(stop: asyncio.Event) -> Iterator[None]:
    """SIGTERM/SIGINT set ``stop``; handlers are restored on exit."""
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        yield
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


async def run_until_signalled(config: Config) -> None:
    """Run the daemon until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    with stop_on_signals(stop):
        await run(config, shutdown_trigger=stop.wait)
