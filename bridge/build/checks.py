"""What ``check`` says about function environments: refused manifests, missing or stale builds, interpreters."""

from __future__ import annotations

from bridge.build.envs import Envs, Plan, plan
from bridge.build.setup import Setup
from bridge.config.model import Config, LocalFunctionConfig


def environment_findings(config: Config) -> tuple[list[str], list[str], dict[str, Setup]]:
    """(problems, warnings, the Setup of each local function ready to run).

    A refused manifest is a problem (exit 2); an environment not built yet or built from an older manifest
    is a warning naming the command that builds it (``run`` builds it too, before the function's first
    worker); a missing interpreter is a warning, said once per runtime.
    """
    envs = Envs(config.state_dir)
    problems: list[str] = []
    warnings: list[str] = []
    ready: dict[str, Setup] = {}
    for name, fn in config.functions.items():
        if not isinstance(fn, LocalFunctionConfig):
            continue
        the_plan = plan(name, fn)
        if the_plan.warning and not any(the_plan.warning in w for w in warnings):
            warnings.append(f"functions.{name}.runtime: {the_plan.warning}")
        if the_plan.error is not None:
            problems.append(f"functions.{name}: {the_plan.error}")
        elif envs.needs_build(the_plan):
            state = "was built from another manifest (stale)" if envs.status(the_plan) == "stale" else \
                "is not built yet"
            warnings.append(f"functions.{name}: its environment ({_what(the_plan)}) {state}; run `lambda-bridge "
                            f"build {name}` (lambda-bridge run also builds it before the function's first worker)")
        else:
            try:
                ready[name] = envs.setup(the_plan)
            except OSError as err:  # the runtime folder cannot be made (a state_dir this user cannot write)
                warnings.append(f"functions.{name}: handler not imported: cannot prepare its runtime folder in "
                                f"{envs.runtimes} ({err.strerror}); run check as the daemon's user")
    return problems, warnings, ready


def _what(the_plan: Plan) -> str:
    names = [str(m.path.relative_to(m.path.parent.parent)) for _, m in the_plan.installs()]
    return ", ".join(names) or "the runtime's awslambdaric and boto3"
