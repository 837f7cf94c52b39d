"""Exposures and metric events, recorded durably without ever slowing a check.

A :class:`Recorder` is an exposure hook for the client (``connect(url, exposures=recorder)``)
and the target of :meth:`flagstaff.Client.track`. It turns decisions and tracked events
into :class:`Event` objects, keeps them in a bounded queue, and a background task of the
client's :class:`~flagstaff.runtime.Runtime` hands them in batches to a :class:`Sink`:
:class:`SQLiteSink` (the embedded default), :class:`JsonLinesSink` (rotated files a
warehouse can load) or :class:`HttpSink` (``flagstaff serve``'s ``POST /api/v1/ingest``).

What is recorded is set by :class:`RecorderOptions`: the exposures of experiments (the
default), of every flag whose decision depends on the unit (``flags="all"``, e.g. a
percentage ramp, for the blast radius and the guard), or none; and, with ``usage=True``,
per flag the evaluations per hour and when it was last seen (:mod:`flagstaff.usage`).

Guarantees
    * Recording never blocks and never raises. A full queue drops the event and counts it
      (``dropped``); a sink that raises loses its batch, counted (``failed``), after one
      retry. A slow sink fills the queue, so it drops; callers never wait for it.
    * An exposure is recorded once per (bucketing key, flag, variant) per window
      (``RecorderOptions.window``, default one hour: the remembered keys are forgotten
      every window) and the memory of keys is bounded (``max_keys``, oldest forgotten
      first); a repeat inside the window costs one dict lookup (``deduplicated``).
    * Every event accepted is, in the end, ``written`` or ``failed``:
      ``recorded == written + failed + queued``. :meth:`Recorder.flush` waits for the
      queue to be settled; :meth:`Recorder.close` flushes, stops the task and closes the sink.
    * Batches reach the sink one at a time, from the one background task, in the order
      they were recorded.
    * After ``os.fork()`` the child starts a task of its own, with an empty queue and
      counters (what the parent queued is the parent's to write); :class:`SQLiteSink`
      opens its own connection in the child.
"""

from __future__ import annotations

import datetime as _dt
import gzip
import itertools
import json
import logging
import math
import os
import sqlite3
import threading
import time
import urllib.request
import weakref
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol

from flagstaff.context import Context
from flagstaff.decision import Decision, Reason
from flagstaff.errors import ClientError, FlagstaffError
from flagstaff.runtime import Runtime, default_runtime
from flagstaff.usage import SCHEMA as _USAGE_SCHEMA
from flagstaff.usage import UPSERT as _USAGE_UPSERT
from flagstaff.usage import Tally, hour_of

__all__ = [
    "Event",
    "EventError",
    "EventKind",
    "Exposed",
    "HttpSink",
    "JsonLinesSink",
    "ListSink",
    "Recorder",
    "RecorderOptions",
    "RecorderStats",
    "SQLiteSink",
    "Sink",
]

log = logging.getLogger("flagstaff.exposures")

_EMPTY: Mapping[str, Any] = MappingProxyType({})
# Decisions that expose nothing, even with Exposed.ALL: a failed evaluation, and a unit an
# experiment left out (the guard would otherwise count it in the experiment's control arm).
_NOT_EXPOSED = frozenset({Reason.ERROR, Reason.EXCLUDED, Reason.HOLDOUT})
_MAX_TEXT = 1024  # longest flag, variant, key or event name kept (longer input is refused)


class EventError(FlagstaffError, ValueError):
    """An event in JSON is not valid (``path`` names the field at fault)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


class EventKind(StrEnum):
    EXPOSURE = "exposure"
    """A unit saw a variant of an experiment (``flag``, ``variant``, ``experiment_id``)."""
    TRACK = "track"
    """A metric event (``name``, ``value``), from :meth:`flagstaff.Client.track`."""
    USAGE = "usage"
    """A flag's evaluations (``flag``; ``value``: how many) counted by one process up to
    ``time`` (its last seen), in the hour holding ``time`` (:mod:`flagstaff.usage`)."""


class Exposed(StrEnum):
    """Which decisions a :class:`Recorder` records as exposures (``RecorderOptions.flags``)."""

    EXPERIMENTS = "experiments"
    """Experiments' decisions only (treatment and control): what an analysis needs."""
    ALL = "all"
    """Also every other decision that depends on the unit (a percentage, a ramp, rules,
    targets; not a flag on or off for everyone, nor a unit an experiment excludes or holds
    out, nor a failed evaluation), with no variant for a plain flag: what the blast
    radius and the guard read. ``RecorderOptions.skip`` names flags left out."""
    NONE = "none"
    """No exposures (usage and tracked events only)."""


@dataclass(frozen=True, slots=True)
class Event:
    """One exposure, metric event or usage count. ``key`` is the bucketing key: the user id, else the
    cookie id (``None`` for an anonymous caller). ``time`` is epoch seconds (UTC)."""

    kind: EventKind
    time: float
    key: str | None = None
    flag: str | None = None
    variant: str | None = None
    experiment_id: int | None = None
    revision: int | None = None
    name: str | None = None
    value: float | None = None
    attributes: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape (also the ingest endpoint's and the JSON-lines files'), empty fields omitted."""
        out: dict[str, Any] = {"kind": self.kind.value, "time": self.time}
        for name in ("key", "flag", "variant", "experiment_id", "revision", "name", "value"):
            item = getattr(self, name)
            if item is not None:
                out[name] = item
        if self.kind is EventKind.USAGE and self.value is not None:
            out["value"] = int(self.value)  # a count
        if self.attributes:
            out["attributes"] = dict(self.attributes)
        return out

    @classmethod
    def from_dict(cls, data: Any, path: str = "") -> Event:
        """An event from its JSON shape; :class:`EventError` names the first field at fault."""
        where = f"{path}." if path else ""
        if not isinstance(data, dict):
            raise EventError(path or "event", "an event must be an object")
        unknown = sorted(set(data) - _FIELDS)
        if unknown:
            raise EventError(f"{where}{unknown[0]}", "unknown field")
        try:
            kind = EventKind(str(data.get("kind")))
        except ValueError:
            raise EventError(f"{where}kind", "must be 'exposure', 'track' or 'usage'") from None
        stamp = data.get("time")
        if isinstance(stamp, bool) or not isinstance(stamp, int | float) or not math.isfinite(stamp):
            raise EventError(f"{where}time", "must be epoch seconds (a number)")
        text: dict[str, str | None] = {}
        for name in ("key", "flag", "variant", "name"):
            item = data.get(name)
            if item is not None and (not isinstance(item, str) or not item or len(item) > _MAX_TEXT):
                raise EventError(f"{where}{name}", f"must be a non-empty string of at most {_MAX_TEXT}")
            text[name] = item
        ints: dict[str, int | None] = {}
        for name in ("experiment_id", "revision"):
            item = data.get(name)
            if item is not None and (isinstance(item, bool) or not isinstance(item, int)):
                raise EventError(f"{where}{name}", "must be an integer")
            ints[name] = item
        value = data.get("value")
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value)
        ):
            raise EventError(f"{where}value", "must be a finite number or null")
        attributes = data.get("attributes")
        if attributes is None:
            attributes = {}
        elif not isinstance(attributes, dict):
            raise EventError(f"{where}attributes", "must be an object")
        if kind is EventKind.EXPOSURE and text["flag"] is None:
            raise EventError(f"{where}flag", "an exposure names its flag")
        if kind is EventKind.TRACK and text["name"] is None:
            raise EventError(f"{where}name", "a track event has a name")
        if kind is EventKind.USAGE:
            extra = [n for n in _NOT_USAGE if data.get(n) is not None]
            if extra:
                raise EventError(f"{where}{extra[0]}", "not a field of a usage event (flag, time, value)")
            if text["flag"] is None:
                raise EventError(f"{where}flag", "a usage event names its flag")
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise EventError(f"{where}value", "a usage event's value is a count (an integer >= 0)")
        return cls(
            kind,
            float(stamp),
            text["key"],
            text["flag"],
            text["variant"],
            ints["experiment_id"],
            ints["revision"],
            text["name"],
            None if value is None else float(value),
            MappingProxyType(dict(attributes)) if attributes else _EMPTY,
        )


_NOT_USAGE = ("key", "variant", "experiment_id", "revision", "name", "attributes")
_Fields = (
    tuple[EventKind, float, str | None, str, str | None, int | None, int | None]
    | tuple[EventKind, float, str | None, None, None, None, None, str, float | None, Mapping[str, Any]]
)
"""An exposure's or a tracked event's :class:`Event` fields, as the caller queues them (the
background task builds the Event: a frozen dataclass costs about 1 us to build)."""

_FIELDS = frozenset(
    {"kind", "time", "key", "flag", "variant", "experiment_id", "revision", "name", "value", "attributes"}
)


class Sink(Protocol):
    """Where batches of events go.

    ``write`` is called by one task at a time (the recorder's), with batches in recording
    order; it either stores the whole batch or raises (the recorder retries once, then
    counts the batch as failed). It may block (the caller is the background task). ``close``
    releases the sink; it is called once, after the last ``write``.
    """

    def write(self, batch: Sequence[Event]) -> None: ...
    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class RecorderOptions:
    """How a :class:`Recorder` batches and forgets. Every field has a sensible default."""

    window: float = 3600.0
    """Seconds an exposure of one (key, flag, variant) is remembered, so recorded once."""
    max_keys: int = 100_000
    """At most this many (key, flag, variant) remembered; the oldest is forgotten first."""
    max_queue: int = 100_000
    """Events held for the sink at most; beyond, new events are dropped (and counted)."""
    batch_size: int = 1000
    """Events handed to the sink at once at most."""
    interval: float = 1.0
    """Longest wait (seconds) before a partial batch is written."""
    retry: bool = True
    """Write a failed batch once more before counting it as lost."""
    flags: Exposed = Exposed.EXPERIMENTS
    """Whose decisions are exposures: experiments', all flags' (``"all"``) or none."""
    skip: frozenset[str] = frozenset()
    """With ``flags="all"``: flags whose plain decisions are not recorded (experiments still are)."""
    usage: bool = False
    """Count each flag's evaluations and report them per hour (:mod:`flagstaff.usage`)."""
    usage_interval: float = 60.0
    """Longest time (seconds) between two reports of the usage counts (and at each new hour)."""

    def __post_init__(self) -> None:
        try:
            flags = Exposed(self.flags)
        except ValueError:
            choices = ", ".join(repr(e.value) for e in Exposed)
            raise ClientError(f"RecorderOptions.flags must be one of {choices}, not {self.flags!r}") from None
        object.__setattr__(self, "flags", flags)  # "all" given as a string: the enum
        if isinstance(self.skip, str) or not all(isinstance(n, str) for n in self.skip):
            raise ClientError("RecorderOptions.skip must be a set of flag names")
        object.__setattr__(self, "skip", frozenset(self.skip))


@dataclass(frozen=True, slots=True)
class RecorderStats:
    """What a recorder did since it was made. ``recorded == written + failed + queued``."""

    recorded: int
    """Events accepted into the queue (exposures after deduplication, tracked events, usage counts)."""
    deduplicated: int
    """Exposures not recorded: the same key saw the same variant in this window."""
    dropped: int
    """Events lost because the queue was full (or the recorder closed)."""
    failed: int
    """Events lost because the sink raised (after the retry)."""
    written: int
    """Events the sink stored."""
    queued: int
    """Events waiting for the sink."""


def _peek(counter: itertools.count[int]) -> int:
    """The next value of ``counter`` without advancing it: its repr is ``count(N)``."""
    return int(repr(counter)[6:-1])


class Recorder:
    """Deduplicates exposures, queues events, and writes them in batches to a sink.

    Call it as an exposure hook (``recorder(decision, context)``); :meth:`track` records a
    metric event. Thread- and greenlet-safe; never blocks, never raises (see the module's
    guarantees). The background task starts at construction.
    """

    def __init__(
        self, sink: Sink, options: RecorderOptions | None = None, *, runtime: Runtime | None = None
    ) -> None:
        self.sink = sink
        self.options = options = options or RecorderOptions()
        self._runtime = runtime or default_runtime()
        self._window = options.window
        self._max_keys = max(1, options.max_keys)
        self._max_queue = max(1, options.max_queue)
        self._batch_size = max(1, options.batch_size)
        # An OrderedDict, not a dict: forgetting the oldest of a dict (pop(next(iter(d)))) scans
        # the dead slots left at its front, O(n) per eviction (55 us per check at 1M keys).
        self._seen: OrderedDict[tuple[str | None, str, str | None], None] = OrderedDict()
        self.remembered: Mapping[tuple[str | None, str, str | None], None] = self._seen
        """The exposures remembered in this window, as ``(key, flag, variant)``: the client
        checks it inline on its hot path, and counts a hit in :attr:`deduplicated` instead
        of calling :attr:`hook`. Read-only for anyone but the recorder; cleared in place."""
        self._window_start = time.monotonic()
        self._queue: deque[Event | _Fields] = deque()  # an exposure is queued as its fields
        # Counters: next() on an itertools.count is one atomic C call (see Client).
        self._recorded = itertools.count()
        self.deduplicated = self._deduplicated = itertools.count()  # counted by the client too
        self._dropped = itertools.count()
        self._failed = itertools.count()
        self._written = itertools.count()
        self._revision: Callable[[], int | None] = lambda: None
        self.experiments = options.flags is not Exposed.NONE
        """Whether experiments' exposures are recorded (the client asks before calling :attr:`hook`)."""
        self.plain_skip: frozenset[str] | None = options.skip if options.flags is Exposed.ALL else None
        """``None``: decisions of flags that are not experiments are not exposures; else the
        flags whose plain decisions are not (the client asks before calling :attr:`hook`)."""
        self.tally: Tally | None = Tally() if options.usage else None
        """The evaluations per flag (:mod:`flagstaff.usage`) the client counts into; None: not counted."""
        self._usage_lock = self._runtime.lock()  # one take at a time (the task, flush, close)
        self._usage_taken = time.monotonic()
        self._usage_hour = hour_of(time.time())
        self._wake = self._runtime.event()
        self._progress = self._runtime.event()
        self._closed = False
        self._stopping = False
        self._sink_failing = False
        self.hook: Callable[[Decision, Context], None] = self._make_hook()
        """The exposure hook the client calls (``recorder(decision, context)`` calls it too)."""
        self._task = self._runtime.spawn(self._run, name="flagstaff-exposures")
        if hasattr(os, "register_at_fork"):  # a weak reference: a closed recorder can be collected
            me = weakref.ref(self)
            os.register_at_fork(after_in_child=lambda: _after_fork(me))

    def _after_fork(self) -> None:
        """In a forked child: the task did not survive the fork. The events queued in the
        parent are the parent's to write (written twice otherwise): the child starts empty."""
        self._queue.clear()
        self._seen.clear()
        self._wake = self._runtime.event()
        self._progress = self._runtime.event()
        self._recorded, self._dropped = itertools.count(), itertools.count()
        self._failed, self._written = itertools.count(), itertools.count()
        self.deduplicated = self._deduplicated = itertools.count()
        self.hook = self._make_hook()
        self._usage_lock = self._runtime.lock()  # the parent's may have been held at the fork
        if self.tally is not None:
            self.tally.after_fork()
        if not self._closed:
            self._task = self._runtime.spawn(self._run, name="flagstaff-exposures")

    # -- recording (hot path) -------------------------------------------------

    def __call__(self, decision: Decision, context: Context) -> None:
        """Record an exposure (deduplicated), whatever the decision's flag: the client
        asks :attr:`experiments` and :attr:`plain_skip` first. Never raises. The client
        calls :attr:`hook`, the same thing made faster (a closure: no attribute lookups)."""
        self.hook(decision, context)

    def _make_hook(self) -> Callable[[Decision, Context], None]:
        seen = self._seen  # cleared in place at each new window, never replaced
        deduplicated = self._deduplicated.__next__
        first = self.record_first

        def hook(decision: Decision, context: Context) -> None:
            uid = context.user_id
            key = (uid if uid is not None else context.cookie_id, decision.flag, decision.variant)
            if key in seen:  # the common case: one tuple, one dict lookup, one count
                deduplicated()
            else:
                first(key, decision, context)

        return hook

    def record_first(
        self, seen_key: tuple[str | None, str, str | None], decision: Decision, context: Context
    ) -> None:
        """Record ``decision`` for ``context``, whose ``seen_key`` (bucketing key, flag,
        variant) the caller found missing from :attr:`remembered` (the client's inline
        hook does). Never raises."""
        try:
            seen = self._seen
            if len(seen) >= self._max_keys:
                seen.popitem(last=False)  # forget the oldest
            seen[seen_key] = None
            if decision.experiment_id is None and decision.reason in _NOT_EXPOSED:
                return  # remembered all the same: its repeats stay on the fast path
            queue = self._queue  # _enqueue inlined: this runs on the check of a new unit
            if self._closed or len(queue) >= self._max_queue:
                next(self._dropped)
                return
            # The Event's fields, not the Event: a frozen dataclass costs about 1 us to build,
            # a tuple 30 ns; the background task builds the Event (see _drain).
            queue.append(
                (
                    EventKind.EXPOSURE,
                    time.time() if context.time is None else context.time,
                    seen_key[0],
                    decision.flag,
                    decision.variant,
                    decision.experiment_id,
                    self._revision(),
                )
            )
            next(self._recorded)
            if len(queue) == self._batch_size:
                self._wake.set()  # a full batch: no need to wait for the interval
        except Exception:  # never into the caller (a concurrent eviction, a revision getter)
            next(self._dropped)

    def track(
        self,
        name: str,
        context: Context,
        value: float | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> bool:
        """Record the metric event ``name`` for ``context`` (``value``: a number or None).
        Whether it was queued (False: invalid, full or closed). Never raises."""
        try:
            if not isinstance(name, str) or not name or len(name) > _MAX_TEXT:
                return False
            number = None if value is None else float(value)
            if number is not None and not math.isfinite(number):
                return False
            uid = context.user_id
            fields: _Fields = (
                EventKind.TRACK,
                time.time() if context.time is None else context.time,
                uid if uid is not None else context.cookie_id,
                None,
                None,
                None,
                None,
                name,
                number,
                MappingProxyType(dict(attributes)) if attributes else _EMPTY,  # copied now
            )
        except Exception:
            return False
        return self._enqueue(fields)

    def record(self, event: Event) -> bool:
        """Queue an event as it is (no deduplication). Whether it was queued. Never raises."""
        return self._enqueue(event)

    def follow_revision(self, revision: Callable[[], int | None]) -> None:
        """Stamp exposures with ``revision()`` (the client does this with its snapshot's)."""
        self._revision = revision

    def _enqueue(self, event: Event | _Fields) -> bool:
        queue = self._queue
        if self._closed or len(queue) >= self._max_queue:
            next(self._dropped)
            return False
        queue.append(event)
        next(self._recorded)
        if len(queue) == self._batch_size:
            self._wake.set()  # a full batch: no need to wait for the interval
        return True

    # -- the background task --------------------------------------------------

    def _run(self) -> None:
        interval = max(0.001, self.options.interval)
        usage_interval = max(0.001, self.options.usage_interval)
        while True:
            self._wake.wait(interval)
            self._wake.clear()
            if time.monotonic() - self._window_start >= self._window:
                self._window_start = time.monotonic()
                self._seen.clear()  # a new window: every exposure is recorded once again
            if self.tally is not None and (
                time.monotonic() - self._usage_taken >= usage_interval
                or hour_of(time.time()) != self._usage_hour
            ):
                self._take_usage()
            self._drain()
            self._progress.set()
            if self._stopping:
                return

    def _drain(self) -> None:
        queue = self._queue
        while queue:
            batch: list[Event] = []
            try:
                while len(batch) < self._batch_size:
                    item = queue.popleft()
                    batch.append(item if isinstance(item, Event) else Event(*item))
            except IndexError:
                pass
            self._write(batch)

    def _write(self, batch: list[Event]) -> None:
        attempts = 2 if self.options.retry else 1
        for attempt in range(attempts):
            try:
                self.sink.write(batch)
            except Exception as exc:
                if attempt + 1 < attempts:
                    continue
                for _ in range(len(batch)):
                    next(self._failed)
                if not self._sink_failing:
                    self._sink_failing = True
                    log.warning(
                        "the event sink failed; %d events lost: %s: %s", len(batch), type(exc).__name__, exc
                    )
                return
            else:
                break
        if self._sink_failing:
            self._sink_failing = False
            log.warning("the event sink works again")
        for _ in range(len(batch)):
            next(self._written)

    def _take_usage(self) -> None:
        """Queue a usage event per flag evaluated since the last take (see :mod:`flagstaff.usage`)."""
        tally = self.tally
        if tally is None:
            return
        try:
            with self._usage_lock:
                now = time.time()
                self._usage_taken = time.monotonic()
                self._usage_hour = hour_of(now)
                for flag, count in tally.take().items():
                    self._enqueue(Event(EventKind.USAGE, now, flag=flag, value=float(count)))
        except Exception:  # never into a caller of flush or close, never out of the task
            log.exception("taking the usage counts failed")

    # -- settling -------------------------------------------------------------

    def stats(self) -> RecorderStats:
        return RecorderStats(
            _peek(self._recorded),
            _peek(self._deduplicated),
            _peek(self._dropped),
            _peek(self._failed),
            _peek(self._written),
            len(self._queue),
        )

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every event recorded before the call is written or failed (at most
        ``timeout`` seconds), usage counted before the call included. Whether it was."""
        self._take_usage()
        target = _peek(self._recorded)
        deadline = time.monotonic() + max(0.0, timeout)
        while _peek(self._written) + _peek(self._failed) < target:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._progress.clear()
            self._wake.set()
            self._progress.wait(min(remaining, 0.05))
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Stop recording (later events are dropped), flush, stop the task, close the sink."""
        if self._closed:
            return
        self._take_usage()  # the last counts, while events are still accepted
        self._closed = True
        self.flush(timeout)
        self._stopping = True
        self._wake.set()
        self._task.join(timeout)
        try:
            self.sink.close()
        except Exception:
            log.exception("closing the event sink failed")

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        s = self.stats()
        return f"<Recorder recorded={s.recorded} written={s.written} dropped={s.dropped} failed={s.failed}>"


def _after_fork(ref: weakref.ref[Recorder]) -> None:
    recorder = ref()
    if recorder is not None:
        recorder._after_fork()


# --------------------------------------------------------------------------- sinks


class ListSink:
    """Keeps events in a list (``events``): for tests and examples."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.closed = False

    def write(self, batch: Sequence[Event]) -> None:
        self.events.extend(batch)

    def close(self) -> None:
        self.closed = True


_SCHEMA = """
CREATE TABLE IF NOT EXISTS flagstaff_exposures (
    id INTEGER PRIMARY KEY,
    time REAL NOT NULL,
    flag TEXT NOT NULL,
    experiment_id INTEGER,
    variant TEXT,
    key TEXT,
    revision INTEGER
);
CREATE INDEX IF NOT EXISTS flagstaff_exposures_flag ON flagstaff_exposures (flag, time);
CREATE INDEX IF NOT EXISTS flagstaff_exposures_experiment ON flagstaff_exposures (experiment_id, time);
CREATE INDEX IF NOT EXISTS flagstaff_exposures_time ON flagstaff_exposures (time);
-- Covering indexes for flagstaff.report (and guard): a flag's exposures, or a name's events,
-- read in key order from the index alone (no table lookups, no sort). Added by IF NOT EXISTS,
-- so opening a store written by an older version migrates it (one index build).
CREATE INDEX IF NOT EXISTS flagstaff_exposures_units
    ON flagstaff_exposures (flag, key, time, variant, experiment_id);
CREATE TABLE IF NOT EXISTS flagstaff_events (
    id INTEGER PRIMARY KEY,
    time REAL NOT NULL,
    name TEXT NOT NULL,
    key TEXT,
    value REAL,
    attributes TEXT
);
CREATE INDEX IF NOT EXISTS flagstaff_events_name ON flagstaff_events (name, time);
CREATE INDEX IF NOT EXISTS flagstaff_events_key ON flagstaff_events (key);
CREATE INDEX IF NOT EXISTS flagstaff_events_units ON flagstaff_events (name, key, time, value);
"""


class SQLiteSink:
    """Events in a SQLite file: tables ``flagstaff_exposures`` and ``flagstaff_events``
    (schema in ``docs/experiments.md``) and ``flagstaff_usage`` (one row per flag and hour,
    added up: :mod:`flagstaff.usage`), WAL journal, one transaction per batch.
    Safe from any thread (one connection behind a lock)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = str(path)
        self._lock = threading.Lock()  # an OS lock: the connection is shared by OS threads
        self._db = self._open()

    def _open(self) -> sqlite3.Connection:
        self._pid = os.getpid()
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        # The key-ordered indexes take rows at random places: with SQLite's default 2 MiB page
        # cache each batch re-reads most index pages (writes ~40% slower at 300k events). An
        # upper bound, filled only as pages are touched.
        db.execute("PRAGMA cache_size = -65536")
        db.executescript(_SCHEMA)
        db.executescript(_USAGE_SCHEMA)
        return db

    def write(self, batch: Sequence[Event]) -> None:
        exposures = [
            (e.time, e.flag, e.experiment_id, e.variant, e.key, e.revision)
            for e in batch
            if e.kind is EventKind.EXPOSURE
        ]
        tracked = [
            (e.time, e.name, e.key, e.value, json.dumps(dict(e.attributes)) if e.attributes else None)
            for e in batch
            if e.kind is EventKind.TRACK
        ]
        usage = [
            (e.flag, hour_of(e.time), int(e.value or 0), e.time) for e in batch if e.kind is EventKind.USAGE
        ]
        if self._pid != os.getpid():
            # A forked child: SQLite forbids using the parent's connection, and the lock may
            # have been held by the parent's writer at the fork.
            self._lock = threading.Lock()
            self._db = self._open()
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(
                    "INSERT INTO flagstaff_exposures (time, flag, experiment_id, variant, key, revision)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    exposures,
                )
                db.executemany(
                    "INSERT INTO flagstaff_events (time, name, key, value, attributes)"
                    " VALUES (?, ?, ?, ?, ?)",
                    tracked,
                )
                if usage:
                    db.executemany(_USAGE_UPSERT, usage)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()


class JsonLinesSink:
    """Events as JSON lines (:meth:`Event.to_dict`), in ``directory``, one file per UTC day
    and sequence: ``events-YYYY-MM-DD-NNNN.jsonl``. A file grows to ``max_bytes`` at most
    (a larger single line gets a file of its own); the next line starts file ``NNNN + 1``.
    Lines are written whole and each batch is flushed before ``write`` returns, so a file
    never holds a partial line except after a crash mid-write (the last line)."""

    def __init__(self, directory: str | os.PathLike[str], max_bytes: int = 64 * 1024 * 1024) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max(1, max_bytes)
        self._current: tuple[str, int] | None = None  # (day, sequence) being written
        self._size = 0

    def _start(self, day: str) -> None:
        existing = sorted(self.directory.glob(f"events-{day}-*.jsonl"))
        seq = int(existing[-1].stem.rsplit("-", 1)[1]) if existing else 0
        path = self._path(day, seq)
        self._current = (day, seq)
        self._size = path.stat().st_size if path.exists() else 0

    def _path(self, day: str, seq: int) -> Path:
        return self.directory / f"events-{day}-{seq:04d}.jsonl"

    def write(self, batch: Sequence[Event]) -> None:
        pending: dict[Path, list[bytes]] = {}
        for event in batch:
            day = _dt.datetime.fromtimestamp(event.time, _dt.UTC).strftime("%Y-%m-%d")
            if self._current is None or self._current[0] != day:
                self._start(day)
            assert self._current is not None
            line = (json.dumps(event.to_dict(), separators=(",", ":"), ensure_ascii=False) + "\n").encode()
            if self._size and self._size + len(line) > self.max_bytes:
                self._current = (day, self._current[1] + 1)
                self._size = 0
            pending.setdefault(self._path(*self._current), []).append(line)
            self._size += len(line)
        for path, lines in pending.items():
            with open(path, "ab") as out:
                out.write(b"".join(lines))
                out.flush()

    def close(self) -> None:
        self._current = None


class HttpSink:
    """POSTs batches to ``flagstaff serve``'s ``/api/v1/ingest`` (``url``: the server's base
    URL) with a write token; gzip-compressed unless ``compress=False``. A batch is split
    into requests of at most ``max_events``. No retries of its own (the recorder retries a
    failed batch once); ``timeout`` bounds each request. Raises on anything but 2xx."""

    def __init__(
        self, url: str, token: str, *, timeout: float = 10.0, compress: bool = True, max_events: int = 1000
    ) -> None:
        self.url = url.rstrip("/") + "/api/v1/ingest"
        self._token = token
        self.timeout = timeout
        self.compress = compress
        self.max_events = max(1, max_events)

    def write(self, batch: Sequence[Event]) -> None:
        for start in range(0, len(batch), self.max_events):
            part = batch[start : start + self.max_events]
            body = json.dumps({"events": [e.to_dict() for e in part]}, separators=(",", ":")).encode()
            headers = {"Authorization": f"Bearer {self._token}", "Content-Type": "application/json"}
            if self.compress:
                body = gzip.compress(body, compresslevel=5)
                headers["Content-Encoding"] = "gzip"
            request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # raises on 4xx/5xx
                response.read()

    def close(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"<HttpSink {self.url}>"  # never the token
