"""The SQS source's config model."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from bridge.config.base import SourceBase
from bridge.errors import ExpressionError


class SqsSourceConfig(SourceBase):
    """Lambda's SQS event source mapping, on an embedded queue or any SQS endpoint."""

    type: Literal["sqs"]
    queue: str
    endpoint_url: str | None = None
    region: str | None = None
    batch_size: Annotated[int, Field(ge=1, le=10000)] = 10
    maximum_batching_window: Annotated[float, Field(ge=0, le=300)] = 0
    function_response_types: list[Literal["ReportBatchItemFailures"]] = []
    maximum_concurrency: Annotated[int, Field(ge=2, le=1000)] = 2
    filters: Annotated[list[dict[str, Any]], Field(max_length=10)] = []

    @property
    def is_url(self) -> bool:
        """True when ``queue`` is a queue URL rather than an embedded queue's name."""
        return self.queue.startswith(("http://", "https://"))

    @property
    def fifo(self) -> bool:
        """FIFO queues' names end with .fifo."""
        return self.queue.rstrip("/").endswith(".fifo")

    @field_validator("filters")
    @classmethod
    def _filters(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        from bridge.events.filters import SQS_DATA_KEY, compile_filters

        try:
            compile_filters(value, data_key=SQS_DATA_KEY)
        except ExpressionError as err:
            raise ValueError(str(err)) from None
        return value

    @model_validator(mode="after")
    def _batching(self) -> SqsSourceConfig:
        if self.batch_size > 10 and self.maximum_batching_window < 1:
            raise ValueError("batch_size above 10 needs maximum_batching_window of at least 1 second")
        if self.fifo and self.batch_size > 10:
            raise ValueError("FIFO queues take batch_size 1-10")
        return self

    @classmethod
    def check(cls, indexed: list[tuple[int, Any]], queues: dict[str, Any]) -> list[str]:
        """Each source's queue is a URL or a configured embedded queue."""
        return [f"sources[{i}].queue: {s.queue!r} is neither a queue URL nor a configured queue; "
                f"configured: {', '.join(queues) or '(none)'}"
                for i, s in indexed if not s.is_url and s.queue not in queues]


MODEL = SqsSourceConfig
