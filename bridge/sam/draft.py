"""What an import produces before rendering: config entries with their origin, and what could not be mapped."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bridge.sam.intrinsics import Resolver
from bridge.sam.template import Path_, Template, format_path


@dataclass(frozen=True)
class Unmapped:
    """One template item the config does not carry: where it is, why, and what the user can do."""

    where: str
    problem: str
    fix: str

    def __str__(self) -> str:
        return f"{self.where}: {self.problem}; {self.fix}"


@dataclass
class Entry:
    """One config entry (a function, queue or source) and the comment lines that say where it came from."""

    value: dict[str, Any]
    comments: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Mapping:
    """The ``--map`` options: local stand-ins for things that exist only in AWS."""

    buckets: dict[str, Path] = field(default_factory=dict)  # bucket logical id -> local directory
    queues: dict[str, str] = field(default_factory=dict)  # queue logical id, name or ARN -> queue URL
    broker: str | None = None  # the MQTT broker IoT rules read
    apis: dict[str, str] = field(default_factory=dict)  # API logical id -> HOST:PORT its http source listens on
    log_groups: dict[str, str] = field(default_factory=dict)  # log group name -> a file/glob or journal:UNIT
    code: dict[str, Path] = field(default_factory=dict)  # function logical id -> its code folder (any folder)


@dataclass
class Draft:
    """The config being built, with the context every mapper needs."""

    template: Template
    resolver: Resolver
    maps: Mapping
    output_dir: Path
    listen: str
    functions: dict[str, Entry] = field(default_factory=dict)
    queues: dict[str, Entry] = field(default_factory=dict)
    sources: list[Entry] = field(default_factory=list)
    unmapped: list[Unmapped] = field(default_factory=list)
    importable: set[str] = field(default_factory=set)  # functions that will be in the config
    used_maps: set[str] = field(default_factory=set)

    def report(self, path: Path_, problem: str, fix: str) -> None:
        """Record an item that could not be mapped (listed on stderr and in the config's header)."""
        self.unmapped.append(Unmapped(self.template.where(path), problem, fix))

    @contextlib.contextmanager
    def malformed_at(self, path: Path_) -> Iterator[None]:
        """Turn a value of the wrong shape found while mapping ``path`` into a SamTemplateError at its line."""
        try:
            yield
        except (TypeError, ValueError, KeyError, IndexError, AttributeError) as err:
            from bridge.errors import SamTemplateError

            raise SamTemplateError(f"{self.template.where(path)}: a value has the wrong shape ({err!r}); compare "
                                   "it with the SAM specification of this resource") from None

    def origin(self, path: Path_) -> str:
        """``from Resources.Fn.Events.Upload (template.yaml:31)`` for an entry's comment."""
        line = self.template.line(path)
        return f"from {format_path(path)} ({self.template.path.name}{f':{line}' if line else ''})"

    def relative(self, path: Path) -> str:
        """``path`` as the config should spell it: relative to the config file's directory."""
        import os

        return os.path.relpath(path.resolve(), self.output_dir.resolve())

    def queue_url(self, name: str) -> str:
        """The embedded queue's URL on the daemon's api.listen address."""
        return f"http://{self.listen}/{self.resolver.account_id}/{name}"
