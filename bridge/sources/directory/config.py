"""The directory source's config model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from bridge.config.base import SourceBase

DEFAULT_IGNORE = [".*", "*.tmp", "*~", "*.swp", "*.part", "*.crdownload", "#*#"]


class DirectorySourceConfig(SourceBase):
    """A local directory that behaves like an S3 bucket with event notifications."""

    type: Literal["directory"]
    path: Path
    bucket: str | None = None
    events: list[str] = ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]
    prefix: str = ""
    suffix: str = ""
    invocation: Literal["async", "sync"] = "async"
    shared: bool = False  # cluster mode: the directory is on shared storage, so its events use the shared queue
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


    @classmethod
    def check(cls, indexed: list[tuple[int, Any]], queues: dict[str, Any]) -> list[str]:
        """S3's overlap rule: two sources on one path may not match the same key for the same event type."""
        from bridge.events.s3 import rules_overlap

        problems = []
        for n, (i, a) in enumerate(indexed):
            for j, b in indexed[n + 1 :]:
                if a.path == b.path and rules_overlap(a.prefix, a.suffix, a.events, b.prefix, b.suffix, b.events):
                    problems.append(f"sources[{j}]: its prefix/suffix overlap sources[{i}] ({a.name!r}) on the same "
                                    "path for the same event types; S3 rejects such configurations")
        return problems


MODEL = DirectorySourceConfig
