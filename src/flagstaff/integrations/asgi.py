"""ASGI middleware: one scope per request (HTTP and WebSocket), and the visitor cookie.

::

    from flagstaff.integrations.asgi import FlagsMiddleware

    def context(asgi_scope):
        user = asgi_scope.get("user")          # e.g. set by an auth middleware
        return {"user_id": user.id} if user else None

    app = FlagsMiddleware(app, client, context=context)
    # Starlette: Starlette(middleware=[Middleware(FlagsMiddleware, client=client, context=context)])

The middleware does what the WSGI one does (see
:mod:`flagstaff.integrations.wsgi`): it builds the context from the request
facts and the hook, takes one :class:`~flagstaff.scope.Scope` and makes it
current while the application handles the request, so each asyncio task sees
its own request's flags and a change that lands mid-request does not change
what that request sees. The scope is also at ``asgi_scope["flagstaff.scope"]``.
A minted visitor id is set on the HTTP response (not on WebSocket handshakes).
Lifespan and other connection types pass through untouched.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

from flagstaff.client import Client
from flagstaff.integrations.current import flags
from flagstaff.integrations.request import (
    ContextHook,
    RequestOptions,
    context_from,
    cookie_header,
    parse_cookie_header,
    read_facts,
)
from flagstaff.scope import Scope

__all__ = ["SCOPE_KEY", "FlagsMiddleware", "scope_for_connection"]

SCOPE_KEY = "flagstaff.scope"

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[MutableMapping[str, Any], Receive, Send], Awaitable[None]]


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    values = [value.decode("latin-1") for key, value in headers if key.lower() == name]
    return "; ".join(values) if name == b"cookie" and values else (values[0] if values else None)


def scope_for_connection(
    client: Client, connection: MutableMapping[str, Any], hook: ContextHook | None, options: RequestOptions
) -> tuple[Scope, str | None]:
    """The flag scope for one ASGI connection, and the ``Set-Cookie`` value to send (if any)."""
    headers: list[tuple[bytes, bytes]] = list(connection.get("headers") or ())
    param = options.feature_param
    query = bytes(connection.get("query_string") or b"").decode("latin-1")
    # Most requests force nothing: skip parsing the query unless the parameter may be in it.
    features = [v for k, v in parse_qsl(query) if k == param] if param and param in query else []
    cookie = parse_cookie_header(_header(headers, b"cookie"), options.cookie) if options.cookie else None
    facts = read_facts(options, cookie, features, _header(headers, b"host") if options.domain else None)
    scope = client.scope(context_from(facts, hook, connection))
    set_cookie = None
    if facts.new_cookie and facts.cookie_id is not None and connection["type"] == "http":
        secure = connection.get("scheme") == "https"
        set_cookie = cookie_header(options, facts.cookie_id, secure)
    return scope, set_cookie


class FlagsMiddleware:
    """Wrap an ASGI application so every request runs inside its own scope.

    Registers ``client`` as the fallback of :data:`flagstaff.integrations.flags`.
    """

    def __init__(
        self,
        app: ASGIApp,
        client: Client,
        *,
        context: ContextHook | None = None,
        options: RequestOptions | None = None,
    ) -> None:
        self.app = app
        self.client = client
        self.hook = context
        self.options = options or RequestOptions()
        flags.use(client)

    async def __call__(self, connection: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        if connection["type"] not in ("http", "websocket"):
            await self.app(connection, receive, send)
            return
        scope, set_cookie = scope_for_connection(self.client, connection, self.hook, self.options)
        connection[SCOPE_KEY] = scope
        if set_cookie is not None:
            send = _adding_cookie(send, (b"set-cookie", set_cookie.encode("latin-1")))
        # A ContextVar set in this task: the app's awaits run in it, and tasks it
        # starts inherit a copy, so each request's code sees this request's scope.
        with scope:
            await self.app(connection, receive, send)


def _adding_cookie(send: Send, header: tuple[bytes, bytes]) -> Send:
    async def send_with_cookie(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", ()), header]}
        await send(message)

    return send_with_cookie
