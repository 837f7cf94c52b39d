"""The guard loop inside ``flagstaff serve``: guardrails checked and enforced on a timer.

When the server has an event store (:attr:`~flagstaff.http.state.Settings.events_db`),
:class:`GuardLoop` runs :meth:`flagstaff.guard.Guard.enforce` for every flag of the
server's client snapshot that lists ``guardrails``, every
:attr:`~flagstaff.http.state.Settings.guard_interval` seconds (0: never; the API's
``POST /api/v1/flags/{name}/guard`` still checks on demand). A breach halts the flag
through the one writer (:class:`~flagstaff.admin.Admin`, compare-and-set), with the
author ``guard: <evidence>`` in the store's history, and is logged to the audit log.

The loop is a daemon thread that never ends the server: an error checking one flag
(the event store locked or corrupt, the store down) is logged, counted
(``flagstaff_guard_errors_total``) and kept as that flag's last check; the next round
tries again. The first round runs one interval after the start.

What each check found is kept in memory (:meth:`GuardLoop.status`): the time, each
guardrail's evidence, and whether the flag is halted now. "Halted" is read from the
store, not from memory, so it survives a restart: the flag is off and its newest
history entry is the guard's (its author carries ``guard: ``).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flagstaff.admin import Admin
from flagstaff.document import is_segment_key
from flagstaff.errors import FlagstaffError, NotFoundError
from flagstaff.http.metrics import Metrics
from flagstaff.model import Flag, Switch, parse_text
from flagstaff.snapshot import Snapshot
from flagstaff.stores import Store

if TYPE_CHECKING:  # flagstaff.guard needs the stats extra (numpy, scipy): imported when a flag is judged
    from flagstaff.guard import GuardVerdict

__all__ = ["AUTHOR", "GuardCheck", "GuardLoop", "guard_view"]

log = logging.getLogger("flagstaff.http.guard")
audit_log = logging.getLogger("flagstaff.audit")

AUTHOR = "guard"
"""The loop's writer: its halts are recorded as ``guard: <evidence>``."""

_MARK = "guard: "


@dataclass(frozen=True, slots=True)
class GuardCheck:
    """One check of one flag: when, what it found (``verdict``) or why it could not
    (``error``), and whether it could halt (``enforced``)."""

    flag: str
    checked_at: float
    enforced: bool
    verdict: GuardVerdict | None = None
    error: str | None = None


class GuardLoop:
    """Checks (and enforces) the guardrails of the server's flags; see the module doc.

    ``snapshot`` returns the server's current client snapshot (which flags have
    guardrails); ``interval`` 0 never starts the thread. Thread-safe.
    """

    def __init__(
        self,
        store: Store,
        events_db: str,
        snapshot: Callable[[], Snapshot],
        metrics: Metrics,
        *,
        interval: float,
        alpha: float = 0.05,
    ) -> None:
        if interval < 0:
            raise ValueError("the guard interval must be 0 (off) or more seconds")
        self.store = store
        self.events_db = events_db
        self.interval = interval
        self.alpha = alpha
        self._snapshot = snapshot
        self._metrics = metrics
        self._lock = threading.Lock()
        self._last: dict[str, GuardCheck] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.rounds = 0

    # -- the loop ----------------------------------------------------------------

    def start(self) -> None:
        """Start the thread (once; not when the interval is 0)."""
        if self.interval <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="flagstaff-guard", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread (a check under way finishes first, within ``timeout``). Idempotent."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.round()
            except Exception:  # the loop must outlive any failure; each is logged and counted
                log.exception("guard round failed")
                self._metrics.inc("flagstaff_guard_errors_total")

    def guarded(self) -> list[str]:
        """The flags of the server's snapshot that list guardrails, by name."""
        flags: Mapping[str, Flag] = self._snapshot().flags
        return sorted(n for n, f in flags.items() if f.guardrails and not is_segment_key(n))

    def round(self) -> list[GuardCheck]:
        """One pass: enforce every guarded flag's guardrails (as the loop does each interval)."""
        checks = []
        for name in self.guarded():
            if self._stop.is_set():
                break
            checks.append(self.check(name, Admin(self.store, author=AUTHOR)))
        self.rounds += 1
        return checks

    # -- one flag ------------------------------------------------------------------

    def check(self, name: str, admin: Admin | None = None) -> GuardCheck:
        """Check ``name`` now; with ``admin``, enforce (halt a breach, written by ``admin``).

        Raises :class:`~flagstaff.errors.NotFoundError` for an unknown flag; any other
        failure is the check's ``error`` (logged, counted), never raised. A missing event
        store file is not an error: nothing was ingested yet, so there is nothing to judge.
        """
        if self.store.get(name) is None:
            raise NotFoundError(name)
        now = time.time()
        enforced = admin is not None
        if not os.path.exists(self.events_db):
            empty = "no events recorded yet (the event store is empty)"
            result = GuardCheck(name, now, enforced, error=empty)
            self._keep(result)
            return result
        try:
            from flagstaff.guard import Guard  # the stats extra: a server without it judges nothing

            guard = Guard(admin or Admin(self.store, author=AUTHOR), self.events_db, alpha=self.alpha)
            verdict = guard.enforce(name) if admin is not None else guard.check(name)
        except NotFoundError:
            raise
        except (FlagstaffError, sqlite3.Error, OSError, ValueError, ImportError) as exc:
            log.warning("guard check of %s failed: %s", name, exc, extra={"flag": name})
            self._metrics.inc("flagstaff_guard_errors_total")
            result = GuardCheck(name, now, enforced, error=f"{type(exc).__name__}: {exc}")
            self._keep(result)
            return result
        self._metrics.inc("flagstaff_guard_checks_total", outcome="breached" if verdict.breached else "ok")
        if verdict.halted:
            self._metrics.inc("flagstaff_guard_halts_total")
            audit_log.warning(
                "guard halted %s: %s",
                name,
                verdict.evidence,
                extra={"flag": name, "action": "guard", "author": guard.admin.author},
            )
        result = GuardCheck(name, now, enforced, verdict)
        self._keep(result)
        return result

    def _keep(self, result: GuardCheck) -> None:
        with self._lock:
            self._last[result.flag] = result

    def last(self, name: str) -> GuardCheck | None:
        """The newest check of ``name`` made by this server (None: none yet)."""
        with self._lock:
            return self._last.get(name)

    def status(self, name: str, result: GuardCheck | None = None) -> dict[str, Any]:
        """What ``GET /api/v1/flags/{name}/guard`` answers: the last check (``result``, else
        the newest kept) and whether the flag is halted now. Reads the store (blocking)."""
        record = self.store.get(name)
        if record is None:
            raise NotFoundError(name)
        check = result if result is not None else self.last(name)
        verdict = check.verdict if check is not None else None
        return {
            "flag": name,
            "interval": self.interval,
            "checked_at": check.checked_at if check is not None else None,
            "enforced": check.enforced if check is not None else None,
            "error": check.error if check is not None else None,
            "breached": verdict.breached if verdict is not None else False,
            "switched": verdict.switched if verdict is not None else 0,
            "halted_by_check": verdict.halted if verdict is not None else False,
            "guardrails": [r.to_dict() for r in verdict.results] if verdict is not None else [],
            **self._halt(name),
        }

    def _halt(self, name: str) -> dict[str, Any]:
        """``halted`` and ``halt`` (when, at which version, the history author with the
        evidence): the flag is off and its newest history entry is a guard's write."""
        record = self.store.get(name)
        if record is None:
            return {"halted": False, "halt": None}
        try:
            off = parse_text(name, record.raw).switch is Switch.OFF
        except FlagstaffError:
            off = False
        entries = self.store.history(name, limit=1) if off else []
        entry = entries[0] if entries else None
        if entry is None or entry.author is None or _MARK not in entry.author:
            return {"halted": False, "halt": None}
        return {"halted": True, "halt": {"at": entry.at, "version": entry.version, "author": entry.author}}


def guard_view(loop: GuardLoop | None, name: str, document: Any) -> dict[str, Any] | None:
    """What the flag page's guardrail panel shows (``templates/_guard.html``): the
    guardrails the document lists (``declared``), the guard's :meth:`GuardLoop.status`
    (``None`` without an event store) and the loop's interval. ``None`` when the
    document lists no guardrails. Reads the store (blocking)."""
    rails = document.get("guardrails") if isinstance(document, dict) else None
    if not isinstance(rails, list) or not rails:
        return None
    declared = [
        {
            "metric": r.get("metric"),
            "max_increase": r.get("max_increase"),
            "min_units": r.get("min_units", 100),
        }
        for r in rails
        if isinstance(r, dict)
    ]
    status = None
    if loop is not None:
        try:
            status = loop.status(name)
        except NotFoundError:  # deleted meanwhile: the page shows what it has
            status = None
    return {"declared": declared, "status": status, "interval": loop.interval if loop else None}
