"""Benchmark `lambda-bridge build` (uv) beside `pip install -r` into a fresh venv, for 5 packages from PyPI.

Rows: a cold build (empty wheel cache), a no-op rebuild (nothing changed: the command's wall time, and the
build step alone in-process), a rebuild after one manifest line changed, a build of the same manifest into a
fresh state_dir with the wheel cache warm; pip cold (empty cache) and warm (its cache primed), each into a
fresh venv. Prints a table; writes bench/results/build.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bridge.build.envs import Envs, plan
from bridge.config.model import load_config

# One compiled wheel (Pillow) among five; the last line changes for the "one line changed" row.
REQUIREMENTS = ["pillow==11.3.0", "requests==2.32.4", "attrs==25.3.0", "tabulate==0.9.0", "six==1.16.0"]
CHANGED = "six==1.17.0"
HANDLER = "import PIL, requests, attrs, tabulate, six\ndef handler(event, context):\n    return PIL.__version__\n"


def timed(argv: list[str], env: dict[str, str]) -> float:
    """Seconds ``argv`` took (it must succeed)."""
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{done.stderr[-2000:]}")
    return elapsed


def app(root: Path, lines: list[str]) -> Path:
    """A function folder with ``lines`` as its requirements.txt, and its config (state_dir under ``root``)."""
    code = root / "fn"
    code.mkdir(parents=True, exist_ok=True)
    (code / "app.py").write_text(HANDLER)
    (code / "requirements.txt").write_text("".join(f"{line}\n" for line in lines))
    config = root / "config.yaml"
    config.write_text(f"state_dir: {root / 'state'}\nfunctions:\n  fn: {{handler: app.handler, code: {code}}}\n")
    return config


def bridge_rows(root: Path) -> dict[str, float]:
    cache = root / "uv-cache"
    env = {**os.environ, "UV_CACHE_DIR": str(cache)}
    build = [sys.executable, "-m", "bridge.cli", "build", "--config"]
    config = app(root / "a", REQUIREMENTS)
    rows = {"bridge build, cold (empty wheel cache)": timed([*build, str(config)], env)}
    rows["bridge build, no-op (command wall time)"] = timed([*build, str(config)], env)
    rows["bridge build, no-op (build step in-process)"] = noop_in_process(config)
    app(root / "a", [*REQUIREMENTS[:-1], CHANGED])
    rows["bridge build, one manifest line changed"] = timed([*build, str(config)], env)
    rows["bridge build, fresh state_dir, warm cache"] = timed([*build, str(app(root / "b", REQUIREMENTS))], env)
    return rows


def noop_in_process(config_path: Path) -> float:
    """The build of an unchanged function without the command's start-up: plan (read, hash), see it is built."""
    config = load_config(config_path)
    envs = Envs(config.state_dir)
    start = time.perf_counter()
    asyncio.run(envs.build(plan("fn", config.functions["fn"]), lambda _: None))  # type: ignore[arg-type]
    return time.perf_counter() - start


def pip_rows(root: Path) -> dict[str, float]:
    requirements = root / "requirements.txt"
    requirements.write_text("".join(f"{line}\n" for line in REQUIREMENTS))
    cache = root / "pip-cache"
    rows = {}
    for name in ("pip install -r, fresh venv, cold cache", "pip install -r, fresh venv, warm cache"):
        venv = Path(tempfile.mkdtemp(dir=root)) / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        rows[name] = timed([str(venv / "bin" / "pip"), "install", "-q", "--cache-dir", str(cache), "-r",
                            str(requirements)], dict(os.environ))
    return rows


def main() -> None:
    argparse.ArgumentParser(description=__doc__).parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-build-"))
    rows = {**bridge_rows(root), **pip_rows(root)}
    print(f"{'scenario':48} {'seconds':>8}")
    for name, seconds in rows.items():
        print(f"{name:48} {seconds:>8.2f}")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "build.json").write_text(json.dumps({"requirements": REQUIREMENTS, "seconds": rows,
                                                "load": os.getloadavg()}, indent=2))


if __name__ == "__main__":
    main()
