"""Which requests on api.listen are S3's (path-style or virtual-hosted), and which operation each one is."""

from __future__ import annotations

import asyncio
import functools
import ipaddress
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote, unquote_to_bytes

from aiohttp import web

from bridge.daemon.http_errors import is_unclaimed
from bridge.s3api.errors import S3Error, error_response, no_such_bucket
from bridge.s3api.keys import Bucket, bucket_table
from bridge.s3api.listing import Listing
from bridge.s3api.multipart import Multipart
from bridge.s3api.objects import Objects

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Sub-resources S3 has and the bridge does not: answered 501 NotImplemented rather than taken for a listing.
UNSUPPORTED = frozenset({
    "acl", "tagging", "versioning", "policy", "cors", "lifecycle", "website", "notification", "replication",
    "encryption", "logging", "object-lock", "retention", "legal-hold", "torrent", "attributes", "restore",
    "select", "versions", "accelerate", "analytics", "inventory", "metrics", "ownershipControls",
    "publicAccessBlock", "requestPayment", "intelligent-tiering", "policyStatus", "uploads",
})
QUIET = (404, 304, 412)  # ordinary answers (HEAD before a sync), logged at debug only


def _host(request: web.Request) -> str:
    host = request.headers.get("Host", "")
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if ":" in host else host


@functools.lru_cache(maxsize=256)  # the same few Host headers, again and again
def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class S3Api:
    """Claims S3 requests before the daemon's router (a middleware) and runs the operation they name."""

    def __init__(self, config: Callable[[], Any], objects: Objects, listing: Listing, multipart: Multipart,
                 log: Any) -> None:
        self.config = config
        self.objects, self.listing, self.multipart = objects, listing, multipart
        self.log = log
        self._table: tuple[Any, dict[str, Bucket]] = (None, {})

    def buckets(self) -> dict[str, Bucket]:
        """The served buckets of the running config (rebuilt when a reload swapped it)."""
        config = self.config()
        if self._table[0] is not config:
            self._table = (config, bucket_table(config))
        return self._table[1]

    def add_routes(self, app: web.Application) -> None:
        """Hook into the app on api.listen (routes of the other endpoints keep their paths)."""
        app.middlewares.append(self.middleware)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """S3 requests go to the S3 API; everything else to its route."""
        target = self.target(request)
        if target is None:
            return await handler(request)
        return await self.handle(request, *target)

    def target(self, request: web.Request) -> tuple[str | None, bytes] | None:
        """(bucket, raw key) of an S3 request (bucket None: the service, ListBuckets), or None if not S3's."""
        buckets = self.buckets()
        raw = request.raw_path.split("?", 1)[0]
        host = _host(request)
        if host and not _is_ip(host):
            for name in sorted(buckets, key=len, reverse=True):
                if host.startswith(name + "."):
                    return name, unquote_to_bytes(raw[1:])
        unmatched = is_unclaimed(request)
        if raw in ("", "/"):
            return (None, b"") if unmatched and request.method in ("GET", "HEAD") else None
        first, _, rest = raw[1:].partition("/")
        name = unquote(first, errors="replace")
        if name in buckets or unmatched:
            return name, unquote_to_bytes(rest)
        return None

    async def handle(self, request: web.Request, name: str | None, key: bytes) -> web.StreamResponse:
        """Run the operation; S3's XML error for anything refused (4xx), never a traceback."""
        try:
            return await self._dispatch(request, name, key)
        except S3Error as err:
            level = self.log.debug if err.status in QUIET else self.log.info
            level("s3.refused", method=request.method, bucket=name, code=err.code, status=err.status,
                  error=err.message[:200])
            return error_response(err, request.path, head=request.method == "HEAD")
        except (ConnectionError, asyncio.IncompleteReadError) as err:
            self.log.info("s3.client_gone", method=request.method, bucket=name, error=str(err)[:200])
            return error_response(S3Error(400, "IncompleteBody", "The request body ended early."), request.path,
                                  head=request.method == "HEAD")

    async def _dispatch(self, request: web.Request, name: str | None, key: bytes) -> web.StreamResponse:
        method = request.method
        if name is None:
            if method in ("GET", "HEAD"):
                return await self.listing.list_buckets(request)
            raise S3Error(405, "MethodNotAllowed", "The specified method is not allowed against this resource.")
        bucket = self.buckets().get(name)
        if bucket is None:
            raise no_such_bucket(name)
        query = request.query
        if key:
            return await self._object(request, method, bucket, key, query)
        return await self._bucket(request, method, bucket, query)

    async def _bucket(self, request: web.Request, method: str, bucket: Bucket, query: Any) -> web.StreamResponse:
        if method == "HEAD":
            return await self.listing.head_bucket(request, bucket)
        if method == "GET" and "location" in query:
            return await self.listing.location(request, bucket)
        if method == "GET" and "uploads" in query:
            return await self.multipart.list_uploads(request, bucket)
        if UNSUPPORTED.intersection(query):
            raise S3Error(501, "NotImplemented", "lambda-bridge does not implement this bucket operation.")
        if method == "GET":
            return await self.listing.list_objects(request, bucket)
        if method == "POST" and "delete" in query:
            return await self.objects.delete_many(request, bucket)
        if method == "PUT":
            raise S3Error(409, "BucketAlreadyOwnedByYou", "Buckets are the folders in the config; this one exists.")
        raise S3Error(405, "MethodNotAllowed", "Buckets are the folders in the config; they are not created or "
                                               "removed through the API.")

    async def _object(self, request: web.Request, method: str, bucket: Bucket, key: bytes,
                      query: Any) -> web.StreamResponse:
        upload = "uploadId" in query
        if UNSUPPORTED.intersection(query) - {"uploads"}:
            raise S3Error(501, "NotImplemented", "lambda-bridge does not implement this object operation.")
        if method in ("GET", "HEAD"):
            return await (self.multipart.list_parts(request, bucket, key) if upload and method == "GET"
                          else self.objects.get(request, bucket, key))
        if method == "PUT":
            return await (self.multipart.upload_part(request, bucket, key) if upload
                          else self.objects.put(request, bucket, key))
        if method == "POST" and "uploads" in query:
            return await self.multipart.create(request, bucket, key)
        if method == "POST" and upload:
            return await self.multipart.complete(request, bucket, key)
        if method == "DELETE":
            return await (self.multipart.abort(request, bucket, key) if upload
                          else self.objects.delete(request, bucket, key))
        raise S3Error(405, "MethodNotAllowed", "The specified method is not allowed against this resource.")
