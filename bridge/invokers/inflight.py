"""Counts an invoker's calls in progress, so a close can wait for them to finish."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator


class InFlight:
    """The number of calls in progress and an event set whenever it drops to zero."""

    def __init__(self) -> None:
        self.count = 0
        self._drained = asyncio.Event()
        self._drained.set()

    @contextlib.contextmanager
    def call(self) -> Iterator[None]:
        """Count one call for the duration of the block."""
        self.count += 1
        self._drained.clear()
        try:
            yield
        finally:
            self.count -= 1
            if self.count == 0:
                self._drained.set()

    async def drained(self, timeout: float) -> None:
        """Wait until no call is in progress, at most ``timeout`` seconds."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._drained.wait()
