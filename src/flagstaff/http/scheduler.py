"""Applying approved change requests: on request (``POST .../apply``) or at their time.

:func:`apply_change` is the one write path of a change request. It claims the request
(so one applier wins however many race, :meth:`flagstaff.changes.ChangeStore.claim`),
writes its document through :class:`~flagstaff.admin.Admin` with compare-and-set
against the version the proposal was made on, and records the outcome:

* written: ``applied``, with the new version. The history entry's author is the
  proposer, ``approved by`` the approver, with the change request's number
  (``alice (approved by bob, change request #3) [token 1a2b3c4d, request ...]``),
  and the audit log has its line, as for any API write.
* the flag changed after the proposal: ``failed``, and :class:`StaleProposal` says
  what changed (the base version's document against the current one). Nothing is
  overwritten. If the flag already holds exactly the proposed document (a retry of
  an apply whose answer was lost), the request is ``applied`` instead.
* the document is no longer valid (a segment it names was deleted): ``failed``.
* the store unavailable: approved again, to be retried.

:class:`Scheduler` is a thread that, every ``Settings.schedule_interval`` seconds,
applies the approved requests whose ``apply_at`` has come. ``create_app`` starts one
per server; with several servers on one change database each due request is still
applied once (the claim), and a loser sees it gone.
"""

from __future__ import annotations

import difflib
import json
import logging
import threading
import time
from typing import Any

from flagstaff.admin import Admin
from flagstaff.changes import ChangeRequest, ChangeRequestError, WrongStatus
from flagstaff.document import encode_document
from flagstaff.errors import ConflictError, StoreUnavailable, ValidationError
from flagstaff.http.api._common import write
from flagstaff.http.present import document_or_text, json_changes
from flagstaff.http.state import ServerState, audit_log

__all__ = ["Scheduler", "StaleProposal", "apply_change", "base_document", "change_author", "stale_details"]

log = logging.getLogger("flagstaff.http.scheduler")

_HISTORY_DEPTH = 1000


class StaleProposal(ChangeRequestError):
    """The flag changed after the proposal: the apply was refused; ``details`` says how."""

    def __init__(self, message: str, details: dict[str, Any]) -> None:
        super().__init__(message)
        self.details = details


def change_author(change: ChangeRequest, request_id: str) -> str:
    """The history author of an applied change: the proposer, approved by the approver."""
    token = change.proposer.removeprefix("token:") if change.proposer.startswith("token:") else "none"
    return (
        f"{change.proposer_name} (approved by {change.approver_name}, change request #{change.id})"
        f" [token {token}, request {request_id}]"
    )


def base_document(state: ServerState, change: ChangeRequest) -> Any:
    """The flag's document at the version ``change`` was proposed on (``None``: it did not
    exist then, or history no longer holds that version)."""
    name, version = change.flag, change.base_version
    if version == 0:
        return None
    record = state.store.get(name)
    if record is not None and record.version == version:
        return document_or_text(record.raw)
    for entry in state.store.history(name, limit=_HISTORY_DEPTH):
        if entry.version == version and entry.after is not None:
            return document_or_text(entry.after)
    return None


def _pretty(doc: Any) -> list[str]:
    return [] if doc is None else json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False).splitlines()


def stale_details(state: ServerState, change: ChangeRequest) -> dict[str, Any]:
    """What happened to the flag since ``change`` was proposed: versions, changed paths, a diff."""
    record = state.store.get(change.flag)
    current_version = 0 if record is None else record.version
    base = base_document(state, change)
    current = None if record is None else document_or_text(record.raw)
    since = [
        {"version": e.version, "author": e.author, "at": e.at}
        for e in state.store.history(change.flag, limit=_HISTORY_DEPTH)
        if e.version is not None and e.version > change.base_version
    ]
    unified = "\n".join(
        difflib.unified_diff(
            _pretty(base),
            _pretty(current),
            f"{change.flag}@{change.base_version}",
            f"{change.flag}@{current_version}",
            lineterm="",
        )
    )
    return {
        "flag": change.flag,
        "base_version": change.base_version,
        "current_version": current_version,
        "changes": json_changes(base, current),
        "unified": unified,
        "changed_by": since,
    }


def apply_change(state: ServerState, change_id: int, *, by: str, request_id: str) -> ChangeRequest:
    """Write an approved change request (see the module doc). Blocking: run it in a thread.

    Raises :class:`~flagstaff.changes.WrongStatus` (not approved, or being applied by
    someone else), :class:`StaleProposal` (the flag changed: the request is now failed),
    :class:`~flagstaff.errors.ValidationError` (the document is no longer valid: failed),
    or :class:`~flagstaff.errors.StoreUnavailable` (approved again, to retry).
    """
    change = state.changes.claim(change_id)
    admin = Admin(state.store, author=change_author(change, request_id))
    try:
        outcome = write(
            state, admin, "apply", lambda: admin.set(change.flag, change.document, expect=change.base_version)
        )
    except ConflictError:
        record = state.store.get(change.flag)
        if record is not None and record.raw == encode_document(change.document):
            return state.changes.applied(change_id, by=by, version=record.version)  # a lost answer, retried
        details = stale_details(state, change)
        note = (
            f"the flag changed after the proposal (version {details['current_version']}, "
            f"proposed on {details['base_version']}): propose again"
        )
        state.changes.failed(change_id, by=by, note=note)
        raise StaleProposal(f"change request #{change_id} was not applied: {note}", details) from None
    except ValidationError as exc:
        state.changes.failed(change_id, by=by, note=f"the document is no longer valid: {exc}")
        raise
    except BaseException:
        state.changes.release(change_id)
        raise
    version = outcome.record.version if outcome.record is not None else change.base_version
    applied = state.changes.applied(change_id, by=by, version=version)
    state.metrics.inc("flagstaff_change_requests_applied_total")
    return applied


class Scheduler:
    """Applies approved change requests at their ``apply_at`` (a daemon thread; :meth:`stop` ends it)."""

    def __init__(self, state: ServerState, interval: float) -> None:
        if not interval > 0:
            raise ValueError("the schedule interval must be positive")
        self.state = state
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="flagstaff-scheduler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.run_due(time.time())
            except StoreUnavailable as exc:  # the change database: next round
                log.warning("scheduled changes not checked: %s", exc)

    def run_due(self, now: float) -> list[ChangeRequest]:
        """Apply every request due at ``now``; the ones applied. Failures are logged, not raised."""
        done = []
        for change in self.state.changes.due(now):
            if self._stop.is_set():
                break
            try:
                done.append(
                    apply_change(self.state, change.id, by="scheduler", request_id=f"schedule-{change.id}")
                )
            except WrongStatus:
                continue  # applied, cancelled or claimed meanwhile (by a person, or another server)
            except (StaleProposal, ValidationError) as exc:
                audit_log.warning(
                    "scheduled change request #%d failed: %s",
                    change.id,
                    exc,
                    extra={"flag": change.flag, "action": "apply", "change_request": change.id},
                )
            except StoreUnavailable as exc:
                log.warning("scheduled change request #%d not applied yet: %s", change.id, exc)
        return done
