"""Private directories and files: exact modes whatever the umask."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.private import private_dir, private_file, tighten


@pytest.fixture(params=[0o000, 0o022, 0o277])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_created_private_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    directory = private_dir(tmp_path / "a" / "state")
    assert mode(directory) == 0o700
    assert mode(private_file(directory / "store")) == 0o600


def test_existing_files_are_tightened_existing_directories_kept(tmp_path: Path) -> None:
    (tmp_path / "state").mkdir(mode=0o755)
    os.chmod(tmp_path / "state", 0o755)
    store = tmp_path / "state" / "store"
    store.write_text("payloads")
    os.chmod(store, 0o644)
    assert mode(private_dir(tmp_path / "state")) == 0o755, "the user's own directory keeps its mode"
    private_file(store)
    tighten(tmp_path / "state" / "missing")  # nothing to do, no error
    assert mode(store) == 0o600 and store.read_text() == "payloads"
