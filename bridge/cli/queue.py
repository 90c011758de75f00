"""The ``queue`` commands (send, list, purge): through the daemon's SQS endpoint, else on the store file."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator
from typing import Any

from bridge.config.model import Config
from bridge.errors import UsageError


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add ``queue send|list|purge``."""
    queue = sub.add_parser("queue", help="send to, list and purge the embedded queues")
    actions = queue.add_subparsers(dest="action", required=True, metavar="ACTION")
    send = actions.add_parser("send", parents=[common], help="send one message (durable when this returns)")
    send.add_argument("name")
    send.add_argument("body")
    send.add_argument("--group", help="MessageGroupId (FIFO queues)")
    send.add_argument("--dedup-id", help="MessageDeduplicationId (FIFO queues without content-based dedup)")
    send.add_argument("--delay", type=int, help="DelaySeconds (standard queues)")
    send.add_argument("--attributes", help='message attributes as JSON: {"k": "text", "n": 1} or the SQS shape')
    actions.add_parser("list", parents=[common], help="queues with visible / in-flight / delayed counts")
    purge = actions.add_parser("purge", parents=[common], help="delete every message of a queue")
    purge.add_argument("name")
    queue.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Dispatch one ``queue`` action; returns the exit code."""
    from bridge.cli.main import load

    config = load(args)
    return asyncio.run(_run(config, args))


async def _run(config: Config, args: argparse.Namespace) -> int:
    async with _backend(config) as backend:
        if args.action == "send":
            entry = _entry(args)
            result = await backend.send(args.name, entry)
            print(json.dumps(result))
        elif args.action == "purge":
            await backend.purge(args.name)
            print(f"purged {args.name}")
        else:
            _table(await backend.list())
    return 0


def _entry(args: argparse.Namespace) -> dict[str, Any]:
    entry: dict[str, Any] = {"MessageBody": args.body}
    for key, value in (("MessageGroupId", args.group), ("MessageDeduplicationId", args.dedup_id),
                       ("DelaySeconds", args.delay)):
        if value is not None:
            entry[key] = value
    if args.attributes:
        entry["MessageAttributes"] = parse_attributes(args.attributes)
    return entry


def parse_attributes(text: str) -> dict[str, Any]:
    """``{"k": "v", "n": 2}`` (or SQS's own ``{"k": {"DataType": ..., "StringValue": ...}}``) -> SQS shape."""
    try:
        given = json.loads(text)
    except ValueError:
        raise UsageError(f"--attributes: not JSON: {text!r}; e.g. '{{\"kind\": \"order\", \"n\": 1}}'") from None
    if not isinstance(given, dict):
        raise UsageError("--attributes must be a JSON object of name: value")
    return {name: _attribute(value) for name, value in given.items()}


def _attribute(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        return {"DataType": "String", "StringValue": str(value)}
    return {"DataType": "Number", "StringValue": str(value)}


def _table(rows: list[tuple[str, int, int, int]]) -> None:
    if not rows:
        print("no queues", file=sys.stderr)
        return
    header = ("QUEUE", "VISIBLE", "IN-FLIGHT", "DELAYED")
    width = max(len(r[0]) for r in [header, *rows])
    for row in [header, *rows]:
        print(f"{row[0]:<{width}}  {row[1]!s:>8}  {row[2]!s:>9}  {row[3]!s:>8}")


@contextlib.asynccontextmanager
async def _backend(config: Config) -> AsyncIterator[Any]:
    """The daemon's endpoint when it answers, else the store file directly."""
    address = config.api.address
    if address is not None:
        remote = _Remote(f"http://{address[0]}:{address[1]}", config)
        async with remote:
            if await remote.reachable():
                yield remote
                return
    async with _Local(config) as local:
        yield local


class _Remote:
    """The queue commands over SQS's API at the running daemon (aiobotocore)."""

    def __init__(self, endpoint: str, config: Config) -> None:
        self.endpoint = endpoint
        self.config = config
        self._stack = contextlib.AsyncExitStack()
        self.client: Any = None

    async def __aenter__(self) -> _Remote:
        from aiobotocore.session import get_session
        from botocore.config import Config as BotoConfig

        boto = BotoConfig(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=30)
        creator = get_session().create_client("sqs", region_name=self.config.region, endpoint_url=self.endpoint,
                                              config=boto, aws_access_key_id="local", aws_secret_access_key="local")
        self.client = await self._stack.enter_async_context(creator)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    async def reachable(self) -> bool:
        from botocore.exceptions import EndpointConnectionError

        try:
            await self.client.list_queues()
        except (EndpointConnectionError, OSError):
            return False
        return True

    async def _url(self, name: str) -> str:
        from botocore.exceptions import ClientError

        try:
            return (await self.client.get_queue_url(QueueName=name))["QueueUrl"]
        except ClientError as err:
            raise UsageError(f"queue {name!r}: {err.response['Error'].get('Message')}; see `queue list`") from None

    async def send(self, name: str, entry: dict[str, Any]) -> dict[str, Any]:
        from botocore.exceptions import ClientError

        try:
            found = await self.client.send_message(QueueUrl=await self._url(name), **entry)
        except ClientError as err:
            raise UsageError(f"queue send: {err.response['Error'].get('Message')}") from None
        return {k: v for k, v in found.items() if k != "ResponseMetadata"}

    async def purge(self, name: str) -> None:
        await self.client.purge_queue(QueueUrl=await self._url(name))

    async def list(self) -> list[tuple[str, int, int, int]]:
        rows = []
        for url in (await self.client.list_queues()).get("QueueUrls", []):
            names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                     "ApproximateNumberOfMessagesDelayed"]
            found = (await self.client.get_queue_attributes(QueueUrl=url, AttributeNames=names))["Attributes"]
            rows.append((url.rsplit("/", 1)[-1], *(int(found[n]) for n in names)))
        return rows


class _Local:
    """The queue commands on the store file (the daemon is not running, or has no api.listen)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._stack = contextlib.AsyncExitStack()
        self.engine: Any = None

    async def __aenter__(self) -> _Local:
        from bridge.queues.engine import QueueEngine
        from bridge.store import Store, store_path

        store = await self._stack.enter_async_context(Store(store_path(self.config.state_dir)))
        self.engine = QueueEngine(store, region=self.config.region, account=self.config.account_id)
        await self.engine.start(self.config.queues)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    async def send(self, name: str, entry: dict[str, Any]) -> dict[str, Any]:
        from bridge.queues.errors import SqsError

        try:
            [result] = await self.engine.send(name, [entry])
        except SqsError as err:
            raise UsageError(f"queue send: {err}") from None
        if isinstance(result, SqsError):
            raise UsageError(f"queue send: {result}")
        return result

    async def purge(self, name: str) -> None:
        from bridge.queues.errors import SqsError

        try:
            await self.engine.purge(name)
        except SqsError as err:
            raise UsageError(f"queue purge: {err}; see `queue list`") from None

    async def list(self) -> list[tuple[str, int, int, int]]:
        return [(name, *(await self.engine.counts(name))) for name in self.engine.names()]
