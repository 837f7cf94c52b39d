"""Who is asking, and may they: bearer tokens, the dashboard's session, CSRF, rate limits.

* API clients send ``Authorization: Bearer fst_…``. Scopes are ordered
  read < write < admin (:class:`~flagstaff.http.tokens.Scope`).
* The dashboard logs in with a token once (``GET /login?token=…``, the link
  ``flagstaff serve --login-link`` prints, or the form ``POST /login``) and then
  carries the cookie ``flagstaff_session``: HttpOnly, SameSite=Strict, signed with
  a secret kept in the token database, naming the token it was opened with. The
  token is looked up again on every request, so revoking it ends its sessions.
* Unsafe requests (POST, PUT, PATCH, DELETE) authenticated by the cookie must
  carry ``X-CSRF-Token`` equal to :func:`csrf_token` (pages put it in
  ``<meta name="csrf-token">``) and, if the browser sends ``Origin``, a same-origin
  one. Bearer requests need neither: a browser never adds that header by itself.
* A client address that fails authentication too often (bad token, forged
  cookie) gets 429 for a while, even with a good token, so guessing is slow.
* Open mode (``flagstaff serve --open``, loopback only) lets requests from
  loopback addresses in as admin without a token.

Page handlers call :func:`require`; a 401 on a GET that accepts HTML is turned
into a redirect to ``/login`` by the app's error handler.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import html
import ipaddress
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from flagstaff.http.tokens import Scope, TokenInfo

if TYPE_CHECKING:
    from flagstaff.http.app import ServerState

__all__ = ["COOKIE", "Principal", "RateLimiter", "csrf_token", "require", "routes"]

COOKIE = "flagstaff_session"
SESSION_SECONDS = 12 * 3600
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: a token's name and id, and what it may do."""

    name: str
    token_id: str | None  # None in open mode
    scope: Scope
    via: str  # "bearer", "session" or "open"

    @classmethod
    def of(cls, token: TokenInfo, via: str) -> Principal:
        return cls(token.name, token.id, token.scope, via)


class RateLimiter:
    """At most ``limit`` failed attempts per client address within ``window`` seconds."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._lock = threading.Lock()
        self._failures: dict[str, collections.deque[float]] = {}

    def blocked(self, address: str) -> float:
        """Seconds until ``address`` may try again (0: it may now)."""
        now = time.monotonic()
        with self._lock:
            times = self._failures.get(address)
            if times is None:
                return 0.0
            while times and times[0] <= now - self.window:
                times.popleft()
            if not times:
                del self._failures[address]
                return 0.0
            return times[0] + self.window - now if len(times) >= self.limit else 0.0

    def fail(self, address: str) -> None:
        with self._lock:
            if len(self._failures) > 100_000:  # a flood of addresses: forget the oldest
                self._failures.pop(next(iter(self._failures)))
            self._failures.setdefault(address, collections.deque()).append(time.monotonic())


def _state(request: Request) -> ServerState:
    state: ServerState = request.app.state.flagstaff
    return state


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return address == "localhost"


def require(request: Request, scope: Scope = Scope.READ) -> Principal:
    """The caller, if authenticated with at least ``scope``.

    Raises ``HTTPException`` 401 (no or bad credentials), 403 (scope too low,
    or a cookie-authenticated unsafe request without a valid CSRF token or from
    another origin) or 429 (too many failed attempts from this address).
    """
    principal: Principal | None = getattr(request.state, "principal", None)
    if principal is None:
        principal = authenticate(request)
        request.state.principal = principal
    if principal.scope < scope:
        raise HTTPException(
            403, f"this needs a {scope.label} token; {principal.name!r} has {principal.scope.label}"
        )
    return principal


def authenticate(request: Request) -> Principal:
    state = _state(request)
    address = client_address(request)
    header = request.headers.get("authorization")
    cookie = request.cookies.get(COOKIE)
    if header is None and cookie is None:
        if state.open_mode and is_loopback(address):
            return Principal("open mode", None, Scope.ADMIN, "open")
        raise HTTPException(401, "a token is needed: Authorization: Bearer <token>", _CHALLENGE)
    wait = state.limiter.blocked(address)
    if wait > 0:
        raise HTTPException(
            429, "too many failed attempts; try again later", {"Retry-After": str(int(wait) + 1)}
        )
    if header is not None:
        kind, _, token = header.partition(" ")
        info = state.tokens.verify(token.strip()) if kind.lower() == "bearer" else None
        if info is None:
            _failed(state, address)
            raise HTTPException(401, "invalid, malformed or revoked token", _CHALLENGE)
        state.tokens.touch(info.id)
        return Principal.of(info, "bearer")
    assert cookie is not None
    info = _session_token(state, cookie)
    if info is None:
        _failed(state, address)
        raise HTTPException(401, "the session has expired or was revoked: log in again", _CHALLENGE)
    if request.method in UNSAFE:
        _check_csrf(request, state, cookie)
    return Principal.of(info, "session")


_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def _failed(state: ServerState, address: str) -> None:
    state.limiter.fail(address)
    state.metrics.inc("flagstaff_auth_failures_total")


def _check_csrf(request: Request, state: ServerState, cookie: str) -> None:
    sent = request.headers.get("x-csrf-token", "")
    if not hmac.compare_digest(sent, _csrf_for(state, cookie)):
        raise HTTPException(403, "missing or wrong X-CSRF-Token header")
    origin = request.headers.get("origin")
    if origin is not None and not same_origin(request, origin):
        raise HTTPException(403, f"cross-origin request from {origin!r} refused")


def same_origin(request: Request, origin: str) -> bool:
    parts = urlsplit(origin)
    host = request.headers.get("host", "")
    return parts.netloc == host and parts.scheme == request.url.scheme


# --------------------------------------------------------------------------- session cookie


def _sign(state: ServerState, text: str) -> str:
    return hmac.new(state.secret, text.encode(), hashlib.sha256).hexdigest()


def make_session(state: ServerState, token_id: str) -> str:
    body = f"{token_id}.{int(time.time()) + SESSION_SECONDS}"
    return f"{body}.{_sign(state, body)}"


def _session_token(state: ServerState, cookie: str) -> TokenInfo | None:
    body, _, signature = cookie.rpartition(".")
    token_id, _, expires = body.partition(".")
    if not hmac.compare_digest(signature, _sign(state, body)) or not expires.isdigit():
        return None
    if int(expires) < time.time():
        return None
    info = state.tokens.get(token_id)
    return info if info is not None and info.active else None


def _csrf_for(state: ServerState, cookie: str) -> str:
    return _sign(state, "csrf:" + cookie)[:32]


def csrf_token(request: Request) -> str:
    """The CSRF token of the request's session ("" without one), for page templates."""
    cookie = request.cookies.get(COOKIE)
    if cookie is None:
        cookie = getattr(request.state, "new_session", None)
    return "" if cookie is None else _csrf_for(_state(request), cookie)


# --------------------------------------------------------------------------- login / logout


def _root(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/") + "/"


_LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>flagstaff: log in</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body><main><h1>flagstaff</h1>{message}
<form method="post" action="{action}">
<label for="token">API token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required>
<button type="submit">Log in</button>
</form>
<p>Create a token with <code>flagstaff token create NAME --scope write</code>.</p>
</main></body></html>
"""


def _login_page(request: Request, message: str = "", status: int = 200) -> HTMLResponse:
    note = f'<p role="alert">{html.escape(message)}</p>' if message else ""
    action = html.escape(str(request.scope.get("root_path", "")) + "/login")
    return HTMLResponse(_LOGIN_PAGE.format(message=note, action=action), status)


def _log_in(request: Request, token: str) -> Response:
    state = _state(request)
    address = client_address(request)
    wait = state.limiter.blocked(address)
    if wait > 0:
        page = _login_page(request, "Too many failed attempts; try again later.", 429)
        page.headers["Retry-After"] = str(int(wait) + 1)
        return page
    info = state.tokens.verify(token.strip())
    if info is None:
        _failed(state, address)
        return _login_page(request, "That token is not valid (unknown, malformed or revoked).", 401)
    session = make_session(state, info.id)
    response = RedirectResponse(_root(request), status_code=303)
    response.set_cookie(
        COOKIE,
        session,
        max_age=SESSION_SECONDS,
        path=_root(request),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


async def login_get(request: Request) -> Response:
    token = request.query_params.get("token")
    if token is None:
        return _login_page(request)
    return _log_in(request, token)


async def login_post(request: Request) -> Response:
    origin = request.headers.get("origin")
    if origin is not None and origin != "null" and not same_origin(request, origin):
        raise HTTPException(403, f"cross-origin login from {origin!r} refused")
    body = await request.body()
    if len(body) > 4096:
        raise HTTPException(413, "login form too large")
    fields = parse_qs(body.decode("utf-8", "replace"))
    return _log_in(request, (fields.get("token") or [""])[0])


async def logout(request: Request) -> Response:
    cookie = request.cookies.get(COOKIE)
    if cookie is not None:
        # A form post cannot set a header: accept the CSRF token as a form field too.
        body = await request.body()
        sent = (
            request.headers.get("x-csrf-token")
            or (parse_qs(body.decode("utf-8", "replace")).get("csrf_token") or [""])[0]
        )
        if not hmac.compare_digest(sent, _csrf_for(_state(request), cookie)):
            raise HTTPException(403, "missing or wrong CSRF token")
    response = RedirectResponse(_root(request) + "login", status_code=303)
    response.delete_cookie(COOKIE, path=_root(request), httponly=True, samesite="strict")
    return response


def routes() -> list[BaseRoute]:
    return [
        Route("/login", login_get, methods=["GET"]),
        Route("/login", login_post, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
    ]
