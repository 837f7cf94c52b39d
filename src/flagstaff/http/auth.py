"""Who is asking, and may they: bearer tokens, the dashboard's session, CSRF, rate limits.

* API clients send ``Authorization: Bearer fst_…``. Token scopes are ordered
  read < write < approve < admin (:class:`~flagstaff.http.roles.Permission`, the one
  place the levels are defined).
* The dashboard logs in with a token once (``GET /login?token=…``, the link
  ``flagstaff serve --login-link`` prints, or the form ``POST /login``) and then
  carries the cookie ``flagstaff_session``: HttpOnly, SameSite=Strict, a random
  secret whose hash is a session row in the token database (with an expiry, ended
  server-side by logging out). The session's token is looked up again on every
  request, so revoking it ends its sessions. A login link's token is used up by
  that exchange and expires by itself (``Settings.login_link_seconds``).
* Unsafe requests (POST, PUT, PATCH, DELETE) authenticated by the cookie must
  carry ``X-CSRF-Token`` equal to :func:`csrf_token` (pages put it in
  ``<meta name="csrf-token">``) and, if the browser sends ``Origin``, a same-origin
  one. Bearer requests need neither: a browser never adds that header by itself.
  ``Origin: null`` (a sandboxed frame, a file: page) is refused on every unsafe request.
* Failed attempts (bad token, forged cookie) are counted per client address (the
  socket's peer unless ``--forwarded-allow-ips`` names trusted proxies) and in
  total. Past either limit, failed attempts are answered 429 only after a delay
  shared by all clients, so guessing is slow however many addresses or headers an
  attacker uses; a valid credential is never refused, so nobody can lock others out.
* Insecure mode (``flagstaff serve --insecure-no-auth``) admits as admin, without a
  token, a request whose socket peer is loopback and that shows no sign of coming
  through a proxy or a browser on another site (:func:`insecure_local`).

Page handlers call :func:`require`; a 401 on a GET that accepts HTML is turned
into a redirect to ``/login`` by the app's error handler.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import html
import ipaddress
from typing import NoReturn
from urllib.parse import parse_qs, urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from flagstaff.http.environments import BASE_KEY, DEFAULT, ENV_KEY
from flagstaff.http.state import ServerState, state_of
from flagstaff.http.tokens import Permission, Principal
from flagstaff.http.users import SESSION_PREFIX

__all__ = [
    "COOKIE",
    "Principal",
    "base_path",
    "csrf_token",
    "identify",
    "insecure_local",
    "login_page",
    "require",
    "routes",
    "session_response",
]

COOKIE = "flagstaff_session"
SESSION_SECONDS = 12 * 3600
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Headers a proxy adds: a request carrying any of them did not come straight from a local program.
FORWARDING_HEADERS = frozenset(
    {"forwarded", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "x-forwarded-port",
     "x-forwarded-prefix", "x-forwarded-server", "x-real-ip", "x-client-ip", "true-client-ip", "via"}
)  # fmt: skip


class RateLimited(HTTPException):
    """429 for a failed attempt past the limits: answered after the limiter's penalty."""


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return address == "localhost"


def require(request: Request, permission: Permission = Permission.READ) -> Principal:
    """The caller, if authenticated with at least ``permission``.

    Raises ``HTTPException`` 401 (no or bad credentials), 403 (permission too low,
    or a cookie-authenticated unsafe request without a valid CSRF token or from
    another origin) or 429 (too many failed attempts from this address).
    """
    principal = identify(request)
    env = request.scope.get(ENV_KEY)
    if not isinstance(env, str) or principal.grants is None:  # one level everywhere (the common case)
        level: Permission | None = principal.scope
    else:
        level = principal.level_in(env)
    where = "" if env in (None, DEFAULT) else f" in environment {env!r}"
    if level is None:
        raise HTTPException(403, f"{principal.name!r} has no access{where}")
    if level < permission:
        if principal.via == "user":
            message = f"this needs the {permission.role} role; {principal.name!r} is {level.role}{where}"
        else:
            message = f"this needs a {permission.label} token; {principal.name!r} has {level.label}{where}"
        raise HTTPException(403, message)
    return principal if level == principal.scope else dataclasses.replace(principal, scope=level)


def identify(request: Request) -> Principal:
    """The caller with its levels in every environment (401/429 as :func:`require`), whatever
    its level in the request's environment: for answers about all of them (``GET /api/v1/envs``)."""
    principal: Principal | None = getattr(request.state, "principal", None)
    if principal is None:
        principal = authenticate(request)
        request.state.principal = principal
    return principal


def authenticate(request: Request) -> Principal:
    state = state_of(request)
    address = client_address(request)
    header = request.headers.get("authorization")
    cookie = request.cookies.get(COOKIE)
    if request.method in UNSAFE and request.headers.get("origin") == "null":
        raise HTTPException(403, "requests from an opaque origin (Origin: null) are refused")
    if header is None and cookie is None:
        if state.open_mode and insecure_local(request):
            return Principal("open mode", None, Permission.ADMIN, "open")
        raise HTTPException(401, "a token is needed: Authorization: Bearer <token>", _CHALLENGE)
    if header is not None:
        kind, _, token = header.partition(" ")
        info = state.tokens.verify(token.strip()) if kind.lower() == "bearer" else None
        if info is None:
            _failed(state, address, "invalid, malformed or revoked token")
        state.tokens.touch(info.id)
        return Principal.of(info, "bearer")
    assert cookie is not None
    if cookie.startswith(SESSION_PREFIX):  # a user's session (flagstaff.http.users)
        user = state.users.session(cookie) if state.users is not None else None
        if user is None:
            _failed(state, address, "the session has expired or was revoked: log in again")
        if request.method in UNSAFE:
            _check_csrf(request, state, cookie)
        return user.principal()
    info = state.tokens.session(cookie)
    if info is None:
        _failed(state, address, "the session has expired or was revoked: log in again")
    if request.method in UNSAFE:
        _check_csrf(request, state, cookie)
    return Principal.of(info, "session")


_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def _note_failure(state: ServerState, address: str) -> bool:
    """Count a failed attempt; whether it was past the limits (to be answered 429, late)."""
    over = state.limiter.over(address)
    state.limiter.fail(address)
    state.metrics.inc("flagstaff_auth_failures_total")
    return over


def _failed(state: ServerState, address: str, message: str) -> NoReturn:
    """Count a failed attempt and raise: 401 within the limits, 429 (after a delay) past them."""
    if _note_failure(state, address):
        wait = max(state.limiter.blocked(address), 1.0)
        raise RateLimited(
            429, "too many failed attempts; try again later", {"Retry-After": str(int(wait) + 1)}
        )
    raise HTTPException(401, message, _CHALLENGE)


def insecure_local(request: Request) -> bool:
    """Whether a request may use insecure mode: its socket peer is loopback, and nothing
    says it was relayed (no forwarding header, a loopback ``Host``) or sent by a page of
    another site (``Origin``, if any, is this server's own).

    ``scope["client"]`` is the socket's peer unless uvicorn was told to trust a proxy,
    and a proxy adds forwarding headers: so a proxy-relayed request is refused either way.
    A same-host relay that adds no header and rewrites ``Host`` to loopback cannot be told
    apart from a local program: hence the flag's name.
    """
    if not is_loopback(client_address(request)):
        return False
    if any(name in FORWARDING_HEADERS for name in request.headers):
        return False
    try:
        host = urlsplit("//" + request.headers.get("host", "")).hostname or ""
    except ValueError:  # "[" and the like: not a name we serve
        return False
    if not is_loopback(host):
        return False
    origin = request.headers.get("origin")
    return origin is None or same_origin(request, origin)


def _check_csrf(request: Request, state: ServerState, cookie: str) -> None:
    sent = request.headers.get("x-csrf-token", "")
    if not hmac.compare_digest(sent, _csrf_for(state, cookie)):
        raise HTTPException(403, "missing or wrong X-CSRF-Token header")
    origin = request.headers.get("origin")
    if origin is not None and not same_origin(request, origin):
        raise HTTPException(403, f"cross-origin request from {origin!r} refused")


def same_origin(request: Request, origin: str) -> bool:
    try:
        parts = urlsplit(origin)
    except ValueError:  # malformed ("http://[")
        return False
    host = request.headers.get("host", "")
    return parts.netloc == host and parts.scheme == request.url.scheme


# --------------------------------------------------------------------------- session cookie


def _sign(state: ServerState, text: str) -> str:
    return hmac.new(state.secret, text.encode(), hashlib.sha256).hexdigest()


def _csrf_for(state: ServerState, cookie: str) -> str:
    return _sign(state, "csrf:" + cookie)[:32]


def csrf_token(request: Request) -> str:
    """The CSRF token of the request's session ("" without one), for page templates."""
    cookie = request.cookies.get(COOKIE)
    if cookie is None:
        cookie = getattr(request.state, "new_session", None)
    return "" if cookie is None else _csrf_for(state_of(request), cookie)


# --------------------------------------------------------------------------- login / logout


def _root(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/") + "/"


def base_path(request: Request) -> str:
    """The app's own root (before an environment's ``/envs/NAME``): the session cookie's path,
    so one log-in serves every environment."""
    return str(request.scope.get(BASE_KEY, request.scope.get("root_path", ""))).rstrip("/") + "/"


_LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>flagstaff: log in</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body><main><h1>flagstaff</h1>{message}
<form method="post" action="{action}" id="password-login">
<label for="username">User name</label>
<input id="username" name="username" autocomplete="username" required>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Log in</button>
</form>
{sso}<form method="post" action="{action}" id="token-login">
<label for="token">Or an API token</label>
<input id="token" name="token" type="password" autocomplete="off" required>
<button type="submit">Log in with the token</button>
</form>
<p>Create a user with <code>flagstaff user add NAME --role editor</code>,
or a token with <code>flagstaff token create NAME --scope write</code>.</p>
</main></body></html>
"""


# The login page has no script, style or frame of its own: allow nothing but posting its form.
LOGIN_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",  # the link's token is in this page's URL
}


def login_page(request: Request, message: str = "", status: int = 200) -> HTMLResponse:
    """The login page (forms for a password and a token, and the single sign-on link if enabled)."""
    return _login_page(request, message, status)


def _login_page(request: Request, message: str = "", status: int = 200) -> HTMLResponse:
    note = f'<p role="alert">{html.escape(message)}</p>' if message else ""
    action = html.escape(str(request.scope.get("root_path", "")) + "/login")
    sso_url = getattr(request.app.state, "sso_login_url", None)
    sso = (
        f'<p><a id="sso-login" href="{html.escape(base_path(request) + sso_url.lstrip("/"))}">'
        "Log in with single sign-on</a></p>\n"
        if sso_url
        else ""
    )
    page = _LOGIN_PAGE.format(message=note, action=action, sso=sso)
    headers = LOGIN_HEADERS
    if "token" not in request.query_params:
        # No secret in this page's URL: "same-origin" lets the browser send the real Origin with
        # the form's POST (under "no-referrer" Chromium sends "Origin: null", which is refused).
        headers = {**LOGIN_HEADERS, "Referrer-Policy": "same-origin"}
    return HTMLResponse(page, status, headers=headers)


async def _log_in(request: Request, token: str) -> Response:
    state = state_of(request)
    address = client_address(request)
    info = await run_in_threadpool(state.tokens.exchange, token.strip())
    if info is None:
        if _note_failure(state, address):
            await state.limiter.wait()
            page = _login_page(request, "Too many failed attempts; try again later.", 429)
            page.headers["Retry-After"] = str(int(max(state.limiter.blocked(address), 1.0)) + 1)
            return page
        return _login_page(request, "That token is not valid (unknown, used, expired or revoked).", 401)
    session = await run_in_threadpool(state.tokens.open_session, info.id, SESSION_SECONDS)
    return session_response(request, session)


def session_response(request: Request, session: str) -> Response:
    """The answer to a successful log-in: the session cookie (for every environment), and
    a redirect to the pages (of the environment the log-in was made in)."""
    response = RedirectResponse(_root(request), status_code=303, headers=LOGIN_HEADERS)
    response.set_cookie(
        COOKIE,
        session,
        max_age=SESSION_SECONDS,
        path=base_path(request),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


async def login_get(request: Request) -> Response:
    token = request.query_params.get("token")
    if token is None:
        return _login_page(request)
    return await _log_in(request, token)


async def login_post(request: Request) -> Response:
    origin = request.headers.get("origin")
    if origin is not None and not same_origin(request, origin):  # "null" included
        raise HTTPException(403, f"cross-origin login from {origin!r} refused")
    body = await request.body()
    if len(body) > 4096:
        raise HTTPException(413, "login form too large")
    fields = parse_qs(body.decode("utf-8", "replace"))
    if "username" in fields or "password" in fields:
        name = (fields.get("username") or [""])[0].strip()
        return await _log_in_user(request, name, (fields.get("password") or [""])[0])
    return await _log_in(request, (fields.get("token") or [""])[0])


async def _log_in_user(request: Request, name: str, password: str) -> Response:
    state = state_of(request)
    address = client_address(request)
    user = None
    if state.users is not None and name and password:
        user = await run_in_threadpool(state.users.check_password, name, password)
    if user is None:
        if _note_failure(state, address):
            await state.limiter.wait()
            page = _login_page(request, "Too many failed attempts; try again later.", 429)
            page.headers["Retry-After"] = str(int(max(state.limiter.blocked(address), 1.0)) + 1)
            return page
        return _login_page(request, "Unknown user name or wrong password.", 401)
    assert state.users is not None
    session = await run_in_threadpool(state.users.open_session, user.name, SESSION_SECONDS)
    return session_response(request, session)


async def logout(request: Request) -> Response:
    cookie = request.cookies.get(COOKIE)
    if cookie is not None:
        origin = request.headers.get("origin")
        if origin is not None and not same_origin(request, origin):  # "null" included
            raise HTTPException(403, f"cross-origin logout from {origin!r} refused")
        # A form post cannot set a header: accept the CSRF token as a form field too.
        body = await request.body()
        sent = (
            request.headers.get("x-csrf-token")
            or (parse_qs(body.decode("utf-8", "replace")).get("csrf_token") or [""])[0]
        )
        if not hmac.compare_digest(sent, _csrf_for(state_of(request), cookie)):
            raise HTTPException(403, "missing or wrong CSRF token")
        # Revoked server-side: a copy of the cookie kept anywhere stops working too.
        state = state_of(request)
        if cookie.startswith(SESSION_PREFIX) and state.users is not None:
            await run_in_threadpool(state.users.end_session, cookie)
        else:
            await run_in_threadpool(state.tokens.end_session, cookie)
    response = RedirectResponse(_root(request) + "login", status_code=303)
    response.delete_cookie(COOKIE, path=base_path(request), httponly=True, samesite="strict")
    return response


def routes() -> list[BaseRoute]:
    return [
        Route("/login", login_get, methods=["GET"]),
        Route("/login", login_post, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
    ]
