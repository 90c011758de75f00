"""Node.js functions: where their runtime and dependencies live, what is missing, and a worker's argv and env.

A Node.js worker runs the official ``aws-lambda-ric`` (pinned, with the AWS SDK for JavaScript v3 clients
Lambda's Node.js runtimes ship) from a bridge-managed folder under ``state_dir/runtimes``, never from the
user's code folder; a function's ``package.json`` dependencies are installed under ``state_dir/envs``. Both
folders are named by a hash of what they were built from, so an unchanged function reuses its folder.
``bridge/invokers/nodejs_build.py`` builds them.
"""

from __future__ import annotations

import functools
import hashlib
import json
import mmap
import os
import platform
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bridge.config.model import LocalFunctionConfig

RIC_VERSION = "3.3.0"  # 4.x needs Node.js >= 22
MIN_NODE = 20  # the pinned SDK's engines
SDK_VERSION = "3.1178.0"
# The SDK clients of the services the bridge serves (S3, SQS, Lambda); Lambda's runtime ships them all.
SDK_CLIENTS = ("client-s3", "client-sqs", "client-lambda")
# The tools the ric's native part (node-gyp, aws-lambda-cpp and curl built from source) needs, by Debian package.
BUILD_TOOLS = {"node": "nodejs", "npm": "npm", "make": "make", "cmake": "cmake", "g++": "g++",
               "autoconf": "autoconf", "automake": "automake", "libtoolize": "libtool", "python3": "python3"}
HERE = Path(__file__).parent
BOOTSTRAP = HERE / "nodejs_bootstrap.mjs"  # aws-lambda-ric's run(), as Lambda's /var/runtime/index.mjs calls it
LOCK_FILES = ("package-lock.json", "npm-shrinkwrap.json")


def runtime_manifest() -> dict[str, object]:
    """The package.json of the runtime folder: the pinned ric and SDK clients."""
    deps = {"aws-lambda-ric": RIC_VERSION} | {f"@aws-sdk/{name}": SDK_VERSION for name in SDK_CLIENTS}
    # npm >= 11.16 skips dependencies' install scripts unless allowed: the ric's builds its native client.
    return {"name": "lambda-bridge-nodejs-runtime", "private": True, "dependencies": deps,
            "allowScripts": {f"aws-lambda-ric@{RIC_VERSION}": True}}


def node_version() -> str | None:
    """``v20.20.2`` for the ``node`` on PATH; None when there is none."""
    node = shutil.which("node")
    if node is None:
        return None
    done = subprocess.run([node, "--version"], capture_output=True, text=True, check=False)
    return done.stdout.strip() or None


def _digest(*parts: bytes) -> str:
    sha = hashlib.sha256()
    for part in parts:
        sha.update(len(part).to_bytes(8, "big") + part)
    return sha.hexdigest()[:16]


def major(version: str) -> str:
    """``20`` for ``v20.20.2`` (``0`` for a version string that is not one)."""
    found = re.match(r"v?(\d+)", version)
    return found.group(1) if found else "0"


def runtime_dir(state_dir: Path, version: str) -> Path:
    """``state_dir/runtimes/nodejs<major>-<hash>``: the pinned packages, for this Node.js major and machine."""
    key = _digest(json.dumps(runtime_manifest(), sort_keys=True).encode(), major(version).encode(),
                  platform.machine().encode())
    return state_dir / "runtimes" / f"nodejs{major(version)}-{key}"


def package_files(code: Path) -> dict[str, bytes]:
    """The function's package.json and lock file, by name; empty when it has no dependencies to install."""
    try:
        manifest = (code / "package.json").read_bytes()
    except FileNotFoundError:
        return {}
    try:
        parsed = json.loads(manifest)
    except (ValueError, RecursionError):  # not JSON, or nested past the parser's depth: npm will say so
        parsed = None
    if isinstance(parsed, dict) and not parsed.get("dependencies"):
        return {}
    files = {"package.json": manifest}
    for name in LOCK_FILES:
        if (code / name).is_file():
            files[name] = (code / name).read_bytes()
    return files


def deps_dir(state_dir: Path, code: Path, version: str) -> Path | None:
    """``state_dir/envs/nodejs-<hash of package.json, lock file, Node major>``; None without dependencies."""
    files = package_files(code)
    if not files:
        return None
    parts = [part for name in sorted(files) for part in (name.encode(), files[name])]
    return state_dir / "envs" / f"nodejs-{_digest(*parts, major(version).encode())}"


def missing_tools(runtime_built: bool) -> list[str]:
    """The commands a Node.js function still needs: node alone once the runtime is built, else all of them."""
    wanted = ["node"] if runtime_built else list(BUILD_TOOLS)
    return [tool for tool in wanted if shutil.which(tool) is None]


def install_hint(tools: list[str]) -> str:
    """``apt-get install nodejs npm ...`` for the missing commands (the Debian packages that provide them)."""
    packages = list(dict.fromkeys(BUILD_TOOLS[tool] for tool in tools))
    return f"install them: apt-get install {' '.join(packages)} (Node.js >= {MIN_NODE})"


@dataclass(frozen=True)
class NodeRuntime:
    """Where one Node.js function's worker finds node, the ric, the SDK and its dependencies."""

    node: str
    runtime: Path
    deps: Path | None = None
    layers: tuple[Path, ...] = ()  # layer roots, laid out as Lambda's /opt, in the function's order
    major: str = "20"

    def command(self, config: LocalFunctionConfig) -> list[str]:
        """``node <V8 limits as Lambda's bootstrap sets them> bootstrap.mjs <handler>``."""
        return [self.node, *heap_flags(config.memory_size), "--expose-gc", "--max-http-header-size=81920",
                str(BOOTSTRAP), config.handler]

    def module_path(self, config: LocalFunctionConfig) -> list[str]:
        """NODE_PATH in Lambda's order: the function's packages, its layers, the runtime's SDK, the task root."""
        paths = [self.deps / "node_modules"] if self.deps is not None else []
        for layer in reversed(self.layers):  # Lambda extracts them into /opt in order: the last one wins
            paths += [layer / "nodejs" / f"node{self.major}" / "node_modules", layer / "nodejs" / "node_modules"]
        return [str(p) for p in (*paths, self.runtime / "node_modules", self.runtime, config.code)]

    def environment(self, config: LocalFunctionConfig, path: str = os.defpath) -> dict[str, str]:
        """The variables Lambda's Node.js runtime sets beside the common ones (a NODE_PATH of the user's wins);
        ``path``: the worker's PATH so far (node's folder goes first)."""
        node_path = config.environment.get("NODE_PATH") or os.pathsep.join(self.module_path(config))
        return {"NODE_PATH": node_path, "LAMBDA_RUNTIME_DIR": str(self.runtime),
                "AWS_EXECUTION_ENV": f"AWS_Lambda_nodejs{self.major}.x",
                "PATH": os.pathsep.join([os.path.dirname(self.node), path])}


def heap_flags(memory_size: int) -> list[str]:
    """V8's heap sized from memory_size with the arithmetic of Lambda's Node.js bootstrap script."""
    new_space = memory_size // 10
    return [f"--max-semi-space-size={new_space // 2}", f"--max-old-space-size={memory_size - new_space}"]


@functools.cache
def jit_allowed() -> bool:
    """Whether this process may map memory writable and executable at once, as V8's JIT must. systemd's
    ``MemoryDenyWriteExecute=yes`` (and prctl's PR_SET_MDWE) forbid it to the daemon and every worker it
    starts: node then dies on its first compiled function (SIGTRAP and a V8 stack)."""
    try:
        mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC).close()
    except OSError:
        return False
    return True


JIT_DENIED = ("node cannot run under this daemon: it may not map writable and executable memory, which V8's JIT "
              "needs (systemd's MemoryDenyWriteExecute=yes); add `MemoryDenyWriteExecute=no` to the service in "
              "a drop-in (`systemctl edit lambda-bridge`), see docs/nodejs.md")


def prepared(config: LocalFunctionConfig, state_dir: Path) -> NodeRuntime | str:
    """The function's NodeRuntime when everything it needs is built, else what is missing and how to fix it."""
    version = node_version()
    node = shutil.which("node")
    if version is None or node is None:
        return f"runtime nodejs needs node on PATH; {install_hint(['node'])}"
    if not jit_allowed():
        return JIT_DENIED
    runtime = runtime_dir(state_dir, version)
    if not runtime.is_dir():
        return (f"the Node.js runtime (aws-lambda-ric {RIC_VERSION}, AWS SDK {SDK_VERSION}) is not built in "
                f"{runtime.parent}; run `lambda-bridge build` (`run` builds it too, before it starts)")
    deps = deps_dir(state_dir, config.code, version)
    if deps is not None and not deps.is_dir():
        return (f"the dependencies of {config.code / 'package.json'} are not installed (or it changed); "
                "run `lambda-bridge build` (`run` installs them too, before it starts)")
    layers = tuple(getattr(config, "layers", ()))  # layers: comes with bridge/build (docs/build.md)
    return NodeRuntime(node, runtime, deps, layers, major=major(version))
