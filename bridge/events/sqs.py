"""Lambda's SQS event: records built from ReceiveMessage results, and how a batch response is judged."""

from __future__ import annotations

import base64
import hashlib
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from bridge.events import payload as bounded_json

# The order AWS's documented sample events use; attributes outside this list follow in their given order.
_ATTRIBUTE_ORDER = (
    "ApproximateReceiveCount",
    "SentTimestamp",
    "SequenceNumber",
    "MessageGroupId",
    "SenderId",
    "MessageDeduplicationId",
    "ApproximateFirstReceiveTimestamp",
)
# Transport types in SQS's message-attribute MD5 (String and Number travel as text, Binary as bytes).
_TEXT_TRANSPORT = b"\x01"
_BINARY_TRANSPORT = b"\x02"


@dataclass(frozen=True, slots=True)
class BatchVerdict:
    """How Lambda's SQS poller judged one invocation: ``failed`` message ids are retried, the rest deleted."""

    failed: frozenset[str]
    reason: str


class _InvalidResponse(ValueError):
    """The function's partial batch response breaks AWS's rules: the whole batch counts as failed."""


def sqs_record(
    *,
    message_id: str,
    receipt_handle: str,
    body: str,
    attributes: Mapping[str, Any],
    message_attributes: Mapping[str, Mapping[str, Any]],
    md5_of_body: str,
    queue_arn: str,
    region: str,
    md5_of_message_attributes: str | None = None,
) -> dict[str, Any]:
    """One record of Lambda's SQS event, in exactly the shape Lambda delivers.

    ``attributes`` are the message system attributes (``ApproximateReceiveCount``, ``SentTimestamp``,
    ``SenderId``, ``ApproximateFirstReceiveTimestamp``, and for FIFO ``SequenceNumber``, ``MessageGroupId``,
    ``MessageDeduplicationId``), values as strings. ``message_attributes`` use the SQS API shape
    (``{"DataType": "String", "StringValue": "x"}``, ``BinaryValue`` as bytes or base64 text); the record
    carries them lower camel case, as Lambda does.
    """
    record: dict[str, Any] = {
        "messageId": message_id,
        "receiptHandle": receipt_handle,
        "body": body,
        "attributes": _ordered_attributes(attributes),
        "messageAttributes": {name: _record_attribute(value) for name, value in message_attributes.items()},
        "md5OfBody": md5_of_body,
    }
    if md5_of_message_attributes is not None:
        record["md5OfMessageAttributes"] = md5_of_message_attributes
    record |= {"eventSource": "aws:sqs", "eventSourceARN": queue_arn, "awsRegion": region}
    return record


def record_from_sqs_message(msg: Mapping[str, Any], *, queue_arn: str, region: str) -> dict[str, Any]:
    """Convert one message of a ReceiveMessage response (botocore's shape) into a Lambda SQS record."""
    body = msg["Body"]
    return sqs_record(
        message_id=msg["MessageId"],
        receipt_handle=msg["ReceiptHandle"],
        body=body,
        attributes=msg.get("Attributes") or {},
        message_attributes=msg.get("MessageAttributes") or {},
        md5_of_body=msg.get("MD5OfBody") or md5_hex(body),
        md5_of_message_attributes=msg.get("MD5OfMessageAttributes"),
        queue_arn=queue_arn,
        region=region,
    )


def sqs_event(records: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The event a function receives for one batch: ``{"Records": [...]}``."""
    return {"Records": list(records)}


def queue_arn(url_or_name: str, region: str, account: str) -> str:
    """The ARN of a queue given by URL (``https://sqs.REGION.amazonaws.com/ACCOUNT/NAME``) or by name.

    A numeric account in the URL path wins over ``account``; an ARN is returned unchanged.
    """
    if url_or_name.startswith("arn:"):
        return url_or_name
    name, url_account = _split_queue(url_or_name)
    return f"arn:aws:sqs:{region}:{url_account or account}:{name}"


def md5_hex(text: str) -> str:
    """Hex MD5 of the UTF-8 bytes of ``text``, as SQS reports ``MD5OfBody``."""
    return hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest()


def md5_of_message_attributes(message_attributes: Mapping[str, Mapping[str, Any]]) -> str:
    """``MD5OfMessageAttributes`` as SQS computes it (and SDKs verify it) for API-shaped attributes.

    Per attribute, sorted by name: length-prefixed name, length-prefixed data type, a transport byte
    (1 text, 2 binary), then the length-prefixed value; lengths are 4-byte big-endian.
    """
    digest = hashlib.md5(usedforsecurity=False)
    for name in sorted(message_attributes):
        digest.update(_attribute_digest_input(name, message_attributes[name]))
    return digest.hexdigest()


def judge_batch_response(
    *,
    function_error: bool,
    payload: bytes | str | None,
    message_ids: Sequence[str],
    report_batch_item_failures: bool,
) -> BatchVerdict:
    """Judge one invocation as Lambda's SQS event source mapping does.

    Without ``ReportBatchItemFailures``: an error fails the whole batch, anything else succeeds. With it: an
    error still fails everything; a null or empty response, ``{}``, or a null or empty ``batchItemFailures``
    list is complete success; invalid JSON, a response that is not an object, ``batchItemFailures`` that is
    not a list, an entry without a non-empty string ``itemIdentifier``, or an identifier not in the batch is
    complete failure; otherwise exactly the listed messages failed.
    """
    batch = frozenset(message_ids)
    if function_error:
        return BatchVerdict(batch, "function error: the whole batch is retried")
    if not report_batch_item_failures:
        return BatchVerdict(frozenset(), "success")
    try:
        reported = _reported_failures(payload)
    except _InvalidResponse as bad:
        return BatchVerdict(batch, f"invalid batch response: {bad}; the whole batch is retried")
    return _verdict_for(reported, batch)


def _verdict_for(reported: frozenset[str], batch: frozenset[str]) -> BatchVerdict:
    unknown = sorted(reported - batch)
    if unknown:
        return BatchVerdict(batch, f"itemIdentifier {unknown[0]!r} is not in the batch; the whole batch is retried")
    if not reported:
        return BatchVerdict(frozenset(), "success: no batchItemFailures reported")
    return BatchVerdict(reported, f"{len(reported)} of {len(batch)} messages reported in batchItemFailures")


def _reported_failures(payload: bytes | str | None) -> frozenset[str]:
    if payload is None or not payload.strip():
        return frozenset()
    try:
        response = bounded_json.loads(payload)
    except bounded_json.TooDeep as err:
        raise _InvalidResponse(str(err)) from None
    except ValueError:
        raise _InvalidResponse("not valid JSON") from None
    if response is None:
        return frozenset()
    if not isinstance(response, dict):
        raise _InvalidResponse(f"expected a JSON object, got {type(response).__name__}")
    entries = response.get("batchItemFailures")
    if entries is None:
        return frozenset()
    if not isinstance(entries, list):
        raise _InvalidResponse(f"batchItemFailures must be a list, got {type(entries).__name__}")
    return frozenset(_item_identifier(entry, index) for index, entry in enumerate(entries))


def _item_identifier(entry: Any, index: int) -> str:
    where = f"batchItemFailures[{index}]"
    if not isinstance(entry, dict) or "itemIdentifier" not in entry:
        raise _InvalidResponse(f'{where} has no "itemIdentifier" key')
    identifier = entry["itemIdentifier"]
    if identifier is None or identifier == "":
        raise _InvalidResponse(f"{where}.itemIdentifier is null or empty")
    if not isinstance(identifier, str):
        raise _InvalidResponse(f"{where}.itemIdentifier must be a string message id")
    return identifier


def _ordered_attributes(attributes: Mapping[str, Any]) -> dict[str, str]:
    known = [name for name in _ATTRIBUTE_ORDER if name in attributes]
    others = [name for name in attributes if name not in _ATTRIBUTE_ORDER]
    return {name: str(attributes[name]) for name in known + others}


def _base64_text(value: bytes | str) -> str:
    # botocore hands BinaryValue over decoded (bytes); the raw JSON protocol carries it as base64 text.
    return base64.b64encode(value).decode("ascii") if isinstance(value, bytes) else value


def _record_attribute(attribute: Mapping[str, Any]) -> dict[str, Any]:
    converted: dict[str, Any] = {}
    if attribute.get("StringValue") is not None:
        converted["stringValue"] = attribute["StringValue"]
    if attribute.get("BinaryValue") is not None:
        converted["binaryValue"] = _base64_text(attribute["BinaryValue"])
    converted["stringListValues"] = list(attribute.get("StringListValues") or [])
    converted["binaryListValues"] = [_base64_text(v) for v in attribute.get("BinaryListValues") or []]
    converted["dataType"] = attribute["DataType"]
    return converted


def _length_prefixed(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def _attribute_digest_input(name: str, attribute: Mapping[str, Any]) -> bytes:
    head = _length_prefixed(name.encode("utf-8")) + _length_prefixed(attribute["DataType"].encode("utf-8"))
    if attribute.get("StringValue") is not None:
        return head + _TEXT_TRANSPORT + _length_prefixed(attribute["StringValue"].encode("utf-8"))
    binary = attribute["BinaryValue"]
    raw = binary if isinstance(binary, bytes) else base64.b64decode(binary)
    return head + _BINARY_TRANSPORT + _length_prefixed(raw)


def _split_queue(url_or_name: str) -> tuple[str, str | None]:
    if "://" not in url_or_name:
        return _require_name(url_or_name, url_or_name), None
    parts = [part for part in urlsplit(url_or_name).path.split("/") if part]
    name = _require_name(parts[-1] if parts else "", url_or_name)
    account = parts[-2] if len(parts) >= 2 and parts[-2].isdigit() else None
    return name, account


def _require_name(name: str, given: str) -> str:
    if not name:
        raise ValueError(f"no queue name in {given!r}; expected a queue URL or name")
    return name
