"""The logs source's config model: log files (a path or glob) or the systemd journal, and the subscription filter."""

from __future__ import annotations

import glob
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from bridge.config.base import SourceBase, Strict, error_at
from bridge.errors import ExpressionError

FILTER_NAME = re.compile(r"[^:*]{1,512}")  # AWS's subscription filter name
LOG_GROUP = re.compile(r"[\.\-_/#A-Za-z0-9]{1,512}")  # AWS's log group name
LOG_STREAM = re.compile(r"[^:*]{1,512}")  # AWS's log stream name
JOURNAL_FIELD = re.compile(r"[A-Z0-9_]{1,64}")  # journald field names: upper case, digits, underscore
PRIORITIES = {"emerg": 0, "alert": 1, "crit": 2, "err": 3, "warning": 4, "notice": 5, "info": 6, "debug": 7}


class JournalConfig(Strict):
    """Which journal entries: a unit, a syslog identifier, a priority (or better), any ``FIELD: value``."""

    unit: str | None = None
    identifier: str | None = None
    priority: int | str | None = None
    matches: dict[str, str] = {}
    namespace: str | None = None  # a journal namespace (journalctl --namespace), e.g. of a LogNamespace= unit

    @field_validator("priority")
    @classmethod
    def _priority(cls, value: int | str | None) -> int | str | None:
        if value is None or (isinstance(value, int) and 0 <= value <= 7) or value in PRIORITIES:
            return value
        raise ValueError(f"{value!r} is not a priority: 0-7 or one of {', '.join(PRIORITIES)}")

    @field_validator("matches")
    @classmethod
    def _matches(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not JOURNAL_FIELD.fullmatch(name):
                raise ValueError(f"{name!r} is not a journal field name (upper-case letters, digits, _), "
                                 "e.g. _SYSTEMD_UNIT or SYSLOG_IDENTIFIER")
        return value

    def arguments(self) -> list[str]:
        """journalctl's match arguments for this selection."""
        args = [f"--namespace={self.namespace}"] if self.namespace else []
        args += [f"--unit={self.unit}"] if self.unit else []
        args += [f"--identifier={self.identifier}"] if self.identifier else []
        args += [f"--priority={self.priority}"] if self.priority is not None else []
        return args + [f"{name}={value}" for name, value in self.matches.items()]


class LogsSourceConfig(SourceBase):
    """A CloudWatch Logs subscription filter on local log files or on the systemd journal."""

    type: Literal["logs"]
    path: str | None = None  # a file or a glob in one directory (wildcards in the file name only)
    journal: JournalConfig | None = None
    log_group: str | None = None  # default: the file's path (/var/log/app.log), or /journal/<unit>
    log_stream: str | None = None  # default: the file's name, or the unit (else the host name)
    filter_name: str | None = None  # default: the source's name
    filter_pattern: str = ""  # empty: every event
    multiline_start: str | None = None  # a regex: a line matching it starts a record, others continue it
    start_position: Literal["end", "beginning"] = "end"  # where a file found at the very first start is read from
    batch_window: Annotated[float, Field(ge=0, le=300)] = 0.02  # seconds a batch waits for more events
    batch_size: Annotated[int, Field(ge=1, le=10_000)] = 10_000
    partial_line_timeout: Annotated[float, Field(gt=0, le=3600)] = 5.0  # a last line without newline, then sent
    follow_symlinks: bool = False

    @field_validator("path", mode="before")
    @classmethod
    def _path(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, str):
            return value
        base = Path((info.context or {}).get("base_dir", "."))
        path = base / Path(value).expanduser()
        directory = path.parent
        if glob.has_magic(str(directory)):
            raise ValueError(f"{value!r}: wildcards are allowed in the file name only (one directory is watched)")
        if not directory.resolve().is_dir():
            raise ValueError(f"directory {str(directory.resolve())!r} does not exist; create it or fix path:")
        return str(directory.resolve() / path.name)

    @field_validator("filter_pattern")
    @classmethod
    def _pattern(cls, value: str) -> str:
        from bridge.sources.logs.pattern import compile_pattern

        try:
            compile_pattern(value)
        except ExpressionError as err:
            raise ValueError(str(err)) from None
        return value

    @field_validator("multiline_start")
    @classmethod
    def _multiline(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as err:
                raise ValueError(f"not a regular expression: {err}") from None
        return value

    @field_validator("filter_name")
    @classmethod
    def _filter_name(cls, value: str | None) -> str | None:
        if value is not None and not FILTER_NAME.fullmatch(value):
            raise ValueError("1-512 characters without ':' or '*' (AWS's subscription filter name)")
        return value

    @field_validator("log_group")
    @classmethod
    def _log_group(cls, value: str | None) -> str | None:
        if value is not None and not LOG_GROUP.fullmatch(value):
            raise ValueError("1-512 of letters, digits, '.', '-', '_', '/', '#' (AWS's log group name)")
        return value

    @field_validator("log_stream")
    @classmethod
    def _log_stream(cls, value: str | None) -> str | None:
        if value is not None and not LOG_STREAM.fullmatch(value):
            raise ValueError("1-512 characters without ':' or '*' (AWS's log stream name)")
        return value

    @model_validator(mode="after")
    def _origin(self) -> LogsSourceConfig:
        if (self.path is None) == (self.journal is None):
            raise error_at("path", "give either path (a log file or glob) or journal (unit, identifier, ...)")
        if self.journal is not None and self.multiline_start is not None:
            raise error_at("multiline_start", "applies to files only; a journal entry is one record already")
        return self

    @property
    def subscription_filter(self) -> str:
        """The name in ``subscriptionFilters``."""
        return self.filter_name or self.name


MODEL = LogsSourceConfig
