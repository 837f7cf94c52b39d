"""``FlagstaffMiddleware``: one flag scope per Django request.

Place it after ``AuthenticationMiddleware`` so the context hook sees
``request.user``. It reads the request facts (visitor cookie, signed ``?feature=`` tokens,
subdomain; see :mod:`flagstaff.integrations.request`), calls the ``CONTEXT``
hook, makes one :class:`~flagstaff.scope.Scope` current while the view runs
(template responses are rendered inside it too), and sets the visitor cookie on
the response when it minted one. A ``StreamingHttpResponse`` body is iterated
after the middleware returns: take the decisions it needs in the view.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flagstaff.integrations.current import flags
from flagstaff.integrations.django import load_settings
from flagstaff.integrations.request import context_from, read_facts

__all__ = ["FlagstaffMiddleware"]


class FlagstaffMiddleware:
    """Django middleware (synchronous; Django adapts it under ASGI)."""

    sync_capable = True
    async_capable = False

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response
        self.settings = load_settings()
        flags.use(self.settings.client)

    def __call__(self, request: Any) -> Any:
        conf = self.settings
        options = conf.options
        cookie = request.COOKIES.get(options.cookie) if options.cookie else None
        features = request.GET.getlist(options.feature_param) if options.feature_param else []
        facts = read_facts(options, cookie, features, request.META.get("HTTP_HOST"))
        scope = conf.client.scope(context_from(facts, conf.hook, request))
        request.flagstaff = scope
        with scope:
            response = self.get_response(request)
        if facts.new_cookie and options.cookie is not None:
            response.set_cookie(
                options.cookie,
                facts.cookie_id,
                max_age=options.cookie_max_age,
                httponly=True,
                samesite="Lax",
                secure=request.is_secure(),
            )
        return response
