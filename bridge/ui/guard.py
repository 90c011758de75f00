"""Who may see the status page and act from it: api.token off loopback, a session cookie, per-session CSRF tokens."""

from __future__ import annotations

import hmac
import ipaddress
import secrets
import socket
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

from bridge.config.model import ApiConfig

COOKIE = "lb_session"
CSRF_HEADER = "X-CSRF-Token"
SESSIONS = 256  # sessions kept (the oldest is forgotten first: its page asks for the token again)
PAGE_DATA = "/ui/api/"  # the page's data and actions; its static files hold no data
# What `lambda-bridge status` reads: it sends the token when the config has one; without one it stays open.
STATUS = "/bridge/status"
# A strict policy: scripts and styles only from this origin (no inline code, no eval), nothing framed.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                    "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY", "Cache-Control": "no-store"}
LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def is_loopback(host: str) -> bool:
    """True when every address ``host`` names is a loopback one (an unspecified 0.0.0.0 is not)."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback for info in infos)


@dataclass
class Session:
    """One browser's session: its CSRF token, and whether it showed the api.token."""

    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    authenticated: bool = False


class Guard:
    """Decides each request to the page's data and actions; owns the sessions (in memory, bounded)."""

    def __init__(self, api: ApiConfig) -> None:
        self.api = api
        host = api.address[0] if api.address else "127.0.0.1"
        self.loopback = is_loopback(host)
        self.hosts = {host.lower(), *LOOPBACK_NAMES, "127.0.0.1", "::1"}
        self.sessions: OrderedDict[str, Session] = OrderedDict()

    @property
    def token(self) -> str | None:
        """api.token, or None when the config sets none."""
        return self.api.token.get_secret_value() if self.api.token is not None else None

    @property
    def needs_token(self) -> bool:
        """A token is asked for when the config sets one, and always off loopback."""
        return self.token is not None or not self.loopback

    def session(self, request: web.Request) -> Session | None:
        """The request's session, by its cookie."""
        sid = request.cookies.get(COOKIE)
        return self.sessions.get(sid) if sid else None

    def new_session(self, authenticated: bool) -> tuple[str, Session]:
        """A new session and its id (the oldest session is forgotten past SESSIONS)."""
        sid, session = secrets.token_urlsafe(32), Session(authenticated=authenticated)
        self.sessions[sid] = session
        while len(self.sessions) > SESSIONS:
            self.sessions.popitem(last=False)
        return sid, session

    @staticmethod
    def set_cookie(response: web.StreamResponse, sid: str) -> None:
        """The session id as an HttpOnly, SameSite=Strict cookie: scripts cannot read it, other sites not send it."""
        response.set_cookie(COOKIE, sid, httponly=True, samesite="Strict", path="/")

    def bearer_ok(self, request: web.Request) -> bool:
        """An ``Authorization: Bearer`` header carrying api.token (compared in constant time)."""
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        token = self.token
        return token is not None and scheme.lower() == "bearer" and hmac.compare_digest(given.strip(), token)

    def token_ok(self, given: str) -> bool:
        """``given`` is api.token."""
        token = self.token
        return token is not None and hmac.compare_digest(given, token)

    def refusal(self, request: web.Request) -> web.Response | None:
        """Why the request may not read the page's data (a 401 / 403 JSON answer), or None when it may."""
        if not self.needs_token:
            if self._host(request) not in self.hosts:  # a DNS-rebound name reaching a loopback daemon
                return deny(403, "Forbidden", "the status page answers on loopback names only (Host header)")
            return None
        if self.token is None:
            return deny(403, "Forbidden", f"api.listen {self.api.listen} is not a loopback address and the config "
                        "sets no api.token: set api.token to open the status page")
        session = self.session(request)
        if self.bearer_ok(request) or (session is not None and session.authenticated):
            return None
        return deny(401, "Unauthorized", "this page needs the api.token: sign in, or send "
                    "'Authorization: Bearer TOKEN'")

    def action_refusal(self, request: web.Request, write: bool) -> web.Response | None:
        """Why a redrive or purge is refused: write off (always 403), no session, or a wrong CSRF token."""
        if not write:
            return deny(403, "Forbidden", "actions from the status page are off: set api.ui.write: true")
        session = self.session(request)
        given = request.headers.get(CSRF_HEADER, "")
        if session is None or not hmac.compare_digest(given, session.csrf):
            return deny(403, "Forbidden", f"missing or wrong {CSRF_HEADER}: reload the page")
        return None

    @staticmethod
    def _host(request: web.Request) -> str:
        host = request.host.lower()
        if host.startswith("["):
            return host[1:].partition("]")[0]
        return host.rpartition(":")[0] if host.count(":") == 1 else host

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Refuse unauthorised reads of the page's data, and of /bridge/status when api.token is set."""
        refused = None
        if request.path.startswith(PAGE_DATA):
            refused = self.refusal(request)
        elif request.path == STATUS and self.token is not None and not self.bearer_ok(request):
            refused = deny(401, "Unauthorized", "/bridge/status needs 'Authorization: Bearer TOKEN' (api.token)")
        return refused if refused is not None else await handler(request)


def deny(status: int, error: str, message: str) -> web.Response:
    """A refusal the page (and curl) can read."""
    return web.json_response({"error": error, "message": message}, status=status, headers=SECURITY_HEADERS)
