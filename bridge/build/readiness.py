"""A running function's environment: planned and, when missing or stale, built in the background before its
first worker starts, never inside an invocation."""

from __future__ import annotations

import asyncio
import time

from bridge.build.envs import Envs, Plan, plan
from bridge.build.setup import Setup
from bridge.config.model import LocalFunctionConfig
from bridge.errors import BuildFailed
from bridge.log import get_logger


class Readiness:
    """Prepares one function's Setup once; invocations wait for it (or get the build's failure).

    A failed build is tried again only when something changed: the manifest (a new key), or its environment
    appeared (``lambda-bridge build`` ran beside the daemon).
    """

    def __init__(self, name: str, config: LocalFunctionConfig, envs: Envs) -> None:
        self.name, self.config, self.envs = name, config, envs
        self.key: tuple[str, ...] = ()  # the keys of the plan the Setup was made from
        self._task: asyncio.Task[Setup] | None = None
        self.log = get_logger(function=name)

    def start(self) -> None:
        """Begin preparing now (in the background) if not begun yet."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._prepare())
            self._task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def setup(self) -> Setup:
        """The Setup, once ready; raises BuildFailed with the reason while the environment cannot be built."""
        self.start()
        assert self._task is not None
        failed = self._task.done() and not self._task.cancelled() and self._task.exception() is not None
        if failed and await self._worth_retrying():
            self._task = None
            self.start()
        return await asyncio.shield(self._task)  # type: ignore[arg-type]

    async def _worth_retrying(self) -> bool:
        fresh = await asyncio.to_thread(plan, self.name, self.config)
        return fresh.error is None and (fresh.signature != self.key or not self.envs.needs_build(fresh))

    async def _prepare(self) -> Setup:
        try:
            return await self._prepare_once()
        except OSError as err:  # e.g. a full disk: this function fails, with the reason, and nothing else
            self.log.error("build.failed", error=str(err), fix="see that state_dir is writable and has room")
            raise BuildFailed(self.name, f"cannot prepare its environment: {err}") from None

    async def _prepare_once(self) -> Setup:
        the_plan = await asyncio.to_thread(plan, self.name, self.config)
        self.key = the_plan.signature
        if the_plan.warning:
            self.log.warning("function.interpreter_missing", problem=the_plan.warning)
        if the_plan.error is not None or self.envs.needs_build(the_plan):
            await self._build(the_plan)
        return await asyncio.to_thread(self.envs.setup, the_plan)

    async def _build(self, the_plan: Plan) -> None:
        started = time.monotonic()
        self.log.info("build.started", key=the_plan.key, status=self.envs.status(the_plan))
        try:
            await self.envs.build(the_plan, lambda line: self.log.debug("build.progress", line=line))
        except BuildFailed as err:
            self.log.error("build.failed", error=err.reason, seconds=round(time.monotonic() - started, 2),
                           fix=f"fix the manifest, then run `lambda-bridge build {self.name}` or reload")
            raise
        self.log.info("build.finished", key=the_plan.key, seconds=round(time.monotonic() - started, 2))

    def changed(self) -> bool:
        """True when the function's manifest now gives another environment than the one running (reload)."""
        return self._task is not None and plan(self.name, self.config).signature != self.key

    def cancel(self) -> None:
        """Stop a build in progress (the function is being replaced or the daemon stops)."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
