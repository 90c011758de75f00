"""The daemon's lifecycle: resources in an exit stack, delivery and intake in nested task groups, signals."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

from bridge.config.model import Config
from bridge.daemon.invoke_api import InvokeApi
from bridge.daemon.ops_api import OpsApi
from bridge.daemon.reload import ConfigWatcher, Reloader, watchdog
from bridge.daemon.runtime import RuntimePublisher, check_listen
from bridge.daemon.service import Service
from bridge.daemon.state_lock import StateLock
from bridge.daemon.systemd import Notifier
from bridge.invokers.memory import choose as memory_limits
from bridge.log import get_logger
from bridge.store import Store, store_path

ShutdownTrigger = Callable[[], Awaitable[object]]
READY_WAIT = 10.0  # seconds READY=1 waits for sources to report running

async def run(
    config: Config, *, shutdown_trigger: ShutdownTrigger | None = None, notifier: Notifier | None = None,
    on_ready: Callable[[Service], None] | None = None, config_path: Path | None = None,
    reload_requests: asyncio.Queue[str] | None = None,
) -> None:
    """Run the daemon until ``shutdown_trigger`` returns; then stop intake, drain, and close.

    ``reload_requests`` receives a reason string whenever the config should be re-read (SIGHUP).
    """
    async with contextlib.AsyncExitStack() as stack:
        lock = await StateLock(config.state_dir).acquire()  # first: a second daemon must not touch the store
        stack.callback(lock.release)  # last, after every worker has stopped
        check_listen(config)  # after the lock: a second daemon hears "state_dir in use", the clearer reason
        store = await stack.enter_async_context(Store(store_path(config.state_dir)))
        assert lock.fd is not None
        memory = memory_limits(os.environ)  # cgroups: the daemon moves into its leaf before any worker starts
        service = Service(config, notifier or Notifier(), store, config_path, worker_fds=(lock.fd,), memory=memory)
        runtime = RuntimePublisher(service)
        stack.callback(runtime.withdraw)
        stack.push_async_callback(service.functions.close)
        ops = service.extensions["ops"] = OpsApi(service)  # the status page shows its report too
        service.route_adders += [InvokeApi(service.functions, service.accept_async).add_routes, ops.add_routes]
        await setup_extensions(service, stack)
        store.on_full_change(lambda reason: _tell_disk_state(service, reason))
        async with asyncio.TaskGroup() as background:
            delivery = background.create_task(service.dispatcher.run())
            async with service.intake():
                helpers = _start_helpers(service, background, reload_requests, runtime.on_reload)
                runtime.publish()  # before READY=1: whoever waits for READY finds the daemon at once
                await _announce_ready(service)
                if on_ready:
                    on_ready(service)
                await (shutdown_trigger or asyncio.get_running_loop().create_future)()
                runtime.withdraw()
                service.notifier.notify("STOPPING=1", "STATUS=stopping: draining in-flight invocations")
                service.log.info("service.stopping")
                deadline = asyncio.get_running_loop().time() + service.config.shutdown_timeout
                service.stop_by = deadline  # the HTTP API's requests share it (see service.intake)
                for task in helpers:
                    task.cancel()
                # One shutdown_timeout for everything in flight: async deliveries drain while the sources
                # (an SQS batch being invoked) and HTTP requests finish, not one after the other.
                service.dispatcher.stop()
            await _drain(service, delivery, deadline)
    service.log.info("service.stopped")


def _start_helpers(service: Service, group: asyncio.TaskGroup, reload_requests: asyncio.Queue[str] | None,
                   on_reload: Callable[[dict], None] | None = None) -> list[asyncio.Task[None]]:
    """Watchdog pings and reload handling, which live as long as intake does."""
    reloader = Reloader(service, on_result=on_reload)
    reload_requests = reload_requests or asyncio.Queue()
    tasks = [group.create_task(reloader.serve(reload_requests)), group.create_task(watchdog(service.notifier))]
    if service.config_path is not None:
        tasks.append(group.create_task(ConfigWatcher(service.config_path, reload_requests).run()))
    return tasks


def _tell_disk_state(service: Service, reason: str | None) -> None:
    """systemd's status line follows the disk: READY=1 cannot be taken back, STATUS= says what is wrong."""
    service.notifier.notify(f"STATUS=degraded: {reason}" if reason else service.status_line())


async def _drain(service: Service, delivery: asyncio.Task[None], deadline: float) -> None:
    """Let in-flight deliveries finish by ``deadline`` (shutdown_timeout after the stop); the rest stays queued."""
    remaining = max(0.0, deadline - asyncio.get_running_loop().time())
    done, _ = await asyncio.wait({delivery}, timeout=remaining)
    if not done:
        service.log.warning("service.drain_timeout", shutdown_timeout=service.config.shutdown_timeout)
        delivery.cancel()


# Optional components, each a module with ``async def setup(service, stack) -> None`` that may put objects in
# ``service.extensions``, append to ``service.route_adders`` and push its cleanup onto ``stack``.
EXTENSIONS = ("bridge.queues.component", "bridge.cluster.component", "bridge.s3api.component",
              "bridge.fanout.component", "bridge.ui.component")


async def setup_extensions(service: Service, stack: contextlib.AsyncExitStack) -> None:
    """Set up every optional component that is installed."""
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
