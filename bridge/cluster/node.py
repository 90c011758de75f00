"""This daemon as one cluster node: its AWS clients, its membership (join, heartbeat, leave) and its table."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
import uuid
from typing import Any

from bridge.cluster.aws import Clients, is_transient, transient_or_table_missing, unless_stopped, with_retries
from bridge.cluster.config import ClusterConfig
from bridge.cluster.table import NodeItemLost, Table
from bridge.errors import ClusterUnavailable
from bridge.log import get_logger


class Node:
    """Opened (``async with``) it has joined the cluster; ``keep_alive`` renews its heartbeat every lease/3."""

    def __init__(self, config: ClusterConfig, region: str) -> None:
        self.config = config
        self.id = config.node_id
        self.session = uuid.uuid4().hex  # this process; a restart under the same node id is a new session
        self.host = socket.gethostname()
        self.clients = Clients(config, region)
        self.table: Table | None = None
        self.joined = asyncio.Event()
        self.queue_depth: int | None = None
        self.started = 0.0
        self.log = get_logger(node=self.id)

    async def __aenter__(self) -> Node:
        await self.clients.__aenter__()
        try:
            await with_retries(self._join, what="join", give_up_after=None)
        except BaseException:
            await self.clients.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            if self.table is not None and self.joined.is_set():
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.table.leave(self.id, self.session, time.time()), 5)
                self.log.info("cluster.left")
        finally:
            await self.clients.__aexit__(None, None, None)

    async def _join(self) -> None:
        try:
            await self.clients.check()
        except ClusterUnavailable as err:
            # Only "cannot reach" is worth waiting for; a missing queue or table needs `cluster init`.
            if err.__cause__ is not None and is_transient(err.__cause__):
                raise err.__cause__ from None
            raise
        self.table = Table(self.clients.ddb, self.config.table)
        self.started = time.time()
        await self.table.join(self.id, self.session, self.host, self.started, self.config.lease_seconds)
        self.joined.set()
        self.log.info("cluster.joined", session=self.session, queue=self.config.async_queue,
                      table=self.config.table, lease_seconds=self.config.lease_seconds)

    async def keep_alive(self, stopping: asyncio.Event) -> None:
        """Renew the heartbeat until ``stopping``; NodeIdInUse (another process took the id) is raised."""
        interval = self.config.lease_seconds / 3
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await stopping.wait()
            if stopping.is_set():
                return
            await unless_stopped(with_retries(self._beat, what="heartbeat", give_up_after=None,
                                              transient=transient_or_table_missing), stopping)

    async def _beat(self) -> None:
        """One heartbeat; a lost membership item (restored or re-created table, TTL) is written again."""
        assert self.table is not None
        depth = await self.backlog()
        lease = self.config.lease_seconds
        try:
            await self.table.heartbeat(self.id, self.session, time.time(), lease, self.host, queue_depth=depth)
        except NodeItemLost as lost:
            await self.table.join(self.id, self.session, self.host, time.time(), lease, started=self.started)
            self.log.warning("cluster.rejoined", session=self.session, reason=str(lost), table=self.config.table)

    async def backlog(self) -> int:
        """The shared queue's approximate backlog (visible + in flight + delayed): status, max_queued_events."""
        response = await self.clients.sqs.get_queue_attributes(QueueUrl=self.config.async_queue, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed"])
        self.queue_depth = sum(int(v) for v in response.get("Attributes", {}).values())
        return self.queue_depth

    @property
    def sqs(self) -> Any:
        """The SQS client."""
        return self.clients.sqs

