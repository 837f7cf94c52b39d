"""The ASGI application: :func:`create_app` builds it over one store.

The app serves the JSON API under ``/api/v1``, ``/healthz``, ``/metrics``, the
login routes and the dashboard's pages. It is a plain Starlette app, so a host
ASGI application can mount it (``Mount("/flags", app=create_app(...))``); the
host then calls ``app.state.flagstaff.close()`` at shutdown, since Starlette
does not run a mounted app's lifespan.

Everything the handlers share lives in one :class:`ServerState`, reachable as
``request.app.state.flagstaff``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Send
from starlette.types import Scope as ASGIScope

from flagstaff.admin import Admin
from flagstaff.client import Client, Options
from flagstaff.http import api, auth, ui
from flagstaff.http.auth import Principal, RateLimiter
from flagstaff.http.events import EventBroker
from flagstaff.http.metrics import Metrics, Sample
from flagstaff.http.tokens import Scope, TokenStore, default_token_db
from flagstaff.model import MAX_DOCUMENT_BYTES
from flagstaff.stores import Store, open_store

__all__ = ["JsonFormatter", "ServerState", "Settings", "create_app"]

log = logging.getLogger("flagstaff.http")
access_log = logging.getLogger("flagstaff.http.access")
audit_log = logging.getLogger("flagstaff.audit")


@dataclass(frozen=True, slots=True)
class Settings:
    """Tunables of a server; every field has a sensible default."""

    stale_days: float = 30.0
    """A temporary flag unchanged for longer than this is marked stale."""
    max_body: int = MAX_DOCUMENT_BYTES + 64 * 1024
    """Largest request body accepted (413 beyond): a maximal document plus room."""
    auth_failures: int = 10
    """Failed authentication attempts allowed per client address within ``auth_window``."""
    auth_window: float = 60.0
    ping_interval: float = 15.0
    """Seconds between keep-alive comments on an idle event stream."""
    load_timeout: float = 10.0
    """Longest wait at start for the first load of the flags (the server starts anyway)."""


class ServerState:
    """What every handler shares: the store, a client following it, tokens, events, metrics."""

    def __init__(
        self,
        store: Store,
        *,
        tokens: TokenStore,
        open_mode: bool = False,
        settings: Settings | None = None,
        owns_store: bool = False,
    ) -> None:
        self.store = store
        self.settings = settings or Settings()
        self.open_mode = open_mode
        self.tokens = tokens
        self.secret = tokens.secret("session")
        self.metrics = Metrics()
        self.limiter = RateLimiter(self.settings.auth_failures, self.settings.auth_window)
        self.client = Client(store, Options(timeout=self.settings.load_timeout))
        self.admin = Admin(store)
        self.events = EventBroker(store)
        self.started_at = time.time()
        self._owns_store = owns_store
        self._closed = False
        self._revoke_at_close: list[str] = []
        self.client.on_change(
            lambda change: self.metrics.inc("flagstaff_changes_applied_total", len(change.names))
        )
        self.metrics.gauge(self._gauges)
        self.events.start()

    def admin_for(self, principal: Principal, request_id: str) -> Admin:
        """An Admin whose writes are recorded as made by ``principal`` in this request.

        The author text carries the token id and request id into the store's
        history, which is the audit trail: one entry per accepted write, with
        when, before and after (:func:`flagstaff.http.api.parse_author` reads it back).
        """
        return Admin(self.store, author=author_text(principal, request_id))

    def login_token(self) -> str:
        """A new admin token for a login link, revoked when this server closes."""
        info, token = self.tokens.create("login link (flagstaff serve)", Scope.ADMIN)
        self._revoke_at_close.append(info.id)
        return token

    def _gauges(self) -> Iterable[Sample]:
        status = self.client.status()
        for state in ("live", "stale", "cached", "defaults"):
            yield "flagstaff_store_state", (("state", state),), 1.0 if status.state.value == state else 0.0
        if status.age is not None:
            yield "flagstaff_data_age_seconds", (), status.age
        yield "flagstaff_flags", (), float(status.flags)
        yield "flagstaff_invalid_flags", (), float(len(status.invalid))
        yield "flagstaff_revision", (), float(status.revision)
        yield "flagstaff_event_subscribers", (), float(self.events.subscribers)

    def close(self) -> None:
        """Stop the event feed and the client, close the token database (and the
        store if the app opened it). Idempotent."""
        if self._closed:
            return
        self._closed = True
        for token_id in self._revoke_at_close:
            self.tokens.revoke(token_id)
        self.events.stop()
        self.client.close()
        self.tokens.close()
        if self._owns_store:
            self.store.close()


def author_text(principal: Principal, request_id: str) -> str:
    """``name [token ID, request RID]``: who, in the store's history."""
    token = principal.token_id or "none"
    return f"{principal.name} [token {token}, request {request_id}]"


def create_app(
    store: Store | str,
    *,
    open_mode: bool = False,
    token_db: str | None = None,
    settings: Settings | None = None,
) -> Starlette:
    """The flagstaff server app over ``store`` (a Store, or a URL to open).

    ``open_mode`` lets requests from loopback addresses in without a token
    (``flagstaff serve --open``); ``token_db`` is the token database's path
    (default: beside a SQLite store, see :func:`~flagstaff.http.tokens.default_token_db`).
    """
    owns = isinstance(store, str)
    the_store = open_store(store) if isinstance(store, str) else store
    tokens = TokenStore(token_db or default_token_db(the_store.url))
    state = ServerState(the_store, tokens=tokens, open_mode=open_mode, settings=settings, owns_store=owns)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        state.close()

    routes: list[BaseRoute] = [*api.routes(), *auth.routes(), *ui.routes()]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error},  # type: ignore[dict-item]
    )
    app.state.flagstaff = state
    app.add_middleware(RequestContext, state=state)
    return app


async def _http_error(request: Request, exc: HTTPException) -> Response:
    accept = request.headers.get("accept", "")
    api_path = request.url.path.startswith(str(request.scope.get("root_path", "")) + "/api/")
    if exc.status_code == 401 and request.method == "GET" and "text/html" in accept and not api_path:
        root = str(request.scope.get("root_path", "")).rstrip("/")
        return RedirectResponse(f"{root}/login", status_code=303)
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

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
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
