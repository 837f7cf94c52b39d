"""Blast radius: how many recently seen units a new flag document would move.

:func:`blast_radius` reads the distinct keys seen in the last ``days`` from an
event store written by :class:`flagstaff.exposures.SQLiteSink` (keys of
``flagstaff_exposures`` rows of any flag, and of ``flagstaff_events`` rows:
track events carry keys too), decides the flag for each key under the current
document and under the new one, and counts the transitions between states
(``off``, ``on``, or the variant name when the decision has one)::

    12,345 of 50,000 units seen in the last 7 days would change: 12,000 on -> off, 345 a -> b

The approximation, stated: the store keeps keys, not contexts, so each key is
decided as ``Context(user_id=key)``. Rules on anything but the user id (groups,
attributes, cookies, location) see nothing, and a flag bucketing by cookie sees
no cookie. The count is exact for percentage rollouts, experiments and user
lists keyed on the user id, which are what most writes change.

Bounded: at most ``limit`` keys are examined (``capped`` says when more were
seen). Only the flag itself is counted, not the flags that require it.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from flagstaff.context import Context
from flagstaff.decision import Decision
from flagstaff.errors import FlagstaffError
from flagstaff.evaluate import evaluate, unknown
from flagstaff.model import Flag, parse_flag, parse_flags
from flagstaff.snapshot import Snapshot

__all__ = ["DEFAULT_LIMIT", "BlastRadius", "NoEventStore", "Transition", "blast_radius", "state_of"]

DEFAULT_LIMIT = 1_000_000
"""The most keys :func:`blast_radius` examines by default (memory: one string each)."""

_DAY = 86_400.0


class NoEventStore(FlagstaffError, FileNotFoundError):
    """The event store file does not exist (nothing was ever recorded there)."""

    def __init__(self, path: str) -> None:
        super().__init__(f"no event store at {path!r}")
        self.path = path


@dataclass(frozen=True, slots=True)
class Transition:
    """``units`` keys whose state goes from ``before`` to ``after``."""

    before: str
    after: str
    units: int

    def to_dict(self) -> dict[str, Any]:
        return {"from": self.before, "to": self.after, "units": self.units}


@dataclass(frozen=True, slots=True)
class BlastRadius:
    """What a new document of ``flag`` does to the units seen since ``since``.

    ``transitions`` holds only the changes (``before != after``), largest first;
    ``on_to_off``, ``off_to_on`` and ``variant_changes`` sum them by kind (a change
    between two variants, or between ``on`` and a variant, is a variant change).
    """

    flag: str
    days: float
    since: float
    units: int
    changed: int
    capped: bool
    limit: int
    transitions: tuple[Transition, ...]
    on_to_off: int
    off_to_on: int
    variant_changes: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "flag": self.flag,
            "days": self.days,
            "since": self.since,
            "units": self.units,
            "changed": self.changed,
            "capped": self.capped,
            "limit": self.limit,
            "on_to_off": self.on_to_off,
            "off_to_on": self.off_to_on,
            "variant_changes": self.variant_changes,
            "transitions": [t.to_dict() for t in self.transitions],
            "approximation": "each key is decided as the user id alone (no attributes are stored)",
            "summary": self.summary(),
        }

    def summary(self) -> str:
        """One line: ``12,345 of 50,000 units seen in the last 7 days would change: ...``."""
        days = f"{self.days:g} day" + ("" if self.days == 1 else "s")
        more = "+" if self.capped else ""
        head = f"{self.changed:,} of {self.units:,}{more} units seen in the last {days} would change"
        if not self.transitions:
            return head
        parts = [f"{t.units:,} {t.before} -> {t.after}" for t in self.transitions]
        return f"{head}: {', '.join(parts)}"


def state_of(decision: Decision) -> str:
    """``off``, the variant's name, or ``on``: what a unit sees."""
    if not decision.enabled:
        return "off"
    return decision.variant if decision.variant is not None else "on"


def blast_radius(  # noqa: PLR0913 (the issue's five inputs, and the bound kept keyword-only)
    current: Snapshot | Mapping[str, Any],
    name: str,
    new_document: Any,
    events_db: str | os.PathLike[str] | sqlite3.Connection,
    days: float = 7,
    now: float | None = None,
    *,
    limit: int = DEFAULT_LIMIT,
) -> BlastRadius:
    """Count how the units seen in the last ``days`` would move if ``name`` became
    ``new_document`` (a decoded JSON document, or an already parsed :class:`Flag`).

    ``current`` is the snapshot the flag lives in (or the decoded documents of the
    store's flags by name): the current flag is decided there, the new one linked
    into the same snapshot (:meth:`Snapshot.with_flag`), so prerequisites and
    segments resolve alike. A flag ``current`` lacks is off for everyone today.
    Raises :class:`~flagstaff.errors.ValidationError` for an invalid document and
    :class:`NoEventStore` when ``events_db`` names no file.
    """
    if days <= 0:
        raise ValueError("days must be positive")
    if limit < 1:
        raise ValueError("limit must be at least 1")
    snapshot = current if isinstance(current, Snapshot) else Snapshot(parse_flags(current)[0])
    flag = new_document if isinstance(new_document, Flag) else parse_flag(name, new_document)
    if flag.name != name:
        raise ValueError(f"the document is for flag {flag.name!r}, not {name!r}")
    when = time.time() if now is None else now
    since = when - days * _DAY
    old = snapshot.get(name)
    new = snapshot.with_flag(flag, snapshot.revision, when).flags[name]
    keys = list(_keys(events_db, since, when, limit + 1))
    capped = len(keys) > limit
    if capped:
        keys = keys[:limit]
    moves: Counter[tuple[str, str]] = Counter()
    missing = state_of(unknown(name))
    for key in keys:
        context = Context(user_id=key, time=when)
        before = state_of(evaluate(old, context, when)) if old is not None else missing
        after = state_of(evaluate(new, context, when))
        if before != after:
            moves[before, after] += 1
    transitions = tuple(
        Transition(b, a, n) for (b, a), n in sorted(moves.items(), key=lambda item: (-item[1], item[0]))
    )
    return BlastRadius(
        flag=name,
        days=days,
        since=since,
        units=len(keys),
        changed=sum(moves.values()),
        capped=capped,
        limit=limit,
        transitions=transitions,
        on_to_off=sum(t.units for t in transitions if t.after == "off" and t.before != "off"),
        off_to_on=sum(t.units for t in transitions if t.before == "off" and t.after != "off"),
        variant_changes=sum(t.units for t in transitions if "off" not in (t.before, t.after)),
    )


_KEYS = """
SELECT key FROM flagstaff_exposures WHERE time >= ? AND time <= ? AND key IS NOT NULL
UNION
SELECT key FROM flagstaff_events WHERE time >= ? AND time <= ? AND key IS NOT NULL
LIMIT ?
"""


def _keys(
    events_db: str | os.PathLike[str] | sqlite3.Connection, since: float, until: float, limit: int
) -> Iterator[str]:
    if isinstance(events_db, sqlite3.Connection):
        db, owned = events_db, False
    else:
        path = os.fspath(events_db)
        if not os.path.exists(path):
            raise NoEventStore(path)
        # Read-only: a preview must never create tables or take a write lock on the store.
        db, owned = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10), True
    try:
        try:
            rows = db.execute(_KEYS, (since, until, since, until, limit))
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):  # a file no sink has written yet: nobody seen
                return
            raise
        for (key,) in rows:
            yield str(key)
    finally:
        if owned:
            db.close()
