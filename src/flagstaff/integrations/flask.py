"""Flask extension: one flag scope per request, ``feature`` in templates.

::

    from flask import Flask, render_template
    from flagstaff.integrations import flags
    from flagstaff.integrations.flask import Flagstaff

    app = Flask(__name__)
    Flagstaff(app, client, context=lambda request: {"user_id": session_user_id()})

    @app.get("/")
    def home():
        if flags.is_enabled("new_home"):      # this request's scope, nothing passed
            return render_template("home_v2.html")
        ...

    {# in a template #}
    {% if feature.is_enabled("new_home") %}...{% endif %}

Without a ``client`` the extension connects to ``app.config["FLAGSTAFF_STORE"]``
(a store URL). For each request it reads the request facts (visitor cookie,
signed ``?feature=`` tokens, subdomain; see :mod:`flagstaff.integrations.request`), calls the
hook with ``flask.request`` (the session and ``flask_login.current_user`` are
available there), enters one :class:`~flagstaff.scope.Scope` before the first
view code runs and leaves it at teardown, and sets the visitor cookie on the
response when it minted one. Supports the app factory pattern (:meth:`init_app`).
Forcing tokens are verified with ``options.force_key``; without ``options``, with
``app.config["FLAGSTAFF_FORCE_KEY"]`` if set, else ``$FLAGSTAFF_FORCE_KEY``.

A body streamed with ``stream_with_context`` runs after teardown: take the
decisions you need before returning the generator.
"""

from __future__ import annotations

from dataclasses import replace

from flagstaff._extras import missing_extra

try:
    from flask import Flask, Request, Response, g, has_request_context, request
except ModuleNotFoundError as _exc:
    raise missing_extra(_exc, "flask", "flask", "flagstaff.integrations.flask") from None


import flagstaff
from flagstaff.client import Client
from flagstaff.integrations.current import flags
from flagstaff.integrations.jinja2 import install
from flagstaff.integrations.request import ContextHook, RequestOptions, context_from, read_facts
from flagstaff.scope import Scope

__all__ = ["Flagstaff"]

_G_SCOPE = "_flagstaff_scope"
_G_COOKIE = "_flagstaff_new_cookie"


class Flagstaff:
    """The Flask extension. Also registers its client as the fallback of
    :data:`flagstaff.integrations.flags`."""

    def __init__(
        self,
        app: Flask | None = None,
        client: Client | None = None,
        *,
        context: ContextHook | None = None,
        options: RequestOptions | None = None,
    ) -> None:
        self.client = client
        self.hook = context
        self._options_given = options is not None
        self.options = options or RequestOptions()
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Install the request hooks and the template global on ``app``."""
        if self.client is None:
            url = app.config.get("FLAGSTAFF_STORE")
            if not url:
                raise flagstaff.ClientError("Flagstaff needs a client or app.config['FLAGSTAFF_STORE']")
            self.client = flagstaff.connect(url)
        key = app.config.get("FLAGSTAFF_FORCE_KEY")
        if key and not self._options_given:
            self.options = replace(self.options, force_key=key)
        flags.use(self.client)
        app.extensions["flagstaff"] = self
        app.before_request(self._enter)
        app.after_request(self._set_cookie)
        app.teardown_request(self._leave)
        install(app.jinja_env)

    @property
    def scope(self) -> Scope | None:
        """The current request's scope (``None`` outside a request)."""
        if not has_request_context():
            return None
        found: Scope | None = g.get(_G_SCOPE)
        return found

    def _enter(self) -> None:
        assert self.client is not None
        options = self.options
        # One proxy lookup instead of one per attribute (Flask types the proxy as the object).
        req: Request = request._get_current_object()  # type: ignore[attr-defined]
        cookie = req.cookies.get(options.cookie) if options.cookie else None
        param = options.feature_param
        # Parse the query only when the parameter may be in it (most requests force nothing).
        forced = param is not None and param.encode() in req.query_string
        features = req.args.getlist(param) if forced and param is not None else []
        facts = read_facts(options, cookie, features, req.host if options.domain else None)
        scope = self.client.scope(context_from(facts, self.hook, req))
        scope.__enter__()
        setattr(g, _G_SCOPE, scope)
        if facts.new_cookie:
            setattr(g, _G_COOKIE, facts.cookie_id)

    def _set_cookie(self, response: Response) -> Response:
        value: str | None = g.get(_G_COOKIE)
        if value is not None and self.options.cookie is not None:
            response.set_cookie(
                self.options.cookie,
                value,
                max_age=self.options.cookie_max_age,
                httponly=True,
                samesite="Lax",
                secure=request.is_secure,
            )
        return response

    def _leave(self, exc: BaseException | None) -> None:
        scope: Scope | None = g.pop(_G_SCOPE, None)
        if scope is not None:
            scope.__exit__(None, None, None)
