"""The ``queues:`` section: embedded, durable, SQS-compatible queues and the rules across them."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import Field, model_validator

from bridge.config.base import Strict

QUEUE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}(\.fifo)?$")


class RedrivePolicy(Strict):
    """Where messages go after too many receives."""

    dead_letter_queue: str
    max_receive_count: Annotated[int, Field(ge=1, le=1000)]


class QueueConfig(Strict):
    """An embedded, durable, SQS-compatible queue."""

    visibility_timeout: Annotated[int, Field(ge=0, le=43200)] = 30
    message_retention: Annotated[int, Field(ge=60, le=1_209_600)] = 345_600
    delay: Annotated[int, Field(ge=0, le=900)] = 0
    receive_wait_time: Annotated[int, Field(ge=0, le=20)] = 0
    maximum_message_size: Annotated[int, Field(ge=1024, le=262_144)] = 262_144
    redrive_policy: RedrivePolicy | None = None
    fifo: bool = False
    content_based_deduplication: bool = False

    @model_validator(mode="after")
    def _fifo_only(self) -> QueueConfig:
        if self.content_based_deduplication and not self.fifo:
            raise ValueError("content_based_deduplication needs fifo: true")
        return self


def check_queues(queues: dict[str, QueueConfig]) -> list[str]:
    """Cross-queue rules: names, .fifo suffix, redrive targets. Returns problems (empty when fine)."""
    problems = []
    for name, queue in queues.items():
        if not QUEUE_NAME.match(name):
            problems.append(f"queues.{name}: a queue name is 1-80 letters, digits, '-' or '_' (FIFO: ending .fifo)")
        if name.endswith(".fifo") != queue.fifo:
            problems.append(f"queues.{name}: FIFO queues (fifo: true) and only they have names ending in .fifo")
        target = queue.redrive_policy.dead_letter_queue if queue.redrive_policy else None
        if target is not None and target not in queues:
            problems.append(f"queues.{name}.redrive_policy.dead_letter_queue: {target!r} is not a configured "
                            f"queue; configured: {', '.join(queues)}")
        elif target is not None and queues[target].fifo != queue.fifo:
            problems.append(f"queues.{name}.redrive_policy: a FIFO queue needs a FIFO dead-letter queue and "
                            "a standard queue a standard one")
    return problems
