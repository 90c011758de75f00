"""Prometheus metrics of one daemon: counters observed as work happens, gauges read at scrape time."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

RELOAD_RESULTS = ("applied", "invalid")
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)


class Metrics:
    """The daemon's registry (one per service, no process globals) and the metrics observed in code."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.invocations = Counter("lambda_bridge_invocations", "Invocations by function and outcome",
                                   ["function", "outcome"], registry=self.registry)
        self.duration = Histogram("lambda_bridge_invocation_duration_seconds", "Invocation duration",
                                  ["function"], buckets=DURATION_BUCKETS, registry=self.registry)
        self.throttles = Counter("lambda_bridge_throttles", "Invocations refused for lack of concurrency",
                                 ["function"], registry=self.registry)
        self.async_outcomes = Counter("lambda_bridge_async_outcomes", "Async events ended, by condition",
                                      ["function", "condition"], registry=self.registry)
        self.reloads = Counter("lambda_bridge_reloads", "Config reloads by result", ["result"],
                               registry=self.registry)
        self.reload_ok = Gauge("lambda_bridge_config_last_reload_successful",
                               "1 when the last config reload was applied (or none was tried), 0 when it failed",
                               registry=self.registry)
        self.reload_ok.set(1)
        for result in RELOAD_RESULTS:  # both series exist from the start: increase() and dashboards see zero
            self.reloads.labels(result)
        # Called with (function, InvokeResult, seconds) after every invocation (the status page listens).
        self.listeners: list[Callable[[str, Any, float], None]] = []
        # The labelled children, looked up once: ``labels()`` costs more than the ``inc()`` it serves, and the
        # invocation path calls it several times per event.
        self._children: dict[tuple[int | str, ...], Any] = {}

    def observe_invocation(self, function: str, outcome: str, seconds: float) -> None:
        """Count one finished invocation (``outcome``: success | error | timeout | ...)."""
        self._child(self.invocations, function, outcome).inc()
        self._child(self.duration, function).observe(seconds)

    def tell(self, function: str, result: Any, seconds: float) -> None:
        """Hand one finished invocation's result to the listeners."""
        for listener in self.listeners:
            listener(function, result, seconds)

    def count_reload(self, result: str) -> None:
        """Count one reload (``result``: applied | invalid) and remember whether the last one worked."""
        self.reloads.labels(result).inc()
        self.reload_ok.set(float(result == "applied"))

    def count_async_outcome(self, function: str, condition: str) -> None:
        """Count one async event that ended (``condition``: Success, RetriesExhausted, EventAgeExceeded)."""
        self._child(self.async_outcomes, function, condition).inc()

    def count_throttle(self, function: str) -> None:
        """Count one invocation refused for lack of concurrency."""
        self._child(self.throttles, function).inc()

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def add_collector(self, collect: Callable[[], Iterator[Metric]]) -> None:
        """Gauges computed when Prometheus scrapes (queue depth, source state, ...)."""
        self.registry.register(_Callback(collect))

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)


class _Callback(Collector):
    def __init__(self, collect: Callable[[], Iterator[Metric]]) -> None:
        self._collect = collect

    def collect(self) -> Iterator[Metric]:
        return self._collect()

    def describe(self) -> list[Metric]:
        return []  # values are dynamic; nothing to pre-register


def gauge(name: str, doc: str, labels: list[str], samples: list[tuple[list[str], float]]) -> GaugeMetricFamily:
    """A gauge family from (label values, value) pairs."""
    family = GaugeMetricFamily(name, doc, labels=labels)
    for values, value in samples:
        family.add_metric(values, value)
    return family


def age_seconds(oldest: float | None) -> float:
    """Age of the oldest queued event, 0 when the queue is empty."""
    return 0.0 if oldest is None else max(0.0, time.time() - oldest)


def as_number(value: Any) -> float:
    """Booleans and numbers as a gauge value."""
    return float(bool(value)) if isinstance(value, bool) else float(value or 0)
