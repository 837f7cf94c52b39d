"""What a web request says about who is asking, framework-neutral.

Every integration (WSGI, ASGI, Flask, Django) reads the same facts from a
request and builds the context the same way:

* ``cookie_id``: the visitor cookie (``RequestOptions.cookie``, default
  ``flagstaff_id``). A request without a valid one gets a new random id, which
  the integration sets on the response, so a logged-out visitor keeps one
  bucket from their first page on.
* ``features``: the feature values of the ``?feature=`` *forcing tokens* that
  verify (:mod:`flagstaff.forcing`: signed with ``RequestOptions.force_key``, not
  expired), in request order, at most :data:`MAX_FEATURES`. Anything else is
  dropped (logged at debug level), as it comes from anyone's address bar; with no
  key nothing is forced at all. ``RequestOptions.unsigned_forcing`` takes plain
  values too (each at most :data:`MAX_FEATURE_LENGTH` characters): reddit's form,
  for reddit compatibility mode only.
* ``subdomain``: the part of the ``Host`` before ``RequestOptions.domain``.

The application's *context hook* then adds what only it knows (user id, user
name, groups, location, OAuth client, attributes); its keys win over the ones
above. A hook that raises is logged and the request goes on with the request
facts alone, so a bug in it turns per-user flags off instead of failing pages.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from flagstaff.forcing import KEY_ENV, MAX_TOKEN_LENGTH, MAX_VALUE_LENGTH, check_key, key_from_env, verify

__all__ = [
    "DEFAULT_COOKIE_MAX_AGE",
    "MAX_FEATURES",
    "MAX_FEATURE_LENGTH",
    "ContextHook",
    "RequestFacts",
    "RequestOptions",
    "context_from",
    "cookie_header",
    "forced_features",
    "parse_cookie_header",
    "read_facts",
    "subdomain_of",
]

log = logging.getLogger("flagstaff.integrations")

ContextHook: TypeAlias = Callable[[Any], Mapping[str, Any] | None]
"""``hook(request) -> dict`` of context keys the application knows (see
:mod:`flagstaff.context`), or ``None``. ``request`` is what the integration has:
the WSGI environ, the ASGI scope, a ``flask.Request``, a Django ``HttpRequest``."""

DEFAULT_COOKIE_MAX_AGE = 2 * 365 * 24 * 3600  # two years
MAX_FEATURES = 20
MAX_FEATURE_LENGTH = MAX_VALUE_LENGTH

# A visitor id we accept back from a cookie: what we mint, or another system's
# id of the same shape (reddit's loid). Anything else is replaced.
_COOKIE_ID = re.compile(r"[A-Za-z0-9_.\-]{1,64}")


@dataclass(frozen=True, slots=True)
class RequestOptions:
    """How an integration reads a request. Every field has a sensible default."""

    cookie: str | None = "flagstaff_id"
    """Name of the visitor-id cookie; ``None``: neither read nor set one."""
    cookie_max_age: int = DEFAULT_COOKIE_MAX_AGE
    """Lifetime of a new visitor cookie, in seconds."""
    domain: str | None = None
    """The site's domain (``example.com``): ``beta.example.com`` is subdomain ``beta``.
    ``None``: no subdomain is read."""
    feature_param: str | None = "feature"
    """The query parameter of forcing tokens (their values become ``Context.features``);
    ``None``: ignored."""
    force_key: bytes | str | None = field(default_factory=key_from_env, repr=False)
    """The key forcing tokens are verified with (at least 16 bytes; a ``str`` is UTF-8).
    Default: ``$FLAGSTAFF_FORCE_KEY``. ``None``: no token verifies, so nothing is forced."""
    unsigned_forcing: bool = False
    """Take plain ``?feature=NAME`` values as well, as reddit did. Anyone can then force any
    flag with a ``url`` selector: for reddit compatibility mode only."""

    def __post_init__(self) -> None:
        if self.cookie is not None and not re.fullmatch(r"[A-Za-z0-9_\-]+", self.cookie):
            raise ValueError(f"cookie name {self.cookie!r} must be letters, digits, '_' or '-'")
        if self.cookie_max_age <= 0:
            raise ValueError("cookie_max_age must be positive")
        if self.domain is not None:
            object.__setattr__(self, "domain", self.domain.strip(".").lower())
        if self.force_key is not None:
            # ForceKeyError is a ValueError: Django's settings turn it into ImproperlyConfigured.
            object.__setattr__(self, "force_key", check_key(self.force_key, source="force_key"))


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """What was read from one request, before the application's hook."""

    cookie_id: str | None
    new_cookie: bool
    """True when ``cookie_id`` was minted for this request and must be set."""
    features: tuple[str, ...]
    subdomain: str | None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.cookie_id is not None:
            out["cookie_id"] = self.cookie_id
        if self.features:
            out["features"] = self.features
        if self.subdomain is not None:
            out["subdomain"] = self.subdomain
        return out


def read_facts(
    options: RequestOptions, cookie_value: str | None, features: Iterable[str], host: str | None
) -> RequestFacts:
    """The request facts from the visitor cookie's value, the ``?feature=``
    values and the ``Host`` header."""
    cookie_id: str | None = None
    new_cookie = False
    if options.cookie is not None:
        if cookie_value is not None and _COOKIE_ID.fullmatch(cookie_value):
            cookie_id = cookie_value
        else:
            cookie_id, new_cookie = secrets.token_urlsafe(16), True
    picked: tuple[str, ...] = ()
    if options.feature_param is not None:
        picked = forced_features(options, features)
    return RequestFacts(cookie_id, new_cookie, picked, subdomain_of(host, options.domain))


def forced_features(
    options: RequestOptions, values: Iterable[str], now: float | None = None
) -> tuple[str, ...]:
    """The feature values the ``?feature=`` ``values`` force: those of the tokens that
    verify with ``options.force_key`` at ``now`` (default: the clock), plus, with
    ``unsigned_forcing``, every other value as it is. In request order, at most
    :data:`MAX_FEATURES`. Never raises."""
    key = options.force_key  # checked (and made bytes) when the options were built
    picked: list[str] = []
    for value in values:
        if len(picked) == MAX_FEATURES:
            break
        if not value:
            continue
        forced = None
        if key is not None and len(value) <= MAX_TOKEN_LENGTH:
            if now is None:
                now = time.time()
            forced = verify(value, key, now)
        if forced is None and options.unsigned_forcing and len(value) <= MAX_FEATURE_LENGTH:
            forced = value
        if forced is not None:
            picked.append(forced)
        else:
            log.debug(
                "?%s=%.40r dropped: %s",
                options.feature_param,
                value,
                "not a valid forcing token" if key is not None else f"no forcing key (set ${KEY_ENV})",
            )
    return tuple(picked)


def subdomain_of(host: str | None, domain: str | None) -> str | None:
    """``beta`` for host ``beta.example.com:8000`` and domain ``example.com``."""
    if not host or not domain:
        return None
    name = host.strip().lower()
    if name.startswith("["):  # an IPv6 literal has no subdomain
        return None
    name = name.rsplit(":", 1)[0].rstrip(".")
    suffix = "." + domain
    if name.endswith(suffix) and len(name) > len(suffix):
        return name[: -len(suffix)]
    return None


def context_from(facts: RequestFacts, hook: ContextHook | None, request: Any) -> dict[str, Any]:
    """The context dict for one request: the request facts, then the hook's
    keys over them. Never raises (a failing hook is logged)."""
    data = facts.as_dict()
    if hook is not None:
        try:
            extra = hook(request)
        except Exception:
            log.exception("the flagstaff context hook failed; using the request's facts alone")
        else:
            if extra is not None:
                data.update(extra)
    return data


def parse_cookie_header(header: str | None, name: str) -> str | None:
    """The value of cookie ``name`` in a ``Cookie`` header (lenient, as browsers are)."""
    if not header:
        return None
    for part in header.split(";"):
        key, sep, value = part.partition("=")
        if sep and key.strip() == name:
            return value.strip().strip('"')
    return None


def cookie_header(options: RequestOptions, value: str, secure: bool) -> str:
    """The ``Set-Cookie`` value that stores a new visitor id."""
    assert options.cookie is not None
    parts = [f"{options.cookie}={value}", "Path=/", f"Max-Age={options.cookie_max_age}", "HttpOnly"]
    parts.append("SameSite=Lax")
    if secure:
        parts.append("Secure")
    return "; ".join(parts)
