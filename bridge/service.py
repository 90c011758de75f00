"""The daemon's lifecycle: resources in an exit stack, delivery and intake in nested task groups."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from bridge.api import InvokeApi, serve
from bridge.config import Config
from bridge.delivery.dispatcher import Dispatcher
from bridge.invokers.registry import Functions
from bridge.log import get_logger
from bridge.metrics import Metrics
from bridge.model import Invocation
from bridge.ops_api import OpsApi
from bridge.sources.base import SourceContext, SourceStats
from bridge.sources.runner import SourceRunner
from bridge.store import Store, store_path
from bridge.systemd import Notifier

ShutdownTrigger = Callable[[], Awaitable[object]]
READY_WAIT = 10.0  # seconds READY=1 waits for sources to report running


class Service:
    """The running daemon's parts, reachable for tests, the status endpoint and reload."""

    def __init__(self, config: Config, notifier: Notifier, store: Store, config_path: Path | None = None) -> None:
        self.config = config
        self.config_path = config_path
        self.notifier = notifier
        self.store = store
        self.metrics = Metrics()
        self.functions = Functions(config, self.metrics)
        self.dispatcher = Dispatcher(store, self.functions, config, metrics=self.metrics)
        self.api_url: str | None = None
        self.sources: SourceRunner | None = None
        self.started = time.time()
        # Optional features plug in here (see EXTENSIONS): objects sources may use, and HTTP routes.
        self.extensions: dict[str, Any] = {}
        self.route_adders: list[Callable[[web.Application], None]] = []
        self.log = get_logger()

    async def accept_async(self, name: str, invocation: Invocation) -> None:
        """Take an Event invocation: durable in the queue before the caller hears 202."""
        await self.dispatcher.accept(name, invocation.payload, request_id=invocation.request_id)

    def build_app(self) -> web.Application:
        """The HTTP app on ``api.listen``: the Invoke API, operations endpoints, extensions."""
        app = web.Application(client_max_size=7 * 1024 * 1024)
        InvokeApi(self.functions, self.accept_async).add_routes(app)
        OpsApi(self).add_routes(app)
        for add_routes in self.route_adders:
            add_routes(app)
        return app

    def source_context(self, stats: SourceStats) -> SourceContext:
        """What a source gets to work with."""
        def ready() -> None:
            if self.sources is not None:
                self.sources.changed.set()

        return SourceContext(self.config, self.store, self.dispatcher, self.functions, stats,
                             on_ready=ready, extensions=self.extensions)

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

    def status_line(self) -> str:
        """One line for ``systemctl status``."""
        running = len(self.sources.tasks) if self.sources else 0
        where = f" on {self.api_url}" if self.api_url else ""
        return (f"STATUS=serving {len(self.functions.names())} function(s), {running} source(s){where}; "
                f"{self.dispatcher.depth} queued")


async def run(
    config: Config, *, shutdown_trigger: ShutdownTrigger | None = None, notifier: Notifier | None = None,
    on_ready: Callable[[Service], None] | None = None, config_path: Path | None = None,
    reload_requests: asyncio.Queue[str] | None = None,
) -> None:
    """Run the daemon until ``shutdown_trigger`` returns; then stop intake, drain, and close.

    ``reload_requests`` receives a reason string whenever the config should be re-read (SIGHUP).
    """
    async with contextlib.AsyncExitStack() as stack:
        store = await stack.enter_async_context(Store(store_path(config.state_dir)))
        service = Service(config, notifier or Notifier(), store, config_path)
        stack.push_async_callback(service.functions.close)
        await setup_extensions(service, stack)
        async with asyncio.TaskGroup() as background:
            delivery = background.create_task(service.dispatcher.run())
            async with service.intake():
                helpers = _start_helpers(service, background, reload_requests)
                await _announce_ready(service)
                if on_ready:
                    on_ready(service)
                await (shutdown_trigger or asyncio.get_running_loop().create_future)()
                service.notifier.notify("STOPPING=1", "STATUS=stopping: draining in-flight invocations")
                service.log.info("service.stopping")
                for task in helpers:
                    task.cancel()
            await _drain(service, delivery)
    service.log.info("service.stopped")


def _start_helpers(service: Service, group: asyncio.TaskGroup,
                   reload_requests: asyncio.Queue[str] | None) -> list[asyncio.Task[None]]:
    """Watchdog pings and reload handling, which live as long as intake does."""
    from bridge.reload import ConfigWatcher, Reloader, watchdog

    reloader = Reloader(service)
    reload_requests = reload_requests or asyncio.Queue()
    tasks = [group.create_task(reloader.serve(reload_requests)), group.create_task(watchdog(service.notifier))]
    if service.config_path is not None:
        tasks.append(group.create_task(ConfigWatcher(service.config_path, reload_requests).run()))
    return tasks


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


async def _announce_ready(service: Service) -> None:
    """READY=1 once every source runs, or after READY_WAIT with the laggards named (a source that cannot
    reach its origin keeps retrying; it must not keep the whole service from starting)."""
    runner = service.sources
    all_running = runner is None or await runner.wait_ready(READY_WAIT)
    waiting = [] if all_running or runner is None else runner.not_ready()
    service.log.info("service.ready", api=service.api_url, functions=service.functions.names(),
                     sources=[s.name for s in service.config.sources], not_running=waiting)
    status = service.status_line() + (f"; not yet running: {', '.join(waiting)}" if waiting else "")
    service.notifier.notify("READY=1", status)


async def run_until_signalled(config: Config, config_path: Path | None = None) -> None:
    """Run the daemon: SIGTERM/SIGINT stop it gracefully, a second one skips the drain, SIGHUP reloads."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    reloads: asyncio.Queue[str] = asyncio.Queue()
    main = asyncio.current_task()
    assert main is not None

    def on_stop() -> None:
        if stop.is_set():
            get_logger().warning("service.forced_stop", reason="second signal: in-flight work stays queued")
            main.cancel()
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_stop)
    loop.add_signal_handler(signal.SIGHUP, reloads.put_nowait, "SIGHUP")
    try:
        await run(config, shutdown_trigger=stop.wait, config_path=config_path, reload_requests=reloads)
    except asyncio.CancelledError:
        if not stop.is_set():
            raise
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
