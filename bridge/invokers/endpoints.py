"""The AWS SDK variables a local function's workers get: endpoints (the bridge's own API or the configured
ones), and placeholder credentials when there are none, so an unchanged handler's calls reach the bridge."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from bridge.config.model import Config, LocalFunctionConfig

# What api.listen speaks: the S3 API, the embedded queues, Invoke, the buses (PutEvents) and topics (Publish).
BRIDGE_SERVICES = ("s3", "sqs", "lambda", "eventbridge", "sns")
# Any of these means the SDK finds real credentials itself; placeholders would shadow them.
CREDENTIAL_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_WEB_IDENTITY_TOKEN_FILE",
                        "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE")
PLACEHOLDER_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "LAMBDABRIDGELOCAL", "AWS_SECRET_ACCESS_KEY": "lambda-bridge-local"}


def variable_name(service: str) -> str:
    """botocore's per-service variable: ``AWS_ENDPOINT_URL_`` + the service id upper-cased, ``-`` -> ``_``."""
    return "AWS_ENDPOINT_URL_" + service.upper().replace("-", "_")


def bridge_url(config: Config) -> str | None:
    """The URL a worker reaches api.listen at (a wildcard address is reached on loopback), or None when off."""
    address = config.api.address
    if address is None:
        return None
    host, port = address
    host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "localhost": "127.0.0.1", "::": "::1"}.get(host, host)
    # An IP literal, never a name: boto3 then addresses S3 path-style (no bucket.localhost lookups).
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def endpoint_variables(config: Config, fn: LocalFunctionConfig) -> dict[str, str]:
    """``AWS_ENDPOINT_URL_<SERVICE>`` for each service; precedence, highest first: the function's
    ``environment:``, its ``aws_endpoints:``, the global ``aws_endpoints:``, then the bridge for BRIDGE_SERVICES."""
    url = bridge_url(config)
    wanted: dict[str, str] = dict.fromkeys(BRIDGE_SERVICES, "bridge") if url else {}
    wanted.update(config.aws_endpoints)
    wanted.update(fn.aws_endpoints)
    out = {}
    for service, target in wanted.items():
        if target == "aws" or (target == "bridge" and url is None):
            continue  # no variable: the SDK uses AWS's own endpoint
        out[variable_name(service)] = url if target == "bridge" else target  # type: ignore[assignment]
    return out


def sdk_variables(endpoints: Mapping[str, str], function_env: Mapping[str, str],
                  daemon_env: Mapping[str, str] = os.environ, home: Path | None = None) -> dict[str, str]:
    """The endpoint variables, plus placeholder credentials when neither the daemon's environment, the
    function's ``environment:`` nor ``~/.aws`` holds any (the bridge does not check signatures, but the SDKs
    refuse to sign without credentials, and would first spend seconds asking for instance metadata)."""
    out = dict(endpoints)
    if not endpoints:
        return out
    has = any(v in daemon_env or v in function_env for v in CREDENTIAL_VARIABLES)
    if not has and not _shared_files(home):
        out.update(PLACEHOLDER_CREDENTIALS)
    return out


def _shared_files(home: Path | None) -> bool:
    """``~/.aws/credentials`` or ``~/.aws/config`` exists. Under systemd's DynamicUser there may be no home
    directory at all, and ProtectHome= makes /root unreadable: neither means there are shared files."""
    try:
        aws_dir = (home or Path.home()) / ".aws"
        return (aws_dir / "credentials").exists() or (aws_dir / "config").exists()
    except (RuntimeError, OSError):
        return False
