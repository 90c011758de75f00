"""moto's server with DynamoDB's item writes made atomic, as DynamoDB's own are: ``python -m`` this module.

moto's threaded server runs two conditional writes on one item at the same time, and both can pass their
condition (measured: 31 winners for 30 items with 3 writers each). DynamoDB guarantees that a conditional
write is atomic, and cluster mode's claims rely on exactly that, so the tests run moto with one lock
around its item writes. Everything else (SQS, reads, the wire protocols) is moto unchanged.
"""

from __future__ import annotations

import functools
import sys
import threading
from collections.abc import Callable
from typing import Any

WRITES = ("put_item", "update_item", "delete_item", "transact_write_items", "batch_write_item")


def _serialised(method: Callable[..., Any], lock: threading.Lock) -> Callable[..., Any]:
    @functools.wraps(method)
    def locked(*args: Any, **kwargs: Any) -> Any:
        with lock:
            return method(*args, **kwargs)

    return locked


def patch() -> None:
    """Give every DynamoDB item write one lock (moto's backends are shared by the server's threads)."""
    from moto.dynamodb.models import DynamoDBBackend

    lock = threading.Lock()
    for name in WRITES:
        setattr(DynamoDBBackend, name, _serialised(getattr(DynamoDBBackend, name), lock))


def command(port: int, host: str = "127.0.0.1") -> list[str]:
    """The command line that starts this server."""
    return [sys.executable, "-m", "tests.integration.moto_atomic", "-H", host, "-p", str(port)]


if __name__ == "__main__":
    from moto.server import main

    patch()
    main(sys.argv[1:])
