"""What every handler shares: the settings, the store, a client following it, tokens, events, metrics.

One :class:`ServerState` per app, built by :func:`flagstaff.http.app.create_app`
and reachable as ``request.app.state.flagstaff`` (:func:`state_of`). It owns the
server's client, its event feed (:class:`~flagstaff.http.events.EventBroker`), the
token database and, when the app opened it, the store; :meth:`ServerState.close`
stops them all.

Writes: :meth:`ServerState.admin_for` gives an :class:`~flagstaff.admin.Admin`
whose author (:func:`author_text`) names the caller, its token and the request,
so the store's history entry for each write is its audit record.

This module sits below the handlers (``auth``, ``api``, ``ui``) and above
``tokens``, ``metrics`` and ``events``: it imports none of the handlers.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from starlette.requests import Request

from flagstaff import forcing
from flagstaff.admin import Admin
from flagstaff.changes import ChangeStore, default_change_db
from flagstaff.client import Client, Options
from flagstaff.document import MAX_DOCUMENT_BYTES
from flagstaff.exposures import SQLiteSink
from flagstaff.http.clientside import ClientKeyStore, ClientSide, TokenBuckets
from flagstaff.http.events import EventBroker
from flagstaff.http.guarding import GuardLoop
from flagstaff.http.metrics import Metrics
from flagstaff.http.tokens import Permission, Principal, TokenStore
from flagstaff.http.users import UserStore
from flagstaff.metrics import Sample, client_samples
from flagstaff.stores import Store

__all__ = ["RateLimiter", "ServerState", "Settings", "author_text", "default_events_db", "state_of"]

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
    auth_total_failures: int = 100
    """Failed attempts allowed from all addresses together within ``auth_window``."""
    auth_penalty: float = 1.0
    """Seconds a failed attempt past either limit waits for its answer (4 such answers at a time)."""
    login_link_seconds: float = 600.0
    """How long a login link (``serve --login-link``) can be used, once."""
    ping_interval: float = 15.0
    """Seconds between keep-alive comments on an idle event stream."""
    load_timeout: float = 10.0
    """Longest wait at start for the first load of the flags (the server starts anyway)."""
    force_key: bytes | str | None = field(default=None, repr=False)
    """The key signing QA forcing tokens (``POST /api/v1/force-tokens``); default
    ``$FLAGSTAFF_FORCE_KEY``. None and no variable: the server makes no token."""
    events_db: str | None = None
    """The SQLite file ``POST /api/v1/ingest`` writes events to (:class:`flagstaff.exposures.SQLiteSink`).
    ``None``: beside a SQLite store's file (``flagstaff.db.events``), none for other stores;
    ``""``: none (the endpoint answers 501)."""
    guard_interval: float = 60.0
    """Seconds between the guard loop's rounds over every flag with guardrails
    (:mod:`flagstaff.http.guarding`; needs an event store); 0: no loop."""
    requires_approval: bool = False
    """Flag and segment writes need an approved change request (``serve --requires-approval``;
    docs/changes.md): direct writes are refused with 403, except the kill switch."""
    approval_environments: frozenset[str] = frozenset()
    """Environments (by name, :mod:`flagstaff.http.environments`) where writes need an
    approved change request, when ``requires_approval`` does not already ask it of all
    (``serve --approval-env NAME``, or ``"requires_approval": true`` in the environments file)."""
    requires_comment: bool = False
    """Every flag and segment write through the API, and every change request, must say why
    (``comment``; 422 otherwise), except the kill switch (``serve --requires-comment``)."""
    comment_environments: frozenset[str] = frozenset()
    """Environments (by name) where a comment is required, when ``requires_comment`` does not
    already ask it of all (``serve --comment-env NAME``, ``"requires_comment": true`` in the file)."""
    changes_db: str | None = None
    """The change request database (:class:`flagstaff.changes.ChangeStore`); ``None``: beside
    the token database (``flagstaff.db.tokens`` -> ``flagstaff.db.changes``)."""
    schedule_interval: float = 5.0
    """Seconds between two looks for approved change requests whose ``apply_at`` has come."""
    clientside: ClientSide = field(default_factory=ClientSide)
    """Client-side evaluation (``/api/v1/client/evaluate``): CORS origins and rate limits."""


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
        users: UserStore | None = None,
    ) -> None:
        self.store = store
        self.users = users  # people who log in with a password (flagstaff.http.users); shared by environments
        self.settings = settings or Settings()
        if not self.settings.guard_interval >= 0:  # checked before anything starts
            raise ValueError("the guard interval must be 0 (off) or more seconds")
        self.open_mode = open_mode
        self.tokens = tokens
        self.secret = tokens.secret("session")
        self.metrics = Metrics()
        self.limiter = RateLimiter(
            self.settings.auth_failures,
            self.settings.auth_window,
            total_limit=self.settings.auth_total_failures,
            penalty=self.settings.auth_penalty,
        )
        key = self.settings.force_key
        # Checked here, so a short key stops the server at start rather than at the first token.
        self.force_key = forcing.key_from_env() if key is None else forcing.check_key(key)
        self.client = Client(store, Options(timeout=self.settings.load_timeout))
        self.admin = Admin(store)
        self.events = EventBroker(self.client.follower)  # the client's watch, not a second one; started below
        self.started_at = time.time()
        self._owns_store = owns_store
        self._closed = False
        self._revoke_at_close: list[str] = []
        self.client.on_change(
            lambda change: self.metrics.inc("flagstaff_changes_applied_total", len(change.names))
        )
        self.metrics.gauge(self._gauges)
        self.events.start()
        events_db = self.settings.events_db
        self.events_db = default_events_db(store.url) if events_db is None else events_db or None
        self._event_sink: SQLiteSink | None = None  # opened by the first ingest: no file until then
        self._event_sink_lock = threading.Lock()
        self.guard: GuardLoop | None = None  # no event store: nothing to judge guardrails by
        if self.events_db is not None:
            self.guard = GuardLoop(
                store,
                self.events_db,
                lambda: self.client.snapshot,
                self.metrics,
                interval=self.settings.guard_interval,
            )
            self.guard.start()
        self.changes = ChangeStore(self.settings.changes_db or default_change_db(tokens.path))
        self._at_close: list[Callable[[], None]] = []
        client = self.settings.clientside
        self.client_keys = ClientKeyStore(tokens.path)  # public client keys: their own table
        self.client_key_buckets = TokenBuckets(client.key_rate, client.key_burst)
        self.client_address_buckets = TokenBuckets(client.address_rate, client.address_burst)

    def at_close(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` first when the state closes (the app's scheduler stops this way)."""
        self._at_close.append(fn)

    def admin_for(self, principal: Principal, request_id: str) -> Admin:
        """An Admin whose writes are recorded as made by ``principal`` in this request.

        The author text carries the token id and request id into the store's
        history, which is the audit trail: one entry per accepted write, with
        when, before and after (:func:`flagstaff.http.present.parse_author` reads it back).
        """
        return Admin(self.store, author=author_text(principal, request_id))

    def login_token(self) -> str:
        """A new admin login token for a login link: one use, expiring by itself after
        ``Settings.login_link_seconds`` (even if this process is killed), and revoked
        (with the sessions it opened) when this server closes."""
        info, token = self.tokens.create(
            "login link (flagstaff serve)",
            Permission.ADMIN,
            expires_in=self.settings.login_link_seconds,
            kind="login",
        )
        self._revoke_at_close.append(info.id)
        return token

    @property
    def event_sink(self) -> SQLiteSink | None:
        """Where ``POST /api/v1/ingest`` writes (``None``: no event store configured).
        Opened on first use; a failure to open raises ``sqlite3.Error`` (and is tried again next time)."""
        if self.events_db is None:
            return None
        with self._event_sink_lock:
            if self._event_sink is None and not self._closed:
                self._event_sink = SQLiteSink(self.events_db)
            return self._event_sink

    def _gauges(self) -> Iterable[Sample]:
        yield from client_samples(self.client)
        yield "flagstaff_event_subscribers", (), float(self.events.subscribers)

    def close(self) -> None:
        """Stop the event feed and the client, close the token database (and the
        store if the app opened it). Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self.guard is not None:
            self.guard.stop()
        for fn in self._at_close:
            fn()
        self.changes.close()
        self.client_keys.close()
        for token_id in self._revoke_at_close:
            self.tokens.revoke(token_id)
        self.events.stop()
        self.client.close()
        self.tokens.close()
        if self.users is not None:
            self.users.close()
        with self._event_sink_lock:
            if self._event_sink is not None:
                self._event_sink.close()
        if self._owns_store:
            self.store.close()


def default_events_db(store_url: str) -> str | None:
    """Where ingested events go by default: beside a SQLite store's file
    (``flagstaff.db`` -> ``flagstaff.db.events``); ``None`` for any other store."""
    parts = urlsplit(store_url)
    if parts.scheme == "sqlite" and parts.path not in ("", "/", "/:memory:"):
        return parts.path[1:] + ".events"
    return None


def author_text(principal: Principal, request_id: str) -> str:
    """``name [token ID, request RID]``: who, in the store's history."""
    token = principal.token_id or "none"
    return f"{principal.name} [token {token}, request {request_id}]"


class RateLimiter:
    """Failed attempts counted per client address and in total, and the delay past either limit.

    At most ``limit`` failures per address and ``total_limit`` in all within ``window``
    seconds are answered at once. Past that, a failure is answered only after
    :meth:`penalty` seconds: the penalties are queued one after another, ``penalty``
    seconds long, ``slots`` at a time, so guesses beyond the limits come at most
    ``slots / penalty`` per second across all clients. Successes are never delayed.
    """

    def __init__(
        self, limit: int, window: float, *, total_limit: int = 100, penalty: float = 1.0, slots: int = 4
    ) -> None:
        self.limit = limit
        self.window = window
        self.total_limit = total_limit
        self.delay = penalty
        self.slots = slots
        self.max_wait = 60.0  # a flood still gets its answers (late), it does not pile up for ever
        self._lock = threading.Lock()
        self._failures: dict[str, collections.deque[float]] = {}
        self._all: collections.deque[float] = collections.deque()
        self._next_slot = 0.0

    def _trim(self, times: collections.deque[float], now: float) -> None:
        while times and times[0] <= now - self.window:
            times.popleft()

    def blocked(self, address: str) -> float:
        """Seconds until ``address`` is under its own limit again (0: it is now)."""
        now = time.monotonic()
        with self._lock:
            times = self._failures.get(address)
            if times is None:
                return 0.0
            self._trim(times, now)
            if not times:
                del self._failures[address]
                return 0.0
            return times[0] + self.window - now if len(times) >= self.limit else 0.0

    def over(self, address: str) -> bool:
        """Whether a failure from ``address`` now is past its own limit or the total one."""
        if self.blocked(address) > 0:
            return True
        with self._lock:
            self._trim(self._all, time.monotonic())
            return len(self._all) >= self.total_limit

    def fail(self, address: str) -> None:
        with self._lock:
            if len(self._failures) > 100_000:  # a flood of addresses: forget the oldest
                self._failures.pop(next(iter(self._failures)))
            now = time.monotonic()
            self._failures.setdefault(address, collections.deque()).append(now)
            self._all.append(now)
            if len(self._all) > 10 * max(self.total_limit, 1):
                self._all.popleft()

    def penalty(self) -> float:
        """Reserve a place in the penalty queue: how long this answer must wait."""
        now = time.monotonic()
        with self._lock:
            start = max(now, self._next_slot)
            self._next_slot = start + self.delay / self.slots
            return min(start - now + self.delay, self.max_wait)

    async def wait(self) -> None:
        await asyncio.sleep(self.penalty())


def state_of(request: Request) -> ServerState:
    """The state of the environment serving ``request`` (the app's own state outside
    :class:`~flagstaff.http.environments.EnvironmentRouter`)."""
    # "flagstaff_state" is flagstaff.http.environments.STATE_KEY (that module imports this one).
    state: ServerState | None = request.scope.get("flagstaff_state")
    if state is None:
        state = request.app.state.flagstaff
    return state
