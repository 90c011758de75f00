"""YAML config file -> frozen, typed Config; every mistake reported with its path, line and the fix."""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    Discriminator,
    Field,
    SecretStr,
    Tag,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from bridge.cluster.config import ClusterConfig
from bridge.config.aws import AwsEndpoints, Buckets, check_buckets
from bridge.config.base import Strict
from bridge.config.errors import describe_errors, format_path
from bridge.config.fanout import BusConfig, TopicConfig, check_fanout, default_buses
from bridge.config.queues import QueueConfig, check_queues
from bridge.config.sources import SourceConfig, check_sources
from bridge.errors import ConfigError

FUNCTION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
HANDLER = re.compile(r"^[^\s.][^\s]*\.[A-Za-z_][A-Za-z0-9_]*$")
# python: the daemon's interpreter; python3.N: that interpreter when installed (else the daemon's, with a warning).
RUNTIME = re.compile(r"^(python(3\.\d{1,2})?|provided(\.al2|\.al2023)?|nodejs)$")  # nodejs: docs/nodejs.md
ENV_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
ENV_REF = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
# Lambda refuses these in a function's environment because the runtime sets them itself.
RESERVED_ENV = frozenset(
    {
        "_HANDLER", "_X_AMZN_TRACE_ID", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_EXECUTION_ENV",
        "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_INITIALIZATION_TYPE", "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME",
        "AWS_LAMBDA_RUNTIME_API", "LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR",
    }
)


class UiConfig(Strict):
    """The status page on api.listen (docs/ui.md)."""

    write: bool = False  # redrive and purge dead letters from the page


class ApiConfig(Strict):
    """The local HTTP endpoint (Lambda Invoke API and, later, SQS and metrics)."""

    listen: str | None = None
    # The status page and /bridge/status need it (``Authorization: Bearer``); required off loopback.
    token: SecretStr | None = None
    ui: UiConfig = UiConfig()

    @field_validator("token")
    @classmethod
    def _token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("api.token must be at least 16 characters; make one with "
                             "`python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`")
        return value

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str | None) -> str | None:
        if value is not None:
            host, _ = parse_listen(value)
            _resolvable(host, value)
        return value

    @property
    def address(self) -> tuple[str, int] | None:
        """``(host, port)`` to bind, or None when the endpoint is off."""
        return parse_listen(self.listen) if self.listen else None


def parse_listen(value: str) -> tuple[str, int]:
    """``"127.0.0.1:9001"``, ``"[::1]:9001"``, ``":9001"`` or ``"9001"`` -> (host, port); loopback by default."""
    host, _, port = str(value).rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{value!r} is not HOST:PORT with a port 1-65535 (e.g. 127.0.0.1:9001)")
    return host, int(port)


def _resolvable(host: str, value: str) -> None:
    """A host name must resolve now, or the daemon fails at start; an IP literal needs no lookup."""
    try:
        ipaddress.ip_address(host)
        return
    except ValueError:
        pass
    try:
        socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as err:
        raise ValueError(f"{value!r}: the host {host!r} does not resolve ({getattr(err, 'strerror', err)}); "
                         "use an address such as 127.0.0.1 or a name in /etc/hosts") from None


DESTINATION = re.compile(r"^(dlq|function:[A-Za-z0-9_-]{1,64}|sqs:https?://\S+)$")


def _destination(value: str | None) -> str | None:
    if value is not None and not DESTINATION.match(value):
        raise ValueError(f"{value!r} is not a destination; expected one of: null, dlq, function:NAME, sqs:QUEUE_URL")
    return value


class AsyncConfig(Strict):
    """Lambda's EventInvokeConfig for asynchronous invocations (AWS defaults)."""

    maximum_retry_attempts: Annotated[int, Field(ge=0, le=2)] = 2
    # AWS allows 60-21600; shorter ages are accepted so that tests and local experiments run quickly.
    maximum_event_age: Annotated[float, Field(ge=1, le=21600)] = 21600
    retry_delays: list[Annotated[float, Field(ge=0, le=3600)]] = [60.0, 120.0]
    on_success: str | None = None
    on_failure: str | None = "dlq"

    @field_validator("on_success", "on_failure")
    @classmethod
    def _destinations(cls, value: str | None) -> str | None:
        return _destination(value)

    @model_validator(mode="after")
    def _enough_delays(self) -> AsyncConfig:
        if len(self.retry_delays) < self.maximum_retry_attempts:
            raise ValueError(f"retry_delays needs {self.maximum_retry_attempts} entries, one per retry")
        return self


class LocalFunctionConfig(Strict):
    """A function whose handler code runs on this machine in warm worker processes."""

    runtime: str = "python"  # before handler: the handler's rule depends on it
    handler: str
    code: Path
    timeout: Annotated[int, Field(ge=1, le=900)] = 3
    memory_size: Annotated[int, Field(ge=128, le=10240)] = 128
    reserved_concurrency: Annotated[int, Field(ge=0, le=1000)] = Field(
        default_factory=lambda: os.cpu_count() or 1
    )
    idle_timeout: Annotated[float, Field(gt=0, le=86400)] = 600.0
    environment: dict[str, str] = {}
    layers: list[Path] = []  # Lambda layers' folders (python/, bin/, lib/ ...), later ones take precedence
    aws_endpoints: AwsEndpoints = {}  # per service, over the global map (docs/s3.md)
    async_: AsyncConfig = Field(default_factory=AsyncConfig, alias="async")

    @field_validator("runtime")
    @classmethod
    def _runtime(cls, value: str) -> str:
        if not RUNTIME.match(value):
            raise ValueError(f"unknown {value!r}; expected one of: python, python3.N (e.g. python3.12), nodejs, "
                             "provided")
        return value

    @field_validator("layers")
    @classmethod
    def _layers(cls, value: list[Path], info: ValidationInfo) -> list[Path]:
        paths = [resolve_path(item, info) for item in value]
        for index, path in enumerate(paths):
            if not path.is_dir():
                raise ValueError(f"directory {str(path)!r} (item {index}) does not exist; point it at the "
                                 "layer's folder (the one holding python/, bin/ or lib/)")
        return paths

    @field_validator("handler")
    @classmethod
    def _handler(cls, value: str, info: ValidationInfo) -> str:
        # Lambda accepts any handler string for a custom runtime (Go templates say ``Handler: bootstrap``).
        if not str(info.data.get("runtime", "python")).startswith("provided") and not HANDLER.match(value):
            raise ValueError(f"{value!r} is not module.function (e.g. lambda_function.lambda_handler)")
        if not value.strip():
            raise ValueError("the handler is empty; give module.function, or any name for runtime provided")
        return value

    @property
    def is_python(self) -> bool:
        """True for ``python`` and ``python3.N``: awslambdaric runs the handler."""
        return self.runtime.startswith("python")

    @field_validator("code")
    @classmethod
    def _code(cls, value: Path, info: ValidationInfo) -> Path:
        path = resolve_path(value, info)
        if not path.is_dir():
            raise ValueError(f"directory {str(path)!r} does not exist; point code: at your handler's folder")
        return path

    @field_validator("environment", mode="before")
    @classmethod
    def _environment(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        return {key: _env_value(key, item) for key, item in value.items()}

    @property
    def concurrency(self) -> int:
        """Invocations at once: reserved_concurrency."""
        return self.reserved_concurrency

    @model_validator(mode="after")
    def _runtime_files(self) -> LocalFunctionConfig:
        bootstrap = self.code / "bootstrap"
        if self.runtime.startswith("provided") and not os.access(bootstrap, os.X_OK):
            raise ValueError(f"runtime provided needs an executable {str(bootstrap)!r} (chmod +x it)")
        return self


ARN = re.compile(r"^arn:aws[a-z-]*:lambda:([a-z0-9-]+):(\d{12}):function:([A-Za-z0-9_-]{1,64})(:[A-Za-z0-9$_-]+)?$")


class RemoteFunctionConfig(Strict):
    """A function that runs elsewhere (AWS Lambda or any Lambda-API endpoint), invoked with aiobotocore."""

    arn: str
    endpoint_url: str | None = None
    backend: Literal["aws", "localstack", "sam", "rie"] = "aws"
    profile: str | None = None
    max_concurrency: Annotated[int, Field(ge=1, le=1000)] | None = None
    # Default: Event for aws/localstack; RequestResponse for sam/rie, which answer nothing else.
    invocation_type: Literal["Event", "RequestResponse"] = "Event"
    timeout: Annotated[float, Field(ge=1, le=900)] = 30.0
    # How long throttles, 5xx and network failures are retried inside one invocation before giving up.
    retry_timeout: Annotated[float, Field(ge=0, le=3600)] = 10.0
    async_: AsyncConfig = Field(default_factory=AsyncConfig, alias="async")

    @model_validator(mode="before")
    @classmethod
    def _sync_only_backends(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("backend") in ("sam", "rie") and "invocation_type" not in data:
            return {**data, "invocation_type": "RequestResponse"}
        return data

    @field_validator("arn")
    @classmethod
    def _arn(cls, value: str) -> str:
        if not ARN.match(value):
            raise ValueError(f"{value!r} is not a Lambda function ARN "
                             "(arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER])")
        return value

    @model_validator(mode="after")
    def _event_needs_lambda_queue(self) -> RemoteFunctionConfig:
        if self.backend in ("sam", "rie") and self.invocation_type == "Event":
            raise ValueError(f"backend {self.backend} answers only RequestResponse invocations; "
                             "set invocation_type: RequestResponse (the bridge's own queue then retries)")
        return self

    @property
    def function_name(self) -> str:
        """The function's name inside the ARN."""
        return ARN.match(self.arn).group(3)  # type: ignore[union-attr]

    @property
    def concurrency(self) -> int:
        """In-flight invocations toward the endpoint (the RIE serves one at a time)."""
        return self.max_concurrency or (1 if self.backend == "rie" else 64)

    @property
    def region(self) -> str:
        """The region named in the ARN."""
        return ARN.match(self.arn).group(1)  # type: ignore[union-attr]


def _function_kind(value: Any) -> str:
    if isinstance(value, dict):
        return "remote" if "arn" in value else "local"
    return "remote" if isinstance(value, RemoteFunctionConfig) else "local"


FunctionConfig = Annotated[
    Annotated[LocalFunctionConfig, Tag("local")] | Annotated[RemoteFunctionConfig, Tag("remote")],
    Discriminator(_function_kind),
]


def _env_value(key: Any, item: Any) -> str:
    """Environment values are strings in Lambda; YAML scalars are converted as the console would."""
    if not isinstance(key, str) or not ENV_NAME.match(key):
        raise ValueError(f"{key!r} is not a valid environment variable name (letters, digits, _)")
    if key in RESERVED_ENV:
        raise ValueError(f"{key!r} is reserved: Lambda sets it for every function")
    if isinstance(item, bool):
        return "true" if item else "false"
    if isinstance(item, (int, float, str)):
        return str(item)
    raise ValueError(f"environment.{key}: expected a string, got {type(item).__name__}")


def default_state_dir() -> Path:
    """systemd's ``$STATE_DIRECTORY`` (its first entry), else ``var/state`` under the working directory."""
    systemd_dir = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    return Path(systemd_dir or "var/state").resolve()


def resolve_path(value: Path, info: ValidationInfo) -> Path:
    """Relative paths resolve against the config file's directory."""
    base = Path((info.context or {}).get("base_dir", "."))
    return (base / value.expanduser()).resolve()


class Config(Strict):
    """The whole configuration file."""

    region: str = "us-east-1"
    account_id: str = "000000000000"
    state_dir: Path = Field(default=None, validate_default=True)  # type: ignore[assignment]
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    shutdown_timeout: Annotated[float, Field(ge=0, le=3600)] = 30.0
    max_queued_events: Annotated[int, Field(ge=1)] = 1_000_000
    api: ApiConfig = ApiConfig()
    functions: dict[str, FunctionConfig] = {}
    queues: dict[str, QueueConfig] = {}
    buses: dict[str, BusConfig] = Field(default=None, validate_default=True)  # type: ignore[assignment]
    topics: dict[str, TopicConfig] = {}
    sources: list[SourceConfig] = []
    buckets: Buckets = {}  # local S3 buckets that trigger nothing: name -> folder (docs/s3.md)
    aws_endpoints: AwsEndpoints = {}  # service -> URL | aws | bridge, for local functions' SDKs
    cluster: ClusterConfig | None = None  # several daemons sharing SQS and DynamoDB (docs/cluster.md)

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d", value):
            raise ValueError(f"{value!r} is not an AWS region name (e.g. us-east-1, eu-central-1)")
        return value

    @field_validator("buses", mode="before")
    @classmethod
    def _default_bus(cls, value: Any) -> Any:
        return default_buses(value)

    @field_validator("account_id", mode="before")
    @classmethod
    def _account_id(cls, value: Any) -> Any:
        if not re.fullmatch(r"\d{12}", str(value)):
            raise ValueError(f"{value!r} is not a 12-digit AWS account id; quote it: \"123456789012\"")
        return str(value)

    @field_validator("state_dir", mode="before")
    @classmethod
    def _state_dir(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, str):
            return resolve_path(Path(value), info)
        if value is not None:
            return value
        return default_state_dir()

    @field_validator("state_dir")
    @classmethod
    def _state_dir_usable(cls, value: Path) -> Path:
        for path in (value, *value.parents):  # the first part that exists must be a directory
            if path.exists():
                if not path.is_dir():
                    raise ValueError(f"{str(path)!r} is a file, not a directory; point state_dir at a directory "
                                     "(it is created if missing)")
                break
        return value

    @field_validator("functions")
    @classmethod
    def _function_names(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name in value:
            if not FUNCTION_NAME.match(name):
                raise ValueError(f"function name {name!r} must be 1-64 letters, digits, '-' or '_'")
        return value

    def function_arn(self, name: str) -> str:
        """The ARN a function of this config has, as Lambda would name it (a remote one: its own)."""
        fn = self.functions.get(name)
        if isinstance(fn, RemoteFunctionConfig):
            return fn.arn
        return f"arn:aws:lambda:{self.region}:{self.account_id}:function:{name}"

    def problems(self) -> list[str]:
        """Rules that span sections: destinations, source targets, queues, overlapping S3 rules."""
        destinations = {name: (fn.async_.on_success, fn.async_.on_failure) for name, fn in self.functions.items()}
        return (check_queues(self.queues) + cross_references(destinations, self.queues, list(self.sources))
                + destination_loops(self.functions) + self._api_address_taken()
                + check_buckets(self.buckets, list(self.sources))
                + check_fanout(self.buses, self.topics, self.functions, self.queues))

    def _api_address_taken(self) -> list[str]:
        """A source listening on ``api.listen``: the daemon binds its API there first, so the source could not."""
        return [f"sources[{i}].listen: {s.listen} is api.listen, where the daemon's own API listens; give the "
                "source another port" for i, s in enumerate(self.sources)
                if self.api.address is not None and getattr(s, "address", None) == self.api.address]


def cross_references(destinations: dict[str, tuple[Any, Any]], queues: Any, sources: list[Any]) -> list[str]:
    """Names that must exist elsewhere in the file: destination functions, source functions and queues."""
    found = check_sources(sources, destinations, queues)
    for name, targets in destinations.items():
        for key, target in zip(("on_success", "on_failure"), targets, strict=True):
            if isinstance(target, str) and target.startswith("function:") and target[9:] not in destinations:
                found.append(f"functions.{name}.async.{key}: {target!r} names no configured function; "
                             f"configured: {', '.join(destinations)}")
    return found


def partial_problems(data: dict[str, Any], context: dict[str, Any]) -> list[str]:
    """The cross-section rules on a file that failed validation: each entry that validates alone is checked
    as usual, the others by the names they give, so one pass reports schema and reference errors together."""
    functions = data.get("functions") if isinstance(data.get("functions"), dict) else {}
    destinations = {str(name): _raw_destinations(fn) for name, fn in functions.items()}
    queues = data.get("queues") if isinstance(data.get("queues"), dict) else {}
    raw_sources = data.get("sources") if isinstance(data.get("sources"), list) else []
    adapter: TypeAdapter[Any] = TypeAdapter(SourceConfig)
    sources = []
    for raw in raw_sources:
        try:
            sources.append(adapter.validate_python(raw, context=context))
        except ValidationError:
            sources.append(raw)
    return cross_references(destinations, queues, sources)


def _raw_destinations(fn: Any) -> tuple[Any, Any]:
    settings = fn.get("async") if isinstance(fn, dict) else None
    if not isinstance(settings, dict):
        return None, None
    return settings.get("on_success"), settings.get("on_failure", "dlq")


def load_config(path: str | os.PathLike[str], environ: dict[str, str] | None = None) -> Config:
    """Read, substitute ``${VAR}``, and validate a config file; raises ConfigError listing every problem."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError([f"cannot read config file: {err.strerror}"], source=str(path)) from err
    return parse_config(text, source=str(path), base_dir=path.resolve().parent, environ=environ)


def parse_config(
    text: str, *, source: str = "config", base_dir: Path | None = None, environ: dict[str, str] | None = None
) -> Config:
    """Validate config text; relative paths resolve against ``base_dir``. Every problem is found in one pass."""
    data, lines, problems = _load_yaml(text, source)
    _require_content(data, source)
    unset: list[tuple[tuple[Any, ...], str]] = []
    data = substitute_env(data, os.environ if environ is None else environ, (), unset)
    problems += [_at_line(p, path, lines) for path, p in unset]
    context = {"base_dir": base_dir or Path.cwd()}
    try:
        config: Config | None = Config.model_validate(data, context=context)
    except ValidationError as err:
        config = None
        empty = {format_path(path) for path, _ in unset}  # an unset variable is the error, not the empty value
        problems += [p for p in describe_errors(err, Config, lines) if _path_of(p) not in empty]
        cross = partial_problems(data, context)
    else:
        cross = config.problems()
    problems += [_at_line(p, _loc_of(p), lines, prefixed=True) for p in cross]
    if problems or config is None:
        raise ConfigError(sorted(problems, key=_line_number), source=source)
    return config


def _require_content(data: dict[str, Any], source: str) -> None:
    """An empty document (blank, only comments, ``{}``) is a mistake, never "remove every function"."""
    if not data:
        raise ConfigError(["the file is empty (or only comments): it needs at least a `functions:` section "
                           "(`functions: {}` for none yet); see config/example.yaml"], source=source)


def _line_number(problem: str) -> int:
    match = re.match(r"line (\d+): ", problem)
    return int(match.group(1)) if match else 0


def _path_of(problem: str) -> str:
    """``line 3: functions.f.code: ...`` -> ``functions.f.code``."""
    return re.sub(r"^line \d+: ", "", problem).split(": ", 1)[0]


def _loc_of(message: str) -> tuple[Any, ...]:
    """``sources[2].function: ...`` -> ("sources", 2, "function")."""
    path = message.split(":", 1)[0]
    return tuple(int(p) if p.isdigit() else p for p in re.findall(r"[^.\[\]]+", path))


def _load_yaml(text: str, source: str) -> tuple[dict[str, Any], dict[tuple[Any, ...], int], list[str]]:
    """Parse YAML into data, a map from each key path to its 1-based line, and duplicate-key problems."""
    try:
        node, data = _compose_and_construct(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        raise ConfigError([f"{where}not valid YAML: {getattr(err, 'problem', err)}"], source=source) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(["the file must be a mapping of keys (region:, functions:, ...)"], source=source)
    lines: dict[tuple[Any, ...], int] = {}
    duplicates: list[str] = []
    _index_lines(node, (), lines, duplicates)
    return data, lines, duplicates


def _compose_and_construct(text: str) -> tuple[yaml.Node | None, Any]:
    """Parse once: the node tree (for line numbers) and the data built from it."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(text)  # libyaml when present: ~10x faster
    try:
        node = loader.get_single_node()
        return node, (loader.construct_document(node) if node is not None else None)
    finally:
        loader.dispose()


def _index_lines(node: yaml.Node | None, path: tuple[Any, ...], lines: dict[tuple[Any, ...], int],
                 duplicates: list[str]) -> None:
    """Record each key's line; a key given twice in one mapping is a problem (YAML would keep the last)."""
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            line = key_node.start_mark.line + 1
            if (*path, key) in lines:
                duplicates.append(f"line {line}: {format_path((*path, key))}: duplicate key (also on line "
                                  f"{lines[(*path, key)]}); YAML keeps only the last one, so remove or rename one")
                continue
            lines[(*path, key)] = line
            _index_lines(value_node, (*path, key), lines, duplicates)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[(*path, index)] = item.start_mark.line + 1
            _index_lines(item, (*path, index), lines, duplicates)


def substitute_env(
    value: Any, environ: Any, path: tuple[Any, ...], problems: list[tuple[tuple[Any, ...], str]]
) -> Any:
    """Replace ``${NAME}`` and ``${NAME:-default}`` in every string; ``$${`` is a literal ``${``."""
    if isinstance(value, dict):
        return {k: substitute_env(v, environ, (*path, k), problems) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute_env(v, environ, (*path, i), problems) for i, v in enumerate(value)]
    if not isinstance(value, str) or "$" not in value:
        return value

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        name, default = match.group(1), match.group(2)
        if name in environ:
            return environ[name]
        if default is not None:
            return default
        problems.append((path, f"environment variable {name} is not set; set it or write ${{{name}:-default}}"))
        return ""

    return ENV_REF.sub(replace, value)


def _at_line(message: str, path: tuple[Any, ...], lines: dict[tuple[Any, ...], int], prefixed: bool = False) -> str:
    from bridge.config.errors import format_path

    line = next((lines[path[:n]] for n in range(len(path), 0, -1) if path[:n] in lines), None)
    prefix = f"line {line}: " if line else ""
    return f"{prefix}{message}" if prefixed else f"{prefix}{format_path(path)}: {message}"


def destination_loops(functions: dict[str, Any]) -> list[str]:
    """``function:`` destinations that lead back to where they started: each record would feed the loop forever.

    AWS refuses a function as its own destination; a longer loop (f -> g -> f) is refused here too, because
    the bridge has no recursive-loop detection to stop it.
    """
    edges = {name: [(key, target[9:]) for key in ("on_success", "on_failure")
                    if (target := getattr(fn.async_, key) or "").startswith("function:") and target[9:] in functions]
             for name, fn in functions.items()}
    found, reported = [], set()
    for start in functions:
        for key, path in _paths_back(start, edges):
            if frozenset(path) in reported:
                continue
            reported.add(frozenset(path))
            if len(path) == 1:
                found.append(f"functions.{start}.async.{key}: a function cannot be its own destination "
                             "(AWS refuses it: each record would invoke the function again, forever); "
                             "name another function, dlq, sqs:QUEUE_URL or null")
            else:
                loop = " -> ".join([*path, start])
                found.append(f"functions.{start}.async.{key}: the destinations {loop} form a loop that would "
                             "invoke these functions forever; break it with dlq, sqs:QUEUE_URL or null")
    return found


def _paths_back(start: str, edges: dict[str, list[tuple[str, str]]]) -> list[tuple[str, list[str]]]:
    """(first destination key, path) for each loop from ``start`` back to itself (the path lists functions)."""
    loops = []
    for key, first in edges[start]:
        stack, seen = [(first, [start])], set()
        while stack:
            node, path = stack.pop()
            if node == start:
                loops.append((key, path))
                break
            if node in seen:
                continue
            seen.add(node)
            stack.extend((nxt, [*path, node]) for _, nxt in edges[node])
    return loops
