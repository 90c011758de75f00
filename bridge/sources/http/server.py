"""One listener per address, shared by the http sources on it; routes swap atomically, so reloads drop nothing.

The hub owns the listeners. Before the sources start, and before a reload stops any, ``claim`` binds every
address the new config needs, so that a taken port refuses the start or the reload before anything changed,
and records which sources each address expects. A source attaches its routes when it runs and detaches them
when it stops:

- a source expected back (a reload changed it) keeps its old routes answering until its new generation
  attaches, so a request that arrives in the stop -> start gap still finds its route;
- a source not expected back (a reload removed it) takes its routes away at once: new requests get the
  unmatched answer (REST 403, HTTP API 404), in-flight ones finish;
- a listener left with no source, and none expected, stops listening at once (connection refused) and lets
  its in-flight requests finish in the background (at most ``grace`` seconds: its sources' longest timeout).

The socket is bound exclusively (SO_REUSEADDR, no SO_REUSEPORT): with SO_REUSEPORT another program of the
same user (a second daemon on the default port) could bind the port too, and the kernel would split the
connections between the two. Why not a new socket per source generation: connections queued on the closing
socket are reset.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from bridge.http_log import server_logger
from bridge.log import get_logger
from bridge.sources.http.events import decode_path
from bridge.sources.http.routes import Route, Router

HUB = "http.listeners"  # ctx.extensions key of the shared ListenerHub
LINGER = 5.0  # at most this long a changed source's old routes answer while its new generation has not attached
KEEPALIVE_CAP = 300.0  # aiohttp's own idle limit; the guard closes idle connections at header_timeout, sooner


class Api(Protocol):
    """What a listener needs from a source: its routes and how it answers a matched / unmatched request."""

    name: str
    fmt: str
    routes: list[Route]

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
        # auto_decompress=False: API Gateway hands the function the body as sent, Content-Encoding and all; and
        # inflating it here would let a small gzip bomb hold the event loop. The logger turns aiohttp's reports
        # of malformed HTTP into one JSON line each (never a traceback).
        super().__init__(handler, keepalive_timeout=KEEPALIVE_CAP, auto_decompress=False, logger=server_logger(),
                         **kwargs)
        self.idle_timeout = idle_timeout  # a reload may change it: the next deadline armed uses the new value
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


@dataclass(frozen=True)
class Claim:
    """What the config wants of one address: the sources on it and its listener-level settings."""

    names: frozenset[str]
    idle_timeout: float  # the sources' header_timeout (one value per address, see config.check)
    grace: float  # how long in-flight requests may take when the listener closes: the longest source timeout


class AddressTaken(Exception):
    """An address could not be listened on; ``claim`` changed nothing."""

    def __init__(self, address: tuple[str, int], error: OSError) -> None:
        super().__init__(f"{address[0]}:{address[1]}: {error}")
        self.address, self.error = address, error


@dataclass
class Listener:
    """The socket on one address and the routes of the sources attached to it."""

    address: tuple[str, int]
    idle_timeout: float
    grace: float = 29.0
    active: dict[str, Api] = field(default_factory=dict)
    lingering: dict[str, Api] = field(default_factory=dict)
    router: Router = field(default_factory=lambda: Router([]))
    server: GuardedServer | None = None
    sock_server: asyncio.Server | None = None
    _timers: dict[str, asyncio.TimerHandle] = field(default_factory=dict)

    async def start(self) -> None:
        """Bind and listen; OSError (port in use, bad address) propagates."""
        self.server = GuardedServer(self.dispatch, self.idle_timeout, access_log=None, handler_cancellation=False)
        host, port = self.address
        self.sock_server = await asyncio.get_running_loop().create_server(
            self.server, host, port, reuse_address=True, backlog=1024)

    def configure(self, claim: Claim) -> None:
        """Take a (re)loaded config's listener-level settings."""
        self.idle_timeout, self.grace = claim.idle_timeout, claim.grace
        if self.server is not None:
            self.server.idle_timeout = claim.idle_timeout

    def stop_listening(self) -> None:
        """Close the listening socket: new connections are refused from now on."""
        if self.sock_server is not None:
            self.sock_server.close()

    async def close(self) -> None:
        """Stop listening now; in-flight requests get up to ``grace`` seconds, idle connections close."""
        self.stop_listening()
        if self.server is not None:
            await self.server.shutdown(self.grace)
        if self.sock_server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.sock_server.wait_closed(), 1.0)

    def linger(self, api: Api, timer: asyncio.TimerHandle) -> None:
        """Keep a stopped source's routes answering (until ``unlinger`` or the timer)."""
        self.unlinger(api.name)
        self.lingering[api.name] = api
        self._timers[api.name] = timer

    def unlinger(self, name: str) -> None:
        """Drop a lingering source's routes from the next rebuild on."""
        self.lingering.pop(name, None)
        timer = self._timers.pop(name, None)
        if timer is not None:
            timer.cancel()

    @property
    def empty(self) -> bool:
        """No routes at all: neither an attached source nor a lingering one."""
        return not self.active and not self.lingering

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
        path = decode_path(request.raw_path.split("?", 1)[0])
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            answer = await self._preflight(request, path, apis)
            if answer is not None:
                return answer
        found = self.router.match(request.method, path)
        if found is None:
            return apis[0].unmatched(request)
        route, api, params = found
        return await api.handle(request, route, params)

    async def _preflight(self, request: web.BaseRequest, path: str, apis: list[Api]) -> web.StreamResponse | None:
        """The CORS of the source whose route the preflighted request would reach; for a path no route
        matches, the first source's with CORS (an HTTP API answers preflights on any path)."""
        found = self.router.match(request.headers["Access-Control-Request-Method"].strip().upper(), path)
        for api in ([found[1]] if found is not None else apis):
            answer = await api.preflight(request)
            if answer is not None:
                return answer
        return None


class ListenerHub:
    """The listeners by address; sources attach their routes and detach them when they stop."""

    def __init__(self) -> None:
        self._listeners: dict[tuple[str, int], Listener] = {}
        self._expected: dict[tuple[str, int], frozenset[str]] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self.log = get_logger()

    def addresses(self) -> list[tuple[str, int]]:
        """The addresses listened on now."""
        return list(self._listeners)

    async def claim(self, wanted: dict[tuple[str, int], Claim]) -> None:
        """Listen on every wanted address (binding the new ones) and expect its sources; release the others.

        Raises AddressTaken, having changed nothing, when a new address cannot be bound. An empty ``wanted``
        once every source stopped (the daemon is stopping) closes every listener and waits while in-flight
        requests finish (a reload never waits here: its stopped sources' listeners close in the background).
        """
        opened: list[Listener] = []
        for address, claim in wanted.items():
            if address not in self._listeners:
                try:
                    opened.append(await self._open(address, claim))
                except OSError as err:
                    for listener in opened:
                        await listener.close()
                    raise AddressTaken(address, err) from None
        for listener in opened:
            self._listeners[listener.address] = listener
            self.log.info("http.listening", address=_text(listener.address))
        for address, claim in wanted.items():
            self._listeners[address].configure(claim)
        self._expected = {address: claim.names for address, claim in wanted.items()}
        for listener in list(self._listeners.values()):
            self._drop_unexpected(listener)
            self._settle(listener)
        if not wanted and not any(listener.active for listener in self._listeners.values()):
            await asyncio.gather(*self._closing, return_exceptions=True)

    @staticmethod
    async def _open(address: tuple[str, int], claim: Claim) -> Listener:
        listener = Listener(address, claim.idle_timeout, claim.grace)
        await listener.start()
        return listener

    @contextlib.asynccontextmanager
    async def attach(self, address: tuple[str, int], api: Api, claim: Claim) -> AsyncIterator[Listener]:
        """Serve ``api``'s routes on ``address`` until the context ends (binding it if nothing claimed it)."""
        listener = self._listeners.get(address)
        if listener is None:
            listener = self._listeners[address] = await self._open(address, claim)
            self._expected[address] = self._expected.get(address, frozenset()) | {api.name}
        listener.unlinger(api.name)
        listener.active[api.name] = api
        self._drop_unexpected(listener)
        listener.rebuild()
        try:
            yield listener
        finally:
            if listener.active.get(api.name) is api:
                del listener.active[api.name]
                self._detached(listener, api)

    def _detached(self, listener: Listener, api: Api) -> None:
        """A source stopped: its routes stay while it (or, on an address left empty, a newcomer) is expected."""
        expected = self._expected.get(listener.address, frozenset())
        if api.name in expected or (expected and not listener.active):
            timer = asyncio.get_running_loop().call_later(LINGER, self._expire, listener, api)
            listener.linger(api, timer)
        listener.rebuild()
        self._settle(listener)

    def _drop_unexpected(self, listener: Listener) -> None:
        """Lingering routes of sources the config no longer has go, once another source serves the address
        (or nothing is expected on it at all)."""
        expected = self._expected.get(listener.address, frozenset())
        if listener.active or not expected:
            for name in [n for n in listener.lingering if n not in expected]:
                listener.unlinger(name)
            listener.rebuild()

    def _expire(self, listener: Listener, api: Api) -> None:
        """LINGER passed and no new generation replaced ``api`` (it failed to start): drop its routes."""
        if listener.lingering.get(api.name) is api:
            listener.unlinger(api.name)
            listener.rebuild()
            self._settle(listener)

    def _settle(self, listener: Listener) -> None:
        """A listener with no routes that expects no source stops listening now; in-flight requests finish."""
        if listener.empty and not self._expected.get(listener.address) and \
                self._listeners.get(listener.address) is listener:
            del self._listeners[listener.address]
            listener.stop_listening()
            task = asyncio.get_running_loop().create_task(self._close(listener))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def _close(self, listener: Listener) -> None:
        await listener.close()
        self.log.info("http.closed", address=_text(listener.address))


def _text(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
