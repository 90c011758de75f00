"""Node.js functions in tests: the pinned runtime built once per session (or once per machine) and shared.

The runtime (aws-lambda-ric 3.3.0 compiled + the AWS SDK clients) takes a minute or two to build; every test
daemon gets it as a symlink in its state_dir. ``LAMBDA_BRIDGE_TEST_NODE_CACHE=/some/dir`` keeps it across
sessions. Building it is part of the test: a machine without node, npm or the compilers FAILS here.
"""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest

from bridge.invokers.nodejs import node_version, runtime_dir
from bridge.invokers.nodejs_build import build_runtime
from bridge.private import private_dir

CACHE_ENV = "LAMBDA_BRIDGE_TEST_NODE_CACHE"


@pytest.fixture(scope="session")
def node_runtime_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding ``runtimes/nodejs<major>-<hash>``, built here if it is not there yet."""
    version = node_version()
    assert version, "node is not installed; install it with: apt-get install nodejs npm"
    configured = os.environ.get(CACHE_ENV)
    cache = Path(configured) if configured else tmp_path_factory.getbasetemp() / "node-runtime-cache"
    build_runtime(cache, version, print)
    return cache


def link_runtime(cache: Path, state_dir: Path) -> Path:
    """Give ``state_dir`` the cached runtime (a symlink), as ``lambda-bridge build`` would have built it there."""
    version = node_version()
    assert version
    target = runtime_dir(state_dir, version)
    private_dir(target.parent)
    if not target.exists():
        target.symlink_to(runtime_dir(cache, version), target_is_directory=True)
    return state_dir


def write_node(root: Path, name: str, files: dict[str, str | dict]) -> Path:
    """A Node.js function folder ``root/name`` with ``files`` (dedented text, or a dict written as JSON)."""
    folder = root / name
    for relative, content in files.items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(content) if isinstance(content, dict) else textwrap.dedent(content).lstrip())
    return folder


def log_lines(text: str) -> list[list[str]]:
    """Lambda's Node.js log lines (``timestamp\\trequestId\\tLEVEL\\tmessage``) as their four fields."""
    return [line.split("\t", 3) for line in text.splitlines() if line.count("\t") >= 3]
