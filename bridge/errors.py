"""The one error tree: every error a user can meet, each message saying how to fix it."""

from __future__ import annotations


class BridgeError(Exception):
    """Base of every lambda-bridge error; ``str(err)`` is the message a user reads."""

    exit_code = 1


class ConfigError(BridgeError):
    """The configuration is invalid; each entry of ``problems`` names a path and the fix."""

    exit_code = 2

    def __init__(self, problems: list[str], source: str = "config") -> None:
        self.problems = list(problems)
        self.source = source
        super().__init__(f"{source}: " + "; ".join(self.problems))

    def render(self) -> str:
        """All problems, one per line, for ``lambda-bridge check``."""
        count = len(self.problems)
        head = f"{self.source}: {count} error{'s' if count != 1 else ''}"
        return "\n".join([head, *(f"  {p}" for p in self.problems)])


class ExpressionError(BridgeError, ValueError):
    """An expression in the config (schedule, SQL, filter pattern) is malformed.

    Also a ``ValueError`` so that pydantic validators report its message at the config path.
    """

    exit_code = 2


class UsageError(BridgeError):
    """The command line is wrong; the message says what to type instead."""

    exit_code = 2


class FunctionNotFound(BridgeError):
    """No function of that name is configured; check ``functions:`` in the config."""

    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        choices = ", ".join(sorted(known)) or "(none configured)"
        super().__init__(f"function {name!r} is not configured; configured functions: {choices}")


class Throttled(BridgeError):
    """Every worker of the function is busy (reserved_concurrency reached); retry later."""

    def __init__(self, function: str, limit: int) -> None:
        self.function = function
        self.limit = limit
        super().__init__(
            f"function {function!r} is at its reserved_concurrency ({limit}); "
            f"retry later or raise functions.{function}.reserved_concurrency"
        )


class PayloadTooLarge(BridgeError):
    """The request payload exceeds Lambda's limit for its invocation type."""

    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(
            f"{size} bytes of request payload exceed the limit of {limit} bytes "
            "(Lambda allows 6 MB synchronous, 1 MB asynchronous)"
        )


class DaemonUnavailable(BridgeError):
    """The running daemon could not be reached at its api.listen address."""


class IntakeStopped(BridgeError):
    """The daemon stopped while an event waited for room on a full disk: it was not queued (send it again)."""


class RemoteUnavailable(BridgeError):
    """A remote function endpoint throttled (429), failed (5xx) or could not be reached; retried with backoff."""


class InvocationRejected(BridgeError):
    """The endpoint refused the invocation for good (4xx such as ResourceNotFound); not retried."""

    def __init__(self, message: str, status: int = 400, code: str = "") -> None:
        self.status = status
        self.code = code
        super().__init__(message)


class SamTemplateError(BridgeError):
    """A SAM template (or a ``sam-import`` option about it) cannot be imported; the message names file and line."""

    exit_code = 2


class StateDirInUse(BridgeError):
    """Another lambda-bridge (or a worker one left behind) holds the lock on this state_dir."""

    exit_code = 2


class ClusterUnavailable(BridgeError):
    """The cluster's SQS queue or DynamoDB table cannot be reached, or does not exist."""

    exit_code = 2


class NodeIdInUse(BridgeError):
    """Another running daemon already holds this cluster node id."""

    exit_code = 2


class ListenError(BridgeError):
    """The HTTP API cannot listen on ``api.listen`` (address in use, not local, privileged port)."""

    exit_code = 2


class ManifestError(BridgeError):
    """A function's dependency manifest is refused (a line that could write outside its environment, or that
    is not a requirement); the message names the file, the line and what is allowed."""

    exit_code = 2

    def __init__(self, path: str, line: int | None, message: str) -> None:
        self.path, self.line, self.reason = path, line, message
        super().__init__(f"{path}{f', line {line}' if line else ''}: {message}")


class BuildFailed(BridgeError):
    """Installing a function's dependencies failed; the message names the function, the manifest line (when
    the installer's message points at one) and the installer's own words."""

    def __init__(self, function: str, message: str) -> None:
        self.function, self.reason = function, message
        super().__init__(f"function {function}: {message}")
