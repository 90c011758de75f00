"""Function environments under ``state_dir/envs``: keyed by a hash of their inputs, built atomically with uv."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bridge.build.index import pip_index_options
from bridge.build.interpreter import Interpreter, resolve
from bridge.build.manifest import Manifest, find_manifest, read_manifest
from bridge.build.runtime_dir import own_runtime_dir, publish, runtime_requirements
from bridge.build.setup import Setup, make_setup, source_layout
from bridge.config.model import LocalFunctionConfig
from bridge.errors import BuildFailed, ManifestError

FORMAT = "1"  # part of every key: a change of layout rebuilds everything
PARALLEL_INSTALLS = 2  # uv downloads in parallel itself; more installs at once only compete for the CPU
BUILD_TIMEOUT = 900.0  # seconds one installer run may take
Progress = Callable[[str], None]


@dataclass(frozen=True)
class Plan:
    """What one function's environment needs, read from its config and files (no installing)."""

    name: str
    config: LocalFunctionConfig
    interpreter: Interpreter
    warning: str | None = None  # the wanted interpreter is missing: the daemon's runs the function
    manifest: Manifest | None = None
    error: ManifestError | None = None  # the manifest was refused
    layer_manifests: tuple[Manifest, ...] = ()  # of layers laid out for `sam build` (sources + requirements.txt)

    @property
    def key(self) -> str | None:
        """The hash of everything the function's packages depend on; None when it has nothing to install."""
        return self._key(self.manifest)

    def _key(self, manifest: Manifest | None) -> str | None:
        if manifest is None or not manifest.lines:
            return None
        text = "\n".join([FORMAT, self.interpreter.executable, self.interpreter.version,
                          manifest.requirements_text()])
        return hashlib.sha256(text.encode()).hexdigest()[:20]

    def installs(self) -> list[tuple[str, Manifest]]:
        """(key, manifest) of each environment the function needs: its own, then its layers' ones."""
        found = [(self._key(m), m) for m in (self.manifest, *self.layer_manifests) if m is not None]
        return [(key, manifest) for key, manifest in found if key is not None]

    @property
    def signature(self) -> tuple[str, ...]:
        """Every key the function runs with: a change of any manifest changes it."""
        return tuple(key for key, _ in self.installs())


def plan(name: str, config: LocalFunctionConfig) -> Plan:
    """Read a function's manifest (refusing hostile lines) and find its interpreter."""
    interpreter, warning = resolve(config.runtime) if config.is_python else resolve("python")
    path = find_manifest(config.code) if config.is_python else None
    layer_paths = [layer / "requirements.txt" for layer in config.layers if config.is_python
                   and source_layout(layer) and (layer / "requirements.txt").is_file()]
    try:
        manifest = read_manifest(path, config.code) if path is not None else None
        layers = tuple(read_manifest(item, item.parent) for item in layer_paths)
    except ManifestError as err:
        return Plan(name, config, interpreter, warning, error=err)
    return Plan(name, config, interpreter, warning, manifest, layer_manifests=layers)


class Envs:
    """The environments of one ``state_dir``: what is built, building one, the worker's Setup, cleaning up."""

    def __init__(self, state_dir: Path) -> None:
        self.root = state_dir / "envs"
        self.runtimes = state_dir / "runtimes"
        self.cache = Path(os.environ.get("UV_CACHE_DIR") or state_dir / "cache" / "uv")
        self._index: list[str] | None = None
        self._running: dict[Path, asyncio.Future[None]] = {}  # one build per folder, however many ask
        self._gate = asyncio.Semaphore(PARALLEL_INSTALLS)

    def path(self, key: str) -> Path:
        """Where the environment of ``key`` lives (it exists only once complete)."""
        return self.root / key

    def status(self, plan: Plan) -> str:
        """``none`` (nothing to install), ``ready``, ``stale`` (built before from other inputs) or ``missing``."""
        if not plan.installs():
            return "none"
        if all(self.path(key).is_dir() for key in plan.signature):
            return "ready"
        return "stale" if (self.root / "functions" / plan.name).is_symlink() else "missing"

    def setup(self, plan: Plan) -> Setup:
        """The workers' Setup of a function whose environment is ready (the runtime folder is made if needed)."""
        cfg, interpreter = plan.config, plan.interpreter
        deps = None if plan.key is None else self.path(plan.key) / "python"
        built = {m.path.parent: self.path(key) / "python" for key, m in plan.installs() if m is not plan.manifest}
        return make_setup(interpreter.executable, interpreter.version, cfg.code, deps, list(cfg.layers),
                          self.runtime_dir(interpreter), built)

    def runtime_dir(self, interpreter: Interpreter) -> Path:
        """The runtime folder of ``interpreter``: the daemon's own packages, or the one built for it."""
        if interpreter.own:
            return own_runtime_dir(self.runtimes, interpreter)
        return self.runtimes / self._foreign_key(interpreter)

    def _foreign_key(self, interpreter: Interpreter) -> str:
        digest = hashlib.sha256(repr((FORMAT, interpreter.executable, runtime_requirements())).encode())
        return f"{interpreter.tag}-{digest.hexdigest()[:16]}"

    def needs_build(self, plan: Plan) -> bool:
        """True when installing is needed before the function can run (its packages or its runtime folder)."""
        runtime_missing = not plan.interpreter.own and not self.runtime_dir(plan.interpreter).is_dir()
        return self.status(plan) in ("missing", "stale") or (plan.config.is_python and runtime_missing)

    async def build(self, plan: Plan, progress: Progress, *, force: bool = False) -> None:
        """Install what ``plan`` needs (nothing when already built, unless ``force``); raises BuildFailed."""
        if plan.error is not None:
            raise BuildFailed(plan.name, str(plan.error))
        if plan.config.is_python and not plan.interpreter.own:
            await self._build_runtime(plan, progress)
        for key, manifest in plan.installs():
            if self.path(key).is_dir() and not force:
                continue
            where = manifest.path.name if manifest is plan.manifest else f"layer {manifest.path.parent.name}"
            progress(f"installing {len(manifest.lines)} requirement(s) from {where}")
            await self._install(plan, self.path(key), manifest, progress, force)
        self._remember(plan)

    async def _build_runtime(self, plan: Plan, progress: Progress) -> None:
        target = self.runtime_dir(plan.interpreter)
        if not target.is_dir():
            progress(f"installing awslambdaric and boto3 for {plan.interpreter.tag}")
            await self._install(plan, target, "".join(f"{r}\n" for r in runtime_requirements()), progress, False)

    async def _install(self, plan: Plan, target: Path, what: Manifest | str, progress: Progress,
                       force: bool) -> None:
        """Install ``what`` (a manifest, or a runtime folder's requirements) into ``target`` once: functions
        with the same manifest wait for the same build."""
        running = self._running.get(target)
        if running is None:
            running = asyncio.ensure_future(self._install_once(plan, target, what, progress, force))
            self._running[target] = running
            running.add_done_callback(lambda _: self._running.pop(target, None))
        else:
            progress("waiting for the same environment, being built for another function")
        try:
            await asyncio.shield(running)
        except BuildFailed as err:
            raise BuildFailed(plan.name, err.reason) from None

    async def _install_once(self, plan: Plan, target: Path, what: Manifest | str, progress: Progress,
                            force: bool) -> None:
        """Install into a scratch folder next to ``target``, then rename it into place: never half a folder."""
        manifest = what if isinstance(what, Manifest) else None  # None: a runtime folder, installed flat
        text = what if isinstance(what, str) else what.requirements_text()
        scratch = await asyncio.to_thread(_scratch, target, text)
        try:
            async with self._gate:
                started = time.monotonic()
                into = scratch if manifest is None else scratch / "python"
                await self._run_uv(plan, manifest, scratch / "requirements.txt", into, progress)
            record = None if manifest is None else _record(plan, manifest, time.monotonic() - started)
            await asyncio.to_thread(_finish, scratch, target, record, force)
        finally:
            await asyncio.to_thread(shutil.rmtree, scratch, True)

    async def _run_uv(self, plan: Plan, manifest: Manifest | None, requirements: Path, into: Path,
                      progress: Progress) -> None:
        from uv import find_uv_bin  # the uv wheel is a dependency of lambda-bridge: its binary is always there

        if self._index is None:
            self._index = pip_index_options()
        argv = [find_uv_bin(), "pip", "install", "--no-config", "--python", plan.interpreter.executable,
                "--target", str(into), "--cache-dir", str(self.cache), "-r", str(requirements), *self._index]
        proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                                                    cwd=requirements.parent, env=_uv_env())
        output = await _follow(proc, progress)
        if proc.returncode != 0:
            raise BuildFailed(plan.name, _failure(manifest, output))

    def _remember(self, plan: Plan) -> None:
        """``envs/functions/NAME`` -> the key last built for it (``check`` tells a stale environment by it)."""
        if plan.key is None:
            return
        link = self.root / "functions" / plan.name
        link.parent.mkdir(parents=True, exist_ok=True)
        scratch = link.with_name(f".{plan.name}.{os.getpid()}")
        scratch.unlink(missing_ok=True)
        os.symlink(f"../{plan.key}", scratch)
        os.replace(scratch, link)

    def clean(self, keep: set[str]) -> list[Path]:
        """Remove every environment whose key is not in ``keep``, and leftovers of interrupted builds."""
        removed = []
        for parent in (self.root, self.runtimes):
            for path in sorted(parent.iterdir()) if parent.is_dir() else []:
                if path.name == "functions" or path.name in keep:
                    continue
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
        for link in (self.root / "functions").glob("*") if (self.root / "functions").is_dir() else []:
            if not link.resolve().is_dir():
                link.unlink()
        return removed


async def _follow(proc: asyncio.subprocess.Process, progress: Progress) -> str:
    """The installer's output, each line also reported as progress; killed past BUILD_TIMEOUT."""
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        async with asyncio.timeout(BUILD_TIMEOUT):
            async for raw in proc.stdout:
                line = raw.decode(errors="replace").rstrip()
                if line:
                    lines.append(line)
                    progress(line.strip())
            await proc.wait()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        lines.append(f"the installer took more than {BUILD_TIMEOUT:.0f} s and was stopped")
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return "\n".join(lines)


def _uv_env() -> dict[str, str]:
    """The daemon's environment without anything that would make uv install somewhere else."""
    drop = ("UV_SYSTEM_PYTHON", "UV_PYTHON", "UV_PROJECT_ENVIRONMENT", "VIRTUAL_ENV", "CONDA_PREFIX")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["NO_COLOR"] = "1"
    return env


def _failure(manifest: Manifest | None, output: str) -> str:
    """The installer's error and, when it names a requirement, the manifest line it comes from."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    starts = [i for i, line in enumerate(lines) if line.startswith(("error", "\u00d7", "x "))]  # \u00d7: uv's cross
    start = starts[0] if starts else max(len(lines) - 6, 0)
    message = " ".join(lines[start:])[:2000] or "the installer failed without a message"
    line = manifest.line_for(message) if manifest is not None else None
    where = f"{line.source}, line {line.number} ({line.text!r})" if line else \
        str(manifest.path if manifest is not None else "the runtime's awslambdaric and boto3")
    return f"installing {where} failed: {message}"


def _scratch(target: Path, requirements: str) -> Path:
    """A fresh folder beside ``target`` (same filesystem: the final rename is atomic) holding the requirements."""
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".tmp-", dir=target.parent))
    (scratch / "requirements.txt").write_text(requirements)
    return scratch


def _finish(scratch: Path, target: Path, record: dict[str, object] | None, force: bool) -> None:
    """Write ``build.json`` (an environment, not a runtime folder) and rename the scratch folder into place."""
    if record is not None:
        (scratch / "build.json").write_text(json.dumps(record, indent=2) + "\n")
        (scratch / "requirements.txt").unlink()
    if force and target.is_dir():
        shutil.rmtree(target)
    publish(scratch, target)


def _record(plan: Plan, manifest: Manifest, seconds: float) -> dict[str, object]:
    """What an environment was built from, for people reading ``state_dir/envs``."""
    return {"manifest": str(manifest.path), "interpreter": plan.interpreter.executable,
            "python": plan.interpreter.version, "requirements": manifest.requirements_text().splitlines(),
            "built_for": plan.name, "seconds": round(seconds, 2), "at": time.time()}
