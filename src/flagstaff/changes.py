"""Change requests: a proposed flag document that a second person approves before it is written.

A change request names a flag (or a segment by its key ``segment:NAME``), the whole
new document, a comment, and the version of the flag it was proposed against
(``base_version``; ``0``: the flag does not exist yet). Its life::

    pending ──approve──▶ approved ──apply──▶ applied
       │                    │   └──(stale)──▶ failed   (a scheduled apply that lost the race)
       ├──reject──▶ rejected ◀──reject──┘
       └──cancel──▶ cancelled ◀─cancel──┘

* Only someone other than the proposer approves (:class:`SelfApproval`): another
  identity *and* another name, so a second token minted under one's own name does
  not count as a second person.
* Applying writes the document with compare-and-set against ``base_version``: if the
  flag changed after the proposal, the write is refused and nothing is overwritten
  (the HTTP layer answers with what changed). An approved request with ``apply_at``
  is applied by the server's scheduler at that time (:mod:`flagstaff.http.scheduler`).
* Every transition is one conditional ``UPDATE`` (``WHERE status = ...``), so two
  servers (or an operator and the scheduler) racing on one request cannot both win:
  :meth:`ChangeStore.claim` hands a request to exactly one applier.

:class:`ChangeStore` keeps requests in SQLite (by default beside the token database,
:func:`default_change_db`). It is thread-safe and does no flag I/O of its own: the
write is the caller's (through :class:`flagstaff.admin.Admin`).
"""

from __future__ import annotations

import builtins
import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from flagstaff.document import encode_document
from flagstaff.errors import FlagstaffError, NotFoundError, StoreUnavailable

__all__ = [
    "ChangeRequest",
    "ChangeRequestError",
    "ChangeStore",
    "ChangeStoreUnavailable",
    "NoSuchChangeRequest",
    "Proposal",
    "SelfApproval",
    "Status",
    "WrongStatus",
    "default_change_db",
]

MAX_COMMENT = 4000
"""Longest comment (characters) a change request, an approval or a rejection carries."""


class Status(StrEnum):
    """Where a change request is in its life (see the module doc)."""

    PENDING = "pending"
    APPROVED = "approved"
    APPLYING = "applying"  # claimed by one applier, for the length of its write
    APPLIED = "applied"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    FAILED = "failed"


OPEN = frozenset({Status.PENDING, Status.APPROVED})
"""The statuses from which a request can still be approved, applied, rejected or cancelled."""


class ChangeRequestError(FlagstaffError):
    """A change request operation was refused (bad input, or not allowed now)."""


class SelfApproval(ChangeRequestError):
    """The proposer tried to approve their own change request."""


class WrongStatus(ChangeRequestError):
    """The request is not in a status that allows this (approving an applied one, say)."""

    def __init__(self, message: str, status: Status) -> None:
        super().__init__(message)
        self.status = status


class NoSuchChangeRequest(NotFoundError):
    """There is no change request with this number."""

    def __init__(self, change_id: int) -> None:
        super().__init__(f"change request #{change_id}")
        self.args = (f"no change request #{change_id}",)


class ChangeStoreUnavailable(StoreUnavailable):
    """The change request database cannot be read or written."""


@dataclass(frozen=True, slots=True)
class Proposal:
    """What a proposer asks for: the flag's new ``document``, made on ``base_version``."""

    flag: str
    document: Any
    base_version: int  # the flag's version when proposed; 0: it does not exist
    comment: str = ""
    apply_at: float | None = None  # epoch seconds: the server applies it then, once approved


@dataclass(frozen=True, slots=True)
class ChangeRequest:
    """One proposal and what became of it. ``document`` is the decoded JSON value."""

    id: int
    flag: str
    document: Any
    base_version: int
    comment: str
    proposer: str  # identity (e.g. "token:1a2b3c4d"): who may not approve
    proposer_name: str  # shown, and the author of the write
    created_at: float
    apply_at: float | None
    status: Status
    approver: str | None = None
    approver_name: str | None = None
    approved_at: float | None = None
    closed_by: str | None = None  # the name of who applied, rejected or cancelled it
    closed_at: float | None = None
    note: str = ""  # the rejection's reason, or why an apply failed
    applied_version: int | None = None

    @property
    def open(self) -> bool:
        return self.status in OPEN

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "flag": self.flag,
            "document": self.document,
            "base_version": self.base_version,
            "comment": self.comment,
            "proposer": self.proposer,
            "proposer_name": self.proposer_name,
            "created_at": self.created_at,
            "apply_at": self.apply_at,
            "status": self.status.value,
            "approver": self.approver,
            "approver_name": self.approver_name,
            "approved_at": self.approved_at,
            "closed_by": self.closed_by,
            "closed_at": self.closed_at,
            "note": self.note,
            "applied_version": self.applied_version,
        }


def default_change_db(token_db: str) -> str:
    """Where change requests live by default: beside the token database
    (``flagstaff.db.tokens`` -> ``flagstaff.db.changes``; in memory beside an in-memory one)."""
    if token_db == ":memory:":
        return ":memory:"
    return token_db.removesuffix(".tokens") + ".changes"


_SCHEMA = """
CREATE TABLE IF NOT EXISTS change_requests (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    flag           TEXT NOT NULL,
    document       TEXT NOT NULL,
    base_version   INTEGER NOT NULL,
    comment        TEXT NOT NULL,
    proposer       TEXT NOT NULL,
    proposer_name  TEXT NOT NULL,
    created_at     REAL NOT NULL,
    apply_at       REAL,
    status         TEXT NOT NULL,
    approver       TEXT,
    approver_name  TEXT,
    approved_at    REAL,
    closed_by      TEXT,
    closed_at      REAL,
    note           TEXT NOT NULL DEFAULT '',
    applied_version INTEGER
);
CREATE INDEX IF NOT EXISTS change_requests_due ON change_requests (status, apply_at);
"""
_COLUMNS = (
    "id, flag, document, base_version, comment, proposer, proposer_name, created_at, apply_at,"
    " status, approver, approver_name, approved_at, closed_by, closed_at, note, applied_version"
)


def _text(value: str, what: str, *, limit: int = MAX_COMMENT) -> str:
    if len(value) > limit:
        raise ChangeRequestError(f"the {what} is longer than {limit} characters")
    return value


class ChangeStore:
    """Change requests in one SQLite file (``":memory:"`` for tests). Thread-safe.

    Every transition checks the status it starts from in the same statement, so a
    request is approved, rejected, cancelled or claimed at most once whoever races.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._closed = False

    def _connection(self) -> sqlite3.Connection:
        # Opened at first use, not at start: a server whose change database cannot be created
        # (a read-only directory) still serves everything else, and answers 503 for requests.
        if self._closed:
            raise ChangeStoreUnavailable(f"the change request database {self.path} is closed")
        if self._conn is None:
            conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10)
            try:
                if self.path != ":memory:":
                    conn.execute("PRAGMA journal_mode=WAL")
                conn.executescript(_SCHEMA)
            except sqlite3.Error:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _run(self, sql: str, params: tuple[object, ...] = ()) -> sqlite3.Cursor:
        try:
            with self._lock:
                return self._connection().execute(sql, params)
        except sqlite3.Error as exc:
            raise ChangeStoreUnavailable(f"the change request database {self.path}: {exc}") from None

    # -- reads -------------------------------------------------------------------

    def get(self, change_id: int) -> ChangeRequest:
        """The request ``change_id`` (:class:`~flagstaff.errors.NotFoundError` if there is none)."""
        row = self._run(f"SELECT {_COLUMNS} FROM change_requests WHERE id = ?", (change_id,)).fetchone()
        if row is None:
            raise NoSuchChangeRequest(change_id)
        return _request(row)

    def list(
        self, *, status: Status | None = None, flag: str | None = None, limit: int = 200
    ) -> builtins.list[ChangeRequest]:
        """Requests, newest first, optionally of one status and one flag."""
        where, params = [], []
        if status is not None:
            where.append("status = ?")
            params.append(status.value)
        if flag is not None:
            where.append("flag = ?")
            params.append(flag)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self._run(
            f"SELECT {_COLUMNS} FROM change_requests {clause} ORDER BY id DESC LIMIT ?", (*params, limit)
        ).fetchall()
        return [_request(r) for r in rows]

    def due(self, now: float) -> builtins.list[ChangeRequest]:
        """Approved requests whose ``apply_at`` has come, oldest time first."""
        rows = self._run(
            f"SELECT {_COLUMNS} FROM change_requests WHERE status = ? AND apply_at IS NOT NULL"
            " AND apply_at <= ? ORDER BY apply_at, id",
            (Status.APPROVED.value, now),
        ).fetchall()
        return [_request(r) for r in rows]

    # -- transitions ---------------------------------------------------------------

    def propose(self, proposal: Proposal, *, proposer: str, proposer_name: str) -> ChangeRequest:
        """A new pending request. The document is stored as given (validated when applied,
        and by the caller before proposing)."""
        flag, base_version, comment = proposal.flag, proposal.base_version, proposal.comment
        if not flag:
            raise ChangeRequestError("a change request needs a flag name")
        if base_version < 0:
            raise ChangeRequestError("the base version must be 0 (a new flag) or more")
        _text(comment, "comment")
        now = time.time()
        cursor = self._run(
            "INSERT INTO change_requests (flag, document, base_version, comment, proposer, proposer_name,"
            " created_at, apply_at, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (flag, encode_document(proposal.document), base_version, comment, proposer, proposer_name, now,
             proposal.apply_at,
             Status.PENDING.value),
        )  # fmt: skip
        assert cursor.lastrowid is not None
        return self.get(cursor.lastrowid)

    def approve(self, change_id: int, *, approver: str, approver_name: str) -> ChangeRequest:
        """Approve a pending request; :class:`SelfApproval` for its proposer (same identity or
        same name), :class:`WrongStatus` unless it is pending."""
        current = self.get(change_id)
        if approver == current.proposer or approver_name.casefold() == current.proposer_name.casefold():
            raise SelfApproval(
                f"change request #{change_id} was proposed by {current.proposer_name!r}: "
                "someone else must approve it"
            )
        changed = self._run(
            "UPDATE change_requests SET status = ?, approver = ?, approver_name = ?, approved_at = ?"
            " WHERE id = ? AND status = ?",
            (Status.APPROVED.value, approver, approver_name, time.time(), change_id, Status.PENDING.value),
        ).rowcount
        return self._after(change_id, changed, "approved", (Status.PENDING,))

    def reject(self, change_id: int, *, by: str, note: str = "") -> ChangeRequest:
        """Reject a pending or approved request, with an optional reason."""
        return self._close(change_id, Status.REJECTED, by, _text(note, "reason"))

    def cancel(self, change_id: int, *, by: str) -> ChangeRequest:
        """Withdraw a pending or approved request (the proposer's, or an approver's, call)."""
        return self._close(change_id, Status.CANCELLED, by, "")

    def claim(self, change_id: int) -> ChangeRequest:
        """Take an approved request for applying: exactly one of several racing callers gets it
        (the others :class:`WrongStatus`). Follow with :meth:`applied`, :meth:`failed` or
        :meth:`release`."""
        changed = self._run(
            "UPDATE change_requests SET status = ? WHERE id = ? AND status = ?",
            (Status.APPLYING.value, change_id, Status.APPROVED.value),
        ).rowcount
        return self._after(change_id, changed, "applied", (Status.APPROVED,))

    def applied(self, change_id: int, *, by: str, version: int) -> ChangeRequest:
        """A claimed request was written: it is now at ``version``."""
        self._run(
            "UPDATE change_requests SET status = ?, closed_by = ?, closed_at = ?, applied_version = ?"
            " WHERE id = ? AND status = ?",
            (Status.APPLIED.value, by, time.time(), version, change_id, Status.APPLYING.value),
        )
        return self.get(change_id)

    def failed(self, change_id: int, *, by: str, note: str) -> ChangeRequest:
        """A claimed request could not be written and never will be as it stands (stale, invalid)."""
        self._run(
            "UPDATE change_requests SET status = ?, closed_by = ?, closed_at = ?, note = ?"
            " WHERE id = ? AND status = ?",
            (Status.FAILED.value, by, time.time(), note[:MAX_COMMENT], change_id, Status.APPLYING.value),
        )
        return self.get(change_id)

    def release(self, change_id: int) -> ChangeRequest:
        """Give a claimed request back (approved again): its write was refused for a reason that
        may pass (the store unavailable), or was refused now but can be retried by a person."""
        self._run(
            "UPDATE change_requests SET status = ? WHERE id = ? AND status = ?",
            (Status.APPROVED.value, change_id, Status.APPLYING.value),
        )
        return self.get(change_id)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._conn is not None:
                self._conn.close()

    # -- helpers -------------------------------------------------------------------

    def _close(self, change_id: int, status: Status, by: str, note: str) -> ChangeRequest:
        changed = self._run(
            "UPDATE change_requests SET status = ?, closed_by = ?, closed_at = ?, note = ?"
            " WHERE id = ? AND status IN (?, ?)",
            (status.value, by, time.time(), note, change_id, Status.PENDING.value, Status.APPROVED.value),
        ).rowcount
        return self._after(change_id, changed, status.value, tuple(OPEN))

    def _after(self, change_id: int, changed: int, verb: str, allowed: tuple[Status, ...]) -> ChangeRequest:
        current = self.get(change_id)
        if changed != 1:
            wanted = " or ".join(sorted(s.value for s in allowed))
            raise WrongStatus(
                f"change request #{change_id} is {current.status.value}, so it cannot be {verb}"
                f" (only a {wanted} one can)",
                current.status,
            )
        return current


def _request(row: tuple[Any, ...]) -> ChangeRequest:
    return ChangeRequest(
        id=int(row[0]),
        flag=str(row[1]),
        document=json.loads(row[2]),
        base_version=int(row[3]),
        comment=str(row[4]),
        proposer=str(row[5]),
        proposer_name=str(row[6]),
        created_at=float(row[7]),
        apply_at=row[8],
        status=Status(row[9]),
        approver=row[10],
        approver_name=row[11],
        approved_at=row[12],
        closed_by=row[13],
        closed_at=row[14],
        note=str(row[15] or ""),
        applied_version=row[16],
    )
