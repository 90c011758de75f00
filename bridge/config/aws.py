"""The ``buckets:`` map (local S3 buckets) and ``aws_endpoints:`` (where a handler's SDK calls go)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, ValidationInfo

# Looser than S3's rules (3-63 lowercase characters): a template's logical id ("DestinationBucket") stands in
# for a generated name, and a directory source's bucket is its folder's name. Only what would break addressing
# is refused: a '/', spaces and other characters a Host header or path segment cannot carry plainly.
BUCKET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")
# First path segments the daemon's other endpoints own: a bucket of that name could not be addressed path-style.
RESERVED_BUCKETS = frozenset({"2015-03-31", "metrics", "healthz", "readyz", "bridge"})
SERVICE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
SPECIAL_ENDPOINTS = ("aws", "bridge")  # back to AWS (no variable set) / the bridge's own api.listen


def bucket_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a local bucket, or None."""
    if not BUCKET_NAME.match(name) or ".." in name:
        return (f"bucket name {name!r} is not 1-255 letters, digits, '.', '-' or '_' starting with a letter or "
                "digit")
    if name in RESERVED_BUCKETS or (name.isdigit() and len(name) == 12):  # 12 digits: an embedded queue's URL
        return (f"bucket name {name!r} is a path of the daemon's own API ({', '.join(sorted(RESERVED_BUCKETS))}); "
                "choose another name")
    return None


def _buckets(value: Any, info: ValidationInfo) -> Any:
    if not isinstance(value, dict):
        return value
    base = Path((info.context or {}).get("base_dir", "."))
    out = {}
    for name, raw in value.items():
        problem = bucket_name_problem(str(name))
        if problem:
            raise ValueError(problem)
        if not isinstance(raw, str):
            raise ValueError(f"buckets.{name}: expected a directory path, got {raw!r}")
        path = (base / Path(raw).expanduser()).resolve()
        if not path.is_dir():
            raise ValueError(f"buckets.{name}: directory {str(path)!r} does not exist; create it or fix the path")
        out[str(name)] = path
    return out


def _endpoints(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    for service, url in value.items():
        if not isinstance(service, str) or not SERVICE_NAME.match(service):
            raise ValueError(f"aws_endpoints: {service!r} is not a service id (lowercase, e.g. s3, sqs, dynamodb)")
        if not isinstance(url, str) or (url not in SPECIAL_ENDPOINTS and not re.match(r"^https?://[^\s/]+", url)):
            raise ValueError(f"aws_endpoints.{service}: {url!r} must be an http(s):// URL, 'aws' (the SDK's own "
                             "endpoint) or 'bridge' (this daemon's api.listen)")
    return value


Buckets = Annotated[dict[str, Path], BeforeValidator(_buckets)]
AwsEndpoints = Annotated[dict[str, str], BeforeValidator(_endpoints)]


def check_buckets(buckets: dict[str, Path], sources: list[Any]) -> list[str]:
    """One folder per bucket name across ``buckets:`` and the directory sources; names S3 would accept."""
    problems = []
    seen: dict[str, Path] = dict(buckets)
    for i, source in enumerate(sources):
        if getattr(source, "type", None) != "directory":
            continue
        name, path = source.bucket_name, source.path
        problem = bucket_name_problem(name)
        if problem and name in RESERVED_BUCKETS:
            problems.append(f"sources[{i}].bucket: {problem}")
        if seen.get(name, path) != path:
            problems.append(f"sources[{i}].bucket: {name!r} is already the bucket of {str(seen[name])!r}; "
                            "one bucket name, one folder")
        seen.setdefault(name, path)
    return problems
