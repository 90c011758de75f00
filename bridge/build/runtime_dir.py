"""The runtime folder (Lambda's ``/var/runtime``): awslambdaric and boto3, and nothing else of the daemon's venv."""

from __future__ import annotations

import hashlib
import importlib.metadata as metadata
import os
import shutil
import tempfile
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from bridge.build.interpreter import Interpreter

RUNTIME_PACKAGES = ("awslambdaric", "boto3")  # what Lambda's Python runtime ships


def closure(names: tuple[str, ...] = RUNTIME_PACKAGES) -> list[metadata.Distribution]:
    """The installed distributions ``names`` need, their dependencies included (extras left out)."""
    found: dict[str, metadata.Distribution] = {}
    todo = list(names)
    while todo:
        name = canonicalize_name(todo.pop())
        if name in found:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:  # a venv installed without it: the handler's import says so
            continue
        found[name] = dist
        for text in dist.requires or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return sorted(found.values(), key=lambda d: canonicalize_name(d.metadata["Name"]))


def own_runtime_dir(runtimes: Path, interpreter: Interpreter) -> Path:
    """A folder of symlinks to the daemon's own awslambdaric, boto3 and their dependencies (made once).

    Nothing is installed: the daemon's venv carries them (boto3 is a dependency of lambda-bridge), so a fresh
    clone runs its functions with nothing to build, while a handler sees only these packages of the venv.
    """
    dists = closure()
    entries = sorted({(name, str(dist.locate_file(name))) for dist in dists for name in _top_level(dist)})
    digest = hashlib.sha256(repr((interpreter.executable, entries)).encode()).hexdigest()[:16]
    target = runtimes / f"{interpreter.tag}-{digest}"
    if target.is_dir():
        return target
    runtimes.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".tmp-", dir=runtimes))
    for name, source in entries:
        os.symlink(source, scratch / name)
    publish(scratch, target)
    return target


def _top_level(dist: metadata.Distribution) -> set[str]:
    """The names a distribution puts in site-packages: its packages, modules and its .dist-info folder."""
    names = set()
    for file in dist.files or []:
        first = file.parts[0]
        if first not in ("..", "__pycache__") and not first.endswith(".pth"):
            names.add(first)
    return names


def publish(scratch: Path, target: Path) -> bool:
    """Rename a finished folder into place (atomic); False when another build got there first."""
    try:
        scratch.rename(target)
        return True
    except OSError:
        if not target.is_dir():
            raise
        shutil.rmtree(scratch, ignore_errors=True)
        return False


def runtime_requirements() -> list[str]:
    """``awslambdaric==V``, ``boto3==V``: the daemon's own versions, installed for another interpreter."""
    return [f"{name}=={metadata.version(name)}" for name in RUNTIME_PACKAGES]
