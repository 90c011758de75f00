"""The configured functions by name: builds one invoker per function, swaps them on reload, closes them."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Protocol

from bridge.build.envs import Envs
from bridge.build.readiness import Readiness
from bridge.config.model import Config, LocalFunctionConfig, RemoteFunctionConfig
from bridge.errors import ConfigError, FunctionNotFound, Throttled
from bridge.function_logs import FunctionLog, log_path
from bridge.invokers.endpoints import endpoint_variables
from bridge.invokers.local import LocalFunction
from bridge.invokers.memory import MemoryLimits
from bridge.invokers.nodejs import NodeRuntime, prepared
from bridge.invokers.worker import FunctionSpec
from bridge.metrics import Metrics
from bridge.model import Invocation, InvokeResult


def nodejs_runtime(config: Config, name: str) -> NodeRuntime:
    """The built runtime of a Node.js function; ConfigError naming what to build when it is not."""
    found = prepared(config.functions[name], config.state_dir)  # type: ignore[arg-type]
    if isinstance(found, str):
        raise ConfigError([f"functions.{name}.runtime: {found}"])
    return found


class Invoker(Protocol):
    """What every function backend offers the rest of the bridge."""

    limit: int
    staged: int  # events the async queue may hold ready beyond ``limit``, waiting in ``handover`` for a slot
    in_flight: int
    invocations: int
    errors: int

    async def invoke(self, invocation: Invocation, *, wait: bool = False) -> InvokeResult:
        """Run one invocation synchronously; Throttled when busy and ``wait`` is False."""
        ...

    async def handover(self, invocation: Invocation, *, staged: bool = False) -> InvokeResult:
        """Deliver one event from the async queue (a remote Event function hands it to AWS's own queue).

        Raises Throttled / RemoteUnavailable (retried with backoff) or InvocationRejected (final).
        ``staged``: the caller's lane keeps ``staged`` events ready beyond the limit (see LocalFunction).
        """
        ...

    def has_capacity(self) -> bool:
        """True when an invocation would start now."""
        ...

    async def close(self, drain_timeout: float = 0.0) -> None:
        """Finish in-flight work (up to the timeout) and release resources."""
        ...


def build_invoker(config: Config, name: str, clients: Any = None, worker_fds: tuple[int, ...] = (),
                  memory: MemoryLimits | None = None, envs: Envs | None = None) -> Invoker:
    """A LocalFunction or a RemoteFunction (sharing ``clients``: one per endpoint) for ``name``.

    ``worker_fds``: descriptors a local function's workers inherit (the daemon's state lock); ``memory``: how
    their memory_size is enforced (bridge.invokers.memory.choose; the resident-memory watch when None);
    ``envs``: the function environments of the state_dir (one per daemon, so two functions never build the
    same one twice).
    """
    fn = config.functions[name]
    if isinstance(fn, RemoteFunctionConfig):
        from bridge.invokers.remote import RemoteFunction

        return RemoteFunction(name, fn, clients)
    node = nodejs_runtime(config, name) if fn.runtime == "nodejs" else None
    spec = FunctionSpec(name, fn, config.region, config.function_arn(name), keep_fds=worker_fds,
                        endpoints=endpoint_variables(config, fn), node=node)
    readiness = Readiness(name, fn, envs or Envs(config.state_dir))
    return LocalFunction(spec, FunctionLog(log_path(config.state_dir, name)), memory, readiness)


class Observed:
    """An invoker wrapped with metrics: duration and outcome of every call, throttles."""

    def __init__(self, name: str, inner: Invoker, metrics: Metrics) -> None:
        self.name, self.inner, self.metrics = name, inner, metrics

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self.inner, attribute)

    async def invoke(self, invocation: Invocation, *, wait: bool = False) -> InvokeResult:
        """Invoke and record the outcome."""
        return await self._observe(self.inner.invoke(invocation, wait=wait))

    async def handover(self, invocation: Invocation, *, staged: bool = False) -> InvokeResult:
        """Hand over and record the outcome."""
        return await self._observe(self.inner.handover(invocation, staged=staged))

    async def _observe(self, call: Any) -> InvokeResult:
        start = time.perf_counter()
        try:
            result = await call
        except Throttled:
            self.metrics.count_throttle(self.name)
            raise
        elapsed = time.perf_counter() - start
        self.metrics.observe_invocation(self.name, outcome(result), elapsed)
        self.metrics.tell(self.name, result, elapsed)
        return result


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def outcome(result: InvokeResult) -> str:
    """success | timeout | out_of_memory | error."""
    if result.ok:
        return "success"
    return {"Sandbox.Timedout": "timeout", "Runtime.OutOfMemory": "out_of_memory"}.get(
        result.error_type or "", "error")


class Functions:
    """Name -> invoker for every function in the config."""

    def __init__(self, config: Config, metrics: Metrics | None = None, *, worker_fds: tuple[int, ...] = (),
                 memory: MemoryLimits | None = None) -> None:
        self.config = config
        self.metrics = metrics
        self.worker_fds = worker_fds
        self.memory = memory
        self._invokers: dict[str, Invoker] = {}
        self._retired: set[asyncio.Task[None]] = set()
        self._remote_clients: Any = None
        self.envs = Envs(config.state_dir)
        for name in config.functions:
            self._invokers[name] = self._build(config, name)

    def _build(self, config: Config, name: str) -> Invoker:
        if isinstance(config.functions[name], RemoteFunctionConfig) and self._remote_clients is None:
            from bridge.invokers.remote_clients import RemoteClients  # aiobotocore: only when used

            self._remote_clients = RemoteClients()
        invoker = build_invoker(config, name, self._remote_clients, self.worker_fds, self.memory, self.envs)
        readiness = getattr(invoker, "readiness", None)
        if readiness is not None and _loop_running():  # the environment gets ready (or built) from now on
            readiness.start()
        return Observed(name, invoker, self.metrics) if self.metrics else invoker  # type: ignore[return-value]

    def get(self, name: str) -> Invoker:
        """The invoker for ``name``; raises FunctionNotFound naming the configured ones."""
        try:
            return self._invokers[name]
        except KeyError:
            raise FunctionNotFound(name, list(self._invokers)) from None

    def names(self) -> list[str]:
        """Configured function names."""
        return list(self._invokers)

    def items(self) -> list[tuple[str, Invoker]]:
        """(name, invoker) pairs, for status and metrics."""
        return list(self._invokers.items())

    def rebuilt(self, config: Config) -> set[str]:
        """Local functions whose manifest changed since they started: a reload replaces them (and builds)."""
        found = set()
        for name, invoker in self._invokers.items():
            readiness = getattr(getattr(invoker, "inner", invoker), "readiness", None)
            if readiness is not None and isinstance(config.functions.get(name), LocalFunctionConfig) \
                    and readiness.changed():
                found.add(name)
        return found

    def apply(self, config: Config, changed: set[str], removed: set[str], drain_timeout: float) -> None:
        """Reload: new invokers take new calls at once; replaced ones finish in-flight calls, then stop."""
        self.config = config
        for name in changed | removed:
            old = self._invokers.pop(name, None)
            if old is not None:
                task = asyncio.get_running_loop().create_task(old.close(drain_timeout))
                self._retired.add(task)
                task.add_done_callback(self._retired.discard)
        for name in changed:
            self._invokers[name] = self._build(config, name)

    async def close(self, drain_timeout: float = 0.0) -> None:
        """Close every invoker concurrently (and wait for retired ones)."""
        await asyncio.gather(*(i.close(drain_timeout) for i in self._invokers.values()), *self._retired)
        if self._remote_clients is not None:
            await self._remote_clients.close()
