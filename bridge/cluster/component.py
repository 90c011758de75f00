"""Cluster mode's plug into the daemon: join the cluster before intake opens, and offer the claims hook."""

from __future__ import annotations

import contextlib
from typing import Any

from bridge.cluster.claims import Claims

CLAIMS_KEY = "cluster.claims"  # in ctx.extensions: the schedule sources' claim hook
NODE_KEY = "cluster.node"


async def setup(service: Any, stack: contextlib.AsyncExitStack) -> None:
    """With ``cluster:``, join (waiting while AWS is out of reach; refusing a node id in use) before intake."""
    if service.config.cluster is None:
        return
    node = await stack.enter_async_context(service.dispatcher.node)
    claims = Claims(node)
    stack.push_async_callback(claims.close)
    service.extensions[NODE_KEY] = node
    service.extensions[CLAIMS_KEY] = claims
