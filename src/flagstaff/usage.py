"""Flag usage: how often each flag is evaluated, per hour, and when it was last seen.

A :class:`Tally` counts evaluations per flag in the process, at a cost the check path
hardly notices: one dict lookup and one ``next()`` on an :class:`itertools.count` (a C
call, atomic under the GIL: no lock, no lost count). The counters are never reset;
:meth:`Tally.take` (called by the :class:`~flagstaff.exposures.Recorder`'s background
task) returns what each flag gained since the previous take. The recorder sends those
figures as ``usage`` events through its sink; :class:`~flagstaff.exposures.SQLiteSink`
adds them up in the table ``flagstaff_usage`` (one row per flag and hour, see
:data:`SCHEMA`), which :func:`read_usage` reads for the dashboard and
``flagstaff scan --usage``.

Guarantees
    * Counting never blocks, never raises and loses no count: a flag's first count makes
      its counter with ``dict.setdefault`` (atomic), so two threads seeing a flag for the
      first time together share one counter.
    * A take is attributed to the hour it is taken in, and its time is the flag's
      ``last_seen``: both are as precise as the recorder's cadence (its ``interval``,
      and a take at least every ``usage_interval`` and at each new hour).
    * Counts are per process; a forked child starts counting from what it inherited
      (the parent reports what it counted before the fork).
"""

from __future__ import annotations

import itertools
import math
import os
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

__all__ = ["HOUR", "SCHEMA", "UPSERT", "FlagUsage", "Tally", "UsageTable", "hour_of", "read_usage"]

HOUR = 3600
"""Seconds per usage row."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS flagstaff_usage (
    flag TEXT NOT NULL,
    hour INTEGER NOT NULL,
    count INTEGER NOT NULL,
    last_seen REAL NOT NULL,
    PRIMARY KEY (flag, hour)
);
CREATE INDEX IF NOT EXISTS flagstaff_usage_hour ON flagstaff_usage (hour);
"""
"""The usage table: per flag and hour (epoch seconds of its start, UTC), the evaluations
counted and the last time one was (epoch seconds)."""

UPSERT = (
    "INSERT INTO flagstaff_usage (flag, hour, count, last_seen) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (flag, hour) DO UPDATE SET count = count + excluded.count,"
    " last_seen = max(last_seen, excluded.last_seen)"
)
"""Adds one ``(flag, hour, count, last_seen)`` to the table: many processes' rows add up."""


def hour_of(when: float) -> int:
    """The start of the hour holding ``when`` (epoch seconds, UTC)."""
    return math.floor(when / HOUR) * HOUR


def _peek(counter: itertools.count[int]) -> int:
    """The next value of ``counter`` without advancing it: its repr is ``count(N)``."""
    return int(repr(counter)[6:-1])


class Tally:
    """Evaluations per flag, counted without a lock (see the module's guarantees).

    The client counts into :attr:`counts` directly (``next(tally.counts[name])``, and
    :meth:`count` when that raises ``KeyError``: the flag's first count); the recorder's
    task calls :meth:`take`.
    """

    def __init__(self) -> None:
        # A plain dict, not a defaultdict: the interpreter's subscript fast path is for dict
        # itself, and setdefault makes a first counter without losing a racing count.
        self.counts: dict[str, itertools.count[int]] = {}
        """Per flag name, a counter of its evaluations; never replaced (the client holds it)."""
        self._taken: dict[str, int] = {}  # what each counter held at the last take

    def count(self, flag: str) -> None:
        """Count one evaluation of ``flag`` (the client does it inline, and calls this for a
        flag's first)."""
        counter = self.counts.get(flag)
        if counter is None:
            counter = self.counts.setdefault(flag, itertools.count())
        next(counter)

    def take(self) -> dict[str, int]:
        """Per flag, the evaluations counted since the previous take (flags with none left
        out). One caller at a time (the recorder holds a lock around it)."""
        taken = self._taken
        out: dict[str, int] = {}
        for flag, counter in list(self.counts.items()):  # a copy: the client may add flags
            now = _peek(counter)
            gained = now - taken.get(flag, 0)
            if gained > 0:
                out[flag] = gained
                taken[flag] = now
        return out

    def after_fork(self) -> None:
        """In a forked child: what the counters hold so far is the parent's to report."""
        self._taken = {flag: _peek(counter) for flag, counter in list(self.counts.items())}


@dataclass(frozen=True, slots=True)
class FlagUsage:
    """One flag's usage as the event store holds it."""

    flag: str
    evaluations: int
    """Evaluations counted in the period asked for (whole hours)."""
    last_seen: float | None
    """The last time an evaluation was counted, at any time (epoch seconds); None: never."""


@dataclass(frozen=True, slots=True)
class UsageTable:
    """What an event store says of flag usage (:func:`read_usage`)."""

    flags: Mapping[str, FlagUsage]
    """Per flag ever counted, its usage."""
    since: float
    """The start of the first hour counted in :attr:`FlagUsage.evaluations`."""
    first: float | None
    """The start of the oldest hour the store holds (None: none): a flag not seen since
    then may still have been evaluated before."""

    def evaluations(self, flag: str) -> int:
        """``flag``'s evaluations since :attr:`since` (0 when never counted)."""
        usage = self.flags.get(flag)
        return 0 if usage is None else usage.evaluations

    def last_seen(self, flag: str) -> float | None:
        usage = self.flags.get(flag)
        return None if usage is None else usage.last_seen


def read_usage(path: str | os.PathLike[str], *, since: float) -> UsageTable | None:
    """Per flag, its evaluations in the hours from the one holding ``since`` on, and when it
    was last seen, from the event store at ``path`` (opened read-only). ``None`` when the
    file or its usage table does not exist (nothing was ever counted there). Raises
    :class:`sqlite3.Error` for a file that is not a readable SQLite database."""
    if not Path(path).exists():
        return None
    db = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True, timeout=5)
    try:
        exists = db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'flagstaff_usage'"
        ).fetchone()
        if exists is None:
            return None
        start = hour_of(since)
        rows = db.execute(
            "SELECT flag, SUM(CASE WHEN hour >= ? THEN count ELSE 0 END), MAX(last_seen)"
            " FROM flagstaff_usage GROUP BY flag",
            (start,),
        ).fetchall()
        (first,) = db.execute("SELECT MIN(hour) FROM flagstaff_usage").fetchone()
    finally:
        db.close()
    flags = {flag: FlagUsage(flag, int(total or 0), last) for flag, total, last in rows}
    return UsageTable(MappingProxyType(flags), float(start), None if first is None else float(first))
