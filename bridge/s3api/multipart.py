"""Multipart uploads: parts kept under ``state_dir/s3-uploads/ID/``, joined into the object on completion."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import os
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiohttp import web

from bridge.s3api import disk
from bridge.s3api.body import Body, Digests, Piece, Pipeline
from bridge.s3api.errors import S3Error, invalid_argument, malformed_xml, request_ids
from bridge.s3api.keys import Bucket, is_folder, key_parts, shown
from bridge.s3api.meta import ObjectMeta
from bridge.s3api.objects import COPY_CHUNK, Shared, copy_source, iso_date, quoted, upload_meta
from bridge.s3api.xmldoc import MAX_BODY, document, parse, text

UPLOAD_ID = re.compile(r"^[0-9a-f]{48}$")
COPY_RANGE = re.compile(r"^bytes=(\d{1,19})-(\d{1,19})$")
MAX_COPY_PART = 5 * 1024**3
PART = re.compile(r"^(\d{5})\.([0-9a-f]{32})$")
MIN_PART = 5 * 1024 * 1024  # every part but the last, S3's rule
MAX_PARTS = 10_000
JOIN_CHUNK = 8 << 20
EXPIRE_AFTER = 7 * 86400  # an upload neither completed nor aborted for this long is removed (AWS's usual rule)
SWEEP_EVERY = 3600


def no_such_upload() -> S3Error:
    """404 NoSuchUpload."""
    return S3Error(404, "NoSuchUpload", "The specified upload does not exist. The upload ID may be invalid, or "
                                        "the upload may have been aborted or completed.")


def part_number(value: str | None) -> int:
    """A partNumber parameter: 1-10000."""
    if value is None or not value.isdigit() or not 1 <= int(value) <= MAX_PARTS:
        raise invalid_argument("Part number must be an integer between 1 and 10000, inclusive")
    return int(value)


class Multipart:
    """The multipart operations of the S3 API."""

    def __init__(self, shared: Shared, root: Path, buckets: Callable[[], dict[str, Bucket]]) -> None:
        self.shared = shared
        self.root = root
        self.buckets = buckets  # copy sources (UploadPartCopy)
        self._completing: set[str] = set()

    def _dir(self, upload_id: str | None, bucket: Bucket, key: bytes) -> Path:
        """The upload's folder, if ``upload_id`` names an upload of this bucket and key (blocking: a thread)."""
        if upload_id is None or not UPLOAD_ID.match(upload_id):
            raise no_such_upload()
        folder = self.root / upload_id
        info = _info(folder)
        if info is None:
            raise no_such_upload()
        if info.get("root") != bucket.root.hex() or info.get("key") != key.hex():
            raise no_such_upload()
        return folder

    async def sweep_forever(self, expire_after: float = EXPIRE_AFTER, every: float = SWEEP_EVERY) -> None:
        """Remove abandoned uploads now and every ``every`` seconds: a client that dies mid-upload never aborts,
        and on a bucket's disk nobody pays the bill that makes an S3 user notice (AbortIncompleteMultipartUpload,
        7 days, as AWS's lifecycle examples)."""
        while True:
            try:
                for upload_id, age, info in await asyncio.to_thread(self._expire, expire_after):
                    self.shared.log.warning("s3.upload_expired", upload_id=upload_id, age_s=round(age),
                                            key=_key_of(info))
            except OSError as err:  # the next sweep tries again; uploads keep working meanwhile
                self.shared.log.warning("s3.sweep_failed", folder=str(self.root), error=str(err))
            await asyncio.sleep(every)

    def _expire(self, expire_after: float) -> list[tuple[str, float, dict[str, Any]]]:
        """Remove uploads initiated more than ``expire_after`` seconds ago (and unreadable folders as old)."""
        removed = []
        now = time.time()
        for folder in self.root.iterdir() if self.root.is_dir() else ():
            info = _info(folder)
            try:
                started = float(info.get("initiated", 0)) if info else folder.stat().st_mtime
            except (OSError, TypeError, ValueError):
                continue
            if now - started > expire_after and folder.name not in self._completing:
                shutil.rmtree(folder, ignore_errors=True)
                removed.append((folder.name, now - started, info or {}))
        return removed

    async def list_uploads(self, request: web.Request, bucket: Bucket) -> web.StreamResponse:
        """ListMultipartUploads: the bucket's uploads in progress, by key then start (prefix, delimiter,
        key-marker / upload-id-marker, max-uploads, encoding-type=url)."""
        q = request.query
        limit = q.get("max-uploads", "1000")
        if not limit.isdigit():
            raise invalid_argument("max-uploads must be a number from 0 to 2147483647.")
        prefix, delimiter = q.get("prefix", "").encode(), q.get("delimiter", "").encode()
        marker = (q.get("key-marker", "").encode(), q.get("upload-id-marker", ""))
        uploads = await asyncio.to_thread(self._uploads, bucket, prefix)
        rows, prefixes, truncated = _page(uploads, prefix, delimiter, marker, min(int(limit), 1000))
        url = q.get("encoding-type") == "url"
        text_of: Callable[[bytes], str] = (lambda k: quote(k, safe="/")) if url else shown
        owner = [("ID", "lambda-bridge"), ("DisplayName", "lambda-bridge")]
        last = rows[-1] if rows else None
        children: list[Any] = [
            ("Bucket", bucket.name), ("KeyMarker", text_of(marker[0])), ("UploadIdMarker", marker[1]),
            ("NextKeyMarker", text_of(last[0]) if truncated and last else None),
            ("NextUploadIdMarker", last[2] if truncated and last else None),
            ("Prefix", text_of(prefix)), ("Delimiter", text_of(delimiter) if delimiter else None),
            ("MaxUploads", min(int(limit), 1000)), ("IsTruncated", truncated),
            ("EncodingType", "url" if url else None)]
        children += [("Upload", [("Key", text_of(key)), ("UploadId", upload_id), ("Initiator", owner),
                                 ("Owner", owner), ("StorageClass", "STANDARD"), ("Initiated", iso_date(started))])
                     for key, started, upload_id in rows]
        children += [("CommonPrefixes", [("Prefix", text_of(p))]) for p in prefixes]
        return web.Response(body=document("ListMultipartUploadsResult", children), content_type="application/xml",
                            headers=request_ids())

    def _uploads(self, bucket: Bucket, prefix: bytes) -> list[tuple[bytes, float, str]]:
        """(key, initiated, upload id) of the bucket's uploads under ``prefix``, sorted as S3 lists them."""
        found = []
        for folder in self.root.iterdir() if self.root.is_dir() else ():
            info = _info(folder)
            if info is None or info.get("root") != bucket.root.hex() or not UPLOAD_ID.match(folder.name):
                continue
            try:
                key, started = bytes.fromhex(str(info.get("key"))), float(info.get("initiated", 0))
            except (TypeError, ValueError):
                continue
            if key.startswith(prefix):
                found.append((key, started, folder.name))
        return sorted(found)

    async def create(self, request: web.Request, bucket: Bucket, key: bytes) -> web.StreamResponse:
        """CreateMultipartUpload."""
        key_parts(key)
        if is_folder(key):
            raise invalid_argument("A key ending in '/' is a folder here and cannot hold data.")
        meta = upload_meta(request)
        upload_id = os.urandom(24).hex()
        info = {"root": bucket.root.hex(), "key": key.hex(), "type": meta.content_type, "headers": meta.headers,
                "user": meta.user, "initiated": time.time()}

        def work() -> None:
            folder = self.root / upload_id
            folder.mkdir(parents=True, mode=0o700)
            (folder / "upload.json").write_text(json.dumps(info))

        await asyncio.to_thread(work)
        body = document("InitiateMultipartUploadResult", [("Bucket", bucket.name), ("Key", shown(key)),
                                                          ("UploadId", upload_id)])
        return web.Response(body=body, content_type="application/xml", headers=request_ids())

    async def upload_part(self, request: web.Request, bucket: Bucket, key: bytes) -> web.StreamResponse:
        """UploadPart: the part is streamed to its own file, named by its number and MD5."""
        number = part_number(request.query.get("partNumber"))
        folder = await asyncio.to_thread(self._dir, request.query.get("uploadId"), bucket, key)
        if "x-amz-copy-source" in request.headers:
            return await self._copy_part(request, folder, number)
        body = Body(request)
        digests = body.digests()
        temp = folder / f".{os.urandom(8).hex()}.part"
        try:
            with await asyncio.to_thread(open, temp, "xb", buffering=0) as out:
                pipeline = Pipeline(lambda piece: _append(out, piece, digests))
                try:
                    async for piece in body.pieces():
                        await pipeline.push(piece)
                    await pipeline.drain()
                    await asyncio.to_thread(os.fdatasync, out.fileno())  # a 200 means the part is on disk
                finally:
                    await asyncio.shield(pipeline.settle())  # the file closes only once no thread writes to it
            body.verify(digests)
            etag = digests.md5.hexdigest()
            await asyncio.to_thread(_place_part, folder, temp, number, etag)
        except FileNotFoundError:
            raise no_such_upload() from None
        finally:
            await asyncio.to_thread(temp.unlink, missing_ok=True)
        return web.Response(headers={**request_ids(), "ETag": quoted(etag)})

    async def _copy_part(self, request: web.Request, folder: Path, number: int) -> web.StreamResponse:
        """UploadPartCopy: a part made of (a range of) an object the bridge serves (``aws s3 cp`` between
        buckets above 8 MB)."""
        source, source_key = copy_source(request.headers["x-amz-copy-source"], self.buckets())
        span = request.headers.get("x-amz-copy-source-range")
        etag, mtime = await asyncio.to_thread(_copy_part, source, source_key, span, folder, number)
        body = document("CopyPartResult", [("LastModified", iso_date(mtime)), ("ETag", quoted(etag))])
        return web.Response(body=body, content_type="application/xml", headers=request_ids())

    async def complete(self, request: web.Request, bucket: Bucket, key: bytes) -> web.StreamResponse:
        """CompleteMultipartUpload: the listed parts joined into one object (its event: CompleteMultipartUpload)."""
        upload_id = request.query.get("uploadId")
        folder = await asyncio.to_thread(self._dir, upload_id, bucket, key)
        wanted = _wanted_parts(await request.content.read(MAX_BODY + 1))
        if upload_id in self._completing:
            raise S3Error(409, "OperationAborted", "A conflicting operation is in progress on this upload.")
        self._completing.add(upload_id)  # type: ignore[arg-type]
        try:
            etag = await asyncio.to_thread(self._join, folder, bucket, key, wanted)
        except OSError as err:
            raise disk.s3_error(err, key, writing=True) from None
        finally:
            self._completing.discard(upload_id)  # type: ignore[arg-type]
        body = document("CompleteMultipartUploadResult", [
            ("Location", f"{request.scheme}://{request.host}/{bucket.name}/{shown(key)}"), ("Bucket", bucket.name),
            ("Key", shown(key)), ("ETag", quoted(etag))])
        return web.Response(body=body, content_type="application/xml", headers=request_ids())

    def _join(self, folder: Path, bucket: Bucket, key: bytes, wanted: list[tuple[int, str]]) -> str:
        have = _parts(folder)
        files = []
        for i, (number, etag) in enumerate(wanted):
            found = have.get(number)
            if found is None or found[0] != etag:
                raise S3Error(400, "InvalidPart", "One or more of the specified parts could not be found. The part "
                                                  "may not have been uploaded, or the specified entity tag may not "
                                                  "match the part's entity tag.")
            if i < len(wanted) - 1 and found[1].stat().st_size < MIN_PART:
                raise S3Error(400, "EntityTooSmall", "Your proposed upload is smaller than the minimum allowed size.")
            files.append(found[1])
        etag = hashlib.md5(b"".join(bytes.fromhex(e) for _, e in wanted), usedforsecurity=False).hexdigest()
        etag = f"{etag}-{len(wanted)}"
        info = json.loads((folder / "upload.json").read_text())
        meta = ObjectMeta(etag, info.get("type"), dict(info.get("headers") or {}), dict(info.get("user") or {}))
        writer = disk.Writer(bucket, key_parts(key))
        try:
            for path in files:
                with open(path, "rb", buffering=0) as part:
                    while chunk := part.read(JOIN_CHUNK):
                        writer.write(chunk)
            self.shared.publish(writer, meta, "ObjectCreated:CompleteMultipartUpload")
        except BaseException:
            writer.abort()
            raise
        shutil.rmtree(folder, ignore_errors=True)
        return etag

    async def abort(self, request: web.Request, bucket: Bucket, key: bytes) -> web.StreamResponse:
        """AbortMultipartUpload: the parts are removed."""
        folder = await asyncio.to_thread(self._dir, request.query.get("uploadId"), bucket, key)
        await asyncio.to_thread(shutil.rmtree, folder, True)
        return web.Response(status=204, headers=request_ids())

    async def list_parts(self, request: web.Request, bucket: Bucket, key: bytes) -> web.StreamResponse:
        """ListParts (up to max-parts, after part-number-marker)."""
        upload_id = request.query.get("uploadId")
        folder = await asyncio.to_thread(self._dir, upload_id, bucket, key)
        marker = request.query.get("part-number-marker", "0")
        limit = request.query.get("max-parts", "1000")
        if not marker.isdigit() or not limit.isdigit():
            raise invalid_argument("part-number-marker and max-parts are numbers.")
        have = await asyncio.to_thread(_parts, folder)
        numbers = [n for n in sorted(have) if n > int(marker)]
        shown_parts, truncated = numbers[:min(int(limit), 1000)], len(numbers) > min(int(limit), 1000)
        stats = await asyncio.to_thread(lambda: {n: have[n][1].stat() for n in shown_parts})
        children: list[Any] = [("Bucket", bucket.name), ("Key", shown(key)), ("UploadId", upload_id),
                               ("PartNumberMarker", int(marker)),
                               ("NextPartNumberMarker", shown_parts[-1] if shown_parts else None),
                               ("MaxParts", int(limit)), ("IsTruncated", truncated), ("StorageClass", "STANDARD")]
        children += [("Part", [("PartNumber", n), ("LastModified", iso_date(stats[n].st_mtime)),
                               ("ETag", quoted(have[n][0])), ("Size", stats[n].st_size)]) for n in shown_parts]
        return web.Response(body=document("ListPartsResult", children), content_type="application/xml",
                            headers=request_ids())


def _append(out: Any, piece: Piece, digests: Digests) -> None:
    digests.update_all(piece)
    disk.write_all(out.fileno(), piece)


def _copy_part(source: Bucket, source_key: bytes, span: str | None, folder: Path,
               number: int) -> tuple[str, float]:
    """Copy the source's bytes (``span``: x-amz-copy-source-range) into part ``number``; its ETag and time."""
    try:
        fd, st = disk.open_object(source, key_parts(source_key))
    except OSError as err:
        raise disk.s3_error(err, source_key) from None
    temp = folder / f".{os.urandom(8).hex()}.part"
    try:
        first, last = _copy_range(span, st.st_size)
        digests = Digests([])
        with open(temp, "xb", buffering=0) as out:
            offset = first
            while offset <= last and (chunk := os.pread(fd, min(COPY_CHUNK, last + 1 - offset), offset)):
                _append(out, [chunk], digests)
                offset += len(chunk)
            os.fdatasync(out.fileno())
        etag = digests.md5.hexdigest()
        _place_part(folder, temp, number, etag)
        return etag, (folder / f"{number:05d}.{etag}").stat().st_mtime
    except FileNotFoundError:
        raise no_such_upload() from None  # aborted (or expired) meanwhile
    finally:
        os.close(fd)
        temp.unlink(missing_ok=True)


def _copy_range(span: str | None, size: int) -> tuple[int, int]:
    """(first, last) of an x-amz-copy-source-range (``bytes=first-last``, both given); the whole object without."""
    if span is None:
        return 0, size - 1
    found = COPY_RANGE.match(span.strip())
    if found is None:
        raise invalid_argument("The x-amz-copy-source-range value must be of the form bytes=first-last where first "
                               "and last are the zero-based offsets of the first and last bytes to copy")
    first, last = int(found.group(1)), int(found.group(2))
    if first > last or last >= size:
        raise invalid_argument(f"Range specified is not valid for source object of size: {size}")
    if last - first + 1 > MAX_COPY_PART:
        raise S3Error(400, "InvalidRequest", "The specified copy source is larger than the maximum allowable size "
                                             f"for a copy source: {MAX_COPY_PART}")
    return first, last


def _place_part(folder: Path, temp: Path, number: int, etag: str) -> None:
    """The part's file replaces any earlier upload of the same number."""
    if not (folder / "upload.json").exists():
        raise FileNotFoundError(str(folder))
    for old in folder.glob(f"{number:05d}.*"):
        old.unlink(missing_ok=True)
    os.rename(temp, folder / f"{number:05d}.{etag}")
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)  # the part's name survives a crash too
    finally:
        os.close(fd)


def _page(uploads: list[tuple[bytes, float, str]], prefix: bytes, delimiter: bytes, marker: tuple[bytes, str],
          limit: int) -> tuple[list[tuple[bytes, float, str]], list[bytes], bool]:
    """One page of uploads after the marker: (uploads, common prefixes, truncated)."""
    key_marker, id_marker = marker
    if key_marker:
        ids = [u[2] for u in uploads if u[0] == key_marker]
        cut = ids.index(id_marker) + 1 if id_marker in ids else len(ids)  # no id marker: that key is done
        uploads = [u for u in uploads if u[0] > key_marker or (u[0] == key_marker and u[2] in ids[cut:])]
    rows: list[tuple[bytes, float, str]] = []
    prefixes: list[bytes] = []
    for upload in uploads:
        at = upload[0].find(delimiter, len(prefix)) if delimiter else -1
        common = upload[0][:at + len(delimiter)] if at >= 0 else None
        if common is not None and prefixes and prefixes[-1] == common:
            continue
        if len(rows) + len(prefixes) >= limit:
            return rows, prefixes, True
        if common is not None:
            prefixes.append(common)
        else:
            rows.append(upload)
    return rows, prefixes, False


def _key_of(info: dict[str, Any]) -> str | None:
    try:
        return shown(bytes.fromhex(str(info.get("key", ""))))
    except ValueError:
        return None


def _info(folder: Path) -> dict[str, Any] | None:
    try:
        info = json.loads((folder / "upload.json").read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def _parts(folder: Path) -> dict[int, tuple[str, Path]]:
    out = {}
    for path in folder.iterdir():
        found = PART.match(path.name)
        if found:
            out[int(found.group(1))] = (found.group(2), path)
    return out


def _wanted_parts(body: bytes) -> list[tuple[int, str]]:
    if len(body) > MAX_BODY:
        raise malformed_xml()
    root = parse(body)
    if root.tag != "CompleteMultipartUpload":
        raise malformed_xml()
    wanted = []
    for part in root.findall("Part"):
        number, etag = text(part, "PartNumber"), text(part, "ETag")
        if number is None or etag is None or not number.strip().isdigit():
            raise malformed_xml()
        wanted.append((int(number), etag.strip().strip('"').lower()))
    if not wanted:
        raise malformed_xml()
    if any(b[0] <= a[0] for a, b in itertools.pairwise(wanted)):
        raise S3Error(400, "InvalidPartOrder", "The list of parts was not in ascending order. The parts list must "
                                               "be specified in order by part number.")
    return wanted
