"""aiobotocore Lambda clients: one session and client per (endpoint, region, profile), created once, reused."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import aiobotocore
import botocore
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession
from botocore import UNSIGNED

from bridge import __version__
from bridge.config.model import RemoteFunctionConfig

ClientKey = tuple[str | None, str, str | None, bool, float]
CONNECT_TIMEOUT = 5.0  # seconds; the read timeout is the function's own ``timeout``
# A fixed User-Agent: botocore otherwise rebuilds a long one for every request (about a tenth of its CPU per call).
USER_AGENT = f"lambda-bridge/{__version__} aiobotocore/{aiobotocore.__version__} botocore/{botocore.__version__}"
# sam local start-lambda and the RIE never check signatures: not signing spares users dummy credentials there.
UNSIGNED_BACKENDS = frozenset({"sam", "rie"})


def client_key(cfg: RemoteFunctionConfig) -> ClientKey:
    """Functions with the same key share one client and its connection pool (the read timeout is part of it)."""
    return cfg.endpoint_url, cfg.region, cfg.profile, cfg.backend not in UNSIGNED_BACKENDS, cfg.timeout


def client_config(cfg: RemoteFunctionConfig) -> AioConfig:
    """No botocore retries (tenacity owns retrying); the pool fits ``max_concurrency`` calls at once."""
    options: dict[str, Any] = {
        "read_timeout": cfg.timeout,
        "connect_timeout": min(CONNECT_TIMEOUT, cfg.timeout),
        "retries": {"total_max_attempts": 1, "mode": "standard"},
        "max_pool_connections": max(10, cfg.concurrency),
        "user_agent": USER_AGENT,
    }
    if cfg.backend in UNSIGNED_BACKENDS:
        options["signature_version"] = UNSIGNED
    return AioConfig(**options)


class RemoteClients:
    """Lambda clients by key. Credentials come from the standard chain (or ``profile``) and botocore
    refreshes them itself; nothing here reads or logs them."""

    def __init__(self) -> None:
        self._clients: dict[ClientKey, Any] = {}
        self._lock = asyncio.Lock()
        self._stack = contextlib.AsyncExitStack()

    async def get(self, cfg: RemoteFunctionConfig) -> Any:
        """The client for ``cfg``'s endpoint, created on first use."""
        key = client_key(cfg)
        client = self._clients.get(key)
        if client is not None:
            return client
        async with self._lock:
            if key not in self._clients:
                self._clients[key] = await self._create(cfg)
            return self._clients[key]

    async def _create(self, cfg: RemoteFunctionConfig) -> Any:
        session = AioSession(profile=cfg.profile)
        creator = session.create_client("lambda", region_name=cfg.region, endpoint_url=cfg.endpoint_url,
                                        config=client_config(cfg))
        return await self._stack.enter_async_context(creator)

    async def close(self) -> None:
        """Close every client and its connections."""
        self._clients.clear()
        await self._stack.aclose()
