"""Django app: one flag scope per request, a ``FLAGSTAFF`` setting, template tags.

settings.py::

    INSTALLED_APPS = [..., "flagstaff.integrations.django"]
    MIDDLEWARE = [
        ...,
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "flagstaff.integrations.django.middleware.FlagstaffMiddleware",  # after auth
    ]
    FLAGSTAFF = {
        "STORE": "sqlite:///flagstaff.db",       # or "CLIENT": a flagstaff.Client, or a dotted path to one
        "CONTEXT": "myapp.flags.context",    # optional hook(request) -> dict; default: user_context
        "DOMAIN": "example.com",             # optional: read subdomains of it
    }

Views and anything they call use ``flagstaff.integrations.flags``; templates
``{% load flagstaff %}`` (see :mod:`.templatetags.flagstaff`). ``request.flagstaff``
is the request's :class:`~flagstaff.scope.Scope`.

Every key of ``FLAGSTAFF``:

====================  ==============================================================
``STORE``             store URL; the client is opened once per process
``CLIENT``            a :class:`flagstaff.Client` (or ``"pkg.module.attr"``) to use instead
``TIMEOUT``           first-load timeout for ``STORE`` (seconds, default 5)
``CACHE``             on-disk snapshot cache path for ``STORE``
``CONTEXT``           ``hook(request) -> dict`` or its dotted path (default :func:`user_context`)
``COOKIE``            visitor cookie name (default ``flagstaff_id``; ``None``: no cookie)
``COOKIE_MAX_AGE``    its lifetime in seconds (default two years)
``DOMAIN``            the site's domain, for ``Context.subdomain``
``FEATURE_PARAM``     query parameter of forcing tokens (default ``feature``)
``FORCE_KEY``         key forcing tokens are verified with (default ``$FLAGSTAFF_FORCE_KEY``;
                      none: nothing is forced)
``UNSIGNED_FORCING``  take plain ``?feature=`` values too (reddit's form; default ``False``)
====================  ==============================================================

An unknown key is an ``ImproperlyConfigured`` error at start-up, not a silent no-op.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import flagstaff
from flagstaff.client import Client
from flagstaff.integrations.request import DEFAULT_COOKIE_MAX_AGE, ContextHook, RequestOptions

__all__ = ["Settings", "get_client", "load_settings", "user_context"]

_KEYS = frozenset(
    {
        "STORE",
        "CLIENT",
        "TIMEOUT",
        "CACHE",
        "CONTEXT",
        "COOKIE",
        "COOKIE_MAX_AGE",
        "DOMAIN",
        "FEATURE_PARAM",
        "FORCE_KEY",
        "UNSIGNED_FORCING",
    }
)
_opened: dict[tuple[str, float, str | None], Client] = {}
_opened_lock = threading.Lock()


def user_context(request: Any) -> dict[str, Any]:
    """The default hook: the logged-in Django user, if any.

    ``user_id`` is the primary key, ``user_name`` the username, ``groups`` the
    names of the user's auth groups plus ``admin`` for a superuser and
    ``employee`` for staff (the names flag documents use for those selectors).
    """
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    groups: set[str] = set()
    related = getattr(user, "groups", None)  # custom user models may have no auth groups
    if related is not None:
        groups.update(related.values_list("name", flat=True))
    if getattr(user, "is_superuser", False):
        groups.add("admin")
    if getattr(user, "is_staff", False):
        groups.add("employee")
    return {"user_id": str(user.pk), "user_name": user.get_username(), "groups": groups}


class Settings:
    """``settings.FLAGSTAFF``, read and checked once."""

    __slots__ = ("client", "hook", "options")

    def __init__(self, client: Client, hook: ContextHook | None, options: RequestOptions) -> None:
        self.client = client
        self.hook = hook
        self.options = options


def load_settings() -> Settings:
    """Read ``settings.FLAGSTAFF``; raises ``ImproperlyConfigured`` when it is wrong."""
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    conf: Mapping[str, Any] = getattr(settings, "FLAGSTAFF", {})
    unknown = set(conf) - _KEYS
    if unknown:
        raise ImproperlyConfigured(f"unknown FLAGSTAFF keys: {', '.join(sorted(unknown))}")
    forcing: dict[str, Any] = {"unsigned_forcing": bool(conf.get("UNSIGNED_FORCING", False))}
    if "FORCE_KEY" in conf:  # else RequestOptions reads $FLAGSTAFF_FORCE_KEY
        forcing["force_key"] = conf["FORCE_KEY"]
    try:
        options = RequestOptions(
            cookie=conf.get("COOKIE", "flagstaff_id"),
            cookie_max_age=conf.get("COOKIE_MAX_AGE", DEFAULT_COOKIE_MAX_AGE),
            domain=conf.get("DOMAIN"),
            feature_param=conf.get("FEATURE_PARAM", "feature"),
            **forcing,
        )
    except (TypeError, ValueError) as exc:
        raise ImproperlyConfigured(f"FLAGSTAFF: {exc}") from exc
    hook = conf.get("CONTEXT", user_context)
    if isinstance(hook, str):
        hook = _import(hook)
    if hook is not None and not callable(hook):
        raise ImproperlyConfigured("FLAGSTAFF['CONTEXT'] must be a callable or its dotted path")
    return Settings(get_client(conf), hook, options)


def get_client(conf: Mapping[str, Any] | None = None) -> Client:
    """The client ``settings.FLAGSTAFF`` names (opened once per process for ``STORE``)."""
    from django.core.exceptions import ImproperlyConfigured

    if conf is None:
        from django.conf import settings

        conf = getattr(settings, "FLAGSTAFF", {})
    client = conf.get("CLIENT")
    if isinstance(client, str):
        client = _import(client)
    if client is not None:
        if not isinstance(client, Client):
            raise ImproperlyConfigured("FLAGSTAFF['CLIENT'] must be a flagstaff.Client or its dotted path")
        return client
    url = conf.get("STORE")
    if not url:
        raise ImproperlyConfigured("FLAGSTAFF needs 'STORE' (a store URL) or 'CLIENT'")
    key = (str(url), float(conf.get("TIMEOUT", 5.0)), conf.get("CACHE"))
    with _opened_lock:
        if key not in _opened:
            _opened[key] = flagstaff.connect(key[0], timeout=key[1], cache=key[2])
        return _opened[key]


def _import(path: str) -> Any:
    from django.core.exceptions import ImproperlyConfigured
    from django.utils.module_loading import import_string

    try:
        return import_string(path)
    except ImportError as exc:
        raise ImproperlyConfigured(f"FLAGSTAFF: cannot import {path!r}: {exc}") from exc
