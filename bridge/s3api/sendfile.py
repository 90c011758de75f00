"""A response whose body is an already opened file, sent with sendfile(2): never read into memory."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from aiohttp import web

FALLBACK_CHUNK = 256 * 1024


class OpenFileResponse(web.StreamResponse):
    """``count`` bytes of the open file ``fd`` from ``offset``; the descriptor is closed when done.

    The file is opened by the S3 API itself (no symlink out of the bucket's folder); aiohttp's FileResponse
    would open a path again, after the check.
    """

    def __init__(self, fd: int, offset: int, count: int, *, status: int = 200, headers: Any = None) -> None:
        super().__init__(status=status, headers=headers)
        self._file = os.fdopen(fd, "rb", buffering=0)
        self._offset, self._count = offset, count
        self.content_length = count

    async def prepare(self, request: web.BaseRequest) -> Any:
        """Send the headers, then the bytes (sendfile where the transport allows, else in chunks)."""
        try:
            writer = await super().prepare(request)
            if request.method == "HEAD" or self._count == 0:
                return writer
            transport = request.transport
            if transport is None:
                raise ConnectionResetError("Connection lost")
            try:
                await asyncio.get_running_loop().sendfile(transport, self._file, self._offset, self._count)
            except NotImplementedError:
                await self._chunks()
            await super().write_eof()
            return writer
        finally:
            self._file.close()

    async def _chunks(self) -> None:
        offset, left = self._offset, self._count
        while left > 0:
            chunk = await asyncio.to_thread(os.pread, self._file.fileno(), min(FALLBACK_CHUNK, left), offset)
            if not chunk:
                break
            await self.write(chunk)
            offset, left = offset + len(chunk), left - len(chunk)
