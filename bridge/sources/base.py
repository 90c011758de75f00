"""What a source is: a long-running task that turns origin changes into deliveries, and what it may use."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from bridge.config.model import Config
from bridge.delivery.dispatcher import Dispatcher
from bridge.invokers.registry import Functions
from bridge.store import Store


@dataclass
class SourceStats:
    """Counters a source keeps for status and metrics."""

    state: str = "starting"  # starting | running | retrying | stopped
    events: int = 0
    last_error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class SourceContext:
    """Everything a source may touch: the store (its own state), async intake, sync invokes."""

    config: Config
    store: Store
    dispatcher: Dispatcher  # accept()/accept_many(): durable before they return -> then ack the origin
    functions: Functions  # get(name).invoke(Invocation, wait=True): synchronous invocation (SQS poller)
    stats: SourceStats
    on_ready: Callable[[], None] = lambda: None
    extensions: dict[str, Any] = field(default_factory=dict)  # e.g. "queues": the embedded queue engine

    def ready(self) -> None:
        """Call once the source watches/polls/subscribes (for READY and /readyz)."""
        self.stats.state = "running"
        self.on_ready()


class Source(Protocol):
    """A source: ``run()`` works until cancelled; a flaky origin is retried inside, a bug raises."""

    name: str

    async def run(self) -> None:
        """Watch the origin and deliver each change; returns only when cancelled."""
        ...


SourceFactory = Callable[[Any, SourceContext], Source]
