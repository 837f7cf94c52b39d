"""A request-scoped, consistent view of a client's flags.

A :class:`Scope` pins one snapshot and one clock reading when it is created,
so every decision made for one request comes from the same set of flags (a
request never sees half of a change) and a schedule that switches at midnight
applies to the requests that start after midnight, never to half of one.

Entered as a context manager, the scope also becomes the *current* scope of
the running thread, greenlet or asyncio task (a :class:`contextvars.ContextVar`),
so code deep in a request can call ``client.is_enabled("x")`` with no context
and get the scope's answer::

    with client.scope({"user_id": "42", "groups": ["beta"]}):
        handle_request()          # client.is_enabled("x") inside uses the scope

A scope also reports each experiment exposure to the client's exposure hook at
most once per flag.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from contextvars import ContextVar, Token
from types import TracebackType

from flagstaff.context import Context, ContextLike, to_context
from flagstaff.decision import Decision, Reason
from flagstaff.errors import ClientError
from flagstaff.evaluate import evaluate, unknown
from flagstaff.model import Flag

__all__ = ["ExposureHook", "Scope", "current_scope"]

log = logging.getLogger("flagstaff.client")

ExposureHook = Callable[[Decision, Context], None]
"""Called with an experiment decision (treatment or control) and its context."""

_CURRENT: ContextVar[Scope | None] = ContextVar("flagstaff_scope", default=None)


current_scope: Callable[[], Scope | None] = _CURRENT.get
"""The scope entered in this thread/greenlet/task, if any (one C call: the
client asks on every evaluation made without a context)."""


def context_error(name: str, exc: Exception) -> Decision:
    """The decision for a context that could not be understood."""
    return Decision(name, False, Reason.ERROR, error=f"bad context: {exc}")


def report_exposure(hook: ExposureHook, decision: Decision, context: Context) -> None:
    """Call the exposure hook; a failing hook is logged, never raised."""
    try:
        hook(decision, context)
    except Exception:
        log.exception("the exposure hook failed for flag %r", decision.flag)


class Scope:
    """One snapshot, one clock reading and one context for a whole request.

    Build it with :meth:`flagstaff.Client.scope`. Methods never raise; the
    optional ``context`` argument evaluates someone else against the same
    pinned snapshot and clock.
    """

    __slots__ = (
        "_error",
        "_exposed",
        "_observe",
        "_on_exposure",
        "_token",
        "context",
        "flags",
        "now",
        "owner",
        "revision",
    )

    def __init__(  # noqa: PLR0913 (what Client.scope pins; the observer kept keyword-only)
        self,
        owner: object,
        flags: Mapping[str, Flag],
        revision: int,
        context: ContextLike,
        now: float,
        on_exposure: ExposureHook | None,
        *,
        observe: ExposureHook | None = None,
    ) -> None:
        self.owner = owner
        self.flags = flags
        self.revision = revision
        self._error: Exception | None = None
        try:
            ctx = to_context(context)
        except Exception as exc:  # evaluation never raises: every decision says why instead
            self._error = exc
            ctx = Context()
        self.context = ctx
        # The one clock reading of the request: a time in the context wins.
        self.now = ctx.time if ctx.time is not None else now
        self._on_exposure = on_exposure
        # Called with every decision of a known flag (the client's usage count and plain
        # flags' exposures: flagstaff.exposures.Exposed.ALL); it deduplicates on its own.
        self._observe = observe
        self._exposed: set[str] = set()
        self._token: Token[Scope | None] | None = None

    # -- decisions -----------------------------------------------------------

    def evaluate(self, name: str, context: ContextLike = None) -> Decision:
        """The decision for ``name`` (for ``context`` if given, else the scope's)."""
        return self._evaluate(name, context, self._observe)

    def _evaluate(self, name: str, context: ContextLike, observe: ExposureHook | None) -> Decision:
        if context is None:
            if self._error is not None:
                return context_error(name, self._error)
            ctx = self.context
        else:
            try:
                ctx = to_context(context)
            except Exception as exc:
                return context_error(name, exc)
        flag = self.flags.get(name)
        if flag is None:
            return unknown(name)
        decision = evaluate(flag, ctx, self.now)
        if observe is not None:
            report_exposure(observe, decision, ctx)
        if decision.experiment_id is not None and self._on_exposure is not None:
            key = name if context is None else f"{name}\x00{ctx.bucketing_id}"
            if key not in self._exposed:
                self._exposed.add(key)
                report_exposure(self._on_exposure, decision, ctx)
        return decision

    def is_enabled(self, name: str, context: ContextLike = None) -> bool:
        return self.evaluate(name, context).enabled

    def variant(self, name: str, context: ContextLike = None) -> str | None:
        return self.evaluate(name, context).variant

    def all(self, context: ContextLike = None) -> dict[str, Decision]:
        """Every flag's decision, from the pinned snapshot. Like the client's ``all``, it
        counts no usage and records no plain flag's exposure (bulk is not a check)."""
        return {name: self._evaluate(name, context, None) for name in self.flags}

    # -- context manager -----------------------------------------------------

    def __enter__(self) -> Scope:
        if self._token is not None:
            raise ClientError("this scope is already entered; make a new one with client.scope()")
        self._token = _CURRENT.set(self)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        token, self._token = self._token, None
        if token is not None:
            _CURRENT.reset(token)

    def __repr__(self) -> str:
        return f"<Scope revision={self.revision} flags={len(self.flags)} now={self.now}>"
