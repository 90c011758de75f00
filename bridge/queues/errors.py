"""SQS's error codes as exceptions: each knows its JSON ``__type`` and its query-compatible code."""

from __future__ import annotations

from bridge.errors import BridgeError


class SqsError(BridgeError):
    """An SQS API error; ``code`` is the modeled shape name, ``query_code`` what ``x-amzn-query-error`` carries."""

    code = "InvalidParameterValue"
    query_code = "InvalidParameterValue"
    status = 400
    sender_fault = True

    @property
    def message(self) -> str:
        """The text AWS puts in ``message``."""
        return str(self)


class QueueDoesNotExist(SqsError):
    """The queue named in the request does not exist; create it (CreateQueue or ``queues:``) or fix its URL."""

    code = "QueueDoesNotExist"
    query_code = "AWS.SimpleQueueService.NonExistentQueue"

    def __init__(self, name: str = "") -> None:
        super().__init__("The specified queue does not exist." + (f" ({name})" if name else ""))


class QueueNameExists(SqsError):
    """CreateQueue with a name that exists with different attributes."""

    code = "QueueNameExists"
    query_code = "QueueAlreadyExists"


class InvalidParameterValue(SqsError):
    """A parameter has a value SQS rejects; the message names it."""


class MissingParameter(SqsError):
    """A required parameter is absent."""

    code = "MissingParameter"
    query_code = "MissingParameter"

    def __init__(self, parameter: str) -> None:
        super().__init__(f"The request must contain the parameter {parameter}.")


class InvalidAttributeName(SqsError):
    """An unknown queue attribute name."""

    code = "InvalidAttributeName"
    query_code = "InvalidAttributeName"

    def __init__(self, name: str) -> None:
        super().__init__(f"Unknown Attribute {name}.")


class InvalidAttributeValue(SqsError):
    """A queue attribute value out of range or of the wrong kind."""

    code = "InvalidAttributeValue"
    query_code = "InvalidAttributeValue"


class ReceiptHandleIsInvalid(SqsError):
    """The receipt handle is not one this queue issued."""

    code = "ReceiptHandleIsInvalid"
    query_code = "ReceiptHandleIsInvalid"

    def __init__(self, handle: str) -> None:
        super().__init__(f'The input receipt handle "{handle}" is not a valid receipt handle.')


class MessageNotInflight(SqsError):
    """ChangeMessageVisibility on a message that is not in flight."""

    code = "MessageNotInflight"
    query_code = "AWS.SimpleQueueService.MessageNotInflight"

    def __init__(self) -> None:
        super().__init__("The message referred to isn't in flight.")


class InvalidMessageContents(SqsError):
    """The body holds characters SQS does not allow."""

    code = "InvalidMessageContents"
    query_code = "InvalidMessageContents"


class EmptyBatchRequest(SqsError):
    """A batch call without entries."""

    code = "EmptyBatchRequest"
    query_code = "AWS.SimpleQueueService.EmptyBatchRequest"

    def __init__(self) -> None:
        super().__init__("There should be at least one entry in the request.")


class TooManyEntriesInBatchRequest(SqsError):
    """More than 10 entries in a batch call."""

    code = "TooManyEntriesInBatchRequest"
    query_code = "AWS.SimpleQueueService.TooManyEntriesInBatchRequest"

    def __init__(self, count: int) -> None:
        super().__init__(f"Maximum number of entries per request are 10. You have sent {count}.")


class BatchEntryIdsNotDistinct(SqsError):
    """Two entries of a batch share an Id."""

    code = "BatchEntryIdsNotDistinct"
    query_code = "AWS.SimpleQueueService.BatchEntryIdsNotDistinct"

    def __init__(self, entry_id: str) -> None:
        super().__init__(f"Id {entry_id} repeated.")


class InvalidBatchEntryId(SqsError):
    """A batch entry Id with characters SQS does not allow."""

    code = "InvalidBatchEntryId"
    query_code = "AWS.SimpleQueueService.InvalidBatchEntryId"

    def __init__(self) -> None:
        super().__init__("A batch entry id can only contain alphanumeric characters, hyphens and underscores. "
                         "It can be at most 80 letters long.")


class BatchRequestTooLong(SqsError):
    """The entries of a SendMessageBatch together are over SQS's limit."""

    code = "BatchRequestTooLong"
    query_code = "AWS.SimpleQueueService.BatchRequestTooLong"

    def __init__(self, limit: int, size: int) -> None:
        super().__init__(f"Batch requests cannot be longer than {limit} bytes. You have sent {size} bytes.")


class RequestTooLarge(SqsError):
    """The HTTP request body is over SQS's own limit: a 413, which SDKs do not retry (a 500 they would)."""

    code = "RequestEntityTooLarge"
    query_code = "RequestEntityTooLarge"
    status = 413

    def __init__(self, limit: int, size: int | None) -> None:
        sent = f"this request has {size} bytes" if size is not None else "this request has more"
        super().__init__(f"HTTP content length exceeded {limit} bytes ({sent}). An SQS message must be shorter "
                         "than 262144 bytes, and a batch's messages together too: send less per request, or put "
                         "large payloads elsewhere (S3) and send a pointer.")


class UnsupportedOperation(SqsError):
    """An action the embedded queue does not implement."""

    code = "UnsupportedOperation"
    query_code = "AWS.SimpleQueueService.UnsupportedOperation"


class InternalError(SqsError):
    """The embedded queue failed on a request it should have handled (a bug; the log says which)."""

    code = "InternalError"
    query_code = "InternalError"
    status = 500
    sender_fault = False

    def __init__(self) -> None:
        super().__init__("We encountered an internal error. Please try again.")
