"""The ``queue`` commands (send, list, purge): through the daemon's SQS endpoint, else on the store file."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import click

from bridge.cli.context import State, emit_json, global_options, note, pass_state
from bridge.config.model import Config
from bridge.errors import UsageError


@click.group("queue", short_help='send to, list and purge the embedded queues')
@global_options
def queue() -> None:
    """Send to, list and purge the embedded queues: through the running daemon's SQS endpoint, else
    directly on the store file."""


@queue.command("send")
@click.argument("name")
@click.argument("body")
@click.option("--group", metavar="ID", help="MessageGroupId (FIFO queues)")
@click.option("--dedup-id", metavar="ID", help="MessageDeduplicationId (FIFO queues without content-based dedup)")
@click.option("--delay", type=int, metavar="SECONDS", help="DelaySeconds (standard queues)")
@click.option("--attributes", metavar="JSON", help='message attributes: {"k": "text", "n": 1} or the SQS shape')
@global_options
@pass_state
def send(state: State, name: str, body: str, group: str | None, dedup_id: str | None, delay: int | None,
         attributes: str | None) -> int:
    """Send BODY (the message text) to the queue NAME; durable when this returns. Prints SendMessage's
    result (MessageId, MD5OfMessageBody, ...) as JSON."""
    entry = _entry(body, group, dedup_id, delay, attributes)
    return asyncio.run(_run(state, lambda backend: _send(backend, name, entry)))


@queue.command("list")
@global_options
@pass_state
def list_(state: State) -> int:
    """Each queue with its visible, in-flight and delayed message counts (--json: a list of objects)."""
    return asyncio.run(_run(state, lambda backend: _list(state, backend), reading=True))


@queue.command("purge")
@click.argument("name")
@global_options
@pass_state
def purge(state: State, name: str) -> int:
    """Delete every message of the queue NAME."""
    return asyncio.run(_run(state, lambda backend: _purge(state, backend, name)))


async def _run(state: State, action: Any, *, reading: bool = False) -> int:
    async with _backend(state, reading=reading) as backend:
        await action(backend)
    return 0


async def _send(backend: Any, name: str, entry: dict[str, Any]) -> None:
    click.echo(json.dumps(await backend.send(name, entry)))


async def _purge(state: State, backend: Any, name: str) -> None:
    await backend.purge(name)
    if state.json:
        emit_json({"purged": name})
    else:
        click.echo(f"purged {name}")


async def _list(state: State, backend: Any) -> None:
    rows = await backend.list()
    if state.json:
        keys = ("queue", "visible", "in_flight", "delayed")
        emit_json([dict(zip(keys, row, strict=True)) for row in rows])
    else:
        _table(rows)


def _entry(body: str, group: str | None, dedup_id: str | None, delay: int | None,
           attributes: str | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"MessageBody": body}
    for key, value in (("MessageGroupId", group), ("MessageDeduplicationId", dedup_id), ("DelaySeconds", delay)):
        if value is not None:
            entry[key] = value
    if attributes:
        entry["MessageAttributes"] = parse_attributes(attributes)
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
        click.echo("no queues", err=True)
        return
    header = ("QUEUE", "VISIBLE", "IN-FLIGHT", "DELAYED")
    width = max(len(r[0]) for r in [header, *rows])
    for row in [header, *rows]:
        click.echo(f"{row[0]:<{width}}  {row[1]!s:>8}  {row[2]!s:>9}  {row[3]!s:>8}")


@contextlib.asynccontextmanager
async def _backend(state: State, *, reading: bool = False) -> AsyncIterator[Any]:
    """The daemon's endpoint when it answers, else the store file directly (that needs a valid config;
    ``reading``: a missing store file is not created)."""
    api_url = state.api_url()
    if api_url is not None:
        config = state.valid_config()
        remote = _Remote(api_url, config.region if config else "us-east-1")
        async with remote:
            if await remote.reachable():
                yield remote
                return
    daemon = state.daemon()
    if daemon is not None:
        note(f"the daemon (pid {daemon.pid}) has no API to reach; working on the store file directly")
    async with _Local(state.config(), create=not reading) as local:
        yield local


class _Remote:
    """The queue commands over SQS's API at the running daemon (aiobotocore)."""

    def __init__(self, endpoint: str, region: str) -> None:
        self.endpoint = endpoint
        self.region = region
        self._stack = contextlib.AsyncExitStack()
        self.client: Any = None

    async def __aenter__(self) -> _Remote:
        from aiobotocore.session import get_session
        from botocore.config import Config as BotoConfig

        boto = BotoConfig(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=30)
        creator = get_session().create_client("sqs", region_name=self.region, endpoint_url=self.endpoint,
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

    def __init__(self, config: Config, *, create: bool = True) -> None:
        self.config = config
        self.create = create
        self._stack = contextlib.AsyncExitStack()
        self.engine: Any = None

    async def __aenter__(self) -> _Local:
        from bridge.queues.engine import QueueEngine
        from bridge.store import Store, store_path

        if not self.create and not store_path(self.config.state_dir).is_file():
            return self  # no store yet: every configured queue is empty, and reading it creates nothing
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
        if self.engine is None:
            return [(name, 0, 0, 0) for name in sorted(self.config.queues)]
        return [(name, *(await self.engine.counts(name))) for name in self.engine.names()]


COMMANDS = (queue,)
