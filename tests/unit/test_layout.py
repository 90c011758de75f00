"""The package layout: no import circles (neither at run time nor through any import statement), and nothing
below imports upward."""

from __future__ import annotations

import ast
import graphlib
import itertools
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import bridge

ROOT = Path(bridge.__file__).parent
MODULES = sorted(m.name for m in pkgutil.walk_packages([str(ROOT)], prefix="bridge.")
                 if not m.name.endswith("__main__"))
# Layers, lowest first: a module may import its own layer and the ones before it, never a later one.
# The daemon and the CLI sit on top; a source never reaches into the daemon or the CLI.
FORBIDDEN = {
    "bridge.sources": ("bridge.daemon", "bridge.cli"),
    "bridge.events": ("bridge.daemon", "bridge.cli", "bridge.sources", "bridge.delivery", "bridge.invokers"),
    "bridge.delivery": ("bridge.daemon", "bridge.cli", "bridge.sources"),
    "bridge.invokers": ("bridge.daemon", "bridge.cli", "bridge.sources", "bridge.delivery"),
    "bridge.queues": ("bridge.daemon", "bridge.cli"),
    "bridge.config": ("bridge.daemon", "bridge.cli", "bridge.delivery", "bridge.invokers"),
    "bridge.daemon": ("bridge.cli",),
    "bridge.sam": ("bridge.daemon", "bridge.cli", "bridge.delivery", "bridge.invokers", "bridge.queues"),
    "bridge.cluster": ("bridge.daemon", "bridge.cli", "bridge.sources"),
}


def test_every_module_imports_alone() -> None:
    """Each module in a fresh interpreter: a circle shows up as an ImportError on some entry point."""
    code = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)\n"
    failures = []
    for name in MODULES:
        run = subprocess.run([sys.executable, "-c", code, name], capture_output=True, text=True, timeout=60)
        if run.returncode:
            failures.append(f"{name}: {run.stderr.strip().splitlines()[-1]}")
    assert not failures, "\n".join(failures)


def _module_path(name: str) -> Path:
    folder = ROOT.parent / name.replace(".", "/")
    return folder / "__init__.py" if folder.is_dir() else folder.with_suffix(".py")


def _targets(module: str, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The modules of the bridge one import statement names (``from pkg import mod`` names ``pkg.mod``)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        package = module.split(".")[:None if _module_path(module).name == "__init__.py" else -1]
        base = ".".join([*package[:len(package) - node.level + 1], node.module or ""] if node.level
                        else [node.module or ""]).strip(".")
        names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
    found = []
    for name in names:
        while name and name not in MODULES and name != "bridge":
            name = name.rpartition(".")[0]  # bridge.x.Class -> bridge.x
        if name.startswith("bridge.") and name != module:
            found.append(name)
    return found


def _import_graph() -> dict[str, dict[str, int]]:
    """module -> {imported module: line of the first statement}, for EVERY import statement: at the top, under
    ``if TYPE_CHECKING:`` and inside functions alike (a deferred import hides a circle, it does not break it)."""
    return {module: _edges(module, _module_path(module).read_text()) for module in MODULES}


def _edges(module: str, source: str) -> dict[str, int]:
    edges: dict[str, int] = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import | ast.ImportFrom):
            for target in _targets(module, node):
                edges.setdefault(target, node.lineno)
    return edges


def test_no_import_statement_closes_a_circle() -> None:
    """The module graph of every import statement has no cycle (importing each module alone cannot see one
    that passes through ``TYPE_CHECKING`` or a function-level import)."""
    graph = _import_graph()
    try:
        graphlib.TopologicalSorter({m: set(edges) for m, edges in graph.items()}).prepare()
    except graphlib.CycleError as err:
        cycle = err.args[1][::-1]  # graphlib lists it along predecessors; the import order is the reverse
        steps = [f"{a} -> {b} ({_module_path(a).relative_to(ROOT.parent)}:{graph[a][b]})"
                 for a, b in itertools.pairwise(cycle)]
        pytest.fail("import circle:\n" + "\n".join(steps))


def test_the_circle_finder_sees_type_checking_and_deferred_imports() -> None:
    """The finder counts an import under TYPE_CHECKING and one inside a function (so it can fail)."""
    source = ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from bridge.sources.base import Source\n"
              "def f():\n    from bridge.delivery import dispatcher\n    import bridge.config.model\n")
    assert _edges("bridge.sources.registry", source) == {"bridge.sources.base": 3, "bridge.delivery.dispatcher": 5,
                                                          "bridge.config.model": 6}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_nothing_below_imports_upward(layer: str) -> None:
    folder = ROOT / layer.split(".", 1)[1]
    bad = [f"{path.relative_to(ROOT.parent)} imports {name}"
           for path in folder.rglob("*.py") for name in _imports(path)
           if name.startswith(FORBIDDEN[layer])]
    assert not bad, "\n".join(bad)


def test_a_source_package_holds_its_config_and_runner() -> None:
    from bridge.sources.registry import SOURCE_TYPES

    for name in SOURCE_TYPES:
        assert (ROOT / "sources" / name / "config.py").is_file()
        assert (ROOT / "sources" / name / "source.py").is_file()
