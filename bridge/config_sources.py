"""Config models of sources (directory, schedule, sqs, mqtt) and embedded queues; names are the interface."""

from __future__ import annotations

import re
import ssl
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from bridge.errors import ExpressionError

SOURCE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
QUEUE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}(\.fifo)?$")
DEFAULT_IGNORE = [".*", "*.tmp", "*~", "*.swp", "*.part", "*.crdownload", "#*#"]


class Strict(BaseModel):
    """Base for config sections: frozen, and unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceBase(Strict):
    """What every source has: a unique name and the function it invokes."""

    name: str
    function: str

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not SOURCE_NAME.match(value):
            raise ValueError(f"{value!r} must be 1-64 letters, digits, '.', '-' or '_'")
        return value


class DirectorySourceConfig(SourceBase):
    """A local directory that behaves like an S3 bucket with event notifications."""

    type: Literal["directory"]
    path: Path
    bucket: str | None = None
    events: list[str] = ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]
    prefix: str = ""
    suffix: str = ""
    invocation: Literal["async", "sync"] = "async"
    ignore: list[str] = DEFAULT_IGNORE
    mode: Literal["inotify", "poll"] = "inotify"
    poll_interval: Annotated[float, Field(gt=0, le=3600)] = 2.0
    rescan_interval: Annotated[float, Field(gt=0)] | None = None  # periodic reconciliation, off by default
    event_version: str = "2.1"
    follow_symlinks: bool = False
    loop_threshold: Annotated[int, Field(ge=1)] = 16  # events on one key within loop_window = a runaway loop
    loop_window: Annotated[float, Field(gt=0)] = 60.0

    @field_validator("path", mode="before")
    @classmethod
    def _path(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, str):
            return value
        base = Path((info.context or {}).get("base_dir", "."))
        path = (base / Path(value).expanduser()).resolve()
        if not path.is_dir():
            raise ValueError(f"directory {str(path)!r} does not exist; create it or fix path:")
        return path

    @field_validator("events")
    @classmethod
    def _events(cls, value: list[str]) -> list[str]:
        from bridge.events.s3 import validate_event_patterns

        return list(validate_event_patterns(value))

    @property
    def bucket_name(self) -> str:
        """The bucket name events carry: ``bucket`` or the directory's base name."""
        return self.bucket or self.path.name


class RetryPolicy(Strict):
    """EventBridge Scheduler's retry policy for handing an event over."""

    maximum_retry_attempts: Annotated[int, Field(ge=0, le=185)] = 185
    maximum_event_age: Annotated[float, Field(ge=60, le=86400)] = 86400


class ScheduleSourceConfig(SourceBase):
    """An EventBridge rule or EventBridge Scheduler schedule on this machine's clock."""

    type: Literal["schedule"]
    schedule: str
    timezone: str = "UTC"
    style: Literal["rule", "scheduler"] = "rule"
    input: Any = None
    start_date: datetime | None = None
    end_date: datetime | None = None
    enabled: bool = True
    flexible_time_window: Annotated[int, Field(ge=0, le=1440)] = 0
    retry_policy: RetryPolicy = RetryPolicy()
    catch_up: Literal["none", "latest", "all"] = "none"
    catch_up_window: Annotated[float, Field(gt=0, le=31_536_000)] = 86400.0

    @model_validator(mode="after")
    def _expression(self) -> ScheduleSourceConfig:
        from bridge.schedules import parse_schedule

        try:
            parse_schedule(self.schedule, timezone=self.timezone, start_date=self.start_date,
                           end_date=self.end_date)
        except ExpressionError as err:
            raise ValueError(str(err)) from None
        return self


class SqsSourceConfig(SourceBase):
    """Lambda's SQS event source mapping, on an embedded queue or any SQS endpoint."""

    type: Literal["sqs"]
    queue: str
    endpoint_url: str | None = None
    region: str | None = None
    batch_size: Annotated[int, Field(ge=1, le=10000)] = 10
    maximum_batching_window: Annotated[float, Field(ge=0, le=300)] = 0
    function_response_types: list[Literal["ReportBatchItemFailures"]] = []
    maximum_concurrency: Annotated[int, Field(ge=2, le=1000)] = 2
    filters: Annotated[list[dict[str, Any]], Field(max_length=10)] = []

    @property
    def is_url(self) -> bool:
        """True when ``queue`` is a queue URL rather than an embedded queue's name."""
        return self.queue.startswith(("http://", "https://"))

    @property
    def fifo(self) -> bool:
        """FIFO queues' names end with .fifo."""
        return self.queue.rstrip("/").endswith(".fifo")

    @field_validator("filters")
    @classmethod
    def _filters(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        from bridge.filters import SQS_DATA_KEY, compile_filters

        try:
            compile_filters(value, data_key=SQS_DATA_KEY)
        except ExpressionError as err:
            raise ValueError(str(err)) from None
        return value

    @model_validator(mode="after")
    def _batching(self) -> SqsSourceConfig:
        if self.batch_size > 10 and self.maximum_batching_window < 1:
            raise ValueError("batch_size above 10 needs maximum_batching_window of at least 1 second")
        if self.fifo and self.batch_size > 10:
            raise ValueError("FIFO queues take batch_size 1-10")
        return self


class TlsConfig(Strict):
    """TLS for mqtts:// brokers; verification is on unless ``insecure`` says otherwise."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    insecure: bool = False

    @field_validator("ca_file", "cert_file", "key_file", mode="before")
    @classmethod
    def _file(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, str):
            return value
        base = Path((info.context or {}).get("base_dir", "."))
        path = (base / Path(value).expanduser()).resolve()
        if not path.is_file():
            raise ValueError(f"file {str(path)!r} does not exist; fix the path or remove the key")
        return path

    @model_validator(mode="after")
    def _pair(self) -> TlsConfig:
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("key_file needs cert_file (the client certificate it belongs to)")
        try:
            self.ssl_context()
        except (OSError, ssl.SSLError) as err:  # a file that is not PEM, or a key that does not fit the cert
            raise ValueError(f"cannot load the TLS files: {err}; give PEM files (CA, client cert, its key)") from None
        return self

    def ssl_context(self) -> ssl.SSLContext:
        """The client-side TLS context: system CAs unless ``ca_file``; no verification only if ``insecure``."""
        context = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        if self.cert_file is not None:
            context.load_cert_chain(self.cert_file, self.key_file)
        if self.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context


class MqttSourceConfig(SourceBase):
    """An AWS IoT topic rule on a local MQTT broker."""

    type: Literal["mqtt"]
    broker: str
    client_id: str | None = None
    username: str | None = None
    password: str | None = Field(default=None, repr=False)
    tls: TlsConfig = TlsConfig()
    sql: str
    qos: Literal[0, 1] = 1
    keepalive: Annotated[int, Field(ge=5, le=3600)] = 60

    @field_validator("broker")
    @classmethod
    def _broker(cls, value: str) -> str:
        parts = urlsplit(value)
        if "@" in parts.netloc:  # checked first, so no message below ever echoes a password
            raise ValueError("give only mqtt[s]://HOST[:PORT]; credentials go in username/password")
        try:
            parts.port  # noqa: B018 -- raises ValueError on a port that is not a number in 0-65535
        except ValueError:
            raise ValueError(f"{value!r} has an invalid port; expected mqtt://HOST[:PORT]") from None
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError(f"{value!r} is not mqtt://HOST[:PORT] or mqtts://HOST[:PORT]")
        if parts.path.strip("/") or parts.query:
            raise ValueError(f"{value!r}: give only mqtt[s]://HOST[:PORT], without a path or query")
        return value

    @field_validator("sql")
    @classmethod
    def _sql(cls, value: str) -> str:
        from bridge.iot_sql import parse_rule

        try:
            parse_rule(value)
        except ExpressionError as err:
            raise ValueError(str(err)) from None
        return value

    @model_validator(mode="after")
    def _tls_needs_mqtts(self) -> MqttSourceConfig:
        if self.tls != TlsConfig() and not self.broker.startswith("mqtts:"):
            raise ValueError("tls settings apply only to mqtts:// brokers; use mqtts:// or remove tls")
        return self

    @property
    def effective_client_id(self) -> str:
        """A stable client id, so the broker keeps the persistent session across restarts."""
        return self.client_id or f"lambda-bridge-{self.name}"

    @property
    def address(self) -> tuple[str, int, bool]:
        """(host, port, tls): the port defaults to 1883 for mqtt:// and 8883 for mqtts://."""
        parts = urlsplit(self.broker)
        tls = parts.scheme == "mqtts"
        return parts.hostname or "", parts.port or (8883 if tls else 1883), tls


SourceConfig = Annotated[
    DirectorySourceConfig | ScheduleSourceConfig | SqsSourceConfig | MqttSourceConfig,
    Field(discriminator="type"),
]
SOURCE_TYPES = ("directory", "schedule", "sqs", "mqtt")


class RedrivePolicy(Strict):
    """Where messages go after too many receives."""

    dead_letter_queue: str
    max_receive_count: Annotated[int, Field(ge=1, le=1000)]


class QueueConfig(Strict):
    """An embedded, durable, SQS-compatible queue."""

    visibility_timeout: Annotated[int, Field(ge=0, le=43200)] = 30
    message_retention: Annotated[int, Field(ge=60, le=1_209_600)] = 345_600
    delay: Annotated[int, Field(ge=0, le=900)] = 0
    receive_wait_time: Annotated[int, Field(ge=0, le=20)] = 0
    maximum_message_size: Annotated[int, Field(ge=1024, le=262_144)] = 262_144
    redrive_policy: RedrivePolicy | None = None
    fifo: bool = False
    content_based_deduplication: bool = False

    @model_validator(mode="after")
    def _fifo_only(self) -> QueueConfig:
        if self.content_based_deduplication and not self.fifo:
            raise ValueError("content_based_deduplication needs fifo: true")
        return self


def check_queues(queues: dict[str, QueueConfig]) -> list[str]:
    """Cross-queue rules: names, .fifo suffix, redrive targets. Returns problems (empty when fine)."""
    problems = []
    for name, queue in queues.items():
        if not QUEUE_NAME.match(name):
            problems.append(f"queues.{name}: a queue name is 1-80 letters, digits, '-' or '_' (FIFO: ending .fifo)")
        if name.endswith(".fifo") != queue.fifo:
            problems.append(f"queues.{name}: FIFO queues (fifo: true) and only they have names ending in .fifo")
        target = queue.redrive_policy.dead_letter_queue if queue.redrive_policy else None
        if target is not None and target not in queues:
            problems.append(f"queues.{name}.redrive_policy.dead_letter_queue: {target!r} is not a configured "
                            f"queue; configured: {', '.join(queues)}")
        elif target is not None and queues[target].fifo != queue.fifo:
            problems.append(f"queues.{name}.redrive_policy: a FIFO queue needs a FIFO dead-letter queue and "
                            "a standard queue a standard one")
    return problems


def check_sources(sources: list[Any], functions: dict[str, Any], queues: dict[str, QueueConfig]) -> list[str]:
    """Cross-source rules: unique names, known functions and queues, S3's overlap rule."""
    problems = []
    seen: set[str] = set()
    for i, source in enumerate(sources):
        if source.name in seen:
            problems.append(f"sources[{i}].name: {source.name!r} is used by another source; names are unique")
        seen.add(source.name)
        if source.function not in functions:
            problems.append(f"sources[{i}].function: {source.function!r} is not a configured function; "
                            f"configured: {', '.join(functions) or '(none)'}")
        if isinstance(source, SqsSourceConfig) and not source.is_url and source.queue not in queues:
            problems.append(f"sources[{i}].queue: {source.queue!r} is neither a queue URL nor a configured "
                            f"queue; configured: {', '.join(queues) or '(none)'}")
    return problems + _overlaps(sources)


def _overlaps(sources: list[Any]) -> list[str]:
    from bridge.events.s3 import rules_overlap

    dirs = [(i, s) for i, s in enumerate(sources) if isinstance(s, DirectorySourceConfig)]
    problems = []
    for n, (i, a) in enumerate(dirs):
        for j, b in dirs[n + 1 :]:
            if a.path == b.path and rules_overlap(a.prefix, a.suffix, a.events, b.prefix, b.suffix, b.events):
                problems.append(f"sources[{j}]: its prefix/suffix overlap sources[{i}] ({a.name!r}) on the same "
                                "path for the same event types; S3 rejects such configurations")
    return problems
