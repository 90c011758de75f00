"""Pure message rules of SQS: validating what SendMessage gets, rendering what ReceiveMessage returns."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from bridge.config.queues import QueueConfig
from bridge.events.sqs import md5_hex, md5_of_message_attributes
from bridge.queues.errors import (
    InvalidMessageContents,
    InvalidParameterValue,
    MissingParameter,
    ReceiptHandleIsInvalid,
)
from bridge.queues.storage import NewMessage, StoredMessage, sequence_number

# The characters SQS allows in a body (XML 1.0's Char production).
ALLOWED = re.compile("^[\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]*$")
ATTRIBUTE_NAME = re.compile(r"^(?!\.)(?!.*\.\.)(?!.*\.$)[A-Za-z0-9_.-]{1,256}$")
MAX_ATTRIBUTES = 10
SYSTEM_ATTRIBUTES = ("SenderId", "SentTimestamp", "ApproximateReceiveCount", "ApproximateFirstReceiveTimestamp",
                     "SequenceNumber", "MessageDeduplicationId", "MessageGroupId", "AWSTraceHeader",
                     "DeadLetterQueueSourceArn")


def new_message(settings: QueueConfig, entry: Mapping[str, Any], now: float) -> NewMessage:
    """Validate one SendMessage(Batch) entry (API shape) for a queue and build the stored message."""
    body = entry.get("MessageBody")
    if not body:
        raise MissingParameter("MessageBody")
    if not isinstance(body, str) or not ALLOWED.match(body):
        raise InvalidMessageContents("Invalid characters found. Valid unicode characters are #x9 | #xA | #xD | "
                                     "#x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF")
    attributes = check_attributes(entry.get("MessageAttributes") or {})
    _check_size(settings, body, attributes)
    group, dedup = _fifo_ids(settings, entry, body)
    delay = _delay(settings, entry.get("DelaySeconds"))
    return NewMessage(
        id=str(uuid.uuid4()), body=body, attributes=attributes, md5_body=md5_hex(body),
        md5_attributes=md5_of_message_attributes(attributes) if attributes else None, sent=now,
        visible_at=now + delay, expires=now + settings.message_retention, group_id=group, dedup_id=dedup)


def check_attributes(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """Message attributes in API shape (binary values as base64 text); raises InvalidParameterValue."""
    if len(attributes) > MAX_ATTRIBUTES:
        raise InvalidParameterValue(f"Number of message attributes [{len(attributes)}] exceeds the allowed "
                                    f"maximum [{MAX_ATTRIBUTES}].")
    return {name: _check_attribute(name, value) for name, value in attributes.items()}


def _check_attribute(name: str, value: Any) -> dict[str, Any]:
    if not ATTRIBUTE_NAME.match(name) or name.lower().startswith(("aws.", "amazon.")):
        raise InvalidParameterValue(f"Message attribute name '{name}' is invalid.")
    if not isinstance(value, Mapping) or not value.get("DataType"):
        raise InvalidParameterValue(f"The message attribute '{name}' must contain a non-empty attribute type.")
    kind = str(value["DataType"]).split(".", 1)[0]
    if kind in ("String", "Number") and value.get("StringValue") not in (None, ""):
        return {"StringValue": str(value["StringValue"]), "DataType": value["DataType"]}
    if kind == "Binary" and value.get("BinaryValue"):
        return {"BinaryValue": _base64(name, value["BinaryValue"]), "DataType": value["DataType"]}
    raise InvalidParameterValue(f"The message attribute '{name}' with type '{value['DataType']}' must use field "
                                f"'{'Binary' if kind == 'Binary' else 'String'}'.")


def _base64(name: str, value: Any) -> str:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    try:
        base64.b64decode(str(value), validate=True)
    except binascii.Error:
        raise InvalidParameterValue(f"The message attribute '{name}' has an invalid binary value.") from None
    return str(value)


def message_size(body: str, attributes: Mapping[str, Any]) -> int:
    """The bytes SQS counts against its size limits: the body, and each attribute's name, type and value."""
    size = len(body.encode("utf-8", "surrogatepass"))
    for name, value in attributes.items():
        if isinstance(value, Mapping):  # a batch is measured before its entries are checked
            size += sum(len(str(part).encode("utf-8", "surrogatepass")) for part in (
                name, value.get("DataType") or "", value.get("StringValue") or value.get("BinaryValue") or ""))
    return size


def batch_size(entries: Iterable[Mapping[str, Any]]) -> int:
    """The bytes of a SendMessageBatch, all entries together (SQS's BatchRequestTooLong limit)."""
    total = 0
    for entry in entries:
        body, attributes = entry.get("MessageBody"), entry.get("MessageAttributes")
        total += message_size(body if isinstance(body, str) else "", attributes if isinstance(attributes, Mapping)
                              else {})
    return total


def _check_size(settings: QueueConfig, body: str, attributes: Mapping[str, Any]) -> None:
    if message_size(body, attributes) > settings.maximum_message_size:
        raise InvalidParameterValue(f"One or more parameters are invalid. Reason: Message must be shorter than "
                                    f"{settings.maximum_message_size} bytes.")


def _fifo_ids(settings: QueueConfig, entry: Mapping[str, Any], body: str) -> tuple[str | None, str | None]:
    group, dedup = entry.get("MessageGroupId"), entry.get("MessageDeduplicationId")
    if not settings.fifo:
        if dedup is not None:
            raise InvalidParameterValue("The request include parameter that is not valid for this queue type: "
                                        "MessageDeduplicationId")
        return group, None
    if not group:
        raise MissingParameter("MessageGroupId")
    if dedup is None and not settings.content_based_deduplication:
        raise InvalidParameterValue("The queue should either have ContentBasedDeduplication enabled or "
                                    "MessageDeduplicationId provided explicitly")
    return group, dedup or hashlib.sha256(body.encode()).hexdigest()


def _delay(settings: QueueConfig, value: Any) -> int:
    if value is None:
        return settings.delay
    if settings.fifo:
        raise InvalidParameterValue("Value " + str(value) + " for parameter DelaySeconds is invalid. Reason: "
                                    "The request include parameter that is not valid for this queue type.")
    return check_int("DelaySeconds", value, 0, 900)


def check_int(name: str, value: Any, low: int, high: int) -> int:
    """An integer parameter within [low, high], else InvalidParameterValue naming it."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = low - 1
    if not low <= number <= high:
        raise InvalidParameterValue(f"Value {value} for parameter {name} is invalid. Reason: Must be between "
                                    f"{low} and {high}, if provided.")
    return number


def receipt_handle(message_id: str, token: str) -> str:
    """The opaque receipt handle of one receive."""
    return base64.urlsafe_b64encode(f"{message_id}:{token}".encode()).decode()


def parse_receipt(handle: Any) -> tuple[str, str]:
    """(message id, token) of a receipt handle; ReceiptHandleIsInvalid when it is not one of ours."""
    try:
        message_id, token = base64.urlsafe_b64decode(str(handle).encode()).decode().split(":")
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ReceiptHandleIsInvalid(str(handle)) from None
    return message_id, token


def render(message: StoredMessage, *, fifo: bool, sender: str, system_names: Iterable[str],
           attribute_names: Iterable[str]) -> dict[str, Any]:
    """One message of a ReceiveMessage response (API shape) with the requested attributes."""
    out: dict[str, Any] = {"MessageId": message.id, "ReceiptHandle": receipt_handle(message.id, message.receipt),
                           "MD5OfBody": message.md5_body, "Body": message.body}
    system = select_system(system_attributes(message, fifo, sender), system_names)
    if system:
        out["Attributes"] = system
    chosen = select_message_attributes(message.attributes, attribute_names)
    if chosen:
        out["MD5OfMessageAttributes"] = md5_of_message_attributes(chosen)
        out["MessageAttributes"] = chosen
    return out


def system_attributes(message: StoredMessage, fifo: bool, sender: str) -> dict[str, str]:
    """Every system attribute SQS reports for a received message."""
    attrs = {"SenderId": sender, "SentTimestamp": str(int(message.sent * 1000)),
             "ApproximateReceiveCount": str(message.receive_count),
             "ApproximateFirstReceiveTimestamp": str(int((message.first_receive or message.sent) * 1000))}
    if fifo:
        attrs["SequenceNumber"] = sequence_number(message.seq)
        attrs["MessageDeduplicationId"] = message.dedup_id or ""
    if message.group_id is not None:
        attrs["MessageGroupId"] = message.group_id
    if message.source_arn:
        attrs["DeadLetterQueueSourceArn"] = message.source_arn
    return attrs


def select_system(attrs: dict[str, str], names: Iterable[str]) -> dict[str, str]:
    """The system attributes asked for (``All`` = every one)."""
    wanted = set(names)
    if "All" in wanted:
        return attrs
    return {name: value for name, value in attrs.items() if name in wanted}


def select_message_attributes(attrs: dict[str, Any], names: Iterable[str]) -> dict[str, Any]:
    """Message attributes asked for: ``All`` or ``.*`` = every one, ``prefix.*`` = by prefix, else by name."""
    wanted = list(names)
    if "All" in wanted or ".*" in wanted:
        return attrs
    prefixes = tuple(name[:-1] for name in wanted if name.endswith(".*"))
    return {name: value for name, value in attrs.items() if name in wanted or (prefixes and name.startswith(prefixes))}
