"""How each Lambda-API backend signals outcomes: function errors in answers, and which failures are retried."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from botocore import exceptions as boto

from bridge.events import payload as bounded_json
from bridge.model import error_body

# The RIE writes this plain text (HTTP 200, no header) when the function ran past AWS_LAMBDA_FUNCTION_TIMEOUT.
RIE_TIMEOUT = re.compile(rb"\s*Task timed out after (\d+(?:\.\d+)?) seconds\s*")
NOT_IMPLEMENTED = 501  # e.g. SAM refusing an invocation type: asking again will not help
# Lambda answers these when the call may succeed later (the function is being updated, or capacity is short).
RETRYABLE_CODES = frozenset({
    "TooManyRequestsException", "ServiceException", "ResourceConflictException", "ResourceNotReadyException",
    "EC2ThrottledException", "ThrottlingException", "RequestTimeoutException",
})

CREDENTIAL_ERRORS = (boto.NoCredentialsError, boto.PartialCredentialsError, boto.CredentialRetrievalError,
                     boto.ProfileNotFound)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a failed call means: ``retry`` it, it was ``rejected`` for good, or the ``function`` failed."""

    kind: Literal["retry", "rejected", "function"]
    status: int
    code: str
    message: str


def is_error_body(payload: bytes) -> bool:
    """True when ``payload`` is a Lambda error object (``errorMessage`` and ``errorType``)."""
    try:
        body = bounded_json.loads(payload)
    except ValueError:  # not JSON, or too deep to be an error object
        return False
    return isinstance(body, dict) and "errorMessage" in body and "errorType" in body


def function_error(backend: str, header: str | None, payload: bytes, request_id: str) -> tuple[str | None, bytes]:
    """``(function_error, payload)`` for a 200 answer, read the way ``backend`` reports failures.

    AWS and LocalStack send ``X-Amz-Function-Error`` (any non-empty value is an error; a body that merely looks
    like an error is a successful return). ``sam local start-lambda`` sets the header only when its own body
    heuristic fires, so the body keys are checked too. The RIE never sends the header: its errors are the body,
    and its timeouts are plain text, turned here into the error Lambda reports.
    """
    if header:
        return header, payload
    if backend in ("sam", "rie") and is_error_body(payload):
        return "Unhandled", payload
    if backend == "rie" and (match := RIE_TIMEOUT.fullmatch(payload)):
        return "Unhandled", timeout_body(request_id, float(match.group(1)))
    return None, payload


def timeout_body(request_id: str, seconds: float) -> bytes:
    """Lambda's error for a function that ran out of time."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return error_body("Sandbox.Timedout", f"{stamp} {request_id} Task timed out after {seconds:.2f} seconds")


def client_error(backend: str, err: boto.ClientError) -> Verdict:
    """Sort an HTTP error answer: throttles and server errors are retried, other 4xx are final."""
    status = int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    error = err.response.get("Error", {})
    code = str(error.get("Code") or status)
    message = str(error.get("Message") or "")
    if backend == "rie" and status == 400 and not message:
        # The RIE serves one invocation at a time and answers a bare 400 to a second one: a throttle.
        return Verdict("retry", 429, "TooManyRequestsException", "the RIE is busy with another invocation")
    if backend == "rie" and status == 502:
        # The RIE's 502 means the runtime crashed or failed to init: Lambda reports that as a function error.
        return Verdict("function", status, "Runtime.ExitError", message or "the runtime exited (RIE answered 502)")
    if status == 429 or (status >= 500 and status != NOT_IMPLEMENTED) or code in RETRYABLE_CODES:
        return Verdict("retry", status, code, message)
    return Verdict("rejected", status, code, message)


def transport_error(err: boto.BotoCoreError) -> Verdict:
    """Network failures (refused, reset, dropped after sending, timed out) and credential refreshes are retried."""
    if isinstance(err, boto.ConnectionError | boto.HTTPClientError):
        return Verdict("retry", 0, type(err).__name__, str(err))
    if isinstance(err, CREDENTIAL_ERRORS):
        message = f"{err}; configure credentials (profile:, AWS_PROFILE, AWS_ACCESS_KEY_ID, ...) for this endpoint"
        return Verdict("retry", 0, type(err).__name__, message)
    return Verdict("rejected", 0, type(err).__name__, str(err))
