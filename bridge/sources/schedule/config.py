"""The schedule source's config model."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from bridge.config.base import SourceBase, Strict, error_at
from bridge.errors import ExpressionError


class RetryPolicy(Strict):
    """EventBridge Scheduler's retry policy for handing an event over."""

    maximum_retry_attempts: Annotated[int, Field(ge=0, le=185)] = 185
    maximum_event_age: Annotated[float, Field(ge=60, le=86400)] = 86400


class ScheduleSourceConfig(SourceBase):
    """An EventBridge rule or EventBridge Scheduler schedule on this machine's clock."""

    type: Literal["schedule"]
    schedule: str
    timezone: str = "UTC"
    style: Literal["rule", "scheduler"] = "rule"
    input: Any = None
    start_date: datetime | None = None
    end_date: datetime | None = None
    enabled: bool = True
    flexible_time_window: Annotated[int, Field(ge=0, le=1440)] = 0
    retry_policy: RetryPolicy = RetryPolicy()
    catch_up: Literal["none", "latest", "all"] = "none"
    catch_up_window: Annotated[float, Field(gt=0, le=31_536_000)] = 86400.0

    @model_validator(mode="after")
    def _expression(self) -> ScheduleSourceConfig:
        from bridge.sources.schedule.expressions import parse_schedule

        try:
            parse_schedule(self.schedule, timezone=self.timezone, start_date=self.start_date,
                           end_date=self.end_date)
        except ExpressionError as err:
            text = str(err)
            key = next((k for k in ("timezone", "start_date", "end_date") if k in text), "schedule")
            raise error_at("timezone" if "time zone" in text else key, text) from None
        return self


MODEL = ScheduleSourceConfig
