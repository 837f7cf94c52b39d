"""The client: an in-memory snapshot of every flag, kept current by a store watch.

:func:`connect` opens a store by URL and returns a :class:`Client`::

    client = flagstaff.connect("sqlite:///flags.db", cache="/var/cache/app/flags.json")
    if client.is_enabled("new_checkout", {"user_id": "42"}):
        ...

Guarantees
    * Evaluation (``is_enabled``, ``variant``, ``evaluate``, ``all``) takes no
      lock, does no I/O and never raises: an unknown flag is off
      (``Reason.UNKNOWN_FLAG``), a bad context is off (``Reason.ERROR``). The
      clock is read only for a flag with a schedule and a context with no time.
    * The client holds one immutable :class:`~flagstaff.snapshot.Snapshot` and
      replaces it with one assignment, so an evaluation sees a whole snapshot.
      Changes are applied one document at a time (parse one document, copy the
      name -> flag dict); a change with a revision not above the held one is
      ignored; a ``Reset`` from the store leads to a full ``load()``.
    * All store work runs on one task of the client's :class:`Runtime` (the
      *watch task*), so changes are applied in order by a single writer. The
      store's watch callback only queues events. Listeners run on a second task
      (the *dispatcher*), so a slow listener delays nothing else.
    * The constructor waits at most ``Options.timeout`` for the first load. A
      client whose store cannot be reached serves its on-disk cache (state
      ``cached``) or nothing (state ``defaults``) and keeps retrying.
    * A document that fails validation is skipped; the flag's last good version
      is kept and the problem is logged (logger ``flagstaff.client``) and shown
      in :meth:`Client.status`. A store that comes back empty without the
      ``initialized`` marker is not believed.
    * After ``os.fork()`` the child restarts the watch (reopening the store when
      the client opened it from a URL), so pre-fork servers' workers keep
      following changes.
"""

from __future__ import annotations

import collections
import logging
import os
import re
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType, TracebackType
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from flagstaff.cache import CachedFlags, SnapshotCache
from flagstaff.context import Context, ContextLike, to_context
from flagstaff.decision import Decision
from flagstaff.errors import ClientError, StoreUnavailable, ValidationError
from flagstaff.evaluate import evaluate, unknown
from flagstaff.model import Flag, decode_document, parse_flag
from flagstaff.runtime import Event, Runtime, Task, default_runtime
from flagstaff.scope import ExposureHook, Scope, context_error, current_scope, report_exposure
from flagstaff.snapshot import Snapshot
from flagstaff.stores import Change, Reset, Store, StoreState, Watch, WatchEvent, open_store

__all__ = ["Client", "Listener", "Options", "SnapshotChange", "State", "Status", "connect", "redact_url"]

log = logging.getLogger("flagstaff.client")

_RETRY_MIN = 0.05
_RETRY_MAX = 5.0
_IDLE_WAIT = 0.5  # how often idle tasks look at the closed flag (they are also woken)


class State(StrEnum):
    """Where the flags a client serves come from."""

    LIVE = "live"
    """Loaded from the store and followed by a working watch."""
    STALE = "stale"
    """Once live, but the store cannot be reached now (``Status.age`` says since when)."""
    CACHED = "cached"
    """Served from the on-disk cache: the store has not been reached yet."""
    DEFAULTS = "defaults"
    """Nothing loaded: every flag is unknown, so off."""


@dataclass(frozen=True, slots=True)
class Status:
    """A client's health, for logs, health checks and the CLI."""

    state: State
    revision: int
    flags: int
    age: float | None
    """Seconds the data may be behind: 0 when live, since the store was lost when
    stale, since the cache was written when cached, ``None`` with no data."""
    invalid: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    """Flags whose latest document was skipped, with the validation error."""
    last_error: str | None = None
    store_url: str = ""
    """The store's URL, password removed."""


@dataclass(frozen=True, slots=True)
class SnapshotChange:
    """What a change listener is told: which flags changed, at which revision."""

    names: frozenset[str]
    revision: int
    reload: bool = False
    """True when the change came from a full load (a start, a reset)."""


Listener = Callable[[SnapshotChange], None]


@dataclass(frozen=True, slots=True)
class _Health:
    """What :meth:`Client.status` reports, published by one assignment so a
    reader never sees an error without its state (or the other way round)."""

    state: State
    since: float
    """When the data started to be stale (STALE) or was cached (CACHED)."""
    last_error: str | None
    invalid: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Options:
    """How a client behaves. Every field has a sensible default."""

    timeout: float = 5.0
    """Longest wait for the first load in the constructor (seconds; 0: don't wait)."""
    cache: str | os.PathLike[str] | SnapshotCache | None = None
    """Where to keep a copy of the last good snapshot; ``None``: no copy."""
    cache_interval: float = 0.5
    """Least time between two writes of the cache (writes are batched)."""
    runtime: Runtime | None = None
    """Threads or gevent; by default gevent when the process is monkey-patched."""
    on_exposure: ExposureHook | None = None
    """Called once per experiment exposure (once per flag within a scope)."""


def connect(
    store: str | Store,
    *,
    timeout: float = 5.0,
    cache: str | os.PathLike[str] | SnapshotCache | None = None,
    runtime: Runtime | None = None,
    on_exposure: ExposureHook | None = None,
) -> Client:
    """Open ``store`` (a URL such as ``sqlite:///flags.db``, or a Store) and
    return a client following it. See :class:`Options` for the arguments."""
    options = Options(timeout=timeout, cache=cache, runtime=runtime, on_exposure=on_exposure)
    return Client(store, options)


# Every open client, so that a forked child can restart their watches.
_CLIENTS: weakref.WeakSet[Client] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for client in list(_CLIENTS):
        client._restart_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


class Client:
    """Evaluates flags from an in-memory snapshot kept current by a store watch.

    Thread- and greenlet-safe. Use :func:`connect` to build one; close it with
    :meth:`close` or a ``with`` block.
    """

    def __init__(self, store: str | Store, options: Options | None = None) -> None:
        self.options = options = options or Options()
        self._runtime: Runtime = options.runtime or default_runtime()
        self._last_error: str | None = None
        if isinstance(store, str):
            self._url: str | None = store
            self._store: Store | None = None
            try:
                self._store = open_store(store, runtime=self._runtime)
            except StoreUnavailable as exc:  # retried on the watch task
                log.warning("store %s unavailable at start: %s", redact_url(store), exc)
                self._last_error = str(exc)
            self.store_url = redact_url(store)
        else:
            self._url = None
            self._store = store
            self.store_url = redact_url(store.url)
        self._owns_store = self._url is not None
        cache = options.cache
        self._cache = (
            cache if isinstance(cache, SnapshotCache) else SnapshotCache(cache) if cache is not None else None
        )
        self._on_exposure = options.on_exposure

        # Published state: replaced by one assignment each, read without a lock.
        self._snapshot = Snapshot()
        self._listeners: tuple[Listener, ...] = ()
        # Flags served instead of the store's (flagstaff.overrides); None on the hot path's fast branch.
        self._overrides: Mapping[str, Flag] | None = None

        # Owned by the watch task (single writer); status() reads only _health,
        # which _commit_health() rebuilds from these after every change to them.
        self._documents: dict[str, str] = {}  # name -> text of the flag we serve
        self._invalid: dict[str, str] = {}
        self._state = State.DEFAULTS
        self._since = 0.0  # when the data went stale, or when the cache was written
        self._refused_empty = False
        self._initialized = False
        self._dirty = False
        self._saved_at = 0.0

        self._closed = False
        self._generation = 0
        self._start_from_cache()
        self._commit_health()
        self._start_tasks()
        _CLIENTS.add(self)
        if options.timeout > 0 and not self._loaded.wait(options.timeout):
            log.warning(
                "no load from %s within %.1fs; serving %s flags (%s)",
                self.store_url,
                options.timeout,
                len(self._snapshot),
                self._state.value,
            )

    # ------------------------------------------------------------------ evaluation (hot path)

    def is_enabled(self, name: str, context: ContextLike = None) -> bool:
        """Whether ``name`` is on for ``context``. Never raises."""
        if context is None:
            scope = current_scope()
            if scope is not None and scope.owner is self:
                return scope.evaluate(name).enabled
        flag = self._snapshot.flags.get(name) if self._overrides is None else self._overridden(name)
        if flag is None:
            return False
        constant = flag.constant
        if constant is not None:
            return constant.enabled
        # _decide() inlined: this is the hot path.
        if type(context) is Context:
            ctx = context
        else:
            try:
                ctx = to_context(context)
            except Exception:  # never raise into the caller: a bad context is off
                return False
        if flag.schedule is None:
            try:
                decision = flag.run(ctx)  # what evaluate() would do, minus one call
            except Exception:
                decision = evaluate(flag, ctx)  # turns the failure into Reason.ERROR
        else:
            decision = evaluate(flag, ctx, time.time() if ctx.time is None else None)
        if decision.experiment_id is not None and self._on_exposure is not None:
            report_exposure(self._on_exposure, decision, ctx)
        return decision.enabled

    def variant(self, name: str, context: ContextLike = None) -> str | None:
        """The variant of ``name`` for ``context`` (``None`` when off or none)."""
        return self.evaluate(name, context).variant

    def evaluate(self, name: str, context: ContextLike = None) -> Decision:
        """The full decision for ``name``: enabled, variant, reason. Never raises."""
        if context is None:
            scope = current_scope()
            if scope is not None and scope.owner is self:
                return scope.evaluate(name)
        flag = self._snapshot.flags.get(name) if self._overrides is None else self._overridden(name)
        if flag is None:
            return unknown(name)
        constant = flag.constant
        if constant is not None:
            return constant
        return self._decide(flag, context)

    def all(self, context: ContextLike = None) -> dict[str, Decision]:
        """Every flag's decision for ``context``, from one snapshot."""
        if context is None:
            scope = current_scope()
            if scope is not None and scope.owner is self:
                return scope.all()
        flags = self._served()
        if type(context) is Context:
            ctx = context
        else:
            try:
                ctx = to_context(context)
            except Exception as exc:
                return {name: context_error(name, exc) for name in flags}
        now = time.time() if ctx.time is None else None  # one reading for all flags
        hook = self._on_exposure
        out: dict[str, Decision] = {}
        for name, flag in flags.items():
            decision = flag.constant
            if decision is None:
                if flag.schedule is None:
                    try:
                        decision = flag.run(ctx)
                    except Exception:
                        decision = evaluate(flag, ctx)
                else:
                    decision = evaluate(flag, ctx, now)
                if hook is not None and decision.experiment_id is not None:
                    report_exposure(hook, decision, ctx)
            out[name] = decision
        return out

    def _decide(self, flag: Flag, context: ContextLike) -> Decision:
        if type(context) is Context:
            ctx = context
        else:
            try:
                ctx = to_context(context)
            except Exception as exc:  # never raise into the caller
                return context_error(flag.name, exc)
        if flag.schedule is None:
            try:
                decision = flag.run(ctx)
            except Exception:
                decision = evaluate(flag, ctx)
        else:
            decision = evaluate(flag, ctx, time.time() if ctx.time is None else None)
        if decision.experiment_id is not None and self._on_exposure is not None:
            report_exposure(self._on_exposure, decision, ctx)
        return decision

    def scope(self, context: ContextLike = None) -> Scope:
        """A consistent view for one request: this snapshot, this instant.

        Use it as a context manager to make it current, so calls with no
        context inside (``client.is_enabled("x")``) are answered by it.
        """
        snap = self._snapshot
        return Scope(self, self._served(snap), snap.revision, context, time.time(), self._on_exposure)

    # ------------------------------------------------------------------ overrides

    @property
    def overrides(self) -> Mapping[str, Flag]:
        """The flags served on top of the store's (empty when none)."""
        return self._overrides or MappingProxyType({})

    def set_overrides(self, flags: Mapping[str, Flag]) -> None:
        """Serve ``flags`` instead of the store's flags of the same names, until
        replaced (an empty mapping removes them all). The store is not touched and
        store changes to those names are held but not served. Build the flags with
        :mod:`flagstaff.overrides`, whose decisions say ``Reason.OVERRIDE``.
        Change listeners are told which names changed."""
        old = self.overrides
        self._overrides = MappingProxyType(dict(flags)) if flags else None
        changed = {n for n in old.keys() | flags.keys() if old.get(n) is not flags.get(n)}
        if changed:
            self._publish(SnapshotChange(frozenset(changed), self._snapshot.revision))

    def _overridden(self, name: str) -> Flag | None:
        overrides = self._overrides or {}
        return overrides.get(name) or self._snapshot.flags.get(name)

    def _served(self, snap: Snapshot | None = None) -> Mapping[str, Flag]:
        flags = (self._snapshot if snap is None else snap).flags
        overrides = self._overrides
        return flags if overrides is None else MappingProxyType({**flags, **overrides})

    # ------------------------------------------------------------------ introspection

    @property
    def snapshot(self) -> Snapshot:
        """The snapshot being served (immutable)."""
        return self._snapshot

    def status(self) -> Status:
        """The client's state, revision, data age and problems."""
        health = self._health  # one read: state, error and invalid flags agree
        state = health.state
        if state is State.LIVE:
            age: float | None = 0.0
        elif state is State.STALE or state is State.CACHED:
            age = max(0.0, time.time() - health.since)
        else:
            age = None
        snap = self._snapshot
        return Status(
            state=state,
            revision=snap.revision,
            flags=len(snap),
            age=age,
            invalid=health.invalid,
            last_error=health.last_error,
            store_url=self.store_url,
        )

    # ------------------------------------------------------------------ listeners

    def on_change(self, callback: Listener) -> Callable[[], None]:
        """Call ``callback(update)`` after every applied change, on the
        dispatcher task. Returns a function that unsubscribes it."""
        with self._lock:
            self._listeners = (*self._listeners, callback)

        def unsubscribe() -> None:
            with self._lock:
                self._listeners = tuple(cb for cb in self._listeners if cb is not callback)

        return unsubscribe

    def wait_for_change(self, name: str, timeout: float, context: ContextLike = None) -> Decision | None:
        """Block until the decision for ``name`` (for ``context``) differs from
        the one at the call (enabled or variant), and return the new decision;
        ``None`` after ``timeout`` seconds with no such change."""
        if self._closed:
            raise ClientError("the client is closed")
        deadline = time.monotonic() + max(0.0, timeout)
        event = self._runtime.event()
        with self._lock:
            self._waiters.setdefault(name, []).append(event)
        try:
            before = self._evaluate_live(name, context)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closed:
                    return None
                event.wait(remaining)
                event.clear()
                after = self._evaluate_live(name, context)
                if (after.enabled, after.variant) != (before.enabled, before.variant):
                    return after
        finally:
            with self._lock:
                waiting = self._waiters.get(name, [])
                if event in waiting:
                    waiting.remove(event)
                if not waiting:
                    self._waiters.pop(name, None)

    def _evaluate_live(self, name: str, context: ContextLike) -> Decision:
        # Like evaluate() but ignoring the current scope: waiting wants fresh data.
        flag = self._overridden(name)
        if flag is None:
            return unknown(name)
        return flag.constant or self._decide(flag, context)

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Stop following the store and release it (if opened from a URL). Idempotent."""
        if self._closed:
            return
        self._closed = True
        _CLIENTS.discard(self)
        self._wake.set()
        self._dispatch_wake.set()
        with self._lock:
            for events in self._waiters.values():
                for event in events:
                    event.set()
        self._join(self._task)
        self._join(self._dispatcher)
        if self._dirty:
            self._save_cache()
        if self._owns_store and self._store is not None:
            try:
                self._store.close()
            except Exception:
                log.exception("closing store %s failed", self.store_url)

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        snap = self._snapshot
        return (
            f"<Client {self.store_url} {self._health.state.value} revision={snap.revision} flags={len(snap)}>"
        )

    def _join(self, task: Task | None) -> None:
        if task is None or threading.get_ident() in self._task_idents:
            return  # close() called from one of our own tasks (e.g. a listener)
        try:
            task.join(2.0)
        except RuntimeError as exc:
            log.debug("cannot join %r: %s", task, exc)

    # ------------------------------------------------------------------ tasks

    def _start_tasks(self) -> None:
        rt = self._runtime
        self._lock = rt.lock()
        self._wake: Event = rt.event()
        self._loaded: Event = rt.event()
        self._dispatch_wake: Event = rt.event()
        self._inbox: collections.deque[WatchEvent] = collections.deque()
        self._outbox: collections.deque[SnapshotChange] = collections.deque()
        self._waiters: dict[str, list[Event]] = {}
        self._need_load = True
        self._task_idents: set[int] = set()
        generation = self._generation
        self._task: Task | None = rt.spawn(self._run, generation, name="flagstaff-client")
        self._dispatcher: Task | None = rt.spawn(self._dispatch, generation, name="flagstaff-dispatch")

    def _running(self, generation: int) -> bool:
        return not self._closed and generation == self._generation

    def _run(self, generation: int) -> None:
        """The watch task: loads, applies changes in order, writes the cache."""
        self._task_idents.add(threading.get_ident())
        backoff = _RETRY_MIN
        watch: Watch | None = None
        try:
            while self._running(generation):
                if self._need_load:
                    try:
                        watch = self._load_and_watch(watch)
                    except Exception as exc:
                        self._failed(exc)
                        self._wake.wait(backoff)
                        backoff = min(backoff * 2, _RETRY_MAX)
                        continue
                    backoff = _RETRY_MIN
                    self._loaded.set()
                self._drain()
                if self._dirty and time.monotonic() - self._saved_at >= self.options.cache_interval:
                    self._save_cache()
                if self._inbox or self._need_load:
                    continue
                self._wake.wait(self.options.cache_interval if self._dirty else _IDLE_WAIT)
                self._wake.clear()
        except Exception as exc:  # a bug: say so in status() rather than die silently
            log.exception("the flagstaff watch task failed; the client keeps serving %s", self._state)
            self._last_error = f"watch task failed: {type(exc).__name__}: {exc}"
            if self._state is State.LIVE:
                self._state, self._since = State.STALE, time.time()
            self._commit_health()
        finally:
            if watch is not None and generation == self._generation:
                try:
                    watch.stop()
                except Exception:
                    log.exception("stopping the watch on %s failed", self.store_url)

    def _load_and_watch(self, watch: Watch | None) -> Watch:
        store = self._store
        if store is None:
            assert self._url is not None
            store = self._store = open_store(self._url, runtime=self._runtime)
        state = store.load()
        self._adopt(state)
        if watch is None:
            watch = store.watch(self._on_event, state.revision)
        self._need_load = False
        return watch

    def _on_event(self, event: WatchEvent) -> None:
        # Runs on the store's task: only queue (the store wants quick callbacks).
        self._inbox.append(event)
        self._wake.set()

    def _failed(self, exc: Exception) -> None:
        message = f"{type(exc).__name__}: {exc}"
        if message != self._last_error:
            log.warning("cannot load flags from %s: %s", self.store_url, message)
        self._last_error = message
        if self._state is State.LIVE:
            self._state = State.STALE
            self._since = time.time()
        self._commit_health()

    def _drain(self) -> None:
        changed: set[str] = set()
        while self._inbox and not self._need_load:
            event = self._inbox.popleft()
            if isinstance(event, Reset):
                log.info("store %s reset its watch (%s); reloading", self.store_url, event.reason)
                self._need_load = True
            elif event.revision > self._snapshot.revision:
                if self._refused_empty:
                    # The store was written through flagstaff since it came back empty:
                    # believe it again, in full.
                    self._need_load = True
                    self._inbox.appendleft(event)
                else:
                    self._apply(event, changed)
        if changed:
            self._publish(SnapshotChange(frozenset(changed), self._snapshot.revision))

    def _apply(self, change: Change, changed: set[str]) -> None:
        """One change: parse one document, copy the dict once, swap."""
        name, record, now = change.name, change.record, time.time()
        snap = self._snapshot
        if record is None:
            self._invalid.pop(name, None)
            self._documents.pop(name, None)
            self._snapshot = snap.without(name, change.revision, now)
            changed.add(name)
        else:
            try:
                flag = _parse(name, record.raw)
            except ValidationError as exc:
                self._skip(name, exc, kept=name in snap)
                self._snapshot = Snapshot(snap.flags, change.revision, now)  # same flags, newer revision
            else:
                self._invalid.pop(name, None)
                self._documents[name] = record.raw
                self._snapshot = snap.with_flag(flag, change.revision, now)
                changed.add(name)
        self._initialized = True
        self._dirty = True
        self._live()

    def _adopt(self, state: StoreState) -> None:
        """A full load: reuse every flag whose document did not change."""
        old = self._snapshot
        if not state.records and not state.initialized and len(old):
            self._refused_empty = True
            self._last_error = (
                f"store {self.store_url} returned no flags and was never written through flagstaff; "
                f"keeping the {len(old)} flags held"
            )
            log.warning("%s", self._last_error)
            self._snapshot = Snapshot(old.flags, state.revision, time.time())
            if self._state is not State.CACHED:
                self._state = State.STALE
                self._since = time.time()
            self._commit_health()
            return
        self._refused_empty = False
        flags: dict[str, Flag] = {}
        documents: dict[str, str] = {}
        invalid: dict[str, str] = {}
        for name, record in state.records.items():
            prior = old.flags.get(name)
            if prior is not None and self._documents.get(name) == record.raw:
                flags[name], documents[name] = prior, record.raw
                continue
            try:
                flags[name] = _parse(name, record.raw)
                documents[name] = record.raw
            except ValidationError as exc:
                invalid[name] = str(exc)
                self._skip(name, exc, kept=prior is not None)
                if prior is not None:
                    flags[name], documents[name] = prior, self._documents[name]
        changed = {n for n in flags.keys() | old.flags.keys() if flags.get(n) is not old.flags.get(n)}
        self._documents, self._invalid = documents, invalid
        self._initialized = state.initialized
        self._snapshot = Snapshot(MappingProxyType(flags), state.revision, time.time())
        self._dirty = True
        self._live()
        if changed:
            self._publish(SnapshotChange(frozenset(changed), state.revision, reload=True))

    def _skip(self, name: str, exc: ValidationError, *, kept: bool) -> None:
        self._invalid[name] = str(exc)
        what = "keeping its last good version" if kept else "the flag stays unknown"
        log.warning("skipping an invalid document for flag %r (%s): %s", name, what, exc)

    def _live(self) -> None:
        if self._state is not State.LIVE and not self._refused_empty:
            log.info("following %s live at revision %d", self.store_url, self._snapshot.revision)
        if not self._refused_empty:
            self._state = State.LIVE
            if self._last_error and not self._invalid:
                self._last_error = None
        self._commit_health()

    def _commit_health(self) -> None:
        """Publish state, error and invalid flags together (watch task only)."""
        self._health = _Health(
            self._state, self._since, self._last_error, MappingProxyType(dict(self._invalid))
        )

    # ------------------------------------------------------------------ listeners' task

    def _publish(self, update: SnapshotChange) -> None:
        with self._lock:
            for name in update.names:
                for event in self._waiters.get(name, ()):
                    event.set()
        if self._listeners:
            self._outbox.append(update)
            self._dispatch_wake.set()

    def _dispatch(self, generation: int) -> None:
        self._task_idents.add(threading.get_ident())
        while self._running(generation):
            self._dispatch_wake.wait(_IDLE_WAIT)
            self._dispatch_wake.clear()
            while self._outbox and self._running(generation):
                update = self._outbox.popleft()
                for callback in self._listeners:
                    try:
                        callback(update)
                    except Exception:
                        log.exception("a change listener failed on %s", sorted(update.names))

    # ------------------------------------------------------------------ disk cache

    def _start_from_cache(self) -> None:
        if self._cache is None:
            return
        self._cache.sweep()
        cached = self._cache.load()
        if cached is None:
            return
        if cached.store_url and cached.store_url != self.store_url:
            log.warning(
                "the snapshot cache %s belongs to %s, not %s; ignoring it",
                self._cache.path,
                cached.store_url,
                self.store_url,
            )
            return
        flags: dict[str, Flag] = {}
        for name, raw in cached.documents.items():
            try:
                flags[name] = _parse(name, raw)
                self._documents[name] = raw
            except ValidationError as exc:
                log.warning("skipping flag %r from the snapshot cache: %s", name, exc)
        self._snapshot = Snapshot(MappingProxyType(flags), cached.revision, cached.saved_at)
        self._initialized = cached.initialized
        self._state = State.CACHED
        self._since = cached.saved_at
        log.info("serving %d flags from the snapshot cache %s", len(flags), self._cache.path)

    def _save_cache(self) -> None:
        self._dirty = False
        self._saved_at = time.monotonic()
        if self._cache is None:
            return
        snap = self._snapshot
        try:
            self._cache.save(
                CachedFlags(
                    revision=snap.revision,
                    documents=dict(self._documents),
                    initialized=self._initialized,
                    saved_at=time.time(),
                    store_url=self.store_url,
                )
            )
        except OSError as exc:
            log.warning("cannot write the snapshot cache %s: %s", self._cache.path, exc)

    # ------------------------------------------------------------------ fork

    def _restart_after_fork(self) -> None:
        """In a forked child: the parent's tasks are gone; start ours again."""
        if self._closed:
            return
        self._generation += 1
        if self._owns_store:
            # The parent's connections must not be shared: open our own.
            self._store = None
        self._start_tasks()
        log.debug("restarted the watch on %s after fork (pid %d)", self.store_url, os.getpid())


def redact_url(url: str) -> str:
    """``url`` without its secrets, for logs and status: the password of the
    user part (``redis://user:***@host``) and query values whose name says
    password, token, secret or key."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password is not None:
            host = parts.hostname or ""
            if parts.port is not None:
                host = f"{host}:{parts.port}"
            netloc = f"{parts.username or ''}:***@{host}"
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            if any(_SECRET_PARAM.search(k) for k, _ in pairs):
                query = "&".join(
                    f"{k}=***" if _SECRET_PARAM.search(k) else urlencode({k: v}) for k, v in pairs
                )
        if netloc == parts.netloc and query == parts.query:
            return url
        return urlunsplit(parts._replace(netloc=netloc, query=query))
    except ValueError:  # not parseable: show only the scheme
        return url.split(":", 1)[0] + "://***"


_SECRET_PARAM = re.compile(r"pass|token|secret|key|auth", re.IGNORECASE)


def _parse(name: str, raw: str) -> Flag:
    return parse_flag(name, decode_document(raw))
