"""reddit's feature API (``r2.config.feature``), over flagstaff.

Change ``from r2.config import feature`` to
``from flagstaff.compat.reddit import feature`` and configure it once::

    from flagstaff.compat import reddit

    world = reddit.ContextWorld(admins={"alice"})
    reddit.feature.configure("sqlite:///flagstaff.db", world, on_bucketing=log_event)

    with world.serving(reddit.Request(user=current_account, features=request.GET.getall("feature"),
                                      subreddit="aww", loid=request.cookies.get("loid"))):
        if reddit.feature.is_enabled("some_flag"):
            variant = reddit.feature.variant("some_flag")

Flags are flagstaff documents with ``"bucketing": "reddit"``, so users land in
exactly the buckets reddit gave them (``sha1(name + fullname) % 1000``). reddit's
live-config entries (``feature_some_flag = {"admin": true}``) are read by
:func:`parse_live_config` / :func:`live_config_document`, which turn them into
such documents; :meth:`Features.from_live_config` serves them directly.

The *world* supplies what reddit read from pylons: the current user, the
request's ``?feature=`` values, subreddit, subdomain, OAuth client and ``loid``
cookie. :class:`ContextWorld` keeps one :class:`Request` per thread, greenlet or
asyncio task; any object with ``request()`` and ``describe(user)`` will do.

``?feature=`` stays unsigned here, as in reddit: the world's ``Request.features`` are the
plain values the app read from the query, and the ``url`` selector honours them. This is
the one place plain values force flags; everywhere else (the web middleware) only signed
tokens do (:mod:`flagstaff.forcing`). A reddit app that also runs flagstaff's middleware
keeps reddit's behaviour with :func:`middleware_options` (``unsigned_forcing=True``, the
``loid`` cookie).

Differences from reddit, each on purpose (see ``docs/compat.md``): a top-level
``"enabled": "off"`` turns the flag off for everyone (reddit still ran the
percentages and the experiment); ``variant()`` of a killed flag is ``None``.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from flagstaff.bucketing import reddit_bucket, reddit_variant
from flagstaff.compat._flags import FlagView
from flagstaff.context import Context
from flagstaff.decision import Reason
from flagstaff.errors import ClientError
from flagstaff.integrations.request import RequestOptions
from flagstaff.model import Flag, Switch
from flagstaff.stores import Store
from flagstaff.stores.memory import MemoryStore

__all__ = [
    "BucketingEvent",
    "BucketingHook",
    "ContextWorld",
    "Features",
    "RedditUser",
    "Request",
    "World",
    "feature",
    "live_config_document",
    "middleware_options",
    "parse_live_config",
]

log = logging.getLogger("flagstaff.compat.reddit")

CONFIG_PREFIX = "feature_"
_BOOL_SELECTORS = ("admin", "employee", "beta", "gold", "loggedin", "loggedout")
_LIST_SELECTORS = ("users", "subreddits", "subdomains", "oauth_clients")
_PERCENTS = ("percent_loggedin", "percent_loggedout")
_EXPERIMENT_KEYS = frozenset(
    {"experiment_id", "variants", "enabled", *_BOOL_SELECTORS, *_LIST_SELECTORS, "url"}
)


# --------------------------------------------------------------------------- live config


def live_config_document(value: str | None, *, notes: list[str] | None = None) -> Any:
    """The flagstaff document for one ``feature_<name>`` live-config value.

    reddit's reading, exactly: missing, ``""`` and ``off`` are off; ``on`` is on;
    anything else is JSON, and invalid JSON or a non-object is off (logged). In an
    object, selector values count by truthiness, unknown keys are ignored, and
    only the strings ``"on"``/``"off"`` mean anything in ``enabled``. What reddit
    ignored is dropped, and each drop is described in ``notes``.
    """
    notes = notes if notes is not None else []
    if value is None:
        return "off"
    text = value.strip()
    if not text or text == "off":
        return "off"
    if text == "on":
        return "on"
    try:
        config = json.loads(text)
    except ValueError as exc:
        notes.append(f"not JSON ({exc}); reddit treats it as off")
        log.warning("live config value is not JSON, so off: %s", exc)
        return "off"
    if not isinstance(config, dict):
        notes.append("not on, off or a JSON object; reddit treats it as off")
        return "off"
    return _document(config, notes)


def _document(config: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    doc: dict[str, Any] = {"bucketing": "reddit"}
    enabled = config.get("enabled")
    if enabled == "on":
        doc["enabled"] = "on"
    elif enabled == "off":
        doc["enabled"] = "off"
        if any(k in config for k in (*_PERCENTS, "experiment")):
            notes.append(
                'enabled "off" now turns off the percentages and the experiment too '
                "(reddit only skipped the other selectors)"
            )
    elif "enabled" in config:
        notes.append(f"enabled {enabled!r} meant nothing to reddit (only 'on'/'off' do); dropped")
    doc.update(_selectors(config, "", notes))
    for key in _PERCENTS:
        if key not in config:
            continue
        pct = config[key]
        if isinstance(pct, bool) or not isinstance(pct, int | float) or not math.isfinite(pct):
            notes.append(f"{key} {pct!r} is not a number; dropped")
            continue
        if not 0 <= pct <= 100:
            notes.append(f"{key} {pct!r} clamped to [0, 100] (same users)")
        doc[key] = min(max(pct, 0), 100)
    if "experiment" in config:
        exp = _experiment(config["experiment"], notes)
        if exp is not None:
            doc["experiment"] = exp
    known = {"enabled", *_PERCENTS, "experiment", *_BOOL_SELECTORS, *_LIST_SELECTORS, "url"}
    for key in config:
        if key not in known:
            notes.append(f"unknown key {key!r} was ignored by reddit; dropped")
    return doc


def _selectors(config: Mapping[str, Any], where: str, notes: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in _BOOL_SELECTORS:
        if key in config:
            if config[key]:
                out[key] = True
            elif config[key] is not False:
                notes.append(f"{where}{key} {config[key]!r} is falsy, so it selected nobody; dropped")
    for key in _LIST_SELECTORS:
        if key not in config:
            continue
        items = config[key]
        if isinstance(items, list) and all(isinstance(i, str) for i in items):
            if items:
                out[key] = items
        else:
            notes.append(f"{where}{key} must be a list of names; dropped")
    if "url" in config:
        url = config["url"]
        named = isinstance(url, str) and url
        mapping = isinstance(url, dict) and url and all(isinstance(v, str) for v in url.values())
        if named or mapping:
            out["url"] = url
        elif url:
            notes.append(f"{where}url {url!r} is not a name or a name -> variant object; dropped")
    return out


def _experiment(raw: Any, notes: list[str]) -> dict[str, Any] | None:
    if not isinstance(raw, dict):
        notes.append("experiment is not an object; dropped")
        return None
    exp = _selectors(raw, "experiment.", notes)
    if "experiment_id" in raw:
        exp["experiment_id"] = raw["experiment_id"]
    if "variants" in raw:
        exp["variants"] = raw["variants"]
    if "enabled" in raw:
        exp["enabled"] = bool(raw["enabled"])
    for key in raw:
        if key not in _EXPERIMENT_KEYS:
            notes.append(f"experiment.{key} was ignored by reddit; dropped")
    return exp


def parse_live_config(lines: str | Iterable[str] | Mapping[str, str]) -> dict[str, Any]:
    """``{flag name: document}`` from live-config text (``feature_x = value`` lines,
    ``#`` comments) or from a mapping of config names to values. Entries not
    starting with ``feature_`` are ignored."""
    entries: Iterable[tuple[str, str]]
    if isinstance(lines, Mapping):
        entries = lines.items()
    else:
        entries = _config_lines(lines.splitlines() if isinstance(lines, str) else lines)
    docs: dict[str, Any] = {}
    for raw_key, value in entries:
        key = raw_key.strip()
        if key.startswith(CONFIG_PREFIX) and len(key) > len(CONFIG_PREFIX):
            docs[key[len(CONFIG_PREFIX) :]] = live_config_document(value)
    return docs


def _config_lines(lines: Iterable[str]) -> Iterator[tuple[str, str]]:
    for line in lines:
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", ";", "[")):
            continue
        key, sep, value = stripped.partition("=")
        if sep:
            yield key, value.strip()


# --------------------------------------------------------------------------- the world


@dataclass(frozen=True, slots=True)
class RedditUser:
    """What the feature API needs to know about a user."""

    fullname: str  # "t2_beef": the bucketing id
    name: str
    admin: bool = False
    employee: bool = False
    beta: bool = False
    gold: bool = False


@dataclass(slots=True)
class Request:
    """One request as the feature API sees it. ``user`` is the app's user object
    (or a :class:`RedditUser`); the world's ``describe`` interprets it."""

    user: Any = None
    features: tuple[str, ...] | list[str] = ()
    subreddit: str | None = None
    subdomain: str | None = None
    oauth_client: str | None = None
    loid: str | None = None
    bucketed: set[tuple[str, str]] = field(default_factory=set)
    """(flag, bucketing id) pairs already reported in this request."""


class World(Protocol):
    """Where the feature API gets the current request and user facts."""

    def request(self) -> Request | None:
        """The request being served, or ``None`` outside one (a cron, a shell)."""

    def describe(self, user: Any) -> RedditUser | None:
        """The facts about ``user`` (the app's user object), ``None`` for none."""


class ContextWorld:
    """A world whose current request is context-local (threads, greenlets,
    asyncio tasks). ``describe`` accepts :class:`RedditUser` and objects shaped
    like reddit's ``Account`` (``name``, ``_fullname``, ``employee``,
    ``pref_beta``, ``gold``); admins are given by name."""

    def __init__(self, admins: Iterable[str] = ()) -> None:
        self.admins = frozenset(admins)
        self._request: contextvars.ContextVar[Request | None] = contextvars.ContextVar(
            f"reddit_request_{id(self):x}", default=None
        )

    def request(self) -> Request | None:
        return self._request.get()

    @contextlib.contextmanager
    def serving(self, request: Request) -> Iterator[Request]:
        """Make ``request`` current for the duration of the block."""
        token = self._request.set(request)
        try:
            yield request
        finally:
            self._request.reset(token)

    def describe(self, user: Any) -> RedditUser | None:
        if user is None or isinstance(user, RedditUser):
            return user
        name = str(getattr(user, "name", ""))
        fullname = getattr(user, "_fullname", None) or getattr(user, "fullname", None)
        if fullname is None:
            raise ClientError(f"cannot tell the fullname of {type(user).__name__}; give it _fullname")
        return RedditUser(
            fullname=str(fullname),
            name=name,
            admin=name in self.admins,
            employee=bool(getattr(user, "employee", False)),
            beta=bool(getattr(user, "pref_beta", False)),
            gold=bool(getattr(user, "gold", False)),
        )


@dataclass(frozen=True, slots=True)
class BucketingEvent:
    """A user (or logged-out visitor) was bucketed into an experiment variant."""

    experiment_id: int | None
    flag: str
    variant: str
    bucketing_id: str
    user: RedditUser | None


BucketingHook = Callable[[BucketingEvent], None]


# --------------------------------------------------------------------------- the API


class Features:
    """``is_enabled`` / ``variant`` / ``all_enabled`` over flags and a world.

    ``flags`` is a store URL, a :class:`~flagstaff.stores.Store` or a
    ``FlagView``. ``on_bucketing`` is called once per request and bucketing id
    for every experiment exposure (control groups included, excluded users
    not). ``loggedout_experiments`` is reddit's ``g.enable_loggedout_experiments``
    (off by default): whether logged-out visitors are bucketed by their loid.
    """

    def __init__(
        self,
        flags: str | Store | FlagView | None = None,
        world: World | None = None,
        *,
        on_bucketing: BucketingHook | None = None,
        loggedout_experiments: bool = False,
    ) -> None:
        self._view: FlagView | None = None
        self._world: World = world or ContextWorld()
        self._on_bucketing = on_bucketing
        self.loggedout_experiments = loggedout_experiments
        if flags is not None:
            self.configure(flags, world, on_bucketing=on_bucketing)

    @classmethod
    def from_live_config(
        cls, text: str | Iterable[str] | Mapping[str, str], world: World | None = None, **options: Any
    ) -> Features:
        """Serve flags written as reddit live-config entries (in a private memory store)."""
        store = MemoryStore()
        view = FlagView(store, author="reddit-live-config")
        for name, doc in parse_live_config(text).items():
            view.put(name, doc)
        return cls(view, world, **options)

    def configure(
        self,
        flags: str | Store | FlagView,
        world: World | None = None,
        *,
        on_bucketing: BucketingHook | None = None,
    ) -> None:
        """Point the API at flags (and optionally a world and an event hook)."""
        old = self._view
        self._view = flags if isinstance(flags, FlagView) else FlagView(flags, author="reddit")
        if world is not None:
            self._world = world
        if on_bucketing is not None:
            self._on_bucketing = on_bucketing
        if old is not None and old is not self._view:
            old.close()

    @property
    def world(self) -> World:
        return self._world

    def close(self) -> None:
        if self._view is not None:
            self._view.close()

    def _flags(self) -> FlagView:
        if self._view is None:
            raise ClientError("feature is not configured: call feature.configure(store_url, world) first")
        return self._view

    # -- public --------------------------------------------------------------------

    def is_enabled(
        self,
        name: str,
        user: Any = None,
        subreddit: str | None = None,
        subdomain: str | None = None,
        oauth_client: str | None = None,
    ) -> bool:
        """reddit's ``feature.is_enabled``: missing arguments come from the world."""
        request = self._world.request()
        if request is not None:
            user = user if user is not None else request.user
            subreddit = subreddit or request.subreddit
            subdomain = subdomain or request.subdomain
            oauth_client = oauth_client or request.oauth_client
        return self._is_enabled(name, user, subreddit, subdomain, oauth_client, request)

    def variant(self, name: str, user: Any = None) -> str | None:
        """reddit's ``feature.variant``: a ``?feature=`` forced variant first, else
        the experiment variant (computed without the eligibility check, as reddit
        did), else ``None``."""
        request = self._world.request()
        if user is None and request is not None:
            user = request.user
        flag = self._flags().get(name)
        if flag is None or flag.switch is Switch.OFF:
            return None
        facts = self._world.describe(user)
        forced = _forced_variant(flag, request)
        if forced is not None:
            return forced
        exp = flag.experiment
        if exp is None:
            return None
        seed = self._seed(facts, request)
        if seed is None:
            return None
        return reddit_variant(reddit_bucket(flag.salt, seed), dict(exp.variants))

    def all_enabled(self, user: Any = None) -> dict[str, Any]:
        """Every flag on for ``user``: ``True``, or for experiments
        ``{"experiment_id": …, "variant": …}`` whenever a variant (controls too)."""
        request = self._world.request()
        if user is None and request is not None:
            user = request.user
        out: dict[str, Any] = {}
        for flag in self._flags().flags():
            if flag.experiment is not None:
                variant = self.variant(flag.name, user)
                if variant:
                    out[flag.name] = {"experiment_id": flag.experiment.experiment_id, "variant": variant}
            elif self._is_enabled(flag.name, user, None, None, None, request):
                out[flag.name] = True
        return out

    # -- internals -------------------------------------------------------------

    def _seed(self, facts: RedditUser | None, request: Request | None) -> str | None:
        if facts is not None:
            return facts.fullname
        if self.loggedout_experiments and request is not None:
            return request.loid
        return None

    def _is_enabled(
        self,
        name: str,
        user: Any,
        subreddit: str | None,
        subdomain: str | None,
        oauth_client: str | None,
        request: Request | None,
    ) -> bool:
        facts = self._world.describe(user)
        ctx = _context(facts, request, subreddit, subdomain, oauth_client)
        decision = self._flags().evaluate(name, ctx)
        if decision.reason not in (Reason.EXPERIMENT, Reason.CONTROL, Reason.EXCLUDED):
            return decision.enabled
        if facts is None and not self.loggedout_experiments:
            return False  # reddit buckets logged-out visitors only when told to
        if decision.variant is not None and self._on_bucketing is not None:
            seed = ctx.user_id if facts is not None else ctx.cookie_id
            self._report(name, decision.experiment_id, decision.variant, seed, facts, request)
        return decision.enabled

    def _report(
        self,
        name: str,
        experiment_id: int | None,
        variant: str,
        seed: str | None,
        facts: RedditUser | None,
        request: Request | None,
    ) -> None:
        hook = self._on_bucketing
        if hook is None or seed is None:
            return
        if request is not None:
            key = (name, seed)
            if key in request.bucketed:
                return
            request.bucketed.add(key)
        try:
            hook(BucketingEvent(experiment_id, name, variant, seed, facts))
        except Exception:  # an event sink must never break a page
            log.exception("bucketing hook failed for %s", name)


def _context(
    facts: RedditUser | None,
    request: Request | None,
    subreddit: str | None,
    subdomain: str | None,
    oauth_client: str | None,
) -> Context:
    groups = (
        frozenset(
            g
            for g, on in (
                ("admin", facts.admin),
                ("employee", facts.employee),
                ("beta", facts.beta),
                ("gold", facts.gold),
            )
            if on
        )
        if facts is not None
        else frozenset()
    )
    return Context(
        user_id=facts.fullname if facts is not None else None,
        user_name=facts.name if facts is not None else None,
        groups=groups,
        logged_in=facts is not None,
        cookie_id=request.loid if request is not None else None,
        features=tuple(request.features) if request is not None else (),
        subdomain=subdomain,
        location=subreddit,
        oauth_client=oauth_client,
    )


def _forced_variant(flag: Flag, request: Request | None) -> str | None:
    if request is None or "url" not in flag.selectors:
        return None
    doc = flag.value
    url = doc.get("url") if isinstance(doc, dict) else None
    if not isinstance(url, dict):
        return None
    for value in request.features:
        if value in url:
            return str(url[value])
    return None


def middleware_options(**changes: Any) -> RequestOptions:
    """The :class:`~flagstaff.integrations.RequestOptions` of reddit compatibility mode, for
    flagstaff's middleware in a reddit app: plain ``?feature=`` values force flags (reddit's
    unsigned form; signed tokens still work when a key is set) and the visitor cookie is
    reddit's ``loid``. ``changes`` override any field (``domain="reddit.com"``)."""
    fields: dict[str, Any] = {"cookie": "loid", "unsigned_forcing": True, **changes}
    return RequestOptions(**fields)


feature = Features()
"""The module-level API, as ``r2.config.feature``: call ``feature.configure(...)`` once."""
