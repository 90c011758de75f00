"""The Lambda Runtime API (/2018-06-01/runtime) served on loopback for exactly one worker process."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from bridge.http_log import server_logger
from bridge.invokers.peer import admitted
from bridge.log import get_logger

PREFIX = "/2018-06-01/runtime"
ERROR_TYPE_HEADER = "Lambda-Runtime-Function-Error-Type"
ACCEPTED_BODY = b'{"status":"OK"}'
MAX_BODY = 7 * 1024 * 1024  # Lambda's 6 MB response limit, plus room for the error envelope


@dataclass(eq=False)
class Pending:
    """One invocation handed to the worker; ``done`` resolves to (payload, function_error)."""

    request_id: str
    payload: bytes
    headers: dict[str, str]
    done: asyncio.Future[tuple[bytes, str | None]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    def settle(self, payload: bytes, function_error: str | None) -> None:
        """Resolve once; later answers (a late response after a timeout) are ignored."""
        if not self.done.done():
            self.done.set_result((payload, function_error))


class RuntimeApi:
    """An aiohttp server speaking the Runtime API to one worker: one invocation at a time."""

    def __init__(self, before_settle: Callable[[], None] = lambda: None, function: str = "") -> None:
        self.ready = asyncio.Event()  # set on the first GET next: init finished
        self.init_error: bytes | None = None
        self.init_failed = asyncio.Event()
        self.current: Pending | None = None
        # Called before a result is settled so the worker's output pipe is drained first:
        # output written before the response must belong to that invocation.
        self._before_settle = before_settle
        self._queue: asyncio.Queue[Pending | None] = asyncio.Queue()
        self._runner: web.ServerRunner | None = None
        self.address = ""
        # The pid of the worker this API serves; set right after the spawn. Only that process (or one of
        # its descendants) under our uid may connect: the port is visible to every local user.
        self.owner: int | None = None
        self.log = get_logger(function=function) if function else get_logger()

    async def start(self) -> str:
        """Listen on 127.0.0.1 on a free port; returns ``host:port`` for AWS_LAMBDA_RUNTIME_API."""
        # aiohttp's low-level server: four fixed routes need no router or middleware on this hot path.
        # As on Lambda, a result is taken as sent (no inflating on the loop); bad HTTP is one JSON line.
        server = _GuardedServer(self._admit, self._route, access_log=None, request_factory=_large_request,
                                auto_decompress=False, logger=server_logger())
        self._runner = web.ServerRunner(server, handle_signals=False, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, shutdown_timeout=0.1)
        await site.start()
        self.address = f"127.0.0.1:{self._runner.addresses[0][1]}"
        return self.address

    def _admit(self, transport: asyncio.Transport) -> bool:
        """Checked once per connection (keep-alive reuses it), before any byte of it is read."""
        local, peer = transport.get_extra_info("sockname"), transport.get_extra_info("peername")
        refused = admitted(local[:2], peer[:2], self.owner) if local and peer else "no peer address"
        if refused is not None:
            self.log.warning("runtime_api.refused", reason=refused, peer_port=peer[1] if peer else None)
        return refused is None

    async def _route(self, request: web.BaseRequest) -> web.StreamResponse:
        parts = request.path.removeprefix(PREFIX).split("/")
        if request.method == "GET" and parts[1:] == ["invocation", "next"]:
            return await self._next()
        is_result = len(parts) == 4 and parts[1] == "invocation" and parts[3] in ("response", "error")
        if request.method == "POST" and is_result:
            return await self._settle(request, parts[2], None if parts[3] == "response" else "Unhandled")
        if request.method == "POST" and parts[1:] == ["init", "error"]:
            return await self._init_error(request)
        return _runtime_error(404, "InvalidRequest", f"no route for {request.method} {request.path}")

    async def stop(self) -> None:
        """Close the listener and any long-poll still open."""
        if self._runner is not None:
            self._queue.put_nowait(None)  # release a long-poll still waiting, so no handler task is left behind
            await self._runner.cleanup()
            self._runner = None

    def hand_over(self, pending: Pending) -> None:
        """Queue the invocation for the worker's next ``GET invocation/next``."""
        self._queue.put_nowait(pending)

    async def _next(self) -> web.Response:
        self.ready.set()
        pending = await self._queue.get()
        if pending is None:
            return _runtime_error(410, "Runtime.Stopped", "this execution environment is shutting down")
        self.current = pending
        return web.Response(body=pending.payload, headers=pending.headers, content_type="application/json")

    async def _settle(self, request: web.BaseRequest, rid: str, function_error: str | None) -> web.Response:
        body = await request.read()
        pending = self.current
        if pending is None or pending.request_id != rid:
            return _runtime_error(400, "InvalidRequestID", "no invocation with that request id is running")
        self.current = None
        self._before_settle()
        pending.settle(body, function_error)
        return _accepted()

    async def _init_error(self, request: web.BaseRequest) -> web.Response:
        self.init_error = await request.read()
        self.init_failed.set()
        return _accepted()


class _GuardedServer(web.Server):
    """aiohttp's low-level server that drops every connection ``admit`` refuses, as soon as it is accepted."""

    def __init__(self, admit: Callable[[asyncio.Transport], bool], *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._admit = admit

    def connection_made(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        """Register the connection, then abort it unless admitted (nothing has been read from it yet)."""
        super().connection_made(handler, transport)
        if not self._admit(transport):
            transport.abort()


def _large_request(message: Any, payload: Any, protocol: Any, writer: Any, task: Any) -> web.BaseRequest:
    """Requests that may carry a full 6 MB Lambda response (aiohttp's default cap is 1 MB)."""
    return web.BaseRequest(message, payload, protocol, writer, task, task.get_loop(), client_max_size=MAX_BODY)


def _accepted() -> web.Response:
    return web.Response(status=202, body=ACCEPTED_BODY, content_type="application/json")


def _runtime_error(status: int, error_type: str, message: str) -> web.Response:
    return web.json_response({"errorType": error_type, "errorMessage": message}, status=status)
