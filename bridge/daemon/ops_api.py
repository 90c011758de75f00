"""Operations endpoints on api.listen: /metrics, /healthz, /readyz and /bridge/status (JSON)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.core import CounterMetricFamily, Metric

from bridge.metrics import age_seconds, as_number, gauge

if TYPE_CHECKING:
    from bridge.daemon.service import Service

STATUS_PATH = "/bridge/status"


class OpsApi:
    """Health, readiness, status and Prometheus metrics of one running service."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self._snapshot: dict[str, Any] = {}
        service.metrics.add_collector(self._collect)

    def add_routes(self, app: web.Application) -> None:
        """Register the endpoints."""
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get(STATUS_PATH, self.status)

    async def healthz(self, request: web.Request) -> web.Response:
        """Alive: the event loop answers (a full disk is not a reason to restart: readiness says it)."""
        return web.json_response({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        """Ready: every source reported it is running and the store can take writes (503 otherwise, saying why)."""
        runner = self.service.sources
        waiting = [n for n, s in (runner.stats.items() if runner else []) if s.state != "running"]
        full = self.service.store.full
        ready = not waiting and full is None
        body: dict[str, Any] = {"ready": ready, "not_running": waiting}
        if full is not None:
            body["reason"] = full
        return web.json_response(body, status=200 if ready else 503)

    async def status(self, request: web.Request) -> web.Response:
        """Everything ``lambda-bridge status`` shows."""
        return web.json_response(await self.report())

    async def metrics(self, request: web.Request) -> web.Response:
        """Prometheus text format; store figures are read just before rendering."""
        await self._refresh()
        return web.Response(body=self.service.metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _refresh(self) -> None:
        depth, oldest = await self.service.store.depth()
        dead = await self.service.store.call(
            lambda conn: conn.execute("SELECT COUNT(*) FROM dead_letters WHERE redriven_at IS NULL").fetchone()[0],
            durable=False)  # a read: it answers on a full disk too
        self._snapshot = {"depth": depth, "oldest": oldest, "dead_letters": dead}

    async def report(self) -> dict[str, Any]:
        """The status document."""
        await self._refresh()
        service, snap = self.service, self._snapshot
        return {
            "uptime_s": round(time.time() - service.started, 1),
            "config": str(service.config_path) if service.config_path else None,
            "sources": self._sources(),
            "functions": self._functions(),
            "queue": {"depth": snap["depth"], "oldest_age_s": round(age_seconds(snap["oldest"]), 3)},
            "dead_letters": snap["dead_letters"],
            **self._extensions(),
        }

    def _extensions(self) -> dict[str, Any]:
        """What optional components report (``fanout``: buses, rules, topics and their counts)."""
        return {name: part.status_report() for name, part in self.service.extensions.items()
                if hasattr(part, "status_report")}

    def _sources(self) -> list[dict[str, Any]]:
        runner = self.service.sources
        if runner is None:
            return []
        return [{"name": name, "type": runner.configs[name].type, "function": runner.configs[name].function,
                 "state": stats.state, "events": stats.events, "last_error": stats.last_error, **stats.extra}
                for name, stats in runner.stats.items()]

    def _functions(self) -> list[dict[str, Any]]:
        return [{"name": name, "workers": getattr(inv, "workers", None), "limit": inv.limit,
                 "in_flight": inv.in_flight, "invocations": inv.invocations, "errors": inv.errors}
                for name, inv in self.service.functions.items()]

    def _collect(self) -> Iterator[Metric]:
        snap = self._snapshot
        yield gauge("lambda_bridge_async_queue_depth", "Events in the durable async queue", [],
                    [([], snap.get("depth", 0))])
        yield gauge("lambda_bridge_async_oldest_event_age_seconds", "Age of the oldest queued event", [],
                    [([], age_seconds(snap.get("oldest")))])
        yield gauge("lambda_bridge_dead_letters", "Entries in the dead-letter store (not redriven)", [],
                    [([], snap.get("dead_letters", 0))])
        yield gauge("lambda_bridge_store_full", "1 while the disk is full and writes that need room wait", [],
                    [([], float(self.service.store.full is not None))])
        yield from self._source_metrics()
        functions = self.service.functions.items()
        yield gauge("lambda_bridge_function_workers", "Warm worker processes", ["function"],
                    [([n], as_number(getattr(i, "workers", 0))) for n, i in functions])
        yield gauge("lambda_bridge_function_in_flight", "Invocations running now", ["function"],
                    [([n], as_number(i.in_flight)) for n, i in functions])

    def _source_metrics(self) -> Iterator[Metric]:
        runner = self.service.sources
        stats = list(runner.stats.items()) if runner else []
        events = CounterMetricFamily("lambda_bridge_source_events", "Changes a source handed over", labels=["source"])
        for name, st in stats:
            events.add_metric([name], st.events)
        yield events
        yield gauge("lambda_bridge_source_up", "1 when the source is running", ["source"],
                    [([n], float(st.state == "running")) for n, st in stats])
        numeric = [([n, k], as_number(v)) for n, st in stats for k, v in st.extra.items()
                   if isinstance(v, (int, float, bool))]
        yield gauge("lambda_bridge_source_stat", "Source-specific figures (overflows, rescans, connected, ...)",
                    ["source", "stat"], numeric)
