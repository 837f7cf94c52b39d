"""WSGI middleware: one scope per request, and the visitor cookie.

::

    from flagstaff.integrations.wsgi import FlagsMiddleware

    def context(environ):
        user = environ.get("myapp.user")
        return {"user_id": user.id, "groups": user.groups} if user else None

    app = FlagsMiddleware(app, client, context=context)

For each request the middleware reads the request facts (visitor cookie,
signed ``?feature=`` forcing tokens, subdomain; see :mod:`flagstaff.integrations.request`),
adds the hook's keys, takes one :class:`~flagstaff.scope.Scope` from
``client.scope()`` and makes it current for the whole request, the response
body's iteration included: ``flags.is_enabled("x")`` anywhere inside answers
from it. The scope is also at ``environ["flagstaff.scope"]``. A minted visitor
id is set with a ``Set-Cookie`` header on the response.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterable, Iterator
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

__all__ = ["ENVIRON_KEY", "FlagsMiddleware", "scope_for_environ"]

ENVIRON_KEY = "flagstaff.scope"

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]


def scope_for_environ(
    client: Client, environ: Environ, hook: ContextHook | None, options: RequestOptions
) -> tuple[Scope, str | None]:
    """The scope for one WSGI request, and the ``Set-Cookie`` value to send (if any)."""
    param = options.feature_param
    query = environ.get("QUERY_STRING", "")
    # Most requests force nothing: skip parsing the query unless the parameter may be in it.
    features = [v for k, v in parse_qsl(query) if k == param] if param and param in query else []
    cookie = parse_cookie_header(environ.get("HTTP_COOKIE"), options.cookie) if options.cookie else None
    host = (environ.get("HTTP_HOST") or environ.get("SERVER_NAME")) if options.domain else None
    facts = read_facts(options, cookie, features, host)
    scope = client.scope(context_from(facts, hook, environ))
    set_cookie = None
    if facts.new_cookie and facts.cookie_id is not None:
        set_cookie = cookie_header(options, facts.cookie_id, environ.get("wsgi.url_scheme") == "https")
    return scope, set_cookie


class FlagsMiddleware:
    """Wrap a WSGI application so every request runs inside its own scope.

    Registers ``client`` as the fallback of :data:`flagstaff.integrations.flags`.
    """

    def __init__(
        self,
        app: WSGIApp,
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

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        scope, set_cookie = scope_for_environ(self.client, environ, self.hook, self.options)
        environ[ENVIRON_KEY] = scope
        if set_cookie is not None:
            start_response = _adding_cookie(start_response, set_cookie)
        # The body may be produced after __call__ returns (a generator), on the
        # server's stack, so the scope lives in a Context of its own that the
        # app call and every step of the body run in.
        ctx = contextvars.copy_context()
        ctx.run(scope.__enter__)
        return _ScopedBody(ctx, ctx.run(self.app, environ, start_response))


def _adding_cookie(start_response: StartResponse, value: str) -> StartResponse:
    def wrapped(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        headers = [*headers, ("Set-Cookie", value)]
        if exc_info is None:
            return start_response(status, headers)
        return start_response(status, headers, exc_info)

    return wrapped


class _ScopedBody:
    """The app's response body, each step run inside the request's context."""

    def __init__(self, ctx: contextvars.Context, body: Iterable[bytes]) -> None:
        self._ctx = ctx
        self._body = body
        self._iter: Iterator[bytes] | None = None

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        if self._iter is None:
            self._iter = self._ctx.run(iter, self._body)
        return self._ctx.run(next, self._iter)

    def close(self) -> None:
        close: Callable[[], None] | None = getattr(self._body, "close", None)
        if close is not None:
            self._ctx.run(close)
