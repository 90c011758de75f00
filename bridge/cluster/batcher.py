"""Coalesce concurrent single-item calls into SQS batch calls (up to 10 entries), like the store's group commit.

A caller submits one item and awaits its own outcome. Items submitted while a batch is in flight wait
for the next one, so a lone caller pays one request and many concurrent callers share requests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")
Flush = Callable[[list[T]], Awaitable[None]]

BATCH = 10  # SQS's limit for SendMessageBatch and DeleteMessageBatch


class Batcher(Generic[T]):
    """Runs ``flush(items)`` for up to BATCH items at a time, ``parallel`` flushes at once."""

    def __init__(self, flush: Flush[T], parallel: int = 4) -> None:
        self._flush = flush
        self._pending: list[tuple[T, asyncio.Future[None]]] = []
        self._running = 0
        self._parallel = parallel

    async def submit(self, item: T) -> None:
        """Queue ``item``; returns when its batch went through, raises what its batch raised."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._running < self._parallel:
            self._running += 1
            asyncio.get_running_loop().create_task(self._drain())
        await future

    async def _drain(self) -> None:
        try:
            await asyncio.sleep(0)  # let the callers of this loop iteration join the first batch
            while self._pending:
                batch, self._pending = self._pending[:BATCH], self._pending[BATCH:]
                await self._run(batch)
        finally:
            self._running -= 1

    async def _run(self, batch: list[tuple[T, asyncio.Future[None]]]) -> None:
        try:
            await self._flush([item for item, _ in batch])
        except Exception as err:
            for _, future in batch:
                if not future.done():
                    future.set_exception(err)
            return
        for _, future in batch:
            if not future.done():
                future.set_result(None)
