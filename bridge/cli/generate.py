"""``lambda-bridge generate-event``: sample events, printed as JSON, built by the code the sources use."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import click

from bridge.cli.context import State, emit_json, global_options, pass_state
from bridge.errors import UsageError


def _where(state: State, region: str | None, account_id: str | None) -> tuple[str, str]:
    """Region and account: the options, else the config's (when it is valid), else the config defaults."""
    config = state.valid_config()
    return (region or (config.region if config else "us-east-1"),
            account_id or (config.account_id if config else "000000000000"))


def place(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--region`` and ``--account-id``, which every generator takes."""
    command = click.option("--account-id", metavar="ID", help="12-digit account (default: the config's)")(command)
    return click.option("--region", metavar="REGION", help="AWS region (default: the config's)")(command)


# --- s3 ----------------------------------------------------------------------------------------------


def _s3_event(state: State, event_name: str, bucket: str, key: str, body: str | None, region: str | None,
              account_id: str | None) -> None:
    from bridge.events.s3 import make_sequencer
    from bridge.sources.directory.changes import RecordMaker
    from bridge.sources.directory.tree import ObjectInfo

    region, account = _where(state, region, account_id)
    maker = RecordMaker(source="generated", bucket=bucket, region=region, account_id=account)
    info = None
    if event_name.startswith("ObjectCreated"):
        data = (body or "").encode()
        info = ObjectInfo(version=None, size=len(data), etag=hashlib.md5(data, usedforsecurity=False).hexdigest())  # type: ignore[arg-type]
    payload = maker.payload(event_name, key.encode(), info, make_sequencer(time.time_ns() // 1000))
    emit_json(json.loads(payload))


@click.group("s3")
def s3() -> None:
    """S3 event notifications, as a directory source sends them."""


def _s3_options(command: Callable[..., Any]) -> Callable[..., Any]:
    command = place(command)
    command = click.option("--key", default="test/key", show_default=True,
                           help="object key (the path relative to the directory); encoded as S3 does")(command)
    return click.option("--bucket", default="example-bucket", show_default=True, help="bucket name")(command)


@s3.command("put")
@_s3_options
@click.option("--body", default="", help="the object's content (sets size and eTag)")
@global_options
@pass_state
def s3_put(state: State, bucket: str, key: str, body: str, region: str | None, account_id: str | None) -> int:
    """An ObjectCreated:Put record."""
    _s3_event(state, "ObjectCreated:Put", bucket, key, body, region, account_id)
    return 0


@s3.command("delete")
@_s3_options
@global_options
@pass_state
def s3_delete(state: State, bucket: str, key: str, region: str | None, account_id: str | None) -> int:
    """An ObjectRemoved:Delete record."""
    _s3_event(state, "ObjectRemoved:Delete", bucket, key, None, region, account_id)
    return 0


# --- sqs ---------------------------------------------------------------------------------------------


@click.command("sqs")
@click.option("--queue", default="my-queue", show_default=True, help="queue name or URL (.fifo: a FIFO queue)")
@click.option("--body", default="Hello from SQS!", show_default=True, help="message body")
@click.option("--attributes", metavar="JSON", help='message attributes: {"k": "text", "n": 1} or the SQS shape')
@click.option("--group", metavar="ID", help="MessageGroupId (FIFO queues)")
@place
@global_options
@pass_state
def sqs(state: State, queue: str, body: str, attributes: str | None, group: str | None, region: str | None,
        account_id: str | None) -> int:
    """One message as Lambda's SQS poller delivers it ({"Records": [...]})."""
    from bridge.cli.queue import parse_attributes
    from bridge.events.sqs import md5_hex, md5_of_message_attributes, queue_arn, record_from_sqs_message, sqs_event

    region, account = _where(state, region, account_id)
    now = str(int(time.time() * 1000))
    system = {"ApproximateReceiveCount": "1", "SentTimestamp": now, "SenderId": account,
              "ApproximateFirstReceiveTimestamp": now}
    if group is not None:
        system |= {"MessageGroupId": group, "SequenceNumber": str(time.time_ns()),
                   "MessageDeduplicationId": md5_hex(body)}
    message: dict[str, Any] = {"MessageId": str(uuid.uuid4()), "ReceiptHandle": uuid.uuid4().hex, "Body": body,
                               "MD5OfBody": md5_hex(body), "Attributes": system}
    if attributes:
        message["MessageAttributes"] = parse_attributes(attributes)
        message["MD5OfMessageAttributes"] = md5_of_message_attributes(message["MessageAttributes"])
    record = record_from_sqs_message(message, queue_arn=queue_arn(queue, region, account), region=region)
    emit_json(sqs_event([record]))
    return 0


# --- schedules -----------------------------------------------------------------------------------------


def _time_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--time", "when", type=click.DateTime(["%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S"]),
                        help="the scheduled time, UTC (default: now)")(command)


def _when(value: datetime | None) -> datetime:
    return (value or datetime.now(UTC)).replace(tzinfo=UTC, microsecond=0)


@click.command("schedule")
@click.option("--name", default="my-schedule", show_default=True, help="the rule's name")
@_time_option
@place
@global_options
@pass_state
def schedule(state: State, name: str, when: datetime | None, region: str | None, account_id: str | None) -> int:
    """An EventBridge scheduled rule's event (source aws.events)."""
    from bridge.events.eventbridge import rule_event

    region, account = _where(state, region, account_id)
    emit_json(rule_event(rule_name=name, region=region, account=account, time=_when(when), event_id=str(uuid.uuid4())))
    return 0


@click.command("scheduler")
@click.option("--name", default="my-schedule", show_default=True, help="the schedule's name")
@click.option("--input", "input_", metavar="JSON", help="the target's Input (<aws.scheduler.*> filled in)")
@_time_option
@place
@global_options
@pass_state
def scheduler(state: State, name: str, input_: str | None, when: datetime | None, region: str | None,
              account_id: str | None) -> int:
    """An EventBridge Scheduler event (source aws.scheduler), or its Input when --input is given."""
    from bridge.events.eventbridge import schedule_arn, scheduler_event, scheduler_input

    region, account = _where(state, region, account_id)
    event_id = str(uuid.uuid4())
    if input_ is None:
        emit_json(scheduler_event(schedule_name=name, region=region, account=account, time=_when(when),
                                  event_id=event_id))
        return 0
    arn = schedule_arn(region=region, account=account, schedule_name=name)
    emit_json(scheduler_input(input_, schedule_arn=arn, scheduled_time=_when(when), execution_id=event_id,
                              attempt_number=1))
    return 0


# --- iot -----------------------------------------------------------------------------------------------


@click.command("iot")
@click.option("--sql", default="SELECT * FROM 'sensors/+/data'", show_default=True, help="the topic rule's SQL")
@click.option("--topic", default="sensors/device-1/data", show_default=True, help="the topic the message came on")
@click.option("--payload", default='{"temperature": 31}', show_default=True, help="the MQTT message (JSON)")
@global_options
@pass_state
def iot(state: State, sql: str, topic: str, payload: str) -> int:
    """What an AWS IoT topic rule sends Lambda for one MQTT message (the rule's SELECT applied)."""
    from bridge.errors import ExpressionError
    from bridge.sources.mqtt.iot_sql import parse_rule

    try:
        rule = parse_rule(sql)
        event = rule.evaluate(payload.encode(), topic=topic, client_id="generated", now_ms=time.time_ns() // 10**6)
    except (ExpressionError, ValueError) as err:
        raise UsageError(f"iot: {err}") from None
    if event is None:
        raise UsageError(f"iot: the rule does not fire for this message (topic {topic!r} or WHERE is false)")
    emit_json(event)
    return 0


@click.command("cloudwatch-logs")
@click.option("--log-group", default="/var/log/app.log", show_default=True, help="logGroup")
@click.option("--log-stream", default="app.log", show_default=True, help="logStream")
@click.option("--filter-name", default="my-filter", show_default=True, help="the subscription filter's name")
@click.option("--filter-pattern", default="", help="keep only the messages it matches (extractedFields too)")
@click.option("--message", "messages", multiple=True, help="a log event's message (repeatable)")
@click.option("--decoded", is_flag=True, help="print the decoded awslogs.data document instead")
@place
@global_options
@pass_state
def cloudwatch_logs(state: State, log_group: str, log_stream: str, filter_name: str, filter_pattern: str,
                    messages: tuple[str, ...], decoded: bool, region: str | None, account_id: str | None) -> int:
    """A CloudWatch Logs subscription event, as a logs source sends it ({"awslogs": {"data": ...}})."""
    from bridge.errors import ExpressionError
    from bridge.events.cloudwatch_logs import LogEvent, encode, event_id, logs_data
    from bridge.sources.logs.pattern import compile_pattern

    _region, account = _where(state, region, account_id)
    try:
        pattern = compile_pattern(filter_pattern)
    except ExpressionError as err:
        raise UsageError(f"cloudwatch-logs: --filter-pattern: {err}") from None
    now = time.time_ns() // 1_000_000
    events = []
    for n, message in enumerate(messages or ("[ERROR] First test message", "[ERROR] Second test message")):
        fields = pattern.match(message)
        if fields is not None:
            events.append(LogEvent(event_id(now, log_group, n), now, message, fields if pattern.extracts else None))
    if not events:
        raise UsageError("cloudwatch-logs: the filter pattern matches none of the messages; AWS would send nothing")
    data = logs_data(account, log_group, log_stream, filter_name, events)
    emit_json(data if decoded else encode(data))
    return 0


# One entry per event source; another source type adds its generator here (e.g. apigateway with the
# http source). Each is a click command or group whose commands print one event as JSON.
GENERATORS: tuple[click.Command, ...] = (s3, sqs, schedule, scheduler, iot, cloudwatch_logs)


@click.group("generate-event", short_help='print a sample S3, SQS, schedule, IoT or CloudWatch Logs event')
@global_options
def generate_event() -> None:
    """Print a sample event as JSON, like `sam local generate-event`, built by the same code the sources use.

    Pipe it into a function: lambda-bridge generate-event s3 put --key photos/a.jpg | lambda-bridge invoke
    thumbnails --payload-file -
    """


for _generator in GENERATORS:
    generate_event.add_command(_generator)

COMMANDS = (generate_event,)
