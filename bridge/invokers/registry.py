"""The configured functions by name: builds one invoker per function and closes them together."""

from __future__ import annotations

import asyncio
from typing import Protocol

from bridge.config import Config, RemoteFunctionConfig
from bridge.errors import FunctionNotFound
from bridge.invokers.local import LocalFunction
from bridge.invokers.worker import FunctionSpec
from bridge.model import Invocation, InvokeResult


class Invoker(Protocol):
    """What every function backend offers the rest of the bridge."""

    async def invoke(self, invocation: Invocation, *, wait: bool = False) -> InvokeResult:
        """Run one invocation synchronously; Throttled when busy and ``wait`` is False."""
        ...

    async def handover(self, invocation: Invocation) -> InvokeResult:
        """Deliver one event from the async queue (a remote Event function hands it to AWS's own queue).

        Raises Throttled / RemoteUnavailable (retried with backoff) or InvocationRejected (final).
        """
        ...

    def has_capacity(self) -> bool:
        """True when an invocation would start now."""
        ...

    async def close(self, drain_timeout: float = 0.0) -> None:
        """Finish in-flight work (up to the timeout) and release resources."""
        ...


def build_invoker(config: Config, name: str) -> Invoker:
    """A LocalFunction or a RemoteFunction for the function ``name``."""
    fn = config.functions[name]
    if isinstance(fn, RemoteFunctionConfig):
        from bridge.invokers.remote import RemoteFunction

        return RemoteFunction(name, fn)
    return LocalFunction(FunctionSpec(name, fn, config.region, config.function_arn(name)))


class Functions:
    """Name -> invoker for every function in the config."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._invokers: dict[str, Invoker] = {name: build_invoker(config, name) for name in config.functions}

    def get(self, name: str) -> Invoker:
        """The invoker for ``name``; raises FunctionNotFound naming the configured ones."""
        try:
            return self._invokers[name]
        except KeyError:
            raise FunctionNotFound(name, list(self._invokers)) from None

    def names(self) -> list[str]:
        """Configured function names."""
        return list(self._invokers)

    async def close(self, drain_timeout: float = 0.0) -> None:
        """Close every invoker concurrently."""
        await asyncio.gather(*(i.close(drain_timeout) for i in self._invokers.values()))
