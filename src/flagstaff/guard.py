"""Guardrails: halt a rollout whose treatment does measurably worse than control.

A flag document lists its guardrails (``"guardrails": [{"metric": "errors",
"max_increase": 0.02, "min_units": 500}]``, parsed by :mod:`flagstaff.model`). A
:class:`Guard` reads the event store (the SQLite file of
:class:`flagstaff.exposures.SQLiteSink`) and, per guardrail:

- the **arms**: each unit exposed to the flag (``flagstaff_exposures``, by ``key``) is in
  the treatment or in control. An exposure with a variant is control when the variant is
  ``off`` or a control variant (``control``, ``control_1``, ``control_2``), else treatment;
  an exposure without one (a plain on/off flag, a ``ramp``) is placed by deciding the
  flag's current document for that key at the exposure's time (a ramp's step then is the
  step of that moment; a killed flag as it was before the kill; segments and
  prerequisites from the store). A unit seen in both arms is left out (counted as ``switched``).
- the **rate**: the share of an arm's units with at least one ``metric`` event
  (``flagstaff_events.name``) at or after their first exposure: a binomial metric.
- the **test**: :func:`flagstaff.stats.compare`'s absolute difference (treatment - control)
  and its two-sided interval (``alpha``, 0.05 by default). When ``compare`` cannot say
  (control's rate is 0, an arm without variance) the difference's interval is the normal
  approximation of the same variance, so 0% errors in control against 9% in the treatment
  is still a breach.

A guardrail is **breached** when both arms have at least ``min_units`` units and the
interval's lower bound exceeds ``max_increase``: the treatment is worse by more than the
bound, beyond chance. :meth:`Guard.enforce` then halts the flag through the one writer,
:class:`flagstaff.admin.Admin` (``enabled: false``, the rest of the document kept, so
``flagstaff enable`` restores it), with the evidence as the history entry's author
(``guard: errors +3.1% [2.4, 3.8] > 2% (n 600/580)``): the store's history has no comment
field, and the author is what every history view shows.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sqlite3
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from flagstaff.admin import Admin
from flagstaff.context import Context
from flagstaff.document import is_part_key, is_segment_key
from flagstaff.errors import ValidationError
from flagstaff.evaluate import evaluate
from flagstaff.model import Flag, Guardrail, Switch, parse_flag, parse_text
from flagstaff.segments import Segment, parse_segment_text
from flagstaff.snapshot import Snapshot
from flagstaff.stats import MetricKind, VariantStats, compare
from flagstaff.stores import Store, open_store

__all__ = ["CONTROL_VARIANTS", "Guard", "GuardVerdict", "GuardrailResult"]

CONTROL_VARIANTS = frozenset({"off", "control", "control_1", "control_2"})
"""Variants an exposure counts as control."""


@dataclass(frozen=True, slots=True)
class GuardrailResult:
    """One guardrail judged: the arms' units and rates, the difference and its interval."""

    metric: str
    max_increase: float
    min_units: int
    control_units: int
    treatment_units: int
    control_rate: float
    treatment_rate: float
    difference: float
    interval: tuple[float, float]
    breached: bool
    problem: str | None = None
    """Why no verdict could be reached (too few units, an arm empty); ``None`` otherwise."""

    @property
    def evidence(self) -> str:
        """``errors +3.1% [2.4, 3.8] > 2% (n 600/580)``: the compact form for history."""
        low, high = self.interval
        sign = ">" if self.breached else "<="
        return (
            f"{self.metric} {self.difference * 100:+.1f}% [{low * 100:.1f}, {high * 100:.1f}] "
            f"{sign} {self.max_increase * 100:g}% (n {self.treatment_units}/{self.control_units})"
        )

    def to_dict(self) -> dict[str, object]:
        """JSON-ready: an unbounded side of the interval (an empty arm) is ``None``, as
        JSON has no infinity."""
        out = dataclasses.asdict(self)
        out["interval"] = [bound if math.isfinite(bound) else None for bound in self.interval]
        out["evidence"] = self.evidence
        return out


@dataclass(frozen=True, slots=True)
class GuardVerdict:
    """A flag's guardrails judged at one moment."""

    flag: str
    results: tuple[GuardrailResult, ...]
    switched: int = 0
    """Units seen in both arms, left out."""
    halted: bool = False
    """Whether :meth:`Guard.enforce` turned the flag off for this verdict."""

    @property
    def breached(self) -> bool:
        return any(r.breached for r in self.results)

    @property
    def evidence(self) -> str:
        """``guard: `` and the evidence of every breached guardrail (``""`` when none is)."""
        breached = [r.evidence for r in self.results if r.breached]
        return "guard: " + "; ".join(breached) if breached else ""

    def to_dict(self) -> dict[str, object]:
        return {
            "flag": self.flag,
            "breached": self.breached,
            "halted": self.halted,
            "switched": self.switched,
            "guardrails": [r.to_dict() for r in self.results],
        }


class Guard:
    """Judges (:meth:`check`) and enforces (:meth:`enforce`) a flag's guardrails.

    ``store``: a store URL, a :class:`~flagstaff.stores.Store`, or an :class:`Admin`
    (whose author prefixes the evidence); ``events_db``: the SQLite event store.
    """

    def __init__(
        self,
        store: str | Store | Admin,
        events_db: str | os.PathLike[str],
        *,
        alpha: float = 0.05,
        author: str = "guard",
    ) -> None:
        if isinstance(store, Admin):
            self.admin = store
            self._owned: Store | None = None
        else:
            opened = open_store(store) if isinstance(store, str) else store
            self._owned = opened if isinstance(store, str) else None
            self.admin = Admin(opened, author=author)
        self.events_db = os.fspath(events_db)
        self.alpha = alpha
        self.author = author

    def close(self) -> None:
        if self._owned is not None:
            self._owned.close()

    def __enter__(self) -> Guard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- judging -------------------------------------------------------------

    def check(self, name: str) -> GuardVerdict:
        """``name``'s guardrails against the event store now."""
        flag = parse_text(name, self.admin.get(name).raw)
        if not flag.guardrails:
            return GuardVerdict(name, ())
        flag = self._deciding(flag)
        with self._events() as db:
            arms, switched = _arms(db, flag)
            results = tuple(self._judge(db, g, arms) for g in flag.guardrails)
        return GuardVerdict(name, results, switched)

    def _deciding(self, flag: Flag) -> Flag:
        """The flag that places exposures without a variant: a killed flag as it was
        before the kill (the arms are who was in, not who is now), linked to the store's
        segments and flags when it names any."""
        if flag.switch is Switch.OFF:
            doc = flag.value
            if isinstance(doc, dict):
                doc.pop("enabled", None)
                flag = parse_flag(flag.name, doc)
        if flag.link is None:
            return flag
        flags: dict[str, Flag] = {}
        segments: dict[str, Segment] = {}
        records = self.admin.store.load().records
        texts = {key: record.raw for key, record in records.items()}  # the parts of large segments
        for key, record in records.items():
            if is_part_key(key):
                continue  # compiled with its segment's head
            try:
                if is_segment_key(key):
                    segments[key] = parse_segment_text(key, record.raw, parts=texts)
                elif key != flag.name:
                    flags[key] = parse_text(key, record.raw)
            except ValidationError:
                continue  # a bad document is skipped, as the client does
        return Snapshot(flags, 0, 0.0, segments).link(flag)

    def _judge(
        self, db: sqlite3.Connection, rail: Guardrail, arms: dict[str, tuple[bool, float]]
    ) -> GuardrailResult:
        last = dict(
            db.execute(
                "SELECT key, MAX(time) FROM flagstaff_events WHERE name = ? AND key IS NOT NULL GROUP BY key",
                (rail.metric,),
            ).fetchall()
        )
        units = {True: 0, False: 0}
        converted = {True: 0, False: 0}
        for key, (treated, first) in arms.items():
            units[treated] += 1
            when = last.get(key)
            if when is not None and when >= first:
                converted[treated] += 1
        control = VariantStats.conversions("control", units[False], converted[False])
        treatment = VariantStats.conversions("treatment", units[True], converted[True])
        difference, interval = self._difference(control, treatment)
        problem = None
        if min(units.values()) < rail.min_units:
            problem = (
                f"too few units to judge: {units[True]} in the treatment, {units[False]} in control "
                f"(min_units {rail.min_units})"
            )
        return GuardrailResult(
            metric=rail.metric,
            max_increase=rail.max_increase,
            min_units=rail.min_units,
            control_units=units[False],
            treatment_units=units[True],
            control_rate=control.mean,
            treatment_rate=treatment.mean,
            difference=difference,
            interval=interval,
            breached=problem is None and interval[0] > rail.max_increase,
            problem=problem,
        )

    def _difference(
        self, control: VariantStats, treatment: VariantStats
    ) -> tuple[float, tuple[float, float]]:
        """Treatment - control and its interval: :func:`compare`'s, else (control's rate
        0, no variance) the normal approximation of the same variance."""
        if control.units >= 2 and treatment.units >= 2:
            result = compare(MetricKind.BINOMIAL, control, treatment, alpha=self.alpha)
            if result.problem is None:
                return result.difference, result.difference_interval
        a, b = control.mean, treatment.mean
        if control.units == 0 or treatment.units == 0:
            return b - a, (-math.inf, math.inf)
        se = math.sqrt(a * (1 - a) / control.units + b * (1 - b) / treatment.units)
        z = statistics.NormalDist().inv_cdf(1 - self.alpha / 2)
        return b - a, (b - a - z * se, b - a + z * se)

    @contextmanager
    def _events(self) -> Iterator[sqlite3.Connection]:
        if not os.path.exists(self.events_db):
            raise FileNotFoundError(f"no event store at {self.events_db}")
        db = sqlite3.connect(f"file:{self.events_db}?mode=ro", uri=True)
        try:
            yield db
        finally:
            db.close()

    # -- enforcing -------------------------------------------------------------

    def enforce(self, name: str) -> GuardVerdict:
        """:meth:`check`, and when a guardrail is breached turn the flag off through the
        admin, the evidence in the history entry's author. A flag already off is left."""
        verdict = self.check(name)
        if not verdict.breached:
            return verdict
        current = parse_text(name, self.admin.get(name).raw)
        if current.switch is Switch.OFF:
            return verdict
        who = self.admin.author
        evidence = verdict.evidence if who in ("", self.author) else f"{who} {verdict.evidence}"
        outcome = Admin(self.admin.store, author=evidence).disable(name)
        return dataclasses.replace(verdict, halted=outcome.changed)

    def watch(
        self,
        name: str,
        interval: float,
        max_rounds: int,
        *,
        sleep: Callable[[float], None] = time.sleep,
        on_verdict: Callable[[GuardVerdict], None] | None = None,
    ) -> GuardVerdict:
        """:meth:`enforce` every ``interval`` seconds, at most ``max_rounds`` times; stops
        at the first halt. Returns the last verdict."""
        verdict = self.enforce(name)
        rounds = 1
        while True:
            if on_verdict is not None:
                on_verdict(verdict)
            if verdict.halted or rounds >= max_rounds:
                return verdict
            sleep(interval)
            verdict = self.enforce(name)
            rounds += 1


def _arms(db: sqlite3.Connection, flag: Flag) -> tuple[dict[str, tuple[bool, float]], int]:
    """Each exposed unit's arm (True: treatment) and first exposure time; and how many
    units were seen in both arms (left out)."""
    rows = db.execute(
        "SELECT key, variant, MIN(time), MAX(time) FROM flagstaff_exposures"
        " WHERE flag = ? AND key IS NOT NULL GROUP BY key, variant",
        (flag.name,),
    ).fetchall()
    seen: dict[str, tuple[bool, float]] = {}
    mixed: set[str] = set()
    for key, variant, first, last in rows:
        if variant is not None:
            treated = variant not in CONTROL_VARIANTS
        else:
            ctx = Context(user_id=key)
            treated = evaluate(flag, ctx, first).enabled
            if last != first and evaluate(flag, ctx, last).enabled != treated:
                mixed.add(key)  # a ramp's step took it in between its exposures
        prior = seen.get(key)
        if prior is None:
            seen[key] = (treated, first)
        elif prior[0] != treated:
            mixed.add(key)
        else:
            seen[key] = (treated, min(first, prior[1]))
    for key in mixed:
        del seen[key]
    return seen, len(mixed)
