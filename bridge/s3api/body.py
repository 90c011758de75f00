"""A request body as it arrives, in bounded pieces: plain or aws-chunked (SigV4 streaming, trailing checksums),
checked against Content-MD5 and the x-amz-checksum-* values (a mismatch is S3's BadDigest)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import zlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web

from bridge.s3api.errors import S3Error

PIECE = 1 << 20  # bytes handed on at a time (one thread hop each): memory does not grow with the object
MAX_CHUNKS = 512  # chunks in one piece, below writev's IOV_MAX (1024)
Piece = list[bytes]  # received chunks, in order
LINE_LIMIT = 8192  # an aws-chunked chunk header or trailer line
MAX_OBJECT = 5 * 1024**3  # S3's limit for one PutObject or UploadPart


def incomplete() -> S3Error:
    """400 IncompleteBody."""
    return S3Error(400, "IncompleteBody", "You did not provide the number of bytes specified by the "
                                          "Content-Length HTTP header.")


class _Crc32:
    """zlib's CRC-32 behind hashlib's update/digest interface (S3's x-amz-checksum-crc32)."""

    def __init__(self) -> None:
        self.value = 0

    def update(self, data: bytes | memoryview) -> None:
        self.value = zlib.crc32(data, self.value)

    def digest(self) -> bytes:
        return self.value.to_bytes(4, "big")


CHECKSUMS: dict[str, Any] = {"crc32": _Crc32, "sha1": hashlib.sha1, "sha256": hashlib.sha256}


class Digests:
    """The MD5 (the ETag) and any checksum the client announced, updated piece by piece (on the writer's thread)."""

    def __init__(self, algorithms: list[str]) -> None:
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.checksums = {name: CHECKSUMS[name]() for name in algorithms if name in CHECKSUMS}
        self.size = 0

    def update(self, data: bytes | memoryview) -> None:
        """Count and hash one more chunk."""
        self.md5.update(data)
        for checksum in self.checksums.values():
            checksum.update(data)
        self.size += len(data)

    def update_all(self, piece: Piece) -> None:
        """Count and hash the chunks of one piece."""
        for data in piece:
            self.update(data)


class Body:
    """One upload's bytes: ``pieces()`` yields them decoded; ``verify(digests)`` checks them once all are read."""

    def __init__(self, request: web.Request, limit: int = MAX_OBJECT) -> None:
        headers = request.headers
        self.content = request.content
        self.limit = limit
        sha = headers.get("x-amz-content-sha256", "")
        self.chunked = sha.startswith("STREAMING-") or "aws-chunked" in headers.get("Content-Encoding", "")
        self.decoded_length = _int(headers.get("x-amz-decoded-content-length"))
        self.expected_md5 = _md5_header(headers.get("Content-MD5"))
        self.expected = {name[len("x-amz-checksum-"):]: value for name, value in headers.items()
                         if name.lower().startswith("x-amz-checksum-") and name.lower() != "x-amz-checksum-type"}
        self.expected = {k.lower(): v for k, v in self.expected.items()}
        trailer = headers.get("x-amz-trailer", "").lower().strip()
        self.trailer = trailer[len("x-amz-checksum-"):] if trailer.startswith("x-amz-checksum-") else None
        length = _int(headers.get("Content-Length"))
        if (self.decoded_length or length or 0) > limit:
            raise S3Error(400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size.")

    def digests(self) -> Digests:
        """Fresh digests for every checksum this body carries."""
        return Digests([*self.expected, *([self.trailer] if self.trailer else [])])

    async def pieces(self) -> AsyncIterator[Piece]:
        """The decoded body as lists of chunks of about PIECE bytes each (fewer, bigger pieces: fewer thread
        hops), never copied into one buffer: written with one writev each."""
        source = self._chunked() if self.chunked else self.content.iter_any()
        size, pending, held = 0, [], 0
        async for data in source:
            size += len(data)
            if size > self.limit:
                raise S3Error(400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size.")
            pending.append(data)
            held += len(data)
            if held >= PIECE or len(pending) >= MAX_CHUNKS:
                yield pending
                pending, held = [], 0
        if pending:
            yield pending
        if self.chunked and self.decoded_length is not None and size != self.decoded_length:
            raise incomplete()

    async def _chunked(self) -> AsyncIterator[bytes]:
        while True:
            size = _chunk_size(await self._line())
            if size == 0:
                break
            while size:
                data = await self.content.read(min(size, PIECE))
                if not data:
                    raise incomplete()
                size -= len(data)
                yield data
            if await self._line() != b"":
                raise S3Error(400, "InvalidRequest", "An aws-chunked chunk is longer than its header says.")
        await self._trailers()

    async def _trailers(self) -> None:
        while line := await self._line(eof_ok=True):
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name.startswith(b"x-amz-checksum-"):
                self.expected[name[len(b"x-amz-checksum-"):].decode("ascii", "replace")] = value.strip().decode(
                    "ascii", "replace")

    async def _line(self, *, eof_ok: bool = False) -> bytes:
        try:
            line = await self.content.readuntil(b"\n")
        except ValueError:
            raise S3Error(400, "InvalidRequest", "An aws-chunked header line is too long.") from None
        if not line.endswith(b"\n"):
            if eof_ok and not line.strip():
                return b""
            raise incomplete()
        if len(line) > LINE_LIMIT:
            raise S3Error(400, "InvalidRequest", "An aws-chunked header line is too long.")
        return line.rstrip(b"\r\n")

    def verify(self, digests: Digests) -> None:
        """BadDigest when the body is not what Content-MD5 or an x-amz-checksum-* value says."""
        if self.expected_md5 is not None and digests.md5.digest() != self.expected_md5:
            raise S3Error(400, "BadDigest", "The Content-MD5 you specified did not match what we received.")
        for name, checksum in digests.checksums.items():
            given = self.expected.get(name)
            if given is not None and base64.b64encode(checksum.digest()).decode() != given:
                raise S3Error(400, "BadDigest", f"The {name.upper()} you specified did not match the calculated "
                                                "checksum.")


class Pipeline:
    """Pieces handed to ``sink`` on a thread, one at a time, while the next one arrives: hashing and writing
    overlap the network (two cores), and at most one piece is in flight (memory stays bounded)."""

    def __init__(self, sink: Callable[[Piece], None]) -> None:
        self.sink = sink
        self.running: asyncio.Future[None] | None = None

    async def push(self, piece: Piece) -> None:
        """Wait for the piece before, then start this one."""
        await self.drain()
        self.running = asyncio.ensure_future(asyncio.to_thread(self.sink, piece))

    async def drain(self) -> None:
        """Wait for the piece in flight (its error is raised here)."""
        running, self.running = self.running, None
        if running is not None:
            # shielded: a cancelled request must not stop waiting while the thread still writes to the file
            await asyncio.shield(running)

    async def settle(self) -> None:
        """After a failure: wait for the thread to leave the file alone, whatever it raised (then abort)."""
        with contextlib.suppress(BaseException):
            await self.drain()


def _chunk_size(line: bytes) -> int:
    try:
        size = int(line.split(b";", 1)[0].strip(), 16)
    except ValueError:
        raise S3Error(400, "InvalidRequest", "The aws-chunked body is malformed.") from None
    if size < 0 or size > MAX_OBJECT:
        raise S3Error(400, "InvalidRequest", "The aws-chunked body is malformed.")
    return size


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        raise S3Error(400, "InvalidArgument", f"{value!r} is not a number.") from None


def _md5_header(value: str | None) -> bytes | None:
    if value is None:
        return None
    try:
        digest = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        digest = b""
    if len(digest) != 16:
        raise S3Error(400, "InvalidDigest", "The Content-MD5 you specified was invalid.")
    return digest
