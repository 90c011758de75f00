"""The status page's plug into the daemon: its routes, the invocation listener and the chart's sampler."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from bridge.ui.recent import Recent
from bridge.ui.routes import StatusPage

OPS = "ops"  # service.extensions key of the daemon's OpsApi (its status report)


async def setup(service: Any, stack: contextlib.AsyncExitStack) -> None:
    """Serve the page on api.listen and keep its 15 minutes of samples (nothing without api.listen)."""
    if service.config.api.address is None:
        return
    recent = Recent()
    service.metrics.listeners.append(recent.observe)
    page = StatusPage(service, service.extensions[OPS], recent)
    service.route_adders.append(page.add_routes)
    if not page.guard.loopback and page.guard.token is None:
        service.log.warning("ui.locked", listen=service.config.api.listen,
                            reason="api.listen is not a loopback address and the config sets no api.token")
    sampler = asyncio.get_running_loop().create_task(recent.sample_forever(_depth(service)))
    stack.callback(sampler.cancel)


def _depth(service: Any) -> Any:
    async def depth() -> int:
        return int(service.dispatcher.depth)

    return depth
