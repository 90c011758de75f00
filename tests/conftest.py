"""Shared fixtures: services the tests start themselves (moto's server over HTTP)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from hypothesis import HealthCheck, settings

from bridge.testing import free_port, moto_server

# Property-based fuzz tests: bounded so the suite stays fast; `HYPOTHESIS_PROFILE=long pytest -k fuzz --timeout 3600`
# by hand runs a hundred times more examples. Deadlines are off: the daemon tests time a real HTTP round trip.
_FUZZ_CHECKS = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large]
settings.register_profile("fast", max_examples=60, deadline=None, suppress_health_check=_FUZZ_CHECKS)
settings.register_profile("long", max_examples=6000, deadline=None, suppress_health_check=_FUZZ_CHECKS)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fast"))

FAKE_AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="session", autouse=True)
def shared_wheel_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """One uv wheel cache for every function build of the session (daemons and `build` inherit it), so each
    package is downloaded once; a cache already set (UV_CACHE_DIR) is kept."""
    if "UV_CACHE_DIR" in os.environ:
        yield
        return
    os.environ["UV_CACHE_DIR"] = str(tmp_path_factory.getbasetemp() / "uv-cache")
    try:
        yield
    finally:
        del os.environ["UV_CACHE_DIR"]


@pytest.fixture(autouse=True)
def fake_aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Never reach real AWS from tests: dummy credentials for every client and daemon."""
    for key, value in FAKE_AWS.items():
        monkeypatch.setenv(key, value)


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    """moto in server mode, as a subprocess on a free port (its SQS and Lambda speak the real wire protocols)."""
    with moto_server([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(free_port())]) as url:
        yield url


@pytest.fixture
def make_cluster(tmp_path: Path, moto_url: str) -> Iterator[Callable[..., Any]]:
    """Clusters of daemons on the ``moto_url`` of the requesting module (the cluster tests override it)."""
    from tests.integration.cluster_kit import cluster_factory

    with cluster_factory(tmp_path, moto_url) as make:
        yield make


@pytest.fixture
def sqs(moto_url: str):
    """A boto3 SQS client on the moto server."""
    return boto3.client("sqs", endpoint_url=moto_url, region_name="us-east-1", **{
        "aws_access_key_id": FAKE_AWS["AWS_ACCESS_KEY_ID"], "aws_secret_access_key": FAKE_AWS["AWS_SECRET_ACCESS_KEY"]})
