"""The status page's routes: the static page, its JSON (overview, dead letters, log lines) and its actions."""

from __future__ import annotations

import asyncio
import json
import re
from importlib import resources
from typing import TYPE_CHECKING, Any

from aiohttp import web

from bridge.delivery import deadletters
from bridge.errors import BridgeError
from bridge.events import payload as bounded_json
from bridge.function_logs import history, log_path
from bridge.log import get_logger
from bridge.ui.guard import SECURITY_HEADERS, Guard, deny
from bridge.ui.recent import Recent

if TYPE_CHECKING:
    from bridge.daemon.service import Service

ASSETS = {"/": ("index.html", "text/html"), "/ui/app.js": ("app.js", "text/javascript"),
          "/ui/app.css": ("app.css", "text/css")}
LIST_LIMIT = 200  # dead letters on the page (the newest; the count says how many there are)
LOG_LINES = 1000  # a request's log lines on the page
MAX_IDS = 1000  # entries one action may name
DONE = {"redrive": "redriven", "purge": "purged"}
REQUEST_ID = re.compile(r"^[A-Za-z0-9-]{1,64}$")


class StatusPage:
    """The page on api.listen (``/``) and everything it reads and does."""

    def __init__(self, service: Service, ops: Any, recent: Recent) -> None:
        self.service, self.ops, self.recent = service, ops, recent
        self.guard = Guard(service.config.api)
        self.assets = {path: (resources.files("bridge.ui").joinpath("static", name).read_bytes(), kind)
                       for path, (name, kind) in ASSETS.items()}
        self.log = get_logger()

    def add_routes(self, app: web.Application) -> None:
        """Register the page, its JSON and its actions, and the guard in front of them."""
        # Outermost: ``GET /`` is S3's ListBuckets too (bridge.s3api); a browser, which asks for HTML, gets the page.
        app.middlewares.insert(0, self.front_page)
        app.middlewares.append(self.guard.middleware)
        for path in ASSETS:
            if path != "/":
                app.router.add_get(path, self.asset)
        app.router.add_post("/ui/login", self.login)
        app.router.add_get("/ui/api/session", self.session)
        app.router.add_get("/ui/api/overview", self.overview)
        app.router.add_get("/ui/api/dead-letters", self.dead_letters)
        app.router.add_get("/ui/api/dead-letters/{id}", self.dead_letter)
        app.router.add_get("/ui/api/logs", self.logs)
        app.router.add_post("/ui/api/dead-letters/{action:redrive|purge}", self.act)

    @property
    def write(self) -> bool:
        """api.ui.write: redrive and purge allowed from the page."""
        return self.service.config.api.ui.write

    async def asset(self, request: web.Request) -> web.Response:
        """The page and its script and style sheet (no data in them: they load it from /ui/api/)."""
        body, kind = self.assets[request.path]
        return web.Response(body=body, content_type=kind, charset="utf-8", headers=SECURITY_HEADERS)

    @web.middleware
    async def front_page(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """The page at ``/`` for a request that accepts HTML; any other request to ``/`` goes on (S3, or 404)."""
        if request.path == "/" and request.method in ("GET", "HEAD") and "text/html" in request.headers.get(
                "Accept", ""):
            return await self.asset(request)
        return await handler(request)

    async def login(self, request: web.Request) -> web.Response:
        """Trade api.token for an authenticated session cookie."""
        body = await _json_body(request)
        token = body.get("token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not self.guard.token_ok(token):
            self.log.warning("ui.login_refused", remote=request.remote)
            return deny(401, "Unauthorized", "wrong token: it is api.token in the daemon's config")
        sid, _ = self.guard.new_session(authenticated=True)
        response = _json({"ok": True})
        self.guard.set_cookie(response, sid)
        return response

    async def session(self, request: web.Request) -> web.Response:
        """The session's CSRF token and what the page may do (opens a session on first use)."""
        session, sid = self.guard.session(request), None
        if session is None:
            sid, session = self.guard.new_session(authenticated=self.guard.bearer_ok(request))
        response = _json({"csrf": session.csrf, "write": self.write, "needs_token": self.guard.needs_token})
        if sid is not None:
            self.guard.set_cookie(response, sid)
        return response

    async def overview(self, request: web.Request) -> web.Response:
        """The status report, each function's p50/p99, the chart's samples and the recent failures."""
        report = await self.ops.report()
        for fn in report["functions"]:
            fn.update(self.recent.percentiles(fn["name"]))
        return _json({**report, "chart": self.recent.chart(), "failures": list(self.recent.failures),
                      "write": self.write, "cluster": self.service.config.cluster is not None})

    async def dead_letters(self, request: web.Request) -> web.Response:
        """The newest dead letters (``?function=NAME`` for one function's), without their records."""
        function = request.query.get("function") or None
        entries, total = await self.service.store.call(
            lambda conn: deadletters.latest(conn, function, LIST_LIMIT), durable=False)
        return _json({"total": total, "entries": [_row(e) for e in entries]})

    async def dead_letter(self, request: web.Request) -> web.Response:
        """One dead letter with its AWS invocation record."""
        entry_id = request.match_info["id"]
        try:
            entry = await self.service.store.call(lambda conn: deadletters.get_entry(conn, entry_id), durable=False)
        except BridgeError as err:
            return deny(404, "NotFound", str(err))
        return _json(entry.to_json())

    async def logs(self, request: web.Request) -> web.Response:
        """A function's log lines of one request id (``?function=NAME&request_id=ID``)."""
        function, request_id = request.query.get("function", ""), request.query.get("request_id", "")
        if function not in self.service.config.functions or not REQUEST_ID.match(request_id):
            return deny(404, "NotFound", "no such function or request id")
        path = log_path(self.service.config.state_dir, function)
        lines = await asyncio.to_thread(_request_lines, path, request_id)
        return _json({"function": function, "request_id": request_id, "lines": lines})

    async def act(self, request: web.Request) -> web.Response:
        """Redrive or purge the dead letters named in ``{"ids": [...]}`` (write on, CSRF token right)."""
        action = request.match_info["action"]
        refused = None if self.write and self.guard.bearer_ok(request) else (
            self.guard.action_refusal(request, self.write))
        if refused is not None:
            self.log.warning("ui.action_refused", action=action, status=refused.status, remote=request.remote)
            return refused
        ids = _ids(await _json_body(request))
        if ids is None:
            self.log.warning("ui.bad_request", action=action, remote=request.remote)
            return deny(400, "BadRequest", f'expected {{"ids": [ID, ...]}} with 1-{MAX_IDS} dead-letter ids')
        try:
            done = await (self._redrive(ids) if action == "redrive" else self._purge(ids))
        except BridgeError as err:
            return deny(404, "NotFound", str(err))
        self.log.info(f"ui.{action}", ids=ids, count=done)
        return _json({DONE[action]: done})

    async def _entries(self, ids: list[str]) -> list[Any]:
        store = self.service.store
        return await store.call(lambda conn: [deadletters.get_entry(conn, i) for i in ids], durable=False)

    async def _redrive(self, ids: list[str]) -> int:
        """Through the dispatcher: the events are counted in the queue and their lanes woken at once."""
        entries = await self._entries(ids)
        events = deadletters.redrive_events(entries)
        await self.service.dispatcher.accept_many(events, also=lambda conn: deadletters.mark_redriven(conn, entries))
        return len(events)

    async def _purge(self, ids: list[str]) -> int:
        entries = await self._entries(ids)
        return await self.service.store.call(lambda conn: deadletters.purge(conn, entries), grows=False)


def _request_lines(path: Any, request_id: str) -> list[dict[str, str]]:
    found = []
    for entry in history(path) if path.exists() else ():
        if entry.request_id == request_id:
            found.append({"time": entry.time, "text": entry.text})
            if len(found) >= LOG_LINES:
                break
    return found


def _row(entry: Any) -> dict[str, Any]:
    """A dead letter as the list shows it: the record stays behind (``show`` fetches it)."""
    payload = entry.record.get("responsePayload")
    error = entry.reason
    if isinstance(payload, dict) and "errorMessage" in payload:
        error = f"{payload.get('errorType', 'Error')}: {payload['errorMessage']}"
    return {"id": entry.id, "function": entry.function, "time": entry.to_json()["time"],
            "condition": entry.condition, "error": str(error)[:300],
            "attempts": entry.record.get("requestContext", {}).get("approximateInvokeCount")}


def _ids(body: Any) -> list[str] | None:
    ids = body.get("ids") if isinstance(body, dict) else None
    if not isinstance(ids, list) or not 0 < len(ids) <= MAX_IDS:
        return None
    if not all(isinstance(i, str) and 0 < len(i) <= 128 for i in ids):
        return None
    return list(dict.fromkeys(ids))


async def _json_body(request: web.Request) -> Any:
    try:
        return await request.json(loads=_loads)
    except ValueError:
        return None


def _loads(text: str) -> Any:
    return bounded_json.loads(text)


def _dumps(value: Any) -> str:
    return json.dumps(value, default=str)


def _json(value: Any) -> web.Response:
    return web.json_response(value, dumps=_dumps, headers=SECURITY_HEADERS)
