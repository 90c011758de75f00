"""The configured functions by name: builds one invoker per function and closes them together."""

from __future__ import annotations

import asyncio
from typing import Protocol

from bridge.config import Config
from bridge.errors import FunctionNotFound
from bridge.invokers.local import LocalFunction
from bridge.invokers.worker import FunctionSpec
from bridge.model import Invocation, InvokeResult


class Invoker(Protocol):
    """What every function backend offers the rest of the bridge."""

    async def invoke(self, invocation: Invocation, *, wait: bool = False) -> InvokeResult:
        """Run one invocation synchronously."""
        ...

    def has_capacity(self) -> bool:
        """True when an invocation would start now."""
        ...

    async def close(self, drain_timeout: float = 0.0) -> None:
        """Finish in-flight work (up to the timeout) and release resources."""
        ...


class Functions:
    """Name -> invoker for every function in the config."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._invokers: dict[str, Invoker] = {
            name: LocalFunction(FunctionSpec(name, fn, config.region, config.function_arn(name)))
            for name, fn in config.functions.items()
        }

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
