"""The ASGI application: :func:`create_app` builds it over one store.

The app serves the JSON API under ``/api/v1``, ``/healthz``, ``/metrics``, the
login routes and the dashboard's pages. It is a plain Starlette app, so a host
ASGI application can mount it (``Mount("/flags", app=create_app(...))``); the
host then calls ``app.state.flagstaff.close()`` at shutdown, since Starlette
does not run a mounted app's lifespan.

Everything the handlers share lives in one :class:`~flagstaff.http.state.ServerState`
(:mod:`flagstaff.http.state`), reachable as ``request.app.state.flagstaff``. This
module sits on top: it assembles the routes of :mod:`~flagstaff.http.api`,
:mod:`~flagstaff.http.auth` and :mod:`~flagstaff.http.ui`, and adds the request
middleware and the JSON log formatter.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Send
from starlette.types import Scope as ASGIScope

from flagstaff.changes import ChangeStore, default_change_db
from flagstaff.errors import StoreError
from flagstaff.http import api, auth, changes_ui, ui
from flagstaff.http.api import envs as envs_api
from flagstaff.http.auth import RateLimited
from flagstaff.http.environments import (
    DEFAULT,
    EnvironmentConfigError,
    EnvironmentRouter,
    Environments,
    check_name,
)
from flagstaff.http.scheduler import Scheduler
from flagstaff.http.state import ServerState, Settings, access_log, log, state_of
from flagstaff.http.tokens import Principal, TokenStore, default_token_db
from flagstaff.http.users import UserStore, default_user_db
from flagstaff.stores import Store, open_store

__all__ = ["JsonFormatter", "ServerState", "Settings", "create_app"]


def create_app(
    store: Store | str | Mapping[str, Store | str],
    *,
    open_mode: bool = False,
    token_db: str | None = None,
    settings: Settings | None = None,
) -> Starlette:
    """The flagstaff server app over ``store`` (a Store, or a URL to open).

    ``store`` may also be a mapping of environment name -> Store or URL (see
    :mod:`flagstaff.http.environments`): the first is the default environment, served
    at the usual URLs, and every one under ``/envs/NAME`` and ``/api/v1/envs/NAME``.
    ``open_mode`` lets local requests in as admin without a token
    (``flagstaff serve --insecure-no-auth``; see :func:`~flagstaff.http.auth.insecure_local`
    for what counts as local); ``token_db`` is the token database's path
    (default: beside the default environment's SQLite store, see
    :func:`~flagstaff.http.tokens.default_token_db`).
    """
    given = dict(store) if isinstance(store, Mapping) else {DEFAULT: store}
    if not given:
        raise EnvironmentConfigError("create_app needs at least one environment")
    for name in given:
        check_name(name)
    states: dict[str, ServerState] = {}
    tokens: TokenStore | None = None
    users: UserStore | None = None
    try:
        for name, each in given.items():
            the_store = open_store(each) if isinstance(each, str) else each
            if tokens is None:
                tokens = TokenStore(token_db or default_token_db(the_store.url))
                users = UserStore(default_user_db(tokens.path))
            state = ServerState(
                the_store,
                tokens=tokens,
                open_mode=open_mode,
                settings=_settings_for(name, settings),
                owns_store=isinstance(each, str),
                users=users,
            )
            if states:  # one rate limiter for all: guessing is not N times faster with N environments
                state.limiter = next(iter(states.values())).limiter
            if states:  # change requests belong to one environment: each its own database
                state.changes.close()
                base = (
                    settings.changes_db if settings and settings.changes_db else None
                ) or default_change_db(tokens.path)
                state.changes = ChangeStore(
                    f"{base.removesuffix('.changes')}.{name}.changes" if base != ":memory:" else base
                )
            taken = {other.events_db for other in states.values()}
            if state.events_db is not None and state.events_db in taken:
                # Environments in one SQLite file (?namespace=) would share its .events file: each
                # gets its own, so that ingest, reports and blast radius never mix environments.
                state.events_db = f"{state.events_db.removesuffix('.events')}.{name}.events"
            states[name] = state
    except BaseException:
        for opened in states.values():
            opened.close()
        raise
    environments = Environments(states)
    state = states[environments.default]
    for each_state in states.values():
        scheduler = Scheduler(each_state, each_state.settings.schedule_interval)  # change requests' apply_at
        each_state.at_close(scheduler.stop)
        scheduler.start()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        environments.close()

    routes: list[BaseRoute] = [
        *api.routes(),
        *envs_api.routes(),
        *auth.routes(),
        *changes_ui.routes(),
        *ui.routes(),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error, StoreError: _store_error},  # type: ignore[dict-item]
    )
    app.state.flagstaff = state
    app.state.environments = environments
    app.add_middleware(RequestContext, state=state)
    app.add_middleware(EnvironmentRouter, environments=environments)  # outermost: before everything
    return app


async def _store_error(request: Request, exc: StoreError) -> Response:
    # The token database full or failing (a write: create, revoke, log in or out).
    log.warning("token database unavailable: %s", exc)
    return JSONResponse({"error": f"unavailable: {exc}"}, 503, headers={"Retry-After": "10"})


async def _http_error(request: Request, exc: HTTPException) -> Response:
    if isinstance(exc, RateLimited):  # past the limits: the answer waits its turn
        await state_of(request).limiter.wait()
    accept = request.headers.get("accept", "")
    api_path = request.url.path.startswith(str(request.scope.get("root_path", "")) + "/api/")
    if exc.status_code == 401 and request.method == "GET" and "text/html" in accept and not api_path:
        root = str(request.scope.get("root_path", "")).rstrip("/")
        return RedirectResponse(f"{root}/login", status_code=303)
    if exc.status_code == 403 and request.method == "GET" and "text/html" in accept and not api_path:
        # A page this person may not see (no role in this environment): say so, and offer to
        # log in as someone who may, rather than a JSON error in the browser.
        return auth.login_page(request, f"{exc.detail}. Log in as someone who may see this page.", 403)
    body: dict[str, Any] = {"error": exc.detail}
    extra = getattr(exc, "body", None)
    if isinstance(extra, dict):
        body.update(extra)
    return JSONResponse(body, exc.status_code, headers=exc.headers)


# --------------------------------------------------------------------------- middleware

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class RequestContext:
    """Gives each request an id (``X-Request-ID``, kept if the caller sent a sane one),
    counts it, and logs one structured line when it ends. Pure ASGI, so streams pass through."""

    def __init__(self, app: ASGIApp, state: ServerState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: ASGIScope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = sent if _REQUEST_ID.match(sent) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 500

        api = str(scope["path"]).startswith(str(scope.get("root_path", "")) + "/api/")

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                names = {name.lower() for name, _ in headers}
                headers.append((b"x-request-id", request_id.encode()))
                if b"x-content-type-options" not in names:
                    headers.append((b"x-content-type-options", b"nosniff"))
                # API answers carry flags and token secrets: no cache, shared or private, keeps them.
                if api and b"cache-control" not in names:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = (time.perf_counter() - started) * 1000
            self.state.metrics.inc(
                "flagstaff_http_requests_total", method=scope["method"], status=f"{status // 100}xx"
            )
            principal = scope["state"].get("principal")
            access_log.info(
                "%s %s %d",
                scope["method"],
                scope["path"],
                status,
                extra={
                    "request_id": request_id,
                    "method": scope["method"],
                    "path": scope["path"],  # never the query: a login link carries a token there
                    "status": status,
                    "ms": round(elapsed, 2),
                    "client": (scope.get("client") or ("", 0))[0],
                    "principal": principal.name if isinstance(principal, Principal) else None,
                },
            )


# --------------------------------------------------------------------------- logging

# Attributes every record has (not "extra" fields); uvicorn's color_message is noise in JSON.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "color_message",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def _settings_for(env: str, settings: Settings | None) -> Settings | None:
    """``settings`` as they apply in environment ``env`` (approval and comments may be asked
    of some environments only)."""
    if settings is None:
        return None
    if env in settings.approval_environments and not settings.requires_approval:
        settings = dataclasses.replace(settings, requires_approval=True)
    if env in settings.comment_environments and not settings.requires_comment:
        settings = dataclasses.replace(settings, requires_comment=True)
    return settings
