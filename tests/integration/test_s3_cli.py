"""The AWS CLI (outside the venv, as a user runs it) against the S3 API on api.listen: ls, cp both ways
(a 20 MB multipart upload included) and between buckets (a multipart copy), sync."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from bridge.testing import Daemon, free_port, write_config


def aws_cli() -> str:
    found = shutil.which("aws")
    if found is None:
        pytest.fail("the AWS CLI is not on PATH: python3 -m pip install awscli (as .ci/run does)")
    return found


@pytest.fixture
def bridge(tmp_path: Path):
    port = free_port()
    (tmp_path / "bucket").mkdir()
    config = write_config(tmp_path / "config.yaml", {
        "state_dir": str(tmp_path / "state"), "api": {"listen": f"127.0.0.1:{port}"},
        "buckets": {"bucket": str(tmp_path / "bucket")}})
    with Daemon(config) as daemon:
        daemon.port = port  # type: ignore[attr-defined]
        yield daemon


def run(port: int, *args: str) -> str:
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y", "AWS_DEFAULT_REGION": "us-east-1"}
    done = subprocess.run([aws_cli(), "--endpoint-url", f"http://127.0.0.1:{port}", "s3", *args], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def digest(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_ls_cp_and_sync(bridge: Daemon, tmp_path: Path) -> None:
    port = bridge.port  # type: ignore[attr-defined]
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(20 * 1024 * 1024))
    run(port, "cp", str(big), "s3://bucket/in/big.bin")  # 8 MB parts: a multipart upload
    assert digest(tmp_path / "bucket" / "in" / "big.bin") == digest(big)
    assert "big.bin" in run(port, "ls", "s3://bucket/in/") and "bucket" in run(port, "ls")
    run(port, "cp", "s3://bucket/in/big.bin", str(tmp_path / "back.bin"))
    assert digest(tmp_path / "back.bin") == digest(big)
    run(port, "cp", "s3://bucket/in/big.bin", "s3://bucket/copy/big.bin")  # UploadPartCopy above 8 MB
    assert digest(tmp_path / "bucket" / "copy" / "big.bin") == digest(big)
    local = tmp_path / "local"
    (local / "sub").mkdir(parents=True)
    (local / "a.txt").write_text("a")
    (local / "sub" / "b c.txt").write_text("b")
    run(port, "sync", str(local), "s3://bucket/synced")
    assert (tmp_path / "bucket" / "synced" / "sub" / "b c.txt").read_text() == "b"
    assert run(port, "sync", str(local), "s3://bucket/synced") == "", "nothing changed: nothing copied"
    (local / "a.txt").unlink()
    run(port, "sync", "--delete", str(local), "s3://bucket/synced")
    assert not (tmp_path / "bucket" / "synced" / "a.txt").exists()
    run(port, "sync", "s3://bucket/synced", str(tmp_path / "down"))
    assert (tmp_path / "down" / "sub" / "b c.txt").read_text() == "b"
    listing = run(port, "ls", "--recursive", "s3://bucket/")
    assert "synced/sub/b c.txt" in listing and "in/big.bin" in listing
