"""Node.js runtime parts without a daemon: V8 limits, NODE_PATH order, content-hash folders, missing tools."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.config.model import parse_config
from bridge.invokers import nodejs
from bridge.invokers.nodejs import NodeRuntime, deps_dir, heap_flags, install_hint, runtime_dir


def test_heap_flags_use_the_arithmetic_of_lambdas_bootstrap() -> None:
    # Lambda's /var/runtime/bootstrap: new_space = MEM / 10; semi_space = new_space / 2; old_space = MEM - new_space
    assert heap_flags(128) == ["--max-semi-space-size=6", "--max-old-space-size=116"]
    assert heap_flags(1024) == ["--max-semi-space-size=51", "--max-old-space-size=922"]


def test_node_path_in_lambdas_order_and_a_users_own_wins(tmp_path: Path) -> None:
    cfg = parse_config(f"functions:\n  f: {{handler: index.handler, code: '{tmp_path}', runtime: nodejs}}\n")
    fn = cfg.functions["f"]
    node = NodeRuntime("/usr/bin/node", Path("/rt"), Path("/env"), layers=(Path("/l1"), Path("/l2")), major="20")
    assert node.module_path(fn) == ["/env/node_modules",  # the function's own packages (/var/task/node_modules)
                                    "/l2/nodejs/node20/node_modules", "/l2/nodejs/node_modules",  # a later layer
                                    "/l1/nodejs/node20/node_modules", "/l1/nodejs/node_modules",  # wins in /opt
                                    "/rt/node_modules", "/rt", str(tmp_path)]
    env = node.environment(fn)
    assert env["AWS_EXECUTION_ENV"] == "AWS_Lambda_nodejs20.x" and env["LAMBDA_RUNTIME_DIR"] == "/rt"
    mine = parse_config(f"functions:\n  f: {{handler: index.handler, code: '{tmp_path}', runtime: nodejs, "
                        "environment: {NODE_PATH: /mine}}\n").functions["f"]
    assert node.environment(mine)["NODE_PATH"] == "/mine"  # as Lambda's bootstrap: only set when unset


def test_folders_are_named_by_what_they_are_built_from(tmp_path: Path) -> None:
    state = tmp_path / "state"
    assert runtime_dir(state, "v20.1.0") == runtime_dir(state, "v20.9.9") != runtime_dir(state, "v22.0.0")
    code = tmp_path / "code"
    code.mkdir()
    assert deps_dir(state, code, "v20.1.0") is None  # no package.json
    (code / "package.json").write_text(json.dumps({"type": "module"}))
    assert deps_dir(state, code, "v20.1.0") is None  # nothing to install
    (code / "package.json").write_text(json.dumps({"dependencies": {"ms": "2.1.3"}}))
    first = deps_dir(state, code, "v20.1.0")
    assert first is not None and first.parent == state / "envs" and first == deps_dir(state, code, "v20.2.0")
    (code / "package-lock.json").write_text("{}")
    locked = deps_dir(state, code, "v20.1.0")
    assert locked not in (None, first)
    (code / "package.json").write_text(json.dumps({"dependencies": {"ms": "2.1.2"}}))
    assert deps_dir(state, code, "v20.1.0") not in (first, locked)
    assert deps_dir(state, code, "v22.1.0") != deps_dir(state, code, "v20.1.0")


def test_missing_tools_and_the_packages_that_provide_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nodejs.shutil, "which", lambda tool: None if tool in ("libtoolize", "node") else "/bin/x")
    assert nodejs.missing_tools(runtime_built=False) == ["node", "libtoolize"]
    assert nodejs.missing_tools(runtime_built=True) == ["node"]
    assert install_hint(["node", "libtoolize"]) == "install them: apt-get install nodejs libtool (Node.js >= 20)"


MDWE_CHILD = textwrap.dedent("""
    import ctypes, json, subprocess, sys
    from pathlib import Path
    if sys.argv[1] == "deny":  # what systemd's MemoryDenyWriteExecute=yes does to the daemon and its workers
        assert ctypes.CDLL(None, use_errno=True).prctl(65, 1, 0, 0, 0) == 0  # PR_SET_MDWE, REFUSE_EXEC_GAIN
    from bridge.config.model import LocalFunctionConfig
    from bridge.invokers import nodejs
    config = LocalFunctionConfig(handler="index.handler", code=Path(sys.argv[2]), runtime="nodejs")
    found = nodejs.prepared(config, Path(sys.argv[2]) / "state")
    node = subprocess.run(["node", "-e", "console.log(JSON.stringify([1, 2].map(x => x * 2)))"],
                          capture_output=True, text=True)
    print(json.dumps({"jit": nodejs.jit_allowed(), "found": found if isinstance(found, str) else "runtime",
                      "node_rc": node.returncode}))
""")


@pytest.mark.parametrize("mode", ["deny", "allow"])
def test_a_daemon_that_may_not_map_executable_memory_says_so_instead_of_starting_nodes_that_die(
        tmp_path: Path, mode: str) -> None:
    """Under MemoryDenyWriteExecute (the unit's hardening), node dies on its first compiled function with a
    SIGTRAP and a V8 stack; the daemon must say why and what to change, not start workers that die."""
    out = subprocess.run([sys.executable, "-c", MDWE_CHILD, mode, str(tmp_path)], capture_output=True, text=True,
                         check=True, timeout=60)
    result = json.loads(out.stdout)
    if mode == "deny":
        assert result["node_rc"] != 0  # the probe predicts what real node does
        assert result == {"jit": False, "found": nodejs.JIT_DENIED, "node_rc": result["node_rc"]}
        assert "MemoryDenyWriteExecute=no" in nodejs.JIT_DENIED and "systemctl edit" in nodejs.JIT_DENIED
    else:
        assert result["node_rc"] == 0 and result["jit"] is True and result["found"] != nodejs.JIT_DENIED


JSONISH = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                       lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                    max_size=3), max_leaves=8)


DEEP = (b"[" * 100_000, b'{"dependencies": ' * 50_000)  # past the JSON parser's depth


@given(raw=st.one_of(st.binary(max_size=200), st.sampled_from(DEEP), JSONISH.map(lambda v: json.dumps(v).encode()),
                     st.dictionaries(st.sampled_from(["dependencies", "type", "name"]), JSONISH, max_size=3)
                     .map(lambda v: json.dumps(v).encode())))
def test_fuzz_any_package_json_gets_a_folder_or_none(tmp_path_factory: pytest.TempPathFactory, raw: bytes) -> None:
    # A user's package.json is outside input: anything there is hashed or skipped, never an exception here
    # (npm then says what is wrong with it, naming the function).
    code = tmp_path_factory.mktemp("code")
    (code / "package.json").write_bytes(raw)
    found = deps_dir(code / "state", code, "v20.0.0")
    try:
        parsed = json.loads(raw)
    except (ValueError, RecursionError):
        parsed = None
    if isinstance(parsed, dict) and not parsed.get("dependencies"):
        assert found is None
    else:
        assert found is not None and found.parent == code / "state" / "envs"
