"""Plugs the buses and topics into the daemon: PutEvents and SNS's query protocol on api.listen, status."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from bridge.fanout.bus import Buses
from bridge.fanout.deliver import Deliveries
from bridge.fanout.events_api import EventsApi
from bridge.fanout.sns_api import KNOWN_ACTIONS, SnsApi, read_form
from bridge.fanout.topics import Topics

EXTENSION = "fanout"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Fanout:
    """The buses and topics of one daemon, and the requests on api.listen that are theirs."""

    def __init__(self, buses: Buses, topics: Topics) -> None:
        self.buses, self.topics = buses, topics
        self.events_api, self.sns_api = EventsApi(buses), SnsApi(topics)

    def add_routes(self, app: web.Application) -> None:
        """Claim EventBridge's and SNS's requests before the router (``POST /`` is also SQS's)."""
        app.middlewares.append(self.middleware)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """EventBridge by its ``X-Amz-Target``, SNS by a form's ``Action``; everything else to its route."""
        if EventsApi.claims(request):
            return await self.events_api.handle(request)
        if SnsApi.claims(request):
            form = await read_form(request)
            if form is not None and form.get("Action") in KNOWN_ACTIONS:
                return await self.sns_api.handle(request, form)
        return await handler(request)

    def status_report(self) -> dict[str, Any]:
        """Buses, rules, topics and their counts since start."""
        return {"buses": self.buses.report(), "topics": self.topics.report()}


async def setup(service: Any, stack: contextlib.AsyncExitStack) -> None:
    """Serve the config's buses and topics on api.listen, delivering through the service's dispatcher."""
    def config() -> Any:
        return service.config

    deliveries = Deliveries(service.dispatcher, service.extensions.get("queues"))
    fanout = Fanout(Buses(config, deliveries), Topics(config, deliveries))
    service.extensions[EXTENSION] = fanout
    service.route_adders.append(fanout.add_routes)
