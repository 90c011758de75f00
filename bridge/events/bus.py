"""EventBridge bus shapes: PutEvents entries checked as AWS does, the event a rule's target gets, input paths
and input transformers."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bridge.errors import ExpressionError
from bridge.events import payload as bounded_json
from bridge.events.eventbridge import event_time

MAX_ENTRIES = 10  # PutEvents entries per request
MAX_REQUEST_BYTES = 262_144  # the entries of one PutEvents request together, as AWS counts them
TIME_BYTES = 14  # what a given Time counts for in the size
_PATH_STEP = re.compile(r"\.([A-Za-z0-9_@$-]+)|\[(\d+)\]|\['([^']*)'\]|\[\"([^\"]*)\"\]")
_PLACEHOLDER = re.compile(r"<([A-Za-z0-9_.-]+)>")
_MISSING = object()


@dataclass(frozen=True, slots=True)
class EntryError:
    """A PutEvents entry refused: its ``ErrorCode`` and ``ErrorMessage``."""

    code: str
    message: str

    def result(self) -> dict[str, str]:
        """The entry's result in PutEvents' answer."""
        return {"ErrorCode": self.code, "ErrorMessage": self.message}


def entry_size(entry: Mapping[str, Any]) -> int:
    """An entry's size as AWS documents it: Time 14 bytes, Source, DetailType, Detail and each Resource in UTF-8."""
    size = TIME_BYTES if entry.get("Time") is not None else 0
    for key in ("Source", "DetailType", "Detail"):
        if isinstance(entry.get(key), str):
            size += len(entry[key].encode())
    resources = entry.get("Resources")
    if isinstance(resources, list):
        size += sum(len(r.encode()) for r in resources if isinstance(r, str))
    return size


def bus_name(value: Any) -> str:
    """``EventBusName`` as a name: given by name or ARN (``arn:aws:events:REGION:ACCOUNT:event-bus/NAME``)."""
    if not isinstance(value, str) or not value:
        return "default"
    if value.startswith("arn:") and ":event-bus/" in value:
        return value.split(":event-bus/", 1)[1]
    return value


def check_entry(entry: Any) -> dict[str, Any] | EntryError:
    """The entry's Detail as an object, or the per-entry error PutEvents answers for it."""
    if not isinstance(entry, Mapping):
        return EntryError("InvalidArgument", "Parameter Entries is not valid. Reason: an entry must be an object.")
    for key in ("Source", "DetailType", "Detail"):
        if not isinstance(entry.get(key), str) or not entry[key]:
            return EntryError("InvalidArgument", f"Parameter {key} is not valid. Reason: {key} is a required "
                                                 "argument.")
    resources = entry.get("Resources")
    if resources is not None and not (isinstance(resources, list) and all(isinstance(r, str) for r in resources)):
        return EntryError("InvalidArgument", "Parameter Resources is not valid. Reason: a list of ARNs.")
    try:
        detail = bounded_json.loads(entry["Detail"], parse_constant=_not_json)
    except ValueError:
        detail = None
    if not isinstance(detail, dict):
        return EntryError("MalformedDetail", "Detail is malformed.")
    return detail


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def bus_event(entry: Mapping[str, Any], detail: dict[str, Any], *, event_id: str, account: str, region: str,
              now: datetime) -> dict[str, Any]:
    """The event as EventBridge sends it to a rule's targets (key order as AWS's samples show it)."""
    return {
        "version": "0",
        "id": event_id,
        "detail-type": entry["DetailType"],
        "source": entry["Source"],
        "account": account,
        "time": event_time(_entry_time(entry.get("Time")) or now),
        "region": region,
        "resources": list(entry.get("Resources") or []),
        "detail": detail,
    }


def _entry_time(value: Any) -> datetime | None:
    """``Time`` as SDKs send it on the JSON protocol: epoch seconds (or an ISO 8601 text)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


# --- input paths and transformers -----------------------------------------------------------------------


def check_path(path: str, where: str) -> None:
    """A JSON path of the form EventBridge's input paths take: ``$``, ``$.a.b``, ``$.a[0]``, ``$['a b']``."""
    if not path.startswith("$") or _steps(path) is None:
        raise ExpressionError(f"{where}: {path!r} is not a JSON path; write it like $.detail.order.id or "
                              "$.resources[0]")


def _steps(path: str) -> list[str | int] | None:
    steps: list[str | int] = []
    at = 1
    while at < len(path):
        found = _PATH_STEP.match(path, at)
        if found is None:
            return None
        name, index, quoted, double = found.groups()
        steps.append(int(index) if index is not None else (name or quoted or double or ""))
        at = found.end()
    return steps


def resolve(event: Any, path: str) -> Any:
    """The value at ``path`` in ``event``; ``None`` when the event has no such value."""
    value = event
    for step in _steps(path) or []:
        if isinstance(step, int):
            value = value[step] if isinstance(value, list) and step < len(value) else _MISSING
        else:
            value = value.get(step, _MISSING) if isinstance(value, dict) else _MISSING
        if value is _MISSING:
            return None
    return value


def target_input(event: dict[str, Any], *, constant: Any = None, input_path: str | None = None,
                 paths_map: Mapping[str, str] | None = None, template: str | None = None,
                 rule_name: str = "", rule_arn: str = "") -> bytes:
    """What one target receives: the constant input, the value at the input path, the transformed template,
    or the whole event."""
    if constant is not None:
        return constant.encode() if isinstance(constant, str) else json.dumps(constant).encode()
    if input_path is not None:
        return json.dumps(resolve(event, input_path)).encode()
    if template is not None:
        values = {name: resolve(event, path) for name, path in (paths_map or {}).items()}
        values.update({"aws.events.rule-name": rule_name, "aws.events.rule-arn": rule_arn,
                       "aws.events.event": event, "aws.events.event.json": event,
                       "aws.events.event.ingestion-time": event.get("time")})
        return fill_template(template, values).encode()
    return json.dumps(event).encode()


def fill_template(template: str, values: Mapping[str, Any]) -> str:
    """EventBridge's substitution: inside a JSON string a value goes in as escaped text, outside as JSON;
    a placeholder with no input path stays as written."""
    out: list[str] = []
    at = 0
    for found in _PLACEHOLDER.finditer(template):
        name = found.group(1)
        if name not in values:
            continue
        out.append(template[at:found.start()])
        out.append(_substitute(values[name], in_string=_inside_string(template, found.start())))
        at = found.end()
    out.append(template[at:])
    return "".join(out)


def _substitute(value: Any, *, in_string: bool) -> str:
    if not in_string:
        return json.dumps(value)
    text = value if isinstance(value, str) else json.dumps(value)
    return json.dumps(text)[1:-1]


def _inside_string(template: str, position: int) -> bool:
    """Whether ``position`` falls inside a double-quoted string (counting unescaped quotes before it)."""
    quotes = 0
    escaped = False
    for char in template[:position]:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            quotes += 1
    return quotes % 2 == 1
