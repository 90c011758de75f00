"""Build what Node.js functions run on: the pinned runtime (aws-lambda-ric + SDK) and each package.json's deps.

Each folder is built under a temporary name and renamed into place when npm succeeded, so a folder that
exists is complete, and two builds racing for the same one both end with it (the loser's copy is removed).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bridge.config.model import Config, LocalFunctionConfig
from bridge.errors import BuildFailed, ConfigError
from bridge.invokers.nodejs import (
    MIN_NODE,
    RIC_VERSION,
    deps_dir,
    install_hint,
    major,
    missing_tools,
    node_version,
    package_files,
    prepared,
    runtime_dir,
    runtime_manifest,
)
from bridge.private import private_dir

Progress = Callable[[str], None]  # one line of what is being done (bridge/build's progress takes the same)


class NpmFailed(Exception):
    """npm failed or is missing; ``build_missing`` turns it into BuildFailed naming the function."""
NPM_FLAGS = ("--omit=dev", "--no-audit", "--no-fund", "--loglevel=error")
OUTPUT_TAIL = 20  # lines of npm's output an error shows
NPM_TIMEOUT = 1800.0  # seconds one npm run may take (the ric's native build: minutes on a loaded machine)


def nodejs_functions(config: Config) -> dict[str, LocalFunctionConfig]:
    """The config's local functions with ``runtime: nodejs``, by name."""
    return {name: fn for name, fn in config.functions.items()
            if isinstance(fn, LocalFunctionConfig) and fn.runtime == "nodejs"}


def toolchain_problems(config: Config) -> list[str]:
    """``functions.NAME.runtime: ...`` when a Node.js function cannot be built or run here (missing tools)."""
    functions = nodejs_functions(config)
    if not functions:
        return []
    version = node_version()
    if version is not None and int(major(version)) < MIN_NODE:
        return [f"functions.{name}.runtime: nodejs needs Node.js >= {MIN_NODE}, found {version} on PATH; "
                "install a newer one (nodesource.com packages, or nvm)" for name in functions]
    built = version is not None and runtime_dir(config.state_dir, version).is_dir()
    missing = missing_tools(built)
    if not missing:
        return []
    why = "to run" if built else f"to build aws-lambda-ric {RIC_VERSION} (its native part is compiled)"
    return [f"functions.{name}.runtime: nodejs needs {', '.join(missing)} {why}, not found on PATH; "
            f"{install_hint(missing)}" for name in functions]


def build_missing(config: Config, progress: Progress, names: list[str] | None = None) -> int:
    """Build the runtime and every Node.js function's (of ``names``, default all) packages that are not built
    yet; returns how many folders were built."""
    functions = {n: fn for n, fn in nodejs_functions(config).items() if names is None or n in names}
    if not functions:
        return 0
    problems = toolchain_problems(config)
    if problems:
        raise ConfigError(problems)
    version = node_version()
    assert version is not None  # toolchain_problems checked node
    first = next(iter(functions))
    built = int(_for(first, build_runtime, config.state_dir, version, progress))
    for name, fn in functions.items():
        built += int(_for(name, build_deps, config.state_dir, fn.code, version, progress, name))
    return built


def nodejs_folders(config: Config) -> set[str]:
    """The names of the runtime and package folders the config's Node.js functions use (build --clean keeps them)."""
    version = node_version()
    functions = nodejs_functions(config)
    if version is None or not functions:
        return set()
    deps = {deps_dir(config.state_dir, fn.code, version) for fn in functions.values()}
    return {runtime_dir(config.state_dir, version).name} | {d.name for d in deps if d is not None}


def unbuilt_warnings(config: Config) -> list[str]:
    """check's warnings: Node.js functions whose runtime or packages are not built yet (build and run build them)."""
    if toolchain_problems(config):
        return []  # already problems, with what to install
    return [f"functions.{name}: {found}" for name, fn in nodejs_functions(config).items()
            if isinstance(found := prepared(fn, config.state_dir), str)]


def _for(name: str, step: Callable[..., bool], *args: object) -> bool:
    """Run one build step for function ``name``; its failure names the function."""
    try:
        return step(*args)
    except NpmFailed as err:
        raise BuildFailed(name, str(err)) from None


def build_runtime(state_dir: Path, version: str, progress: Progress) -> bool:
    """The pinned runtime for this Node.js major under state_dir/runtimes; False when already there."""
    target = runtime_dir(state_dir, version)
    if target.is_dir():
        return False
    progress(f"building the Node.js runtime (aws-lambda-ric {RIC_VERSION}, node {version}) in {target}: "
             "its native part compiles for a few minutes, once")
    files = {"package.json": json.dumps(runtime_manifest(), indent=2).encode()}
    _build(target, files, ["install"], progress)
    return True


def build_deps(state_dir: Path, code: Path, version: str, progress: Progress, name: str = "") -> bool:
    """A function's package.json dependencies (``npm ci`` with a lock file); False when already built."""
    target = deps_dir(state_dir, code, version)
    if target is None or target.is_dir():
        return False
    files = package_files(code)
    locked = any(lock in files for lock in ("package-lock.json", "npm-shrinkwrap.json"))
    progress(f"installing {code / 'package.json'}{f' ({name})' if name else ''} with "
             f"{'npm ci' if locked else 'npm install (no lock file)'} into {target}")
    _build(target, files, ["ci"] if locked else ["install"], progress)
    return True


def _build(target: Path, files: dict[str, bytes], command: list[str], progress: Progress) -> None:
    npm = shutil.which("npm")
    if npm is None:
        raise NpmFailed(f"npm is not on PATH; {install_hint(['npm'])}")
    private_dir(target.parent)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        for file, content in files.items():
            (work / file).write_bytes(content)
        started = time.monotonic()
        try:
            done = subprocess.run([npm, *command, *NPM_FLAGS], cwd=work, env=npm_environment(target),
                                  stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False,
                                  timeout=NPM_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise NpmFailed(f"npm {' '.join(command)} for {target.name} took more than {NPM_TIMEOUT:.0f} s; "
                            "is the npm registry reachable (npm ping)?") from None
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-OUTPUT_TAIL:])
            raise NpmFailed(f"npm {' '.join(command)} for {target.name} failed (exit {done.returncode}):\n{tail}")
        _move_into_place(work, target)
        progress(f"built {target} in {time.monotonic() - started:.0f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def npm_environment(target: Path) -> dict[str, str]:
    """npm's cache under state_dir/cache/npm unless one is configured: a service's home may be read-only
    (systemd's ProtectHome=, DynamicUser=), and the cache then stays with the state it speeds up; native
    builds on every core."""
    env = dict(os.environ)
    if not any(key.lower() == "npm_config_cache" for key in env):
        env["npm_config_cache"] = str(target.parent.parent / "cache" / "npm")
    # The ric's native part runs make (curl, aws-lambda-cpp) and node-gyp: on every core unless told otherwise.
    env.setdefault("MAKEFLAGS", f"-j{os.cpu_count() or 1}")
    env.setdefault("JOBS", "max")
    return env


def _move_into_place(work: Path, target: Path) -> None:
    try:
        work.rename(target)
    except OSError:
        if not target.is_dir():  # not a concurrent build that finished first: a real failure
            raise
