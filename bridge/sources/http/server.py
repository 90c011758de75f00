"""One listener per address, shared by the http sources on it; routes swap atomically, so reloads drop nothing.

A reload stops a changed source and starts it again. Its listener is not closed in between: the hub keeps
the listening socket, and a departing source's routes stay served ("lingering") for ``LINGER`` seconds or
until a source of the same name attaches again, so a request that arrives in the gap still finds its route.
Why not a second socket with SO_REUSEPORT per source generation: connections already queued on the closing
socket are reset. (The listener does set SO_REUSEPORT, so that the config check's bind probe can tell this
user's running daemon from another program on the port.)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from bridge.log import get_logger
from bridge.sources.http.events import decode_path
from bridge.sources.http.routes import Route, Router

HUB = "http.listeners"  # ctx.extensions key of the shared ListenerHub
LINGER = 5.0  # seconds a stopped source's routes keep answering, covering a reload's stop -> start gap


class Api(Protocol):
    """What a listener needs from a source: its routes and how it answers a matched / unmatched request."""

    name: str
    fmt: str
    routes: list[Route]
    idle_timeout: float

    async def handle(self, request: web.BaseRequest, route: Route, params: dict[str, str]) -> web.StreamResponse:
        """Answer a request matched to one of this source's routes."""
        ...

    async def preflight(self, request: web.BaseRequest) -> web.StreamResponse | None:
        """A CORS preflight answer, or None when this source has no CORS."""
        ...

    def unmatched(self, request: web.BaseRequest) -> web.StreamResponse:
        """The answer when no route matches (REST 403, HTTP API 404)."""
        ...


@dataclass
class _Guard:
    busy: int = 0
    timer: asyncio.TimerHandle | None = None


class GuardedServer(web.Server):
    """aiohttp's low-level server plus a deadline for a connection to send a whole request head (slowloris)."""

    def __init__(self, handler: Callable[[web.BaseRequest], Awaitable[web.StreamResponse]],
                 idle_timeout: float, **kwargs: Any) -> None:
        super().__init__(handler, keepalive_timeout=idle_timeout, **kwargs)
        self.idle_timeout = idle_timeout
        self._guards: dict[RequestHandler, _Guard] = {}

    def connection_made(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        guard = self._guards[handler] = _Guard()
        self._arm(handler, guard)

    def connection_lost(self, handler: RequestHandler, exc: BaseException | None = None) -> None:
        super().connection_lost(handler, exc)
        guard = self._guards.pop(handler, None)
        if guard is not None and guard.timer is not None:
            guard.timer.cancel()

    def started(self, handler: RequestHandler) -> None:
        """A request head arrived on ``handler``'s connection: no deadline while it is served."""
        guard = self._guards.get(handler)
        if guard is not None:
            guard.busy += 1
            if guard.timer is not None:
                guard.timer.cancel()
                guard.timer = None

    def finished(self, handler: RequestHandler) -> None:
        """A request was answered: the next head must come within the idle timeout."""
        guard = self._guards.get(handler)
        if guard is not None:
            guard.busy -= 1
            if guard.busy == 0:
                self._arm(handler, guard)

    def _arm(self, handler: RequestHandler, guard: _Guard) -> None:
        loop = asyncio.get_running_loop()
        guard.timer = loop.call_later(self.idle_timeout, self._expire, handler)

    def _expire(self, handler: RequestHandler) -> None:
        guard = self._guards.get(handler)
        if guard is not None and guard.busy == 0:
            handler.force_close()
            if handler.transport is not None:
                handler.transport.close()


@dataclass
class Listener:
    """The socket on one address and the routes of the sources attached to it."""

    address: tuple[str, int]
    active: dict[str, Api] = field(default_factory=dict)
    lingering: dict[str, Api] = field(default_factory=dict)
    router: Router = field(default_factory=lambda: Router([]))
    server: GuardedServer | None = None
    sock_server: asyncio.Server | None = None

    async def start(self, idle_timeout: float) -> None:
        """Bind and listen; OSError (port in use, bad address) propagates."""
        self.server = GuardedServer(self.dispatch, idle_timeout, access_log=None, handler_cancellation=False)
        host, port = self.address
        self.sock_server = await asyncio.get_running_loop().create_server(
            self.server, host, port, reuse_address=True, reuse_port=True, backlog=1024)

    async def close(self) -> None:
        """Stop listening and end the connections (in-flight requests get up to a second)."""
        if self.sock_server is not None:
            self.sock_server.close()
        if self.server is not None:
            await self.server.shutdown(1.0)
        if self.sock_server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.sock_server.wait_closed(), 1.0)

    def rebuild(self) -> None:
        """Swap in a router over the active sources' routes, then the lingering ones of shapes not taken."""
        entries = [(route, api) for api in self.active.values() for route in api.routes]
        taken = {route.shape for route, _ in entries}
        entries += [(route, api) for api in self.lingering.values() for route in api.routes
                    if route.shape not in taken]
        self.router = Router(entries)

    def apis(self) -> list[Api]:
        """Active sources first, then lingering ones."""
        return [*self.active.values(), *self.lingering.values()]

    async def dispatch(self, request: web.BaseRequest) -> web.StreamResponse:
        """Route one request to its source; unmatched and preflight answers come from the listener's API."""
        assert self.server is not None
        self.server.started(request.protocol)
        try:
            return await self._dispatch(request)
        finally:
            self.server.finished(request.protocol)

    async def _dispatch(self, request: web.BaseRequest) -> web.StreamResponse:
        apis = self.apis()
        if not apis:
            raise web.HTTPServiceUnavailable()
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            for api in apis:
                answer = await api.preflight(request)
                if answer is not None:
                    return answer
        found = self.router.match(request.method, decode_path(request.raw_path.split("?", 1)[0]))
        if found is None:
            return apis[0].unmatched(request)
        route, api, params = found
        return await api.handle(request, route, params)


class ListenerHub:
    """The listeners by address; sources attach their routes and detach them when they stop."""

    def __init__(self) -> None:
        self._listeners: dict[tuple[str, int], Listener] = {}
        self._expiries: set[asyncio.Task[None]] = set()
        self.log = get_logger()

    @contextlib.asynccontextmanager
    async def attach(self, address: tuple[str, int], api: Api) -> AsyncIterator[Listener]:
        """Serve ``api``'s routes on ``address`` (binding it if new) until the context ends."""
        listener = self._listeners.get(address)
        if listener is None:
            listener = Listener(address)
            await listener.start(api.idle_timeout)
            self._listeners[address] = listener
        listener.lingering.pop(api.name, None)
        listener.active[api.name] = api
        listener.rebuild()
        try:
            yield listener
        finally:
            if listener.active.get(api.name) is api:
                del listener.active[api.name]
                listener.lingering[api.name] = api
                listener.rebuild()
                task = asyncio.get_running_loop().create_task(self._expire(listener, api))
                self._expiries.add(task)
                task.add_done_callback(self._expiries.discard)

    async def _expire(self, listener: Listener, api: Api) -> None:
        """After LINGER, drop ``api``'s lingering routes; the last one out closes the socket.

        Cancelled (the daemon is stopping): close at once.
        """
        try:
            await asyncio.sleep(LINGER)
        finally:
            if listener.lingering.get(api.name) is api:
                del listener.lingering[api.name]
                listener.rebuild()
            if not listener.active and not listener.lingering and self._listeners.get(listener.address) is listener:
                del self._listeners[listener.address]
                await listener.close()
                self.log.info("http.closed", address=f"{listener.address[0]}:{listener.address[1]}")
