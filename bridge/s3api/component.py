"""Plugs the S3 API into the daemon: served on api.listen, telling the directory sources which call wrote a file."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from bridge.log import get_logger
from bridge.s3api.listing import Listing
from bridge.s3api.meta import MetaStore
from bridge.s3api.multipart import Multipart
from bridge.s3api.objects import Objects, Shared
from bridge.s3api.routing import S3Api
from bridge.sources.directory.provenance import EXTENSION, Provenance


async def setup(service: Any, stack: contextlib.AsyncExitStack) -> None:
    """Serve every configured bucket (directory sources and ``buckets:``) as S3 on api.listen."""
    log = get_logger()
    provenance = Provenance()
    service.extensions[EXTENSION] = provenance
    shared = Shared(MetaStore(log), provenance, log)

    def config() -> Any:
        return service.config

    multipart = Multipart(shared, service.config.state_dir / "s3-uploads", lambda: api.buckets())
    api = S3Api(config, None, Listing(shared.meta, lambda: api.buckets(), config),  # type: ignore[arg-type]
                multipart, log)
    api.objects = Objects(shared, api.buckets)
    service.route_adders.append(api.add_routes)
    sweeper = asyncio.get_running_loop().create_task(multipart.sweep_forever())
    stack.callback(sweeper.cancel)
