"""``lambda-bridge build``: install each local function's dependencies into its own environment (no Docker)."""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING

import click

from bridge.cli.context import State, emit_json, global_options, note, pass_state
from bridge.config.model import Config, LocalFunctionConfig
from bridge.errors import UsageError

if TYPE_CHECKING:
    from bridge.build.envs import Envs


@click.command("build", short_help="install each function's requirements into its own environment")
@click.argument("functions", nargs=-1)
@click.option("--force", is_flag=True, help="reinstall even when nothing changed")
@click.option("--clean", is_flag=True, help="only remove the environments no function of the config uses")
@global_options
@pass_state
def build(state: State, functions: tuple[str, ...], force: bool, clean: bool) -> int:
    """Build the environment of each local Python function (all, or the FUNCTIONs named).

    Installs the function's requirements.txt (or pyproject.toml dependencies) with uv into
    state_dir/envs/HASH, keyed by a hash of the manifest and the interpreter: an unchanged function is not
    rebuilt, identical manifests share one environment. Exit 0 when every build succeeded, 1 when one
    failed, 2 when a manifest or the config is refused.
    """
    from bridge.build.envs import Envs

    config = state.config()
    envs = Envs(config.state_dir)
    names = _selected(config, functions)
    if clean:
        return _clean(config, envs)
    return asyncio.run(build_functions(config, envs, names, force=force, as_json=state.json))


def _selected(config: Config, wanted: tuple[str, ...]) -> list[str]:
    local = [name for name, fn in config.functions.items() if isinstance(fn, LocalFunctionConfig)]
    unknown = [name for name in wanted if name not in local]
    if unknown:
        raise UsageError(f"no local function {', '.join(map(repr, unknown))}; local functions: "
                         f"{', '.join(local) or '(none)'}")
    return list(wanted) or local


async def build_functions(config: Config, envs: Envs, names: list[str], *, force: bool, as_json: bool) -> int:
    """Plan and build ``names`` (Envs limits how many install at once) with a progress display; returns the
    exit code."""
    from bridge.build.envs import plan
    from bridge.build.progress import Display
    from bridge.errors import BuildFailed

    display = Display(sys.stderr, live=sys.stderr.isatty() and not as_json)
    results: dict[str, dict[str, object]] = {}

    async def one(name: str) -> None:
        display.update(name, "reading manifest")
        the_plan = await asyncio.to_thread(plan, name, config.functions[name])  # type: ignore[arg-type]
        if the_plan.warning:
            note(f"{name}: {the_plan.warning}")
        before = envs.status(the_plan)
        try:
            await envs.build(the_plan, lambda text: display.update(name, text), force=force)
        except BuildFailed as err:
            display.finish(name, "failed", ok=False)
            results[name] = {"ok": False, "error": str(err), "refused": the_plan.error is not None}
            return
        done = "nothing to install" if not the_plan.signature else \
            ("up to date" if before == "ready" and not force else f"built {' '.join(the_plan.signature)}")
        display.finish(name, done)
        results[name] = {"ok": True, "status": done, "env": str(envs.path(the_plan.key)) if the_plan.key else None}

    async with display.running():
        await asyncio.gather(*(one(name) for name in names))
    return _report(results, as_json)


def _report(results: dict[str, dict[str, object]], as_json: bool) -> int:
    if as_json:
        emit_json(results)
    for result in results.values():
        if not result["ok"] and not as_json:
            click.echo(f"lambda-bridge: {result['error']}", err=True)
    if any(r.get("refused") for r in results.values()):
        return 2
    return 0 if all(r["ok"] for r in results.values()) else 1


def _clean(config: Config, envs: Envs) -> int:
    from bridge.build.envs import plan

    keep: set[str] = set()
    for name, fn in config.functions.items():
        if isinstance(fn, LocalFunctionConfig):
            the_plan = plan(name, fn)
            keep |= {*the_plan.signature, envs.runtime_dir(the_plan.interpreter).name}
    for path in envs.clean(keep):
        click.echo(f"removed {path}")
    return 0


COMMANDS = (build,)
