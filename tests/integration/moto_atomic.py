"""moto's server with DynamoDB's item writes made atomic, as DynamoDB's own are: ``python -m`` this module.

moto's threaded server runs two conditional writes on one item at the same time, and both can pass their
condition (measured: 31 winners for 30 items with 3 writers each). DynamoDB guarantees that a conditional
write is atomic, and cluster mode's claims rely on exactly that, so the tests run moto with one lock
around its item writes. Everything else (SQS, reads, the wire protocols) is moto unchanged, except with
``--fifo-receives``:

moto breaks SQS's FIFO guarantee (a group's messages come in order, none while one of them is in flight)
in two ways: it works out which groups are in flight once per ReceiveMessage, at the start of its long poll,
without seeing concurrent receives; and when several messages of one group come back from flight together
(a batch that failed), it releases them one by one as its scan reaches them, so it skips the earlier ones
and hands out a later one first (measured: 3 to 5 of 8 groups out of order per run with three nodes polling
one queue). The SQS event source mapping tests check exactly that guarantee across nodes, so with this flag
each receive is one scan at a time under a lock, after every message whose visibility ran out has left
flight; a long poll repeats the scan every RESCAN seconds until a message comes or its wait is over.

"Ran out" is read from one clock reading per scan: moto asks the clock again for each message, so a
message whose visibility ends during the scan (a few milliseconds, more on a loaded machine) is still in
flight for the clearing and visible to the scan, which then releases it as above, after skipping the
earlier ones of its group that had already come back (measured: 1 run in 5 to 10 with three nodes and a
busy core, the group's later messages first).
"""

from __future__ import annotations

import contextlib
import functools
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

WRITES = ("put_item", "update_item", "delete_item", "transact_write_items", "batch_write_item")
FIFO_FLAG = "--fifo-receives"
RESCAN = 0.02  # seconds between a long poll's scans (SQS answers within this of a message becoming free)


def _serialised(method: Callable[..., Any], lock: threading.Lock | threading.RLock) -> Callable[..., Any]:
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


SQS_CHANGES = ("send_message", "delete_message", "change_message_visibility")  # the batch calls use these


def patch_fifo_receives() -> None:
    """One ReceiveMessage scan at a time, each computing the FIFO groups in flight afresh.

    Sends, deletes and visibility changes take the same lock: moto's scan walks the queue's message list,
    and a delete from another server thread in the middle of that walk shifts the list under it, so the
    walk skips a message (a group's earlier one) and may hand out a later one first.
    """
    from moto.sqs.models import SQSBackend

    scan = SQSBackend.receive_message
    lock = threading.RLock()
    clock = _freeze_visibility_clock()
    for name in SQS_CHANGES:
        setattr(SQSBackend, name, _serialised(getattr(SQSBackend, name), lock))

    @functools.wraps(scan)
    def receive(self: Any, queue_name: str, count: int, wait_seconds_timeout: int, visibility_timeout: int,
                message_attribute_names: list[str] | None = None) -> Any:
        deadline = time.monotonic() + (wait_seconds_timeout or 0)
        while True:
            with lock, clock.frozen():
                _end_expired_flights(self.get_queue(queue_name))
                # wait 0: moto scans once, with the groups in flight as they are now
                found = scan(self, queue_name, count, 0, visibility_timeout, message_attribute_names)
            if found or time.monotonic() >= deadline:
                return found
            time.sleep(RESCAN)

    SQSBackend.receive_message = receive


class _ScanClock(threading.local):
    """The time a receive scan judges visibility by: read once per scan, in the scanning thread only."""

    now: float | None = None

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        from moto.sqs import models

        self.now = models.unix_time_millis()
        try:
            yield
        finally:
            self.now = None


def _freeze_visibility_clock() -> _ScanClock:
    """``Message.visible`` reads the scan's clock while a scan runs (the real one elsewhere); returns it."""
    from moto.sqs import models

    clock = _ScanClock()

    def visible(message: Any) -> bool:
        now = clock.now if clock.now is not None else models.unix_time_millis()
        return now > message.visible_at

    models.Message.visible = property(visible)
    return clock


def _end_expired_flights(queue: Any) -> None:
    """Messages whose visibility timeout ran out are in flight no more, all of them before the scan.

    moto lets them go one by one as its scan reaches them, so when several messages of one group come back
    together, the earlier ones are skipped (their group still has later ones "in flight") and a later one
    is handed out first.
    """
    for message in [m for m in queue.pending_messages if m.visible]:
        queue.pending_messages.discard(message)


def command(port: int, host: str = "127.0.0.1", *, fifo_receives: bool = False) -> list[str]:
    """The command line that starts this server (``fifo_receives``: SQS's FIFO group guarantee, see above)."""
    return [sys.executable, "-m", "tests.integration.moto_atomic", *([FIFO_FLAG] if fifo_receives else []),
            "-H", host, "-p", str(port)]


if __name__ == "__main__":
    from moto.server import main

    patch()
    args = sys.argv[1:]
    if FIFO_FLAG in args:
        args.remove(FIFO_FLAG)
        patch_fifo_receives()
    main(args)
