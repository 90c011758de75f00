"""Which Python runs a function: ``runtime: python3.N`` when that interpreter is installed, else the daemon's."""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from functools import cache

PROBE = "import sys; print(sys.executable); print('%d.%d' % sys.version_info[:2])"


@dataclass(frozen=True)
class Interpreter:
    """A Python interpreter: its executable, ``3.N`` version, and whether it is the daemon's own."""

    executable: str
    version: str
    own: bool

    @property
    def tag(self) -> str:
        """``python3.N``, as Lambda names the runtime."""
        return f"python{self.version}"


def daemon_interpreter() -> Interpreter:
    """The interpreter the daemon runs on (its venv carries awslambdaric and boto3)."""
    return Interpreter(sys.executable, f"{sys.version_info[0]}.{sys.version_info[1]}", True)


def resolve(runtime: str) -> tuple[Interpreter, str | None]:
    """(interpreter, warning): ``python3.N`` on PATH when it runs, else the daemon's with a warning saying so."""
    own = daemon_interpreter()
    wanted = runtime.removeprefix("python")
    if not wanted or wanted == own.version:
        return own, None
    found = _probe(f"python{wanted}")
    if found is None:
        return own, (f"runtime {runtime}: no working python{wanted} on PATH; the function runs on the daemon's "
                     f"Python {own.version} (install Python {wanted} and put python{wanted} on PATH to use it)")
    return found, None


@cache
def _probe(command: str) -> Interpreter | None:
    """Run ``command`` once to learn its real executable and version (a pyenv shim may exist but refuse)."""
    path = shutil.which(command)
    if path is None:
        return None
    try:
        done = subprocess.run([path, "-S", "-c", PROBE], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = done.stdout.split()
    if done.returncode != 0 or len(lines) != 2 or f"python{lines[1]}" != command:
        return None
    return Interpreter(lines[0], lines[1], False)
