"""The client: an in-memory snapshot of every flag, kept current by a store watch.

:func:`connect` opens a store by URL and returns a :class:`Client`::

    client = flagstaff.connect("sqlite:///flagstaff.db", cache="/var/cache/app/flags.json")
    if client.is_enabled("new_checkout", {"user_id": "42"}):
        ...

The client is the evaluation facade over a :class:`~flagstaff.follower.Follower`,
which keeps the snapshot current (the watch task, ordered changes, health,
listeners, the on-disk cache, fork restart: see :mod:`flagstaff.follower`).

Guarantees
    * Evaluation (``is_enabled``, ``variant``, ``evaluate``, ``all``, ``value``
      and the typed getters) takes no lock, does no I/O and never raises: an
      unknown flag is off (``Reason.UNKNOWN_FLAG``), a bad context is off
      (``Reason.ERROR``), and a value of the wrong type gives the caller's default
      (:class:`ValueDetails` says why). The clock is read only for a flag with a
      schedule and a context with no time.
    * An evaluation reads the follower's immutable
      :class:`~flagstaff.snapshot.Snapshot`, replaced by one assignment, so it
      sees a whole snapshot. Changes are applied in order by a single writer; a
      ``Reset`` from the store leads to a full ``load()``. Listeners run on the
      follower's dispatcher task, so a slow listener delays nothing else.
    * A store watch that loses its backend says so (``Disconnected``): the client
      turns ``stale`` (data age counted from the last contact) and turns ``live``
      again after the full reload that the store's ``Reset`` asks for once
      contact is back, or without a reload on the store's ``Resumed`` (it
      delivered every change of the outage first).
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

import copy
import itertools
import logging
import os
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType, TracebackType
from typing import Any, TypeVar, cast

from flagstaff.bucketing import FMIX
from flagstaff.cache import SnapshotCache
from flagstaff.context import _BY_ID, Context, ContextLike, _new_user_context, to_context
from flagstaff.decision import Decision, Reason
from flagstaff.errors import ClientError
from flagstaff.evaluate import evaluate, unknown
from flagstaff.exposures import Recorder
from flagstaff.follower import Follower, Listener, SnapshotChange, State, Status
from flagstaff.model import Flag
from flagstaff.runtime import Runtime
from flagstaff.scope import ExposureHook, Scope, context_error, current_scope, report_exposure
from flagstaff.segments import Segment
from flagstaff.snapshot import Snapshot
from flagstaff.stores import Store
from flagstaff.stores._url import redact_url

__all__ = [
    "Client",
    "Evaluations",
    "Listener",
    "Options",
    "SnapshotChange",
    "State",
    "Status",
    "ValueDetails",
    "connect",
    "redact_url",
]

log = logging.getLogger("flagstaff.client")

_shared_context = _BY_ID.get
_crc32 = zlib.crc32
_fmix = FMIX
"""A bare id's shared context, if built (``to_context``'s first step, bound here: 3.11
compiles ``_BY_ID.get(...)`` on an imported name as an attribute load plus a call)."""


@dataclass(frozen=True, slots=True)
class Evaluations:
    """How many evaluations a client answered since it was made (see :attr:`Client.evaluations`)."""

    total: int
    """Every ``is_enabled``, ``evaluate``/``variant`` call, and each flag of ``all``."""
    unknown: int
    """Of those, for a flag the client does not hold (answered off, ``unknown_flag``)."""
    errors: int
    """Of those, with a context that could not be used (answered off, ``error``)."""


@dataclass(frozen=True, slots=True)
class ValueDetails:
    """A flag's value for one context (:meth:`Client.value_details`), the decision it
    comes from, and, when the caller's default was returned instead, why."""

    value: Any
    decision: Decision
    error: str | None = None
    """Why ``value`` is the caller's default: the flag is unknown (``"no flag named
    'x'"``), its evaluation failed (the decision's error), or its value is not of the
    type asked for (``"expected int, got str"``). ``None``: the flag served ``value``."""

    @property
    def defaulted(self) -> bool:
        """Whether ``value`` is the caller's default."""
        return self.error is not None


T = TypeVar("T")

# What Client.value_errors keeps at most (names asked for can be anything a caller types).
_MAX_VALUE_ERRORS = 1000


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
    exposures: Recorder | None = None
    """Records exposures (deduplicated) and :meth:`Client.track` events to a sink
    (:mod:`flagstaff.exposures`); beside ``on_exposure`` if both are given. The
    client does not close it: close it after the client, to flush."""


def connect(
    store: str | Store,
    *,
    timeout: float = 5.0,
    cache: str | os.PathLike[str] | SnapshotCache | None = None,
    runtime: Runtime | None = None,
    on_exposure: ExposureHook | None = None,
    exposures: Recorder | None = None,
) -> Client:
    """Open ``store`` (a URL such as ``sqlite:///flagstaff.db``, or a Store) and
    return a client following it. See :class:`Options` for the arguments."""
    options = Options(
        timeout=timeout, cache=cache, runtime=runtime, on_exposure=on_exposure, exposures=exposures
    )
    return Client(store, options)


class Client:
    """Evaluates flags from an in-memory snapshot kept current by a store watch.

    Thread- and greenlet-safe. Use :func:`connect` to build one; close it with
    :meth:`close` or a ``with`` block.
    """

    def __init__(self, store: str | Store, options: Options | None = None) -> None:
        self.options = options = options or Options()
        self._follower = follower = Follower(
            store, runtime=options.runtime, cache=options.cache, cache_interval=options.cache_interval
        )
        self._runtime: Runtime = follower.runtime
        self.store_url = follower.store_url
        self._on_exposure = options.on_exposure
        self._recorder = recorder = options.exposures
        exposing = recorder is not None and recorder.experiments
        # The recorder's dedupe memory, read inline on the hot path (a repeat exposure is one
        # tuple and one dict lookup, no call: ~150 ns less than calling the recorder).
        self._remembered = recorder.remembered if recorder is not None and exposing else None
        self._deduplicated = itertools.count() if recorder is None else recorder.deduplicated
        self._scope_hook = _exposure_hook(options.on_exposure, recorder if exposing else None)
        # Exposures of flags that are not experiments (Exposed.ALL): the flags left out; None: off.
        self._plain_skip = None if recorder is None else recorder.plain_skip
        # Evaluations per flag (flagstaff.usage), counted inline: one dict lookup, one C call.
        self._tally = None if recorder is None else recorder.tally
        self._usage = None if self._tally is None else self._tally.counts
        self._scope_observer = _scope_observer(recorder)
        # Whether is_enabled may take its fast path: nothing to do per evaluation beyond the
        # decision (no plain exposures, no usage tally) and no overrides (kept by set_overrides).
        self._quiet = self._plain_skip is None and self._usage is None
        self._lean = self._quiet
        if recorder is not None:
            recorder.follow_revision(lambda: follower._snapshot.revision)
        # Evaluation counters: next() on an itertools.count is one C call and atomic under the
        # GIL (a `+= 1` on an attribute is neither), so counting costs the hot path ~20 ns.
        self._counted = itertools.count()
        self._counted_unknown = itertools.count()
        self._counted_errors = itertools.count()
        self._bulk_lock = self._runtime.lock()  # all() adds one count per flag, under this lock
        self._bulk = (0, 0)  # (evaluations, errors) counted by all()
        # Flags served instead of the store's (flagstaff.overrides); None on the hot path's fast branch.
        self._overrides: Mapping[str, Flag] | None = None
        self._pinned: Mapping[str, Flag] = MappingProxyType({})  # as given to set_overrides
        self._overrides_lock = self._runtime.lock()
        self._relinking: Callable[[], None] | None = None  # unsubscribes _relink_overrides
        self._value_errors: dict[str, str] = {}
        self._closed = False
        if options.timeout > 0 and not follower.wait_loaded(options.timeout):
            log.warning(
                "no load from %s within %.1fs; serving %s flags (%s)",
                self.store_url,
                options.timeout,
                len(follower.snapshot),
                follower.state.value,
            )

    # ------------------------------------------------------------------ evaluation (hot path)

    def is_enabled(self, name: str, context: ContextLike = None) -> bool:
        """Whether ``name`` is on for ``context``. Never raises."""
        next(self._counted)
        if self._lean:
            # The fast path (no overrides, no usage tally, no exposures of plain flags): a flag
            # whose decision needs only the context (Flag.quick), in one call. Anything else
            # (an unknown flag, no context, a bad one, a failure) goes on to the full path.
            try:
                held = self._follower._snapshot._table[name]
                if type(context) is Context:  # the fastest form: a context built once per request
                    gate = held.gate
                    if gate is not None:
                        # A plain percentage rollout (Flag.gate): bucketed here, on the id's
                        # bytes, without the check's frame or its Decision.
                        ukey = context.user_key
                        if ukey is None:
                            ukey = context.cookie_key
                            if ukey is None:
                                return False
                        return _fmix(b"", _crc32(ukey, gate[0])) < gate[1]
                    quick = held.quick
                    if quick is not None:
                        return quick(context).enabled
                elif context is not None:
                    # A bare id or {"user_id": id}: a gated rollout needs only the id's bytes
                    # (an id that strict UTF-8 cannot encode raises: the full path decides);
                    # another flag gets the id's shared context (to_context's first step).
                    kind = type(context)
                    uid: object
                    if kind is str:
                        uid = context
                    elif kind is dict and len(context) == 1:  # type: ignore[arg-type]
                        uid = context.get("user_id")  # type: ignore[union-attr]
                    else:
                        uid = None
                    gate = held.gate
                    if gate is not None and type(uid) is str:
                        return uid != "" and _fmix(b"", _crc32(uid.encode(), gate[0])) < gate[1]
                    quick = held.quick
                    if quick is not None:
                        if type(uid) is str:
                            shared = _shared_context(uid)
                            ctx = shared if shared is not None else _new_user_context(uid)
                        else:
                            ctx = to_context(context)
                        return quick(ctx).enabled
            except Exception:  # the full path decides, and counts what failed
                pass
        if context is None:
            scope = current_scope()
            if scope is not None and scope.owner is self:
                return scope.evaluate(name).enabled
        flag = self._follower._snapshot.flags.get(name) if self._overrides is None else self._overridden(name)
        if flag is None:
            next(self._counted_unknown)
            return False
        usage = self._usage
        if usage is not None:
            try:
                next(usage[name])
            except KeyError:  # the flag's first evaluation
                self._tally.count(name)  # type: ignore[union-attr]
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
                next(self._counted_errors)
                return False
        if flag.schedule is None:
            try:
                decision = flag.run(ctx)  # what evaluate() would do, minus one call
            except Exception:
                decision = evaluate(flag, ctx)  # turns the failure into Reason.ERROR
        else:
            decision = evaluate(flag, ctx, time.time() if ctx.time is None else None)
        if decision.experiment_id is not None:
            remembered = self._remembered
            if remembered is not None:  # Recorder's hook, inlined (see Recorder.remembered)
                uid = ctx.user_id
                key = (uid if uid is not None else ctx.cookie_id, decision.flag, decision.variant)
                if key in remembered:
                    next(self._deduplicated)
                else:
                    self._recorder.record_first(key, decision, ctx)  # type: ignore[union-attr]
            if self._on_exposure is not None:
                report_exposure(self._on_exposure, decision, ctx)
        elif self._plain_skip is not None and decision.flag not in self._plain_skip:
            uid = ctx.user_id  # as above, for a flag that is not an experiment (Exposed.ALL)
            key = (uid if uid is not None else ctx.cookie_id, decision.flag, decision.variant)
            if key in self._remembered:  # type: ignore[operator]
                next(self._deduplicated)
            else:
                self._recorder.record_first(key, decision, ctx)  # type: ignore[union-attr]
        return decision.enabled

    def variant(self, name: str, context: ContextLike = None) -> str | None:
        """The variant of ``name`` for ``context`` (``None`` when off or none)."""
        return self.evaluate(name, context).variant

    def evaluate(self, name: str, context: ContextLike = None) -> Decision:
        """The full decision for ``name``: enabled, variant, reason. Never raises."""
        next(self._counted)
        if context is None:
            scope = current_scope()
            if scope is not None and scope.owner is self:
                return scope.evaluate(name)
        flag = self._follower._snapshot.flags.get(name) if self._overrides is None else self._overridden(name)
        if flag is None:
            next(self._counted_unknown)
            return unknown(name)
        usage = self._usage
        if usage is not None:
            try:
                next(usage[name])
            except KeyError:  # the flag's first evaluation
                self._tally.count(name)  # type: ignore[union-attr]
        constant = flag.constant
        if constant is not None:
            return constant
        if type(context) is Context:
            return self._decide(flag, context)
        ctx = self._context(name, context)
        return self._decide(flag, ctx) if isinstance(ctx, Context) else ctx

    def all(self, context: ContextLike = None) -> dict[str, Decision]:
        """Every flag's decision for ``context``, from one snapshot."""
        if context is None:
            scope = current_scope()
            if scope is not None and scope.owner is self:
                return scope.all()
        flags = self._served()
        self._count_bulk(len(flags))
        if type(context) is Context:
            ctx = context
        else:
            try:
                ctx = to_context(context)
            except Exception as exc:
                self._count_bulk(0, len(flags))
                return {name: context_error(name, exc) for name in flags}
        now = time.time() if ctx.time is None else None  # one reading for all flags
        # _decide's steps, inlined: a method call per flag costs 13% of a 100-flag all().
        hook = self._scope_hook
        out: dict[str, Decision] = {}
        for name, flag in flags.items():
            decision = flag.constant
            if decision is None:
                if flag.schedule is None:
                    try:
                        decision = flag.run(ctx)
                    except Exception:
                        decision = evaluate(flag, ctx)  # turns the failure into Reason.ERROR
                else:
                    decision = evaluate(flag, ctx, now)
                if hook is not None and decision.experiment_id is not None:
                    report_exposure(hook, decision, ctx)
            out[name] = decision
        return out

    def track(
        self,
        event: str,
        context: ContextLike = None,
        value: float | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> bool:
        """Record the metric event ``event`` (e.g. ``"purchase"``, with ``value=19.99``)
        for ``context`` (``None``: the current scope's) through ``Options.exposures``.
        Whether it was queued: False with no recorder, a bad context or value, or a
        full queue. Never raises, never blocks."""
        recorder = self._recorder
        if recorder is None:
            return False
        try:
            if context is None:
                scope = current_scope()
                ctx = scope.context if scope is not None and scope.owner is self else to_context(None)
            else:
                ctx = to_context(context)
        except Exception:
            return False
        return recorder.track(event, ctx, value, attributes)

    # ------------------------------------------------------------------ values

    def value(self, name: str, context: ContextLike = None, default: Any = None) -> Any:
        """The value ``name`` serves ``context`` (:meth:`flagstaff.model.Flag.value_of`:
        the ``values`` entry of its variant, or of ``on``/``off``; else the variant's
        name, else whether it is enabled), or ``default`` for an unknown flag or a
        failed evaluation. A JSON object or list is a fresh copy. Never raises."""
        return self.value_details(name, context, default).value

    def value_details(
        self, name: str, context: ContextLike = None, default: Any = None, *, expect: type | None = None
    ) -> ValueDetails:
        """:meth:`value` with the decision it comes from and, when ``default`` is
        returned, why. ``expect`` (``bool``, ``str``, ``int``, ``float``, ``dict``)
        asks for a type: a value of another type gives ``default`` with the error
        ``"expected int, got str"`` (a bool is never an int or a float; an int is a
        float). The last such reason per flag is kept in :attr:`value_errors`."""
        flag, decision = self._flag_and_decision(name, context)
        if flag is None or decision.reason is Reason.UNKNOWN_FLAG or decision.reason is Reason.ERROR:
            why = decision.error or f"the flag {name!r} could not be evaluated"
            return self._defaulted(name, default, decision, why)
        try:
            value = flag.value_of(decision)
        except Exception as exc:  # never raise into the caller
            return self._defaulted(name, default, decision, f"no value: {type(exc).__name__}: {exc}")
        if expect is not None:
            value, mismatch = _conform(value, expect)
            if mismatch is not None:
                return self._defaulted(name, default, decision, mismatch)
        if isinstance(value, dict | list):
            value = copy.deepcopy(value)  # the flag's own value stays as the store wrote it
        return ValueDetails(value, decision)

    def get_bool(self, name: str, context: ContextLike = None, default: bool = False) -> bool:
        """The flag's value if it is a bool, else ``default`` (see :meth:`value_details`)."""
        return self._typed(name, context, default, bool)

    def get_str(self, name: str, context: ContextLike = None, default: str = "") -> str:
        """The flag's value if it is a string, else ``default`` (see :meth:`value_details`)."""
        return self._typed(name, context, default, str)

    def get_int(self, name: str, context: ContextLike = None, default: int = 0) -> int:
        """The flag's value if it is an integer (not a bool), else ``default``."""
        return self._typed(name, context, default, int)

    def get_float(self, name: str, context: ContextLike = None, default: float = 0.0) -> float:
        """The flag's value as a float if it is a number (an int too, not a bool), else ``default``."""
        return self._typed(name, context, default, float)

    def get_dict(
        self, name: str, context: ContextLike = None, default: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """The flag's value if it is a JSON object (a fresh copy), else a copy of
        ``default`` (``{}`` when none)."""
        details = self.value_details(name, context, None, expect=dict)
        if details.error is None:
            return cast(dict[str, Any], details.value)
        return dict(default) if default is not None else {}

    @property
    def value_errors(self) -> Mapping[str, str]:
        """Per flag name, the last reason :meth:`value` or a typed getter returned the
        caller's default (each new reason is also logged once, as a warning)."""
        return MappingProxyType(dict(self._value_errors))

    def _typed(self, name: str, context: ContextLike, default: T, expect: type[T]) -> T:
        return cast(T, self.value_details(name, context, default, expect=expect).value)

    def _defaulted(self, name: str, default: Any, decision: Decision, why: str) -> ValueDetails:
        errors = self._value_errors
        if errors.get(name) != why and (name in errors or len(errors) < _MAX_VALUE_ERRORS):
            errors[name] = why  # one assignment: safe from any thread without a lock
            log.warning("flag %r: returning the caller's default: %s", name, why)
        return ValueDetails(default, decision, why)

    def _flag_and_decision(self, name: str, context: ContextLike) -> tuple[Flag | None, Decision]:
        """``evaluate`` that also returns the flag decided (for its values): both from
        one snapshot (or the current scope's)."""
        next(self._counted)
        if context is None:
            scope = current_scope()
            if scope is not None and scope.owner is self:
                return scope.flags.get(name), scope.evaluate(name)
        flag = self._follower._snapshot.flags.get(name) if self._overrides is None else self._overridden(name)
        if flag is None:
            next(self._counted_unknown)
            return None, unknown(name)
        usage = self._usage
        if usage is not None:
            try:
                next(usage[name])
            except KeyError:  # the flag's first evaluation
                self._tally.count(name)  # type: ignore[union-attr]
        if flag.constant is not None:
            return flag, flag.constant
        if type(context) is Context:
            return flag, self._decide(flag, context)
        ctx = self._context(name, context)
        return flag, self._decide(flag, ctx) if isinstance(ctx, Context) else ctx

    def _count_bulk(self, total: int, errors: int = 0) -> None:
        with self._bulk_lock:
            self._bulk = (self._bulk[0] + total, self._bulk[1] + errors)

    def _decide(self, flag: Flag, ctx: Context, now: float | None = None) -> Decision:
        """The decision for a flag with no constant answer, for ``evaluate`` (``is_enabled``
        and ``all`` inline it, for speed). ``now``: the clock reading ``all`` took for every
        flag; ``None`` reads the clock here if the flag has a schedule and the context no time."""
        if flag.schedule is None:
            try:
                decision = flag.run(ctx)
            except Exception:
                decision = evaluate(flag, ctx)  # turns the failure into Reason.ERROR
        else:
            decision = evaluate(flag, ctx, now if now is not None or ctx.time is not None else time.time())
        if decision.experiment_id is not None:
            remembered = self._remembered
            if remembered is not None:  # as in is_enabled
                uid = ctx.user_id
                key = (uid if uid is not None else ctx.cookie_id, decision.flag, decision.variant)
                if key in remembered:
                    next(self._deduplicated)
                else:
                    self._recorder.record_first(key, decision, ctx)  # type: ignore[union-attr]
            if self._on_exposure is not None:
                report_exposure(self._on_exposure, decision, ctx)
        elif self._plain_skip is not None and decision.flag not in self._plain_skip:
            uid = ctx.user_id  # as in is_enabled
            key = (uid if uid is not None else ctx.cookie_id, decision.flag, decision.variant)
            if key in self._remembered:  # type: ignore[operator]
                next(self._deduplicated)
            else:
                self._recorder.record_first(key, decision, ctx)  # type: ignore[union-attr]
        return decision

    def _context(self, name: str, context: ContextLike) -> Context | Decision:
        """``context`` as a Context, or the error decision for ``name`` when it cannot be one."""
        try:
            return to_context(context)
        except Exception as exc:  # never raise into the caller
            next(self._counted_errors)
            return context_error(name, exc)

    def scope(self, context: ContextLike = None) -> Scope:
        """A consistent view for one request: this snapshot, this instant.

        Use it as a context manager to make it current, so calls with no
        context inside (``client.is_enabled("x")``) are answered by it.
        """
        snap = self._follower.snapshot
        return Scope(
            self,
            self._served(snap),
            snap.revision,
            context,
            time.time(),
            self._scope_hook,
            observe=self._scope_observer,
        )

    # ------------------------------------------------------------------ overrides

    @property
    def overrides(self) -> Mapping[str, Flag]:
        """The flags served on top of the store's (empty when none)."""
        return self._pinned

    def set_overrides(self, flags: Mapping[str, Flag]) -> None:
        """Serve ``flags`` instead of the store's flags of the same names, until
        replaced (an empty mapping removes them all). The store is not touched and
        store changes to those names are held but not served. Build the flags with
        :mod:`flagstaff.overrides`, whose decisions say ``Reason.OVERRIDE``.
        Change listeners are told which names changed.

        An override reaches the flags that require it: they are served linked to it
        (and keep their own reasons). An override that names segments or
        prerequisites is linked to the served snapshot. Both are linked again after
        each store change, on the dispatcher task, so for the moment between a store
        change and that, they still see the flags and segments from before it."""
        with self._overrides_lock:
            old = self._overrides or {}
            self._pinned = MappingProxyType(dict(flags))
            served = self._overlay()
            # Off the fast path before overrides are served; back on after they are gone.
            if served:
                self._lean = False
            self._overrides = MappingProxyType(served) if served else None
            self._lean = self._quiet and not served
            if flags and self._relinking is None:
                self._relinking = self._follower.on_change(self._relink_overrides)
            elif not flags and self._relinking is not None:
                self._relinking()
                self._relinking = None
        changed = {n for n in old.keys() | served.keys() if old.get(n) is not served.get(n)}
        if changed:
            self._follower.publish(SnapshotChange(frozenset(changed), self._follower.snapshot.revision))

    def _relink_overrides(self, change: SnapshotChange) -> None:
        """After a store change: serve the overrides (and the flags requiring them)
        linked to the new snapshot."""
        with self._overrides_lock:
            if self._overrides is not None:
                self._overrides = MappingProxyType(self._overlay())

    def _overlay(self) -> dict[str, Flag]:
        """What is served over the snapshot: each override, linked as if it were the
        store's flag, and the store's flags that require one, linked to it."""
        pinned = self._pinned
        if not pinned:
            return {}
        snap = derived = self._follower.snapshot
        for flag in pinned.values():
            derived = derived.with_flag(flag, snap.revision, snap.loaded_at)
        served = {name: derived.flags[flag.name] for name, flag in pinned.items()}
        for name in derived.dependents([flag.name for flag in pinned.values()]):
            served.setdefault(name, derived.flags[name])
        return served

    def _overridden(self, name: str) -> Flag | None:
        overrides = self._overrides or {}
        return overrides.get(name) or self._follower.snapshot.flags.get(name)

    def _served(self, snap: Snapshot | None = None) -> Mapping[str, Flag]:
        flags = (self._follower.snapshot if snap is None else snap).flags
        overrides = self._overrides
        return flags if overrides is None else MappingProxyType({**flags, **overrides})

    # ------------------------------------------------------------------ introspection

    @property
    def follower(self) -> Follower:
        """What keeps this client's snapshot current (shared by the HTTP server's event feed)."""
        return self._follower

    @property
    def snapshot(self) -> Snapshot:
        """The snapshot being served (immutable)."""
        return self._follower.snapshot

    @property
    def segments(self) -> Mapping[str, Segment]:
        """The segments of the served snapshot, by name (read-only)."""
        return self._follower.snapshot.segments

    def status(self) -> Status:
        """The client's state, revision, data age and problems."""
        return self._follower.status()

    @property
    def evaluations(self) -> Evaluations:
        """Evaluation counts since the client was made (for metrics; cheap to keep)."""
        total, errors = self._bulk
        return Evaluations(
            _peek(self._counted) + total, _peek(self._counted_unknown), _peek(self._counted_errors) + errors
        )

    # ------------------------------------------------------------------ listeners

    def on_change(self, callback: Listener) -> Callable[[], None]:
        """Call ``callback(update)`` after every applied change, on the
        dispatcher task. Returns a function that unsubscribes it."""

        def served(update: SnapshotChange) -> None:
            if update.names:  # not a change of an invalid document only: nothing served changed
                callback(update)

        return self._follower.on_change(served)

    def wait_for_change(self, name: str, timeout: float, context: ContextLike = None) -> Decision | None:
        """Block until the decision for ``name`` (for ``context``) differs from
        the one at the call (enabled or variant), and return the new decision;
        ``None`` after ``timeout`` seconds with no such change."""
        if self._closed:
            raise ClientError("the client is closed")
        deadline = time.monotonic() + max(0.0, timeout)
        event = self._follower.add_waiter(name)
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
            self._follower.remove_waiter(name, event)

    def _evaluate_live(self, name: str, context: ContextLike) -> Decision:
        # Like evaluate() but ignoring the current scope: waiting wants fresh data.
        flag = self._overridden(name)
        if flag is None:
            return unknown(name)
        if flag.constant is not None:
            return flag.constant
        ctx = self._context(name, context)
        return self._decide(flag, ctx) if isinstance(ctx, Context) else ctx

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Stop following the store and release it (if opened from a URL). Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._follower.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        snap = self._follower.snapshot
        state = self._follower.state.value
        return f"<Client {self.store_url} {state} revision={snap.revision} flags={len(snap)}>"


def _exposure_hook(hook: ExposureHook | None, recorder: Recorder | None) -> ExposureHook | None:
    """One hook calling both the caller's and the recorder (a failing hook stops neither)."""
    if recorder is None:
        return hook
    if hook is None:
        return recorder.hook

    def both(decision: Decision, context: Context) -> None:
        report_exposure(hook, decision, context)
        recorder.hook(decision, context)

    return both


def _scope_observer(recorder: Recorder | None) -> Callable[[Decision, Context], None] | None:
    """What a scope calls with each decision of a known flag: counts the flag's usage and
    records a plain flag's exposure (Exposed.ALL); None when the recorder does neither."""
    if recorder is None or (recorder.tally is None and recorder.plain_skip is None):
        return None
    tally = recorder.tally
    skip = recorder.plain_skip

    def observe(decision: Decision, context: Context) -> None:
        if tally is not None:
            tally.count(decision.flag)
        if skip is not None and decision.experiment_id is None and decision.flag not in skip:
            recorder.hook(decision, context)

    return observe


def _conform(value: Any, expect: type) -> tuple[Any, str | None]:
    """``value`` as an ``expect`` (an int as a float), or why it is not one."""
    if isinstance(value, bool):
        ok = expect is bool
    elif expect is float and isinstance(value, int):
        return float(value), None
    else:
        ok = isinstance(value, expect) and expect is not bool
    if ok:
        return value, None
    return None, f"expected {expect.__name__}, got {_type_name(value)}"


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _peek(counter: itertools.count[int]) -> int:
    """The next value of ``counter`` without advancing it: its repr is ``count(N)``."""
    return int(repr(counter)[6:-1])
