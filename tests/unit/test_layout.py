"""The package layout: every module imports on its own (no import circles), and nothing below imports upward."""

from __future__ import annotations

import ast
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
    "bridge.fanout": ("bridge.daemon", "bridge.cli", "bridge.sources"),
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
