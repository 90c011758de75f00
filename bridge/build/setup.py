"""How a worker starts: the interpreter, Lambda's sys.path order, and the layers' PATH and library folders."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

BOOTSTRAP = str(Path(__file__).with_name("bootstrap.py"))
PATH_VARIABLE = "_LAMBDA_BRIDGE_SYS_PATH"  # read and removed by bootstrap.py before the handler runs


@dataclass(frozen=True)
class Setup:
    """One function's resolved environment, shared by its workers.

    ``sys_path``: the folders before the interpreter's own, in Lambda's order: the code (``/var/task``), the
    installed dependencies (vendored code in ``/var/task`` on Lambda), the layers' ``python/lib/pythonX.Y/
    site-packages`` then ``python/`` (``/opt``), the runtime folder (``/var/runtime``). A ``+`` marks a site
    folder, whose ``.pth`` files are honoured.
    """

    interpreter: str
    sys_path: tuple[str, ...]
    runtime_dir: str
    bin_dirs: tuple[str, ...] = ()
    lib_dirs: tuple[str, ...] = ()
    node_dirs: tuple[str, ...] = ()

    def python_command(self, handler: str) -> list[str]:
        """The worker's argv: the interpreter without its own site-packages, the bootstrap, then awslambdaric."""
        return [self.interpreter, "-S", "-s", BOOTSTRAP, "awslambdaric", handler]

    def probe_command(self, code: str, *args: str) -> list[str]:
        """An argv that runs ``code`` with the worker's sys.path (``check`` imports handlers this way)."""
        return [self.interpreter, "-S", "-s", BOOTSTRAP, "-c", code, *args]

    def variables(self, path: str) -> dict[str, str]:
        """What the worker's environment gets: its sys.path for the bootstrap, and the layers' folders."""
        env = {PATH_VARIABLE: os.pathsep.join(self.sys_path), "LAMBDA_RUNTIME_DIR": self.runtime_dir}
        # Lambda puts /opt/bin last on PATH and /var/task, /var/task/lib, /opt/lib on LD_LIBRARY_PATH.
        env["PATH"] = os.pathsep.join([p for p in path.split(os.pathsep) if p] + list(self.bin_dirs))
        if self.lib_dirs:
            env["LD_LIBRARY_PATH"] = os.pathsep.join(self.lib_dirs)
        if self.node_dirs:
            env["NODE_PATH"] = os.pathsep.join(self.node_dirs)
        return env


LAYER_FOLDERS = ("python", "nodejs", "bin", "lib", "java", "ruby")  # what Lambda finds in a layer's /opt


def source_layout(layer: Path) -> bool:
    """A layer laid out for ``sam build`` (``BuildMethod: python3.x``): its modules at the top, no /opt folder;
    sam build copies them into ``python/`` and installs its requirements.txt there."""
    return not any((layer / name).is_dir() for name in LAYER_FOLDERS)


def layer_paths(layers: list[Path], version: str, built: dict[Path, Path] | None = None,
                ) -> tuple[list[str], list[str], list[str], list[str]]:
    """(sys.path entries, bin, lib, node_modules folders) of the layers, the last layer first.

    Lambda extracts layers into /opt in order, a later one overwriting an earlier one's files; searching the
    layers last-first gives the same answer for every file without copying them (a package split across
    layers is the one difference: the last layer's copy hides the others' whole). A layer in ``sam build``'s
    layout stands for its own ``python/``, followed by its installed requirements (``built``).
    """
    last_first = list(reversed(layers))
    site = [f"+{p}" for p in _existing(last_first, f"python/lib/python{version}/site-packages")]
    python: list[str] = []
    for layer in last_first:
        if (layer / "python").is_dir():
            python.append(str(layer / "python"))
        elif source_layout(layer):
            python += [str(layer), *([f"+{built[layer]}"] if built and layer in built else [])]
    return (site + python, _existing(last_first, "bin"), _existing(last_first, "lib"),
            _existing(last_first, "nodejs/node_modules"))


def _existing(roots: list[Path], sub: str) -> list[str]:
    return [str(root / sub) for root in roots if (root / sub).is_dir()]


def make_setup(interpreter: str, version: str, code: Path, deps: Path | None, layers: list[Path],
               runtime_dir: Path, built: dict[Path, Path] | None = None) -> Setup:
    """The Setup of a function whose dependencies (if any) are installed in ``deps``, its layers' in ``built``."""
    sys_path, bins, libs, nodes = layer_paths(layers, version, built)
    own = [str(code)] + ([f"+{deps}"] if deps is not None else [])
    code_libs = [str(code), *([str(code / "lib")] if (code / "lib").is_dir() else [])]
    return Setup(interpreter, (*own, *sys_path, str(runtime_dir)), str(runtime_dir), tuple(bins),
                 tuple(code_libs + libs), tuple(nodes))
