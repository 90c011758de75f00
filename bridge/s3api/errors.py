"""S3's error responses: the code, status and message S3 gives, as its XML document (HEAD: no body)."""

from __future__ import annotations

import os
from xml.sax.saxutils import escape

from aiohttp import web


class S3Error(Exception):
    """A request S3 would refuse: ``code`` and ``status`` as S3 names them, ``extra`` for more XML elements."""

    def __init__(self, status: int, code: str, message: str, **extra: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra


def no_such_key(key: str) -> S3Error:
    """404 NoSuchKey (also for a key that can exist in S3 but not as a file here)."""
    return S3Error(404, "NoSuchKey", "The specified key does not exist.", Key=key)


def no_such_bucket(bucket: str) -> S3Error:
    """404 NoSuchBucket: only configured buckets are served."""
    return S3Error(404, "NoSuchBucket", "The specified bucket does not exist.", BucketName=bucket)


def invalid_argument(message: str) -> S3Error:
    """400 InvalidArgument."""
    return S3Error(400, "InvalidArgument", message)


def malformed_xml() -> S3Error:
    """400 MalformedXML."""
    return S3Error(400, "MalformedXML", "The XML you provided was not well-formed or did not validate against "
                                        "our published schema.")


def request_ids() -> dict[str, str]:
    """The ``x-amz-request-id`` / ``x-amz-id-2`` headers every S3 response carries."""
    raw = os.urandom(32)  # one system call for both
    return {"x-amz-request-id": raw[:8].hex().upper(), "x-amz-id-2": raw[8:].hex()}


def error_response(err: S3Error, resource: str, *, head: bool) -> web.Response:
    """The response for ``err``; a HEAD request gets the status alone, as from S3."""
    headers = request_ids()
    if head:
        return web.Response(status=err.status, headers=headers)
    extra = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in err.extra.items())
    body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{err.code}</Code>'
            f"<Message>{escape(err.message)}</Message>{extra}<Resource>{escape(resource)}</Resource>"
            f"<RequestId>{headers['x-amz-request-id']}</RequestId><HostId>{headers['x-amz-id-2']}</HostId></Error>")
    return web.Response(status=err.status, body=body.encode("utf-8", "replace"), headers=headers,
                        content_type="application/xml")
