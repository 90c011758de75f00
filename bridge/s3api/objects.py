"""Object operations: GetObject, HeadObject, PutObject, CopyObject, DeleteObject, DeleteObjects."""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import formatdate
from typing import Any
from urllib.parse import unquote_to_bytes

from aiohttp import web
from multidict import CIMultiDict

from bridge.s3api import disk
from bridge.s3api.body import Body, Digests, Piece, Pipeline
from bridge.s3api.conditions import byte_range, precondition, whole_seconds
from bridge.s3api.errors import S3Error, invalid_argument, malformed_xml, no_such_bucket, no_such_key, request_ids
from bridge.s3api.keys import Bucket, is_folder, key_parts, shown
from bridge.s3api.meta import STORED_HEADERS, MetaStore, ObjectMeta, guess_type
from bridge.s3api.sendfile import OpenFileResponse
from bridge.s3api.xmldoc import MAX_BODY, document, parse, text
from bridge.sources.directory.provenance import Made, Provenance

MAX_USER_METADATA = 2048  # bytes of x-amz-meta-* names and values, S3's limit
COPY_CHUNK = 1 << 20
SMALL = 64 * 1024  # an upload this small is written on the event loop (microseconds), only synced on a thread
RESPONSE_OVERRIDES = {"response-content-type": "Content-Type", "response-content-language": "Content-Language",
                      "response-expires": "Expires", "response-cache-control": "Cache-Control",
                      "response-content-disposition": "Content-Disposition",
                      "response-content-encoding": "Content-Encoding"}


def http_date(seconds: float) -> str:
    """RFC 7231 date (Last-Modified)."""
    return _http_date(whole_seconds(seconds))


@functools.lru_cache(maxsize=4096)  # objects' times repeat (the same objects read again): formatting is slow
def _http_date(seconds: int) -> str:
    return formatdate(seconds, usegmt=True)


def iso_date(seconds: float) -> str:
    """S3's XML timestamps: 2026-01-02T03:04:05.000Z."""
    return datetime.fromtimestamp(whole_seconds(seconds), UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def quoted(etag: str) -> str:
    """An ETag as S3 sends it, in double quotes."""
    return f'"{etag}"'


@dataclass
class Shared:
    """What every operation uses: metadata, the provenance the directory sources read, the log."""

    meta: MetaStore
    provenance: Provenance
    log: Any

    def publish(self, writer: disk.Writer, meta: ObjectMeta, event_name: str) -> disk.Version:
        """Attach ``meta`` and rename the finished file over its key, recording which call made it (thread)."""
        version = self.seal(writer, meta, event_name)
        writer.commit()
        return version

    def seal(self, writer: disk.Writer, meta: ObjectMeta, event_name: str) -> disk.Version:
        """Attach ``meta`` and record which call made the file (before it is renamed into sight)."""
        self.meta.write(writer.fd, meta)
        return writer.seal(lambda v: self.provenance.record(writer.path, Made(v, event_name, meta.etag)))


def upload_meta(request: web.Request, etag: str = "") -> ObjectMeta:
    """Content-Type, the stored headers and x-amz-meta-* of an upload request (MetadataTooLarge past 2 KB)."""
    headers = request.headers
    user = {k.lower()[len("x-amz-meta-"):]: v for k, v in headers.items() if k.lower().startswith("x-amz-meta-")}
    if sum(len(k) + len(v) for k, v in user.items()) > MAX_USER_METADATA:
        raise S3Error(400, "MetadataTooLarge", "Your metadata headers exceed the maximum allowed metadata size.")
    stored = {name: headers[name] for name in STORED_HEADERS if name in headers}
    # aws-chunked is how this upload travelled, not how the object is encoded (S3 drops it too).
    given = stored.pop("Content-Encoding", "").split(",")
    encoding = ",".join(e for e in given if e.strip() not in ("", "aws-chunked"))
    if encoding:
        stored["Content-Encoding"] = encoding
    return ObjectMeta(etag, headers.get("Content-Type"), stored, user)


def object_headers(meta: ObjectMeta, st: os.stat_result, key: bytes) -> CIMultiDict[str]:
    """The headers GetObject and HeadObject answer with."""
    headers = CIMultiDict(request_ids())
    headers.update({"ETag": quoted(meta.etag), "Last-Modified": http_date(st.st_mtime), "Accept-Ranges": "bytes",
                    "Content-Type": meta.content_type or guess_type(shown(key).rsplit("/", 1)[-1])})
    headers.update(meta.headers)
    for name, value in meta.user.items():
        headers[f"x-amz-meta-{name}"] = value
    return headers


async def write_object(shared: Shared, bucket: Bucket, parts: list[bytes], pieces: AsyncIterator[Piece],
                       finish: Callable[[Digests], ObjectMeta], digests: Digests, event_name: str) -> ObjectMeta:
    """Stream ``pieces`` into a new file for the key and publish it; ``finish`` checks the digests and names
    the metadata. A failure leaves the key as it was. Once the file is complete, its commit runs to its end
    even if the request is cancelled (a thread cannot be stopped halfway; it cleans up after itself)."""
    first = await anext(pieces, None)
    second = await anext(pieces, None) if first is not None else None
    if second is None and sum(map(len, first or [])) <= SMALL:
        # Written here, made durable on a thread: handing every step to a thread costs more CPU than the
        # microseconds of system calls (each hop wakes the thread and contends for the GIL).
        writer, meta = _prepare(shared, bucket, parts, first or [], finish, digests, event_name)
        await asyncio.shield(asyncio.to_thread(_commit_or_abort, writer))
        return meta
    if second is None:
        return await asyncio.shield(asyncio.to_thread(_write_whole, shared, bucket, parts, first or [], finish,
                                                      digests, event_name))
    writer = await asyncio.to_thread(disk.Writer, bucket, parts)
    pipeline = Pipeline(lambda piece: _write(writer, piece, digests))
    try:
        for piece in (first, second):
            await pipeline.push(piece)
        async for piece in pieces:
            await pipeline.push(piece)
        await pipeline.drain()
        meta = finish(digests)
        shared.seal(writer, meta, event_name)
    except BaseException:
        await asyncio.shield(_abort(pipeline, writer))
        raise
    await asyncio.shield(asyncio.to_thread(_commit_or_abort, writer))
    return meta


async def _abort(pipeline: Pipeline, writer: disk.Writer) -> None:
    await pipeline.settle()
    await asyncio.to_thread(writer.abort)


def _write(writer: disk.Writer, piece: Piece, digests: Digests) -> None:
    digests.update_all(piece)
    writer.write_all(piece)


def _prepare(shared: Shared, bucket: Bucket, parts: list[bytes], piece: Piece,
             finish: Callable[[Digests], ObjectMeta], digests: Digests,
             event_name: str) -> tuple[disk.Writer, ObjectMeta]:
    """A one-piece object written to its temporary file and sealed, ready to commit."""
    digests.update_all(piece)
    meta = finish(digests)  # before any file exists: a bad digest writes nothing
    writer = disk.Writer(bucket, parts)
    try:
        writer.write_all(piece)
        shared.seal(writer, meta, event_name)
    except BaseException:
        writer.abort()
        raise
    return writer, meta


def _commit_or_abort(writer: disk.Writer) -> None:
    try:
        writer.commit()
    except BaseException:
        writer.abort()
        raise


def _write_whole(shared: Shared, bucket: Bucket, parts: list[bytes], piece: Piece,
                 finish: Callable[[Digests], ObjectMeta], digests: Digests, event_name: str) -> ObjectMeta:
    writer, meta = _prepare(shared, bucket, parts, piece, finish, digests, event_name)
    _commit_or_abort(writer)
    return meta


def copy_source(header: str, buckets: dict[str, Bucket]) -> tuple[Bucket, bytes]:
    """The bucket and raw key an ``x-amz-copy-source`` names (``/bucket/key`` or ``bucket/key``, URL-encoded,
    a ``?versionId=`` ignored); NoSuchBucket for a bucket the bridge does not serve."""
    # A header's bytes arrive as str with surrogates for what is not UTF-8: back to those bytes first.
    path = unquote_to_bytes(header.split("?", 1)[0].encode("utf-8", "surrogateescape")).lstrip(b"/")
    name, _, key = path.partition(b"/")
    bucket = buckets.get(name.decode("utf-8", "replace"))
    if bucket is None:
        raise no_such_bucket(name.decode("utf-8", "replace"))
    return bucket, key


class Objects:
    """The object operations of the S3 API."""

    def __init__(self, shared: Shared, buckets: Callable[[], dict[str, Bucket]]) -> None:
        self.shared = shared
        self.buckets = buckets

    # --- GetObject / HeadObject -------------------------------------------------------------------------

    async def get(self, request: web.Request, bucket: Bucket, key: bytes) -> web.StreamResponse:
        """GetObject and HeadObject: conditions, Range, the stored headers; the body by sendfile."""
        parts = key_parts(key)
        if is_folder(key):
            raise no_such_key(shown(key))
        fd, st, meta = await self._open(bucket, parts, key)
        try:
            return self._answer(request, fd, st, meta, key)
        except BaseException:
            os.close(fd)
            raise

    async def _open(self, bucket: Bucket, parts: list[bytes], key: bytes) -> tuple[int, os.stat_result, ObjectMeta]:
        """The open file, its stat and metadata. Opened here (a few microseconds of system calls: a thread hop
        would cost more); a file whose MD5 must still be computed is hashed on a thread."""
        try:
            fd, st = disk.open_object(bucket, parts)
            try:
                meta = self.shared.meta.known(fd, st) or await asyncio.to_thread(self.shared.meta.read, fd, st)
            except BaseException:
                os.close(fd)
                raise
        except OSError as err:
            raise disk.s3_error(err, key) from None
        return fd, st, meta

    def _answer(self, request: web.Request, fd: int, st: os.stat_result, meta: ObjectMeta,
                key: bytes) -> web.StreamResponse:
        headers = object_headers(meta, st, key)
        status = precondition(request.headers, meta.etag, st.st_mtime)
        if status == 412:
            raise S3Error(412, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold",
                          Condition="If-Match")
        if status == 304:
            os.close(fd)
            keep = {k: headers[k] for k in ("ETag", "Last-Modified", "x-amz-request-id", "x-amz-id-2")}
            return web.Response(status=304, headers=keep)
        for param, header in RESPONSE_OVERRIDES.items():
            if param in request.query:
                headers[header] = request.query[param]
        try:
            span = byte_range(request.headers.get("Range"), st.st_size)
        except S3Error as err:
            err.extra["RangeRequested"] = request.headers.get("Range", "")
            raise
        if span is None:
            return OpenFileResponse(fd, 0, st.st_size, headers=headers)
        first, last = span
        headers["Content-Range"] = f"bytes {first}-{last}/{st.st_size}"
        return OpenFileResponse(fd, first, last - first + 1, status=206, headers=headers)

    # --- PutObject / CopyObject -------------------------------------------------------------------------

    async def put(self, request: web.Request, bucket: Bucket, key: bytes) -> web.StreamResponse:
        """PutObject (CopyObject when x-amz-copy-source is given)."""
        if "x-amz-copy-source" in request.headers:
            return await self.copy(request, bucket, key)
        parts = key_parts(key)
        given = upload_meta(request)
        body = Body(request)
        if is_folder(key):
            return await self._put_folder(request, bucket, parts, key)

        def finish(digests: Digests) -> ObjectMeta:
            body.verify(digests)
            return ObjectMeta(digests.md5.hexdigest(), given.content_type, given.headers, given.user)

        try:
            meta = await write_object(self.shared, bucket, parts, body.pieces(), finish, body.digests(),
                                      "ObjectCreated:Put")
        except OSError as err:
            raise disk.s3_error(err, key, writing=True) from None
        return web.Response(headers={**request_ids(), "ETag": quoted(meta.etag)})

    async def _put_folder(self, request: web.Request, bucket: Bucket, parts: list[bytes],
                          key: bytes) -> web.StreamResponse:
        if await request.content.read(1):
            raise invalid_argument("A key ending in '/' is a folder here and cannot hold data.")
        try:
            await asyncio.to_thread(disk.make_folder, bucket, parts)
        except OSError as err:
            raise disk.s3_error(err, key, writing=True) from None
        return web.Response(headers={**request_ids(), "ETag": quoted("d41d8cd98f00b204e9800998ecf8427e")})

    async def copy(self, request: web.Request, bucket: Bucket, key: bytes) -> web.StreamResponse:
        """CopyObject: the source's bytes into a new file for the key (an ``ObjectCreated:Copy`` event)."""
        parts = key_parts(key)
        source, source_key = copy_source(request.headers["x-amz-copy-source"], self.buckets())
        source_parts = key_parts(source_key)
        directive = request.headers.get("x-amz-metadata-directive", "COPY").upper()
        if directive not in ("COPY", "REPLACE"):
            raise invalid_argument("Unknown metadata directive.")
        if directive == "COPY" and (source.root, source_key) == (bucket.root, key):
            raise S3Error(400, "InvalidRequest", "This copy request is illegal because it is trying to copy an "
                          "object to itself without changing the object's metadata, storage class, website "
                          "redirect location or encryption attributes.")
        replace = upload_meta(request) if directive == "REPLACE" else None
        try:
            meta, mtime = await asyncio.to_thread(self._copy, source, source_parts, bucket, parts, replace)
        except OSError as err:
            raise disk.s3_error(err, source_key if isinstance(err, FileNotFoundError) else key,
                                writing=not isinstance(err, FileNotFoundError)) from None
        body = document("CopyObjectResult", [("LastModified", iso_date(mtime)), ("ETag", quoted(meta.etag))])
        return web.Response(body=body, content_type="application/xml", headers=request_ids())

    def _copy(self, source: Bucket, source_parts: list[bytes], bucket: Bucket, parts: list[bytes],
              replace: ObjectMeta | None) -> tuple[ObjectMeta, float]:
        fd, _ = disk.open_object(source, source_parts)
        try:
            old = self.shared.meta.read(fd, os.fstat(fd))
            writer = disk.Writer(bucket, parts)
            try:
                digests = Digests([])
                offset = 0
                while chunk := os.pread(fd, COPY_CHUNK, offset):
                    digests.update(chunk)
                    writer.write(chunk)
                    offset += len(chunk)
                kept = replace or old
                meta = ObjectMeta(digests.md5.hexdigest(), kept.content_type, kept.headers, kept.user)
                version = self.shared.publish(writer, meta, "ObjectCreated:Copy")
            except BaseException:
                writer.abort()
                raise
        finally:
            os.close(fd)
        return meta, version.mtime_ns / 1e9

    # --- DeleteObject / DeleteObjects -------------------------------------------------------------------

    async def delete(self, request: web.Request, bucket: Bucket, key: bytes) -> web.StreamResponse:
        """DeleteObject: 204 whether or not the key existed (as S3 without versioning)."""
        parts = key_parts(key)
        try:
            await asyncio.to_thread(disk.delete, bucket, parts, folder=is_folder(key))
        except OSError as err:
            raise disk.s3_error(err, key, writing=True) from None
        return web.Response(status=204, headers=request_ids())

    async def delete_many(self, request: web.Request, bucket: Bucket) -> web.StreamResponse:
        """DeleteObjects: up to 1000 keys from the XML body; each key's own error in the result."""
        body = await request.content.read(MAX_BODY + 1)
        if len(body) > MAX_BODY:
            raise malformed_xml()
        root = parse(body)
        keys = [text(obj, "Key") for obj in root.findall("Object")]
        if root.tag != "Delete" or not keys or len(keys) > 1000 or any(k is None for k in keys):
            raise malformed_xml()
        quiet = (text(root, "Quiet") or "").strip().lower() == "true"
        results = await asyncio.to_thread(self._delete_keys, bucket, [k.encode() for k in keys if k is not None])
        children = [("Deleted", [("Key", shown(k))]) if err is None else
                    ("Error", [("Key", shown(k)), ("Code", err.code), ("Message", err.message)])
                    for k, err in results if err is not None or not quiet]
        return web.Response(body=document("DeleteResult", children), content_type="application/xml",
                            headers=request_ids())

    @staticmethod
    def _delete_keys(bucket: Bucket, keys: list[bytes]) -> list[tuple[bytes, S3Error | None]]:
        results: list[tuple[bytes, S3Error | None]] = []
        for key in keys:
            try:
                disk.delete(bucket, key_parts(key), folder=is_folder(key))
                results.append((key, None))
            except S3Error as err:
                results.append((key, err))
            except OSError as err:
                results.append((key, disk.s3_error(err, key, writing=True)))
        return results
