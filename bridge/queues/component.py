"""Plugs the embedded queues into the daemon: the engine on the store, the SQS endpoint, shared SQS clients."""

from __future__ import annotations

import contextlib
from typing import Any

from bridge.queues.engine import QueueEngine
from bridge.queues.protocol import SqsProtocol
from bridge.sources.sqs.client import SqsClients


async def setup(service: Any, stack: contextlib.AsyncExitStack) -> None:
    """Start the engine for ``service.config.queues``, serve SQS on api.listen, share one client pool."""
    config = service.config
    engine = QueueEngine(service.store, region=config.region, account=config.account_id)
    await engine.start(config.queues)
    clients = SqsClients()
    stack.push_async_callback(clients.close)
    service.extensions["queues"] = engine
    service.extensions["sqs_clients"] = clients
    service.route_adders.append(SqsProtocol(engine).add_routes)
