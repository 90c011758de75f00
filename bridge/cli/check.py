"""``lambda-bridge check``: validate the config file and import each Python handler, all in one pass."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import click

from bridge.cli.context import State, emit_json, global_options, pass_state
from bridge.config.model import Config, LocalFunctionConfig
from bridge.errors import ConfigError
from bridge.sources.http.config import listen_problems

if TYPE_CHECKING:
    from bridge.build.setup import Setup
    from bridge.invokers.worker import FunctionSpec

IMPORT_TIMEOUT = 10.0  # seconds one handler module may take to import
MARKER = "\x1elambda-bridge-check "  # \x1e: no module prints it by chance (str.splitlines splits at it)
# Run in a throwaway interpreter with the function's code directory and environment, as a worker would
# import it; the verdict is the last MARKER line (the module may print anything while importing).
PROBE = r"""
import importlib, json, os, sys, traceback
handler = sys.argv[1]
module_name, _, function = handler.rpartition(".")
module_name = module_name.replace("/", ".")
def verdict(error):
    os.write(1, (MARKER + json.dumps(error) + "\n").encode())
try:
    module = importlib.import_module(module_name)
except SyntaxError as err:
    verdict(f"syntax error in {os.path.relpath(err.filename or '?')}, line {err.lineno}: {err.msg}")
except ModuleNotFoundError as err:
    top = module_name.split(".")[0]
    verdict(f"no module {module_name!r} in {os.getcwd()}" if err.name in (module_name, top)
            else f"importing {module_name!r} failed: {err}")
except BaseException as err:
    verdict(f"importing {module_name!r} raised {type(err).__name__}: {err}")
else:
    found = getattr(module, function, None)
    if found is None:
        names = [n for n in dir(module) if callable(getattr(module, n)) and not n.startswith("_")]
        verdict(f"module {module_name!r} has no function {function!r}; it has: {', '.join(names) or '(none)'}")
    elif not callable(found):
        verdict(f"{handler!r} is not a function")
    else:
        verdict(None)
""".replace("MARKER", repr(MARKER))


@click.command("check", short_help='validate the config and the handlers; list every mistake')
@click.option("--skip-handlers", is_flag=True, help="do not import the Python handlers (it runs their module code)")
@global_options
@pass_state
def check(state: State, skip_handlers: bool) -> int:
    """Validate the config file and explain every mistake; exit 0 when valid, 2 otherwise.

    Also imports each Python function's handler in a throwaway process (with the function's code directory
    and environment, at most 10 s each), so a missing module or function or a syntax error shows now, not
    at the first invocation.
    """
    try:
        config = state.config()
    except ConfigError as err:
        return _report(state, err.problems, None)
    from bridge.build.checks import environment_findings

    problems, warnings, ready = environment_findings(config)
    problems += [] if skip_handlers else handler_problems(config, ready)
    problems += listen_problems(config.sources, _held_addresses(state))
    return _report(state, problems, config, warnings)


def _held_addresses(state: State) -> set[tuple[str, int]]:
    """The http addresses the running daemon of this state_dir listens on (not "in use": it keeps them)."""
    daemon = state.daemon(quiet=True)
    listen = daemon.info.get("http_listen") if daemon is not None else None
    if not isinstance(listen, list):
        return set()
    return {(str(pair[0]), int(pair[1])) for pair in listen if isinstance(pair, list) and len(pair) == 2}


def _report(state: State, problems: list[str], config: Config | None, warnings: list[str] | None = None) -> int:
    path = state.config_path
    if state.json:
        summary = None if config is None else {"functions": len(config.functions), "sources": len(config.sources),
                                               "queues": len(config.queues), "state_dir": str(config.state_dir)}
        emit_json({"config": path, "valid": not problems, "problems": problems, "warnings": warnings or [],
                   "summary": summary})
        return 2 if problems else 0
    for warning in warnings or []:
        click.echo(f"warning: {warning}", err=True)
    if problems:
        click.echo(ConfigError(problems, source=path).render(), err=True)
    else:
        assert config is not None
        click.echo(f"{path}: OK ({len(config.functions)} function(s), {len(config.sources)} source(s), "
                   f"{len(config.queues)} queue(s), state_dir {config.state_dir})")
    return 2 if problems else 0


def handler_problems(config: Config, setups: dict[str, Setup]) -> list[str]:
    """``functions.NAME.handler: ...`` for each Python handler in ``setups`` (the ones whose environment is
    ready) that does not import, in parallel, with the worker's interpreter and sys.path."""
    from bridge.invokers.worker import FunctionSpec

    local = [(name, fn) for name, fn in config.functions.items()
             if isinstance(fn, LocalFunctionConfig) and fn.is_python and name in setups]
    specs = [FunctionSpec(name, fn, config.region, config.function_arn(name), setup=setups[name])
             for name, fn in local]
    with ThreadPoolExecutor(max_workers=4) as pool:
        verdicts = list(pool.map(_probe, specs))
    return [f"functions.{spec.name}.handler: {verdict}" for spec, verdict in zip(specs, verdicts, strict=True)
            if verdict]


def _probe(spec: FunctionSpec) -> str | None:
    """Import one handler; the reason it cannot be loaded, or None when it can."""
    cfg = spec.config
    env = spec.environment("127.0.0.1:9", "check")  # the probe never contacts a Runtime API
    argv = spec.setup.probe_command(PROBE, cfg.handler) if spec.setup else [sys.executable, "-c", PROBE, cfg.handler]
    try:
        done = subprocess.run(argv, cwd=cfg.code, env=env,
                              capture_output=True, timeout=IMPORT_TIMEOUT, stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired:
        return f"importing {cfg.handler!r} took more than {IMPORT_TIMEOUT:g} s (it runs at every cold start)"
    lines = [line for line in done.stdout.decode(errors="replace").split("\n") if line.startswith(MARKER)]
    if not lines:
        tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or [f"exit code {done.returncode}"]
        return f"importing {cfg.handler!r} ended the process: {tail[0]}"
    return _with_hint(json.loads(lines[-1][len(MARKER):]))


def _with_hint(verdict: str | None) -> str | None:
    """A module the handler cannot import but the daemon can: say where it must come from now."""
    match = re.search(r"No module named '([^'.]+)", verdict or "")
    if verdict is None or match is None or importlib.util.find_spec(match.group(1)) is None:
        return verdict
    return (f"{verdict} (the daemon has it, but a handler sees only its code, its requirements.txt, its layers "
            "and the runtime's boto3, as on Lambda: list it in requirements.txt and run lambda-bridge build)")


COMMANDS = (check,)
