"""SNS shapes: a Publish checked as SNS does, the Lambda event SNS sends, and the notification a queue gets."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

MAX_MESSAGE_BYTES = 262_144  # a message and its attributes together (also a PublishBatch's entries together)
MAX_SUBJECT = 100
MAX_BATCH = 10
SUBSCRIPTION_NAMESPACE = uuid.UUID("6f1c3a52-8a4e-4f7e-9c55-1f2b0a9d6e11")  # stable subscription ids


class PublishError(ValueError):
    """A Publish refused: SNS's error code (``InvalidParameter``, ``ParameterValueInvalid``, ...)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Message:
    """One published message, as the topic's subscriptions see it."""

    topic_arn: str
    message: str
    subject: str | None
    attributes: dict[str, dict[str, str]]  # API shape: {"name": {"DataType": ..., "StringValue"|"BinaryValue": ...}}
    structure: dict[str, str] | None = None  # MessageStructure=json: the message per protocol
    message_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    timestamp: datetime = field(default_factory=lambda: datetime.now(UTC))

    def text_for(self, protocol: str) -> str:
        """The message a ``lambda`` or ``sqs`` endpoint gets (MessageStructure=json: its own, else default)."""
        if self.structure is None:
            return self.message
        return self.structure.get(protocol, self.structure["default"])


def topic_arn(*, region: str, account: str, topic: str) -> str:
    """``arn:aws:sns:REGION:ACCOUNT:TOPIC``."""
    return f"arn:aws:sns:{region}:{account}:{topic}"


def subscription_arn(topic: str, endpoint: str, index: int) -> str:
    """A subscription's ARN: the topic's plus an id that stays the same across restarts for the same config."""
    return f"{topic}:{uuid.uuid5(SUBSCRIPTION_NAMESPACE, f'{topic}|{index}|{endpoint}')}"


def check_publish(params: Mapping[str, Any]) -> tuple[str, str | None, dict[str, dict[str, str]],
                                                       dict[str, str] | None]:
    """Publish's Message, Subject, MessageAttributes and MessageStructure checked as SNS does them."""
    text = params.get("Message")
    if not isinstance(text, str) or not text:
        raise PublishError("InvalidParameter", "Invalid parameter: Empty message")
    subject = params.get("Subject")
    if subject is not None:
        _check_subject(subject)
    attributes = check_attributes(params.get("MessageAttributes") or {})
    size = len(text.encode()) + sum(_attribute_size(n, a) for n, a in attributes.items())
    if size > MAX_MESSAGE_BYTES:
        raise PublishError("InvalidParameter", f"Invalid parameter: Message too long ({size} bytes; SNS takes "
                                               f"{MAX_MESSAGE_BYTES} with its attributes)")
    structure = _structure(text) if params.get("MessageStructure") == "json" else None
    if params.get("MessageStructure") not in (None, "", "json"):
        raise PublishError("InvalidParameter", "Invalid parameter: MessageStructure must be json")
    return text, subject or None, attributes, structure


def _check_subject(subject: Any) -> None:
    ok = (isinstance(subject, str) and 0 < len(subject) <= MAX_SUBJECT and subject.isascii()
          and subject.isprintable())
    if not ok:
        raise PublishError("InvalidParameter", "Invalid parameter: Subject (1-100 printable ASCII characters, "
                                               "no line breaks)")


def _structure(text: str) -> dict[str, str]:
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict) or not isinstance(parsed.get("default"), str):
        raise PublishError("InvalidParameter", "Invalid parameter: Message Structure - No default entry in JSON "
                                               "message body")
    return {k: v for k, v in parsed.items() if isinstance(v, str)}


def check_attributes(attributes: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """MessageAttributes in API shape; SNS's ParameterValueInvalid for a value its type does not allow."""
    checked = {}
    for name, value in attributes.items():
        if not isinstance(value, Mapping) or not value.get("DataType"):
            raise PublishError("ParameterValueInvalid", f"The message attribute '{name}' must contain non-empty "
                                                        "message attribute type.")
        checked[str(name)] = _check_attribute(str(name), str(value["DataType"]), value)
    return checked


def _check_attribute(name: str, kind: str, value: Mapping[str, Any]) -> dict[str, str]:
    base = kind.split(".", 1)[0] if not kind.startswith("String.Array") else "String.Array"
    if base == "Binary":
        return {"DataType": kind, "BinaryValue": _binary(name, value.get("BinaryValue"))}
    text = value.get("StringValue")
    if base not in ("String", "Number", "String.Array") or not isinstance(text, str) or not text:
        raise PublishError("ParameterValueInvalid", f"The message attribute '{name}' must contain non-empty "
                                                    f"message attribute value for message attribute type '{kind}'.")
    if base == "Number" and not _is_number(text):
        raise PublishError("ParameterValueInvalid", f"Could not cast message attribute '{name}' value to number.")
    if base == "String.Array" and not _is_array(text):
        raise PublishError("ParameterValueInvalid", f"The message attribute '{name}' with type 'String.Array' "
                                                    "has an invalid value: a JSON array is expected.")
    return {"DataType": kind, "StringValue": text}


def _binary(name: str, value: Any) -> str:
    if isinstance(value, bytes) and value:
        return base64.b64encode(value).decode()
    try:
        if isinstance(value, str) and value and base64.b64decode(value, validate=True):
            return value
    except binascii.Error:
        pass
    raise PublishError("ParameterValueInvalid", f"The message attribute '{name}' must contain non-empty message "
                                                "attribute value for message attribute type 'Binary'.")


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _is_array(text: str) -> bool:
    try:
        return isinstance(json.loads(text), list)
    except ValueError:
        return False


def _attribute_size(name: str, attribute: Mapping[str, str]) -> int:
    value = attribute.get("StringValue") or attribute.get("BinaryValue") or ""
    return len(name.encode()) + len(attribute["DataType"].encode()) + len(value.encode())


# --- what subscribers get -------------------------------------------------------------------------------


def _timestamp(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def _endpoint_urls(region: str, topic: str, subscription: str) -> tuple[str, str]:
    base = f"https://sns.{region}.amazonaws.com"
    return (f"{base}/SimpleNotificationService-lambda-bridge-local.pem",
            f"{base}/?Action=Unsubscribe&SubscriptionArn={subscription}")


def _signature(message: Message, text: str) -> str:
    """Not a verifiable signature (no AWS key signs here): a digest of what SNS signs, base64 like SNS's."""
    canonical = "\n".join(("Message", text, "MessageId", message.message_id, "Timestamp",
                           _timestamp(message.timestamp), "TopicArn", message.topic_arn, "Type", "Notification"))
    return base64.b64encode(hashlib.sha256(canonical.encode()).digest()).decode()


def _notification_attributes(message: Message) -> dict[str, dict[str, str]]:
    return {name: {"Type": a["DataType"], "Value": a.get("StringValue", a.get("BinaryValue", ""))}
            for name, a in message.attributes.items()}


def lambda_event(message: Message, *, region: str, subscription: str) -> dict[str, Any]:
    """The event SNS invokes a subscribed function with (one record per message)."""
    text = message.text_for("lambda")
    cert, unsubscribe = _endpoint_urls(region, message.topic_arn, subscription)
    return {"Records": [{
        "EventSource": "aws:sns",
        "EventVersion": "1.0",
        "EventSubscriptionArn": subscription,
        "Sns": {
            "Type": "Notification",
            "MessageId": message.message_id,
            "TopicArn": message.topic_arn,
            "Subject": message.subject,
            "Message": text,
            "Timestamp": _timestamp(message.timestamp),
            "SignatureVersion": "1",
            "Signature": _signature(message, text),
            "SigningCertUrl": cert,
            "UnsubscribeUrl": unsubscribe,
            "MessageAttributes": _notification_attributes(message),
        },
    }]}


def queue_body(message: Message, *, region: str, subscription: str) -> str:
    """The SQS message body of a non-raw queue subscription: SNS's JSON notification (Subject and
    MessageAttributes only when the message has them)."""
    text = message.text_for("sqs")
    cert, unsubscribe = _endpoint_urls(region, message.topic_arn, subscription)
    body: dict[str, Any] = {"Type": "Notification", "MessageId": message.message_id,
                            "TopicArn": message.topic_arn}
    if message.subject is not None:
        body["Subject"] = message.subject
    body.update({"Message": text, "Timestamp": _timestamp(message.timestamp), "SignatureVersion": "1",
                 "Signature": _signature(message, text), "SigningCertURL": cert, "UnsubscribeURL": unsubscribe})
    if message.attributes:
        body["MessageAttributes"] = _notification_attributes(message)
    return json.dumps(body)


def raw_queue_message(message: Message) -> dict[str, Any]:
    """A raw-delivery queue subscription's SendMessage entry: the message as the body, attributes as SQS's."""
    return {"MessageBody": message.text_for("sqs"), "MessageAttributes": dict(message.attributes)}
