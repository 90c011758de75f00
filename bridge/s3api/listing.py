"""Listing: ListObjectsV2, ListObjects, ListBuckets, HeadBucket, GetBucketLocation."""

from __future__ import annotations

import asyncio
import base64
import binascii
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from aiohttp import web

from bridge.s3api import disk
from bridge.s3api.errors import S3Error, invalid_argument, request_ids
from bridge.s3api.keys import Bucket, key_parts, shown
from bridge.s3api.meta import MetaStore
from bridge.s3api.objects import iso_date, quoted
from bridge.s3api.xmldoc import document
from bridge.sources.directory.tree import TreeRules, Version, walk

MAX_KEYS = 1000


@dataclass(frozen=True)
class Query:
    """One listing request, decoded."""

    prefix: bytes
    delimiter: bytes
    after: bytes  # list keys greater than this (start-after, continuation token, marker)
    max_keys: int
    url: bool  # encoding-type=url


@dataclass
class Page:
    """One page of a listing: keys with their versions and ETags, common prefixes, and where it stopped."""

    contents: list[tuple[bytes, Version, str]]
    prefixes: list[bytes]
    truncated: bool
    last: bytes  # the last key or prefix on the page


def _max_keys(value: str | None) -> int:
    if value is None:
        return MAX_KEYS
    if not value.isdigit():
        raise invalid_argument("max-keys must be a number from 0 to 2147483647.")
    return min(int(value), MAX_KEYS)


def _token(value: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(value.encode("ascii"))
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise invalid_argument("The continuation token provided is incorrect.") from None


def scan(bucket: Bucket, query: Query, meta: MetaStore) -> Page:
    """Walk the part of the folder the prefix names (no symlinked folder is entered), sorted as S3 sorts
    (UTF-8 bytes), and cut one page (blocking: run on a thread)."""
    start = query.prefix.rpartition(b"/")[0]
    try:
        if start:
            os.close(disk.open_dir(bucket, key_parts(start + b"/")))
    except (S3Error, OSError):
        return Page([], [], False, b"")
    found = walk(TreeRules(bucket.root, (), bucket.follow_symlinks), start)
    keys = sorted(k for k in found if k.startswith(query.prefix))
    page = Page([], [], False, b"")
    for key in keys:
        item = _common_prefix(key, query) or key
        if item <= query.after or (page.prefixes and page.prefixes[-1] == item):
            continue
        if len(page.contents) + len(page.prefixes) >= query.max_keys:
            page.truncated = True
            break
        if item is key:
            page.contents.append((key, found[key], _etag(bucket, key, meta)))
        else:
            page.prefixes.append(item)
        page.last = item
    return page


def _common_prefix(key: bytes, query: Query) -> bytes | None:
    if not query.delimiter:
        return None
    at = key.find(query.delimiter, len(query.prefix))
    return key[:at + len(query.delimiter)] if at >= 0 else None


def _etag(bucket: Bucket, key: bytes, meta: MetaStore) -> str:
    try:
        fd = os.open(bucket.root + b"/" + key, disk.READ_FLAGS if not bucket.follow_symlinks else os.O_RDONLY)
    except OSError:
        return ""
    try:
        return meta.read(fd, os.fstat(fd)).etag
    finally:
        os.close(fd)


class Listing:
    """The listing operations of the S3 API."""

    def __init__(self, meta: MetaStore, buckets: Callable[[], dict[str, Bucket]], config: Callable[[], Any]) -> None:
        self.meta = meta
        self.buckets = buckets
        self.config = config

    def _text(self, value: bytes, url: bool) -> str:
        return quote(value, safe="/") if url else shown(value)

    async def list_objects(self, request: web.Request, bucket: Bucket) -> web.StreamResponse:
        """ListObjectsV2 (``list-type=2``) or ListObjects."""
        q = request.query
        v2 = q.get("list-type") == "2"
        encoding = q.get("encoding-type")
        if encoding not in (None, "url"):
            raise invalid_argument("Invalid Encoding Method specified in Request")
        token = _token(q["continuation-token"]) if v2 and "continuation-token" in q else b""
        after = max(token, q.get("start-after" if v2 else "marker", "").encode())
        query = Query(q.get("prefix", "").encode(), q.get("delimiter", "").encode(), after,
                      _max_keys(q.get("max-keys")), encoding == "url")
        page = await asyncio.to_thread(scan, bucket, query, self.meta)
        children = self._head(bucket, query, page, v2, q) + self._items(page, query, owner=not v2 or
                                                                         q.get("fetch-owner") == "true")
        return web.Response(body=document("ListBucketResult", children), content_type="application/xml",
                            headers=request_ids())

    def _head(self, bucket: Bucket, query: Query, page: Page, v2: bool, q: Any) -> list[Any]:
        url = query.url
        head: list[Any] = [("Name", bucket.name), ("Prefix", self._text(query.prefix, url))]
        if v2:
            head += [("StartAfter", self._text(q["start-after"].encode(), url) if "start-after" in q else None),
                     ("ContinuationToken", q.get("continuation-token")),
                     ("NextContinuationToken", base64.urlsafe_b64encode(page.last).decode() if page.truncated
                      else None),
                     ("KeyCount", len(page.contents) + len(page.prefixes))]
        else:
            head += [("Marker", self._text(q.get("marker", "").encode(), url)),
                     ("NextMarker", self._text(page.last, url) if page.truncated and query.delimiter else None)]
        return [*head, ("MaxKeys", query.max_keys),
                ("Delimiter", self._text(query.delimiter, url) if query.delimiter else None),
                ("EncodingType", "url" if url else None), ("IsTruncated", page.truncated)]

    def _items(self, page: Page, query: Query, *, owner: bool) -> list[Any]:
        owner_xml = [("ID", self.config().account_id), ("DisplayName", "lambda-bridge")] if owner else None
        items: list[Any] = [("Contents", [("Key", self._text(key, query.url)),
                                          ("LastModified", iso_date(version.mtime_ns / 1e9)),
                                          ("ETag", quoted(etag)), ("Size", version.size),
                                          ("Owner", owner_xml), ("StorageClass", "STANDARD")])
                            for key, version, etag in page.contents]
        return items + [("CommonPrefixes", [("Prefix", self._text(p, query.url))]) for p in page.prefixes]

    async def list_buckets(self, request: web.Request) -> web.StreamResponse:
        """ListBuckets: every served bucket, created when its folder was."""
        buckets = sorted(self.buckets().values(), key=lambda b: b.name)
        stats = await asyncio.to_thread(lambda: [_created(b) for b in buckets])
        children = [("Owner", [("ID", self.config().account_id), ("DisplayName", "lambda-bridge")]),
                    ("Buckets", [("Bucket", [("Name", b.name), ("CreationDate", iso_date(created))])
                                 for b, created in zip(buckets, stats, strict=True)])]
        return web.Response(body=document("ListAllMyBucketsResult", children), content_type="application/xml",
                            headers=request_ids())

    async def head_bucket(self, request: web.Request, bucket: Bucket) -> web.StreamResponse:
        """HeadBucket: 200 with the region."""
        return web.Response(headers={**request_ids(), "x-amz-bucket-region": self.config().region})

    async def location(self, request: web.Request, bucket: Bucket) -> web.StreamResponse:
        """GetBucketLocation: the region (empty for us-east-1, as S3 answers)."""
        region = self.config().region
        body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<LocationConstraint xmlns='
                f'"http://s3.amazonaws.com/doc/2006-03-01/">{"" if region == "us-east-1" else region}'
                "</LocationConstraint>").encode()
        return web.Response(body=body, content_type="application/xml", headers=request_ids())


def _created(bucket: Bucket) -> float:
    try:
        return os.stat(bucket.root).st_mtime
    except OSError:
        return 0.0
