"""The ``cluster:`` config section: this node's id, the shared SQS queue, the DynamoDB table, the lease."""

from __future__ import annotations

import re
import socket
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from bridge.config.base import Strict

NODE_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
TABLE_NAME = re.compile(r"^[A-Za-z0-9_.-]{3,255}$")


def _hostname() -> str:
    return socket.gethostname() or "localhost"


class ClusterConfig(Strict):
    """Several daemons with one config share SQS (async queue) and DynamoDB (ledger, leases, dead letters)."""

    node_id: str = Field(default_factory=_hostname)
    async_queue: str
    table: str
    endpoint_url: str | None = None
    lease_seconds: Annotated[float, Field(ge=1, le=3600)] = 10.0
    visibility_timeout: Annotated[int, Field(ge=5, le=43200)] = 30
    pollers: Annotated[int, Field(ge=1, le=64)] = 2

    @field_validator("node_id")
    @classmethod
    def _node_id(cls, value: str) -> str:
        if not NODE_ID.match(value):
            raise ValueError(f"{value!r} must be 1-128 letters, digits, '.', ':', '-' or '_' (default: the hostname)")
        return value

    @field_validator("async_queue")
    @classmethod
    def _queue(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path.count("/") != 2:
            raise ValueError(f"{value!r} is not an SQS queue URL; give it as "
                             "https://sqs.REGION.amazonaws.com/ACCOUNT/NAME (`aws sqs get-queue-url` prints it)")
        return value

    @field_validator("table")
    @classmethod
    def _table(cls, value: str) -> str:
        if not TABLE_NAME.match(value):
            raise ValueError(f"{value!r} is not a DynamoDB table name (3-255 letters, digits, '.', '-', '_')")
        return value

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in ("http", "https"):
            raise ValueError(f"{value!r} must be an http:// or https:// URL (or leave it out for AWS itself)")
        return value

    @property
    def queue_name(self) -> str:
        """The queue's name: the last part of its URL."""
        return urlsplit(self.async_queue).path.rsplit("/", 1)[-1]
