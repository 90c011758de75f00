"""The imported config as YAML text a user can read and keep: each entry commented with its origin."""

from __future__ import annotations

from typing import Any

import yaml

from bridge.sam.draft import Draft, Entry
from bridge.sam.intrinsics import Unresolved


def render(draft: Draft, header: list[str], settings: dict[str, Any]) -> str:
    """The whole config file: header comments, top-level settings, then functions, queues and sources."""
    lines = [f"# {comment_text(line)}" for line in header]
    if draft.unmapped:
        lines += ["#", "# Not imported (lambda-bridge sam-import printed these on stderr too):"]
        lines += [f"#   - {comment_text(str(item))}" for item in draft.unmapped]
    lines.append("")
    lines.append(_dump(settings).rstrip())
    for title, entries in (("functions", draft.functions), ("queues", draft.queues)):
        if entries:
            lines.append(f"{title}:")
            lines += [_entry({key: entry.value}, entry, bullet=False) for key, entry in entries.items()]
    if draft.sources:
        lines.append("sources:")
        lines += [_entry([entry.value], entry, bullet=True) for entry in draft.sources]
    return "\n".join(lines) + "\n"


def _entry(data: Any, entry: Entry, *, bullet: bool) -> str:
    comments = [f"  # {comment_text(c)}" for c in entry.comments]
    body = _dump(data)
    indented = "".join(f"  {line}" if line.strip() else line for line in body.splitlines(keepends=True))
    return "\n".join([*comments, indented.rstrip()]) if bullet or comments else indented.rstrip()


def comment_text(text: str) -> str:
    """Text safe inside one YAML comment: a newline from a template value must not start a config line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class _Dumper(yaml.SafeDumper):
    """SafeDumper that writes a value the mappers let through unresolved as visible text, never a crash."""


_Dumper.add_representer(Unresolved, lambda dumper, value: dumper.represent_str(str(value)))


def _dump(data: Any) -> str:
    # Block style, keys in the order written; an empty mapping stays {} (an embedded queue with defaults).
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=110, allow_unicode=True)
