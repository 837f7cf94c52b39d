"""Following a store: every flag, parsed, in an immutable snapshot kept current by the store's watch.

A :class:`Follower` is the one way flagstaff follows a store. The client
(:class:`flagstaff.client.Client`) evaluates over one, the compatibility layers
(``flagstaff.compat``) read over one, and the HTTP server's event feed
(``GET /api/v1/events``) relays the changes of its client's follower, so a
process keeps one watch per store it follows.

Guarantees
    * The follower holds one immutable :class:`~flagstaff.snapshot.Snapshot`
      and replaces it with one assignment, so a reader sees a whole snapshot
      and takes no lock. Changes are applied one document at a time (parse one
      document with :func:`~flagstaff.model.parse_text`, copy the name -> flag
      dict); a change with a revision not above the held one is ignored; a
      ``Reset`` from the store leads to a full ``load()``. The changes of one
      atomic write (``Store.put_many``: ``Change.more`` counting down to 0) are
      held until the last arrives and then swapped in at once, so a reader sees
      all of them or none.
    * Segments (records under ``segment:NAME``, :mod:`flagstaff.segments`) are
      followed like flags, in the same snapshot: a segment change re-links the
      flags that use it (:meth:`Snapshot.with_segment
      <flagstaff.snapshot.Snapshot.with_segment>`), so it reaches all of them in
      one swap. An invalid segment is skipped like an invalid flag (its last good
      version kept, the problem in :meth:`Follower.status` under its key).
    * A large segment is stored in parts (:mod:`flagstaff.parts`): its head
      (``segment:NAME``) names part documents (``segment:NAME:part:DIGEST``). Parts
      are held as text and never served as flags or segments; a head is compiled
      with its parts into one segment. A head whose part is missing or invalid is an
      invalid segment (last good version kept, the part named in ``status()``),
      compiled again when the part arrives; a part of the served head deleted by
      another route is reported the same way while the segment keeps serving.
    * All store work runs on one task of the follower's :class:`Runtime` (the
      *watch task*), so changes are applied in order by a single writer. The
      store's watch callback only queues events. Listeners run on a second task
      (the *dispatcher*), so a slow listener delays nothing else. Each listener
      is told which flags changed and is handed the store's records as they
      changed (a :class:`SnapshotChange`), invalid documents included.
    * A store watch that loses its backend says so (``Disconnected``): the
      follower turns ``stale`` (data age counted from the last contact) and
      turns ``live`` again after the full reload that the store's ``Reset``
      asks for once contact is back, or, without a reload, on the store's
      ``Resumed`` (it replayed every change of the outage first) when the
      disconnection was the only reason to be stale. With a load failed or
      pending, an empty store refused or an atomic write held incomplete, a
      ``Resumed`` is taken as a ``Reset``.
    * A follower whose store cannot be reached serves its on-disk cache (state
      ``cached``) or nothing (state ``defaults``) and keeps retrying.
    * A document that fails validation is skipped; the flag's last good version
      is kept and the problem is logged (logger ``flagstaff.client``) and shown
      in :meth:`Follower.status`. A store that comes back empty without the
      ``initialized`` marker is not believed (except by an explicit
      :meth:`Follower.reload`).
    * After ``os.fork()`` the child restarts the watch (reopening the store when
      the follower opened it from a URL), so pre-fork servers' workers keep
      following changes.
"""

from __future__ import annotations

import collections
import contextlib
import gc
import json
import logging
import os
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

from flagstaff.cache import CachedFlags, SnapshotCache
from flagstaff.document import PART_MARK, is_part_key, is_segment_key, part_owner, segment_key, segment_name
from flagstaff.errors import ClientError, Problem, StoreUnavailable, ValidationError
from flagstaff.model import Flag, parse_text, printable_text
from flagstaff.parts import PARTS_KEY, Lookup
from flagstaff.runtime import Event, Runtime, Task, default_runtime
from flagstaff.segments import Segment, parse_segment_text
from flagstaff.snapshot import Snapshot
from flagstaff.stores import (
    Change,
    Disconnected,
    Reset,
    Resumed,
    Store,
    StoreState,
    Watch,
    WatchEvent,
    open_store,
)
from flagstaff.stores._url import redact_url
from flagstaff.stores.base import Record

__all__ = ["Follower", "Listener", "SnapshotChange", "State", "Status"]

# The client's logger: what the follower logs is what `flagstaff.client` always logged.
log = logging.getLogger("flagstaff.client")

_RETRY_MIN = 0.05
_RETRY_MAX = 5.0
_IDLE_WAIT = 0.5  # how often idle tasks look at the closed flag (they are also woken)
_LOST = "lost contact with the store"


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
    """Flags (and segments, by ``segment:NAME`` key) whose latest document was
    skipped, with the validation error."""
    last_error: str | None = None
    store_url: str = ""
    """The store's URL, password removed."""
    segments: int = 0
    """Segments in the served snapshot."""


@dataclass(frozen=True, slots=True)
class SnapshotChange:
    """What a change listener is told: which flags changed, at which revision.

    ``names`` holds every document whose change was applied (a flag's name, a
    segment's ``segment:NAME`` key) and every flag whose decisions may change
    because of it: the flags that use a changed segment (every flag running an
    experiment, for a holdout segment) and those that require a changed flag,
    transitively (:meth:`Snapshot.dependents
    <flagstaff.snapshot.Snapshot.dependents>`). So a listener that keeps
    something per flag (a rendered page, a compatibility layer's view) refreshes
    exactly the names it is given, and a segment key in ``names`` is not a flag."""

    names: frozenset[str]
    revision: int
    reload: bool = False
    """True when the change came from a full load (a start, a reset)."""
    changes: tuple[Change, ...] = field(default=(), compare=False, repr=False)
    """The store's records as they changed, in order, invalid documents included
    (``Change.record`` is ``None`` for a deletion). After a full load, one change
    per record that differs from the one held, at the loaded revision. Empty for
    a change that touched no record (a client's overrides)."""


Listener = Callable[[SnapshotChange], None]


@dataclass(frozen=True, slots=True)
class _Health:
    """What :meth:`Follower.status` reports, published by one assignment so a
    reader never sees an error without its state (or the other way round)."""

    state: State
    since: float
    """When the data started to be stale (STALE) or was cached (CACHED)."""
    last_error: str | None
    invalid: Mapping[str, str]


class _Request:
    """A :meth:`Follower.reload` call waiting for a full load that starts after it."""

    def __init__(self, event: Event) -> None:
        self.done = event
        self.error: Exception | None = None


# Every open follower, so that a forked child can restart their watches.
_FOLLOWERS: weakref.WeakSet[Follower] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for follower in list(_FOLLOWERS):
        follower._restart_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


class Follower:
    """Every flag of ``store`` (a URL or a :class:`Store`), parsed, in an immutable
    snapshot kept current by the store's watch. Thread- and greenlet-safe.

    ``cache`` keeps a copy of the last good snapshot on disk (written at most
    every ``cache_interval`` seconds) and serves it until the store is reached.
    A store opened from a URL is the follower's own: reopened after a fork and
    closed by :meth:`close`.
    """

    def __init__(
        self,
        store: str | Store,
        *,
        runtime: Runtime | None = None,
        cache: str | os.PathLike[str] | SnapshotCache | None = None,
        cache_interval: float = 0.5,
    ) -> None:
        self._runtime: Runtime = runtime or default_runtime()
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
        self._cache = (
            cache if isinstance(cache, SnapshotCache) else SnapshotCache(cache) if cache is not None else None
        )
        self._cache_interval = cache_interval

        # Published state: replaced by one assignment each, read without a lock.
        self._snapshot = Snapshot()
        self._listeners: tuple[Listener, ...] = ()

        # Owned by the watch task (single writer); status() reads only _health,
        # which _commit_health() rebuilds from these after every change to them.
        self._documents: dict[str, str] = {}  # name -> text of the flag we serve
        self._records: dict[str, Record] = {}  # name -> the store's record, valid or not
        self._invalid: dict[str, str] = {}
        self._state = State.DEFAULTS
        self._since = 0.0  # when the data went stale, or when the cache was written
        self._refused_empty = False
        self._disconnected = False  # the watch said it lost the store; live again after a reload or Resumed
        self._initialized = False
        self._dirty = False
        self._saved_at = 0.0

        self._closed = False
        self._generation = 0
        self._start_from_cache()
        self._commit_health()
        self._start_tasks()
        _FOLLOWERS.add(self)

    # ------------------------------------------------------------------ reads

    @property
    def snapshot(self) -> Snapshot:
        """The snapshot being served (immutable)."""
        return self._snapshot

    @property
    def store(self) -> Store | None:
        """The store followed (``None`` while a store given by URL cannot be opened)."""
        return self._store

    @property
    def runtime(self) -> Runtime:
        return self._runtime

    @property
    def state(self) -> State:
        return self._health.state

    @property
    def loaded(self) -> bool:
        """Whether a full load has succeeded since the follower started (or forked)."""
        return self._loaded.is_set()

    @property
    def closed(self) -> bool:
        return self._closed

    def wait_loaded(self, timeout: float) -> bool:
        """Wait at most ``timeout`` seconds for the first full load; whether it is in."""
        return self._loaded.wait(timeout)

    def status(self) -> Status:
        """The state, revision, data age and problems."""
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
            segments=len(snap.segments),
        )

    def reload(self, timeout: float | None = None) -> None:
        """Load every flag again now and return once the load is in (an empty store
        is believed: the caller knows it was emptied). Raises what the load raised,
        or :class:`StoreUnavailable` after ``timeout`` seconds."""
        if self._closed:
            raise ClientError("the follower is closed")
        request = _Request(self._runtime.event())
        self._requests.append(request)
        self._wake.set()
        if not request.done.wait(timeout):
            raise StoreUnavailable(f"no reload of {self.store_url} within {timeout}s")
        if request.error is not None:
            raise request.error

    # ------------------------------------------------------------------ listeners

    def on_change(self, callback: Listener) -> Callable[[], None]:
        """Call ``callback(change)`` after every applied change, on the
        dispatcher task. Returns a function that unsubscribes it."""
        with self._lock:
            self._listeners = (*self._listeners, callback)

        def unsubscribe() -> None:
            with self._lock:
                self._listeners = tuple(cb for cb in self._listeners if cb is not callback)

        return unsubscribe

    def add_waiter(self, name: str) -> Event:
        """An event set whenever flag ``name`` changes (see :meth:`publish`) and at close."""
        event = self._runtime.event()
        with self._lock:
            self._waiters.setdefault(name, []).append(event)
        return event

    def remove_waiter(self, name: str, event: Event) -> None:
        with self._lock:
            waiting = self._waiters.get(name, [])
            if event in waiting:
                waiting.remove(event)
            if not waiting:
                self._waiters.pop(name, None)

    def publish(self, change: SnapshotChange) -> None:
        """Wake the waiters on the changed names, and queue ``change`` for the listeners."""
        with self._lock:
            for name in change.names:
                for event in self._waiters.get(name, ()):
                    event.set()
        if self._listeners:
            self._outbox.append(change)
            self._dispatch_wake.set()

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Stop following the store and release it (if opened from a URL). Idempotent."""
        if self._closed:
            return
        self._closed = True
        _FOLLOWERS.discard(self)
        self._wake.set()
        self._dispatch_wake.set()
        with self._lock:
            for events in self._waiters.values():
                for event in events:
                    event.set()
        self._join(self._task)
        self._join(self._dispatcher)
        _answer(list(self._requests), ClientError("the follower is closed"))
        if self._dirty:
            self._save_cache()
        if self._owns_store and self._store is not None:
            try:
                self._store.close()
            except Exception:
                log.exception("closing store %s failed", self.store_url)

    def __repr__(self) -> str:
        snap = self._snapshot
        return (
            f"<Follower {self.store_url} {self._health.state.value} "
            f"revision={snap.revision} flags={len(snap)}>"
        )

    def _join(self, task: Task | None) -> None:
        if task is None or self._runtime.task_id() in self._task_ids:
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
        self._requests: collections.deque[_Request] = collections.deque()
        self._waiters: dict[str, list[Event]] = {}
        self._need_load = True
        self._group: list[Change] = []  # see _drain
        self._task_ids: set[int] = set()
        generation = self._generation
        self._task: Task | None = rt.spawn(self._run, generation, name="flagstaff-client")
        self._dispatcher: Task | None = rt.spawn(self._dispatch, generation, name="flagstaff-dispatch")

    def _running(self, generation: int) -> bool:
        return not self._closed and generation == self._generation

    def _run(self, generation: int) -> None:
        """The watch task: loads, applies changes in order, writes the cache."""
        self._task_ids.add(self._runtime.task_id())
        backoff = _RETRY_MIN
        watch: Watch | None = None
        try:
            while self._running(generation):
                serving: list[_Request] = []
                while self._requests:  # reload() calls: served by a load that starts now
                    serving.append(self._requests.popleft())
                if serving:
                    self._need_load = True
                if self._need_load:
                    try:
                        watch = self._load_and_watch(watch, trust_empty=bool(serving))
                    except Exception as exc:
                        self._failed(exc)
                        _answer(serving, exc)
                        self._wake.wait(backoff)
                        backoff = min(backoff * 2, _RETRY_MAX)
                        continue
                    _answer(serving, None)
                    backoff = _RETRY_MIN
                    self._loaded.set()
                try:
                    self._drain()
                except Exception as exc:
                    # A change this follower could not apply (a bug, not a bad document: those
                    # are skipped): reload in full rather than stop following the store for good.
                    log.exception("could not apply a change from %s; reloading in full", self.store_url)
                    self._last_error = f"could not apply a change: {type(exc).__name__}: {exc}"
                    if self._state is State.LIVE:
                        self._state, self._since = State.STALE, time.time()
                    self._commit_health()
                    self._need_load = True
                    self._wake.wait(backoff)
                    backoff = min(backoff * 2, _RETRY_MAX)
                    continue
                if self._dirty and time.monotonic() - self._saved_at >= self._cache_interval:
                    self._save_cache()
                if self._inbox or self._need_load or self._requests:
                    continue
                self._wake.wait(self._cache_interval if self._dirty else _IDLE_WAIT)
                self._wake.clear()
        except Exception as exc:  # a bug: say so in status() rather than die silently
            self._last_error = f"watch task failed: {type(exc).__name__}: {exc}"
            if self._state is State.LIVE:
                self._state, self._since = State.STALE, time.time()
            self._commit_health()
            # Logged after the state changed, so the line tells the truth (it used to say "live").
            log.exception(
                "the flagstaff watch task failed; the client serves its last flags, %s", self._state
            )
        finally:
            if watch is not None and generation == self._generation:
                try:
                    watch.stop()
                except Exception:
                    log.exception("stopping the watch on %s failed", self.store_url)

    def _load_and_watch(self, watch: Watch | None, *, trust_empty: bool) -> Watch:
        store = self._store
        if store is None:
            assert self._url is not None
            store = self._store = open_store(self._url, runtime=self._runtime)
        state = store.load()
        self._group.clear()  # a part of an atomic write held: the load holds all of it, or none
        self._adopt(state, trust_empty=trust_empty)
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

    def _lost(self, event: Disconnected) -> None:
        """The watch lost the store: stale (from its last contact) until a reload succeeds."""
        self._disconnected = True
        self._last_error = f"{_LOST}: {event.reason}"
        log.warning("%s: %s; serving the flags held (stale)", self.store_url, self._last_error)
        if self._state is State.LIVE:
            self._state, self._since = State.STALE, min(event.since, time.time())
        self._commit_health()

    def _resumed(self, event: Resumed) -> None:
        """The store replayed every change of the outage: live again without a reload,
        unless something besides the disconnection keeps this follower stale (then a
        reload, as for a Reset: what is held cannot be trusted to be whole)."""
        if not self._disconnected and self._state is State.LIVE:
            return  # nothing was lost: nothing to resume
        if self._refused_empty or self._group or not self._disconnected or self._state is not State.STALE:
            log.info("store %s resumed its watch (%s); reloading all the same", self.store_url, event.reason)
            self._need_load = True
            self._group.clear()
            return
        log.info("store %s resumed its watch (%s); nothing missed, no reload", self.store_url, event.reason)
        self._disconnected = False
        self._live()

    def _drain(self) -> None:
        changed: set[str] = set()
        applied: list[Change] = []
        group = self._group  # changes of one put_many received so far (Change.more > 0)
        while self._inbox and not self._need_load:
            event = self._inbox.popleft()
            if isinstance(event, Reset):
                log.info("store %s reset its watch (%s); reloading", self.store_url, event.reason)
                self._need_load = True
                group.clear()  # the reload brings the whole of it, or none
            elif isinstance(event, Disconnected):
                self._lost(event)
            elif isinstance(event, Resumed):
                self._resumed(event)
            elif event.revision > self._snapshot.revision:
                if self._refused_empty:
                    # The store was written through flagstaff since it came back empty:
                    # believe it again, in full.
                    self._need_load = True
                    self._inbox.appendleft(event)
                    continue
                if group and event.more != group[-1].more - 1:
                    # Not the next of the group held: a store that broke a group (a bug). Apply
                    # what was held rather than hold it for ever.
                    log.warning("%s: an atomic write arrived incomplete; applied as it came", self.store_url)
                    self._apply_group(group, changed, applied)
                group.append(event)
                if event.more <= 0:
                    self._apply_group(group, changed, applied)
        if changed or applied:
            self.publish(SnapshotChange(frozenset(changed), self._snapshot.revision, changes=tuple(applied)))

    def _apply_group(self, group: list[Change], changed: set[str], applied: list[Change]) -> None:
        """Apply the changes of one atomic write and swap the snapshot once, so a reader
        sees all of them or none. ``group`` is emptied."""
        snap = self._snapshot
        for change in group:
            snap = self._apply(change, snap, changed)
        self._snapshot = snap
        applied.extend(group)
        group.clear()
        self._initialized = True
        self._dirty = True
        self._live()

    def _apply(self, change: Change, snap: Snapshot, changed: set[str]) -> Snapshot:
        """One change onto ``snap``: parse one document, copy the dict once (re-linking what
        depends on it). Returns the new snapshot; ``changed`` gains the key and the flags it
        may reach."""
        name, record, now = change.name, change.record, time.time()
        if is_part_key(name):
            return self._apply_part(change, snap, changed)
        if record is None:
            self._invalid.pop(name, None)
            self._documents.pop(name, None)
            self._records.pop(name, None)
            changed.add(name)
            changed.update(snap.dependents(name))
            return snap.without(name, change.revision, now)
        self._records[name] = record
        try:
            parsed = _parse(name, record.raw, self._part_text)
        except ValidationError as exc:
            self._skip(name, exc, kept=_holds(snap, name))
            return snap.at(change.revision, now)  # same documents, newer revision
        self._invalid.pop(name, None)
        self._documents[name] = record.raw
        new = (
            snap.with_segment(parsed, change.revision, now)
            if isinstance(parsed, Segment)
            else snap.with_flag(parsed, change.revision, now)
        )
        changed.add(name)
        changed.update(snap.dependents(name))
        changed.update(new.dependents(name))
        return new

    def _part_text(self, key: str) -> str | None:
        record = self._records.get(key)
        return None if record is None else record.raw

    def _apply_part(self, change: Change, snap: Snapshot, changed: set[str]) -> Snapshot:
        """A part of a segment stored in parts was written or deleted: held as text; a head
        of its segment waiting for it is compiled again, and a served head that loses it
        is reported (it keeps serving what it compiled)."""
        name, record = change.name, change.record
        head = segment_key(part_owner(name))
        if record is None:
            self._records.pop(name, None)
            self._documents.pop(name, None)
            digest = name.rpartition(PART_MARK)[2]
            served = self._documents.get(head)
            if (
                served is not None
                and head not in self._invalid
                and digest in served
                and _uses(served, digest)
            ):
                self._invalid[head] = (
                    f"{head}: {PARTS_KEY}: the part {name!r} is missing (deleted); "
                    "serving the segment as compiled before"
                )
            return snap.at(change.revision, time.time())
        self._records[name] = record
        self._documents[name] = record.raw
        waiting = self._records.get(head)
        digest = name.rpartition(PART_MARK)[2]
        if head in self._invalid and waiting is not None and _uses(waiting.raw, digest):
            return self._apply(Change(head, waiting, change.revision), snap, changed)
        return snap.at(change.revision, time.time())

    def _adopt(self, state: StoreState, *, trust_empty: bool = False) -> None:
        """A full load: reuse every flag whose document did not change."""
        self._disconnected = False  # a full load just succeeded: in contact again
        old = self._snapshot
        if not trust_empty and not state.records and not state.initialized and (len(old) or old.segments):
            self._refused_empty = True
            self._last_error = (
                f"store {self.store_url} returned no flags and was never written through flagstaff; "
                f"keeping the {len(old)} flags held"
            )
            log.warning("%s", self._last_error)
            self._snapshot = old.at(state.revision, time.time())
            if self._state is not State.CACHED:
                self._state = State.STALE
                self._since = time.time()
            self._commit_health()
            return
        self._refused_empty = False
        with _collector_paused(len(state.records)):
            self._adopt_records(state, old)

    def _adopt_records(self, state: StoreState, old: Snapshot) -> None:
        flags: dict[str, Flag] = {}
        segments: dict[str, Segment] = {}
        documents: dict[str, str] = {}
        invalid: dict[str, str] = {}
        records = state.records

        def lookup(key: str) -> str | None:
            record = records.get(key)
            return None if record is None else record.raw

        for name, record in records.items():
            if is_part_key(name):
                documents[name] = record.raw  # compiled with its head, kept for the disk cache
                continue
            segment = is_segment_key(name)
            prior: Flag | Segment | None = (
                old.segments.get(segment_name(name)) if segment else old.flags.get(name)
            )
            if prior is None or self._documents.get(name) != record.raw:
                try:
                    parsed: Flag | Segment | None = _parse(name, record.raw, lookup)
                    documents[name] = record.raw
                except ValidationError as exc:
                    invalid[name] = str(exc)
                    self._skip(name, exc, kept=prior is not None)
                    parsed = prior
                    if prior is not None:
                        documents[name] = self._documents[name]
            else:
                parsed, documents[name] = prior, record.raw
            if isinstance(parsed, Segment):
                segments[segment_name(name)] = parsed
            elif parsed is not None:
                flags[name] = parsed
        previous = self._documents
        records, self._records = self._records, dict(state.records)
        self._documents, self._invalid = documents, invalid
        self._initialized = state.initialized
        # A full build: every flag that uses a segment or another flag is linked anew.
        self._snapshot = new = Snapshot(flags, state.revision, time.time(), segments)
        changed = {
            n
            for n in documents.keys() | previous.keys()
            if documents.get(n) != previous.get(n) and not is_part_key(n)
        }
        if changed and (len(old) or old.segments):
            changed |= old.dependents(changed) | new.dependents(changed)
        self._dirty = True
        self._live()
        # The records that differ from those held, for listeners that relay records (built
        # only when someone listens: a cold load of 10,000 flags need not make 10,000 Changes).
        applied = _differences(records, self._records, state.revision) if self._listeners else ()
        if changed or applied:
            self.publish(SnapshotChange(frozenset(changed), state.revision, reload=True, changes=applied))

    def _skip(self, name: str, exc: ValidationError, *, kept: bool) -> None:
        self._invalid[name] = str(exc)
        segment = is_segment_key(name)
        what = (
            "keeping its last good version"
            if kept
            else "the segment stays absent (no member)"
            if segment
            else "the flag stays unknown"
        )
        log.warning(
            "skipping an invalid document for %s %r (%s): %s",
            "segment" if segment else "flag",
            segment_name(name) if segment else name,
            what,
            printable_text(str(exc), newlines=False),
        )

    def _live(self) -> None:
        if self._refused_empty or self._disconnected:
            # Not live: a change delivered while the watch is cut off may be one of several
            # missed; the Reset (reload) or Resumed that follows the reconnection makes it live.
            self._commit_health()
            return
        if self._state is not State.LIVE:
            log.info("following %s live at revision %d", self.store_url, self._snapshot.revision)
        self._state = State.LIVE
        if self._last_error and (not self._invalid or self._last_error.startswith(_LOST)):
            self._last_error = None
        self._commit_health()

    def _commit_health(self) -> None:
        """Publish state, error and invalid flags together (watch task only)."""
        self._health = _Health(
            self._state, self._since, self._last_error, MappingProxyType(dict(self._invalid))
        )

    # ------------------------------------------------------------------ listeners' task

    def _dispatch(self, generation: int) -> None:
        self._task_ids.add(self._runtime.task_id())
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
        segments: dict[str, Segment] = {}
        with _collector_paused(len(cached.documents)):
            for name, raw in cached.documents.items():
                if is_part_key(name):
                    self._documents[name] = raw
                    continue
                try:
                    parsed = _parse(name, raw, cached.documents.get)
                    if isinstance(parsed, Segment):
                        segments[segment_name(name)] = parsed
                    else:
                        flags[name] = parsed
                    self._documents[name] = raw
                except ValidationError as exc:
                    log.warning("skipping %r from the snapshot cache: %s", name, exc)
            self._snapshot = Snapshot(MappingProxyType(flags), cached.revision, cached.saved_at, segments)
        self._initialized = cached.initialized
        self._state = State.CACHED
        self._since = cached.saved_at
        log.info(
            "serving %d flags and %d segments from the snapshot cache %s",
            len(flags),
            len(segments),
            self._cache.path,
        )

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


_PAUSE_COLLECTOR_FROM = 1000  # documents in one full load


@contextlib.contextmanager
def _collector_paused(documents: int) -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a large load is parsed.

    Parsing makes a few objects per document that all live on (flags, their decisions and
    compiled checks); the collector, counting them as new, ran ~6 full passes over the heap
    during a 10,000-flag load and freed nothing: two thirds of the load's time. Paused only
    when it is on (an application that turned it off keeps it off) and for loads of at least
    ``_PAUSE_COLLECTOR_FROM`` documents; reference counting frees memory as usual meanwhile.
    """
    if documents < _PAUSE_COLLECTOR_FROM or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _parse(key: str, raw: str, parts: Lookup) -> Flag | Segment:
    """The document stored under ``key``: a segment for ``segment:NAME`` (its parts, if
    stored in parts, read through ``parts``), else a flag.
    Raises :class:`ValidationError`, for a parser's own failure too (a bug, logged with
    its traceback): one document must never stop the others from loading."""
    try:
        return parse_segment_text(key, raw, parts=parts) if is_segment_key(key) else parse_text(key, raw)
    except ValidationError:
        raise
    except Exception as exc:
        log.exception("parsing the document %r failed", key)
        problem = Problem("", f"could not be parsed: {type(exc).__name__}: {exc}")
        raise ValidationError([problem], flag=key) from exc


def _uses(head: str, digest: str) -> bool:
    """Whether the head document text ``head`` lists the part ``digest``."""
    if digest not in head:
        return False
    try:
        value = json.loads(head)
    except ValueError:
        return False
    listed = value.get(PARTS_KEY) if isinstance(value, dict) else None
    return isinstance(listed, list) and digest in listed


def _holds(snap: Snapshot, key: str) -> bool:
    """Whether ``snap`` serves the document ``key`` (a flag name or a segment key)."""
    return segment_name(key) in snap.segments if is_segment_key(key) else key in snap.flags


def _answer(requests: list[_Request], error: Exception | None) -> None:
    for request in requests:
        request.error = error
        request.done.set()


def _differences(old: Mapping[str, Record], new: Mapping[str, Record], revision: int) -> tuple[Change, ...]:
    """One change per name whose record differs between two full loads, in name order."""
    return tuple(
        Change(name, new.get(name), revision)
        for name in sorted(old.keys() | new.keys())
        if old.get(name) != new.get(name)
    )
