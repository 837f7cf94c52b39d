"""An experiment's report from a SQLite event store (the schema of :class:`flagstaff.exposures.SQLiteSink`).

:func:`build` sums in SQL (``GROUP BY`` in SQLite; no Python loop over events) what
:func:`flagstaff.stats.report` needs:

* **units**: the distinct bucketing keys exposed to the flag's experiment. A unit's variant
  is its first exposure's; a unit exposed to several variants (a changed split, a changed
  key) is counted in ``excluded`` and left out of everything else, so it cannot dilute
  both arms.
* **metrics**, one per event name: a *conversion* (a unit converted when it sent at least
  one such event at or after its first exposure) when no event of that name carries a
  value, else a *mean* of the values a unit sent after its first exposure, summed per unit
  (0 for a unit that sent none). ``NAME:conversion`` / ``NAME:mean`` chooses explicitly.
* **daily**: units first exposed per UTC day, per variant (for :func:`flagstaff.plots.counts_svg`).

The control is ``control_1`` when present, else the first variant (``control=`` chooses).
The sample-ratio check runs against the experiment's weights when given (the CLI and the
API read them from the flag), else against an equal split.
"""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from flagstaff.plots import counts_svg, interval_svg
from flagstaff.stats import AnalysisError, MetricData, MetricKind, Report, VariantStats, report

__all__ = [
    "ExperimentReport",
    "NoExposures",
    "build",
    "counts_plot",
    "figure_svg",
    "interval_plot",
    "report_dict",
]

DEFAULT_CONTROL = "control_1"
_HEIGHT = re.compile(r'width="(\d+)" height="(\d+)"')


class NoExposures(AnalysisError):
    """The event store holds no exposure of the experiment (nothing to analyse)."""


@dataclass(frozen=True, slots=True)
class ExperimentReport:
    """The statistics plus what the store said about units: exclusions and exposures per day."""

    flag: str
    control: str
    result: Report
    units: Mapping[str, int]
    excluded: int
    daily: Mapping[str, tuple[tuple[str, int], ...]] = field(default_factory=dict)


def _parse_metric(spec: str) -> tuple[str, MetricKind | None]:
    name, sep, kind = spec.rpartition(":")
    if sep and kind in ("conversion", "mean"):
        return name, MetricKind.BINOMIAL if kind == "conversion" else MetricKind.MEAN
    return spec, None


def _connect(path: str | os.PathLike[str]) -> sqlite3.Connection:
    if not os.path.exists(path):
        raise NoExposures(f"nothing recorded yet: no event store at {os.fspath(path)!r}")
    # Read-only: a report never creates or changes the store (the temporary table lives in temp).
    db = sqlite3.connect(f"file:{os.fspath(path)}?mode=ro", uri=True)
    try:
        db.execute("SELECT 1 FROM flagstaff_exposures LIMIT 0")
    except sqlite3.OperationalError:
        db.close()
        raise NoExposures(f"{os.fspath(path)!r} is not a flagstaff event store") from None
    return db


_UNITS = """
CREATE TEMP TABLE report_units (key TEXT PRIMARY KEY, variant TEXT, first REAL, multi INTEGER) WITHOUT ROWID;
"""
# A unit of one variant has MIN(variant) = MAX(variant), its first exposure's; any other unit
# is excluded, so which variant it would have is moot (cheaper than COUNT(DISTINCT)).
_FILL = """
INSERT INTO report_units
SELECT key, MIN(variant), MIN(time), MIN(variant) <> MAX(variant)
FROM flagstaff_exposures
WHERE flag = ? AND key IS NOT NULL AND variant IS NOT NULL
GROUP BY key
"""
# Events are summed per key (read through the name index, each joined to its unit by the
# unit's primary key), then per variant, over the units that sent any: the rest add 0, and
# their number is the variant's units minus these (a join driven by the units scanned more).
_METRIC = """
SELECT variant, COUNT(*), TOTAL(s), TOTAL(s * s) FROM (
    SELECT v.variant AS variant, TOTAL(e.value) AS s
    FROM flagstaff_events e JOIN report_units v ON v.key = e.key
    WHERE e.name = ? AND e.time >= v.first AND v.multi = 0
    GROUP BY e.key
) GROUP BY variant
"""


def _order(observed: Sequence[str], weights: Mapping[str, float] | None, control: str | None) -> list[str]:
    names = [n for n in (weights or {}) if (weights or {})[n] > 0 or n in observed]
    names += sorted(n for n in observed if n not in names)
    if control is None:
        control = DEFAULT_CONTROL if DEFAULT_CONTROL in names else (names[0] if names else None)
    if control is None or control not in names:
        raise AnalysisError(f"control {control!r} is not a variant of the experiment ({', '.join(names)})")
    return [control, *(n for n in names if n != control)]


def build(
    path: str | os.PathLike[str],
    flag: str,
    *,
    metrics: Sequence[str] = (),
    control: str | None = None,
    weights: Mapping[str, float] | None = None,
    alpha: float = 0.05,
) -> ExperimentReport:
    """The report of ``flag``'s experiment from the event store at ``path``.

    ``metrics``: event names (``NAME:conversion`` / ``NAME:mean`` to choose the kind);
    default: every event name in the store. Raises :class:`NoExposures` when the store has
    no exposure of the flag, :class:`~flagstaff.stats.AnalysisError` when it cannot be
    analysed (one variant only, a control that is not a variant, units in a variant the
    weights do not name).
    """
    db = _connect(path)
    try:
        db.execute("PRAGMA temp_store = MEMORY")
        db.execute("PRAGMA cache_size = -262144")  # 256 MiB at most, for the sorts and the units table
        db.executescript(_UNITS)
        db.execute(_FILL, (flag,))
        excluded = db.execute("SELECT COUNT(*) FROM report_units WHERE multi = 1").fetchone()[0]
        counted: dict[str, int] = dict(
            db.execute(
                "SELECT variant, COUNT(*) FROM report_units WHERE multi = 0 GROUP BY variant ORDER BY variant"
            )
        )
        if not counted and not excluded:
            raise NoExposures(f"no exposures of {flag!r} in the event store")
        names = _order(list(counted), weights, control)
        if len(names) < 2:
            raise AnalysisError(
                f"{flag!r}: a report needs a control and a treatment; exposures show only {names}"
            )
        units = {n: counted.get(n, 0) for n in names}
        daily: dict[str, list[tuple[str, int]]] = {n: [] for n in names}
        for day, variant, count in db.execute(
            "SELECT date(first, 'unixepoch') AS day, variant, COUNT(*) FROM report_units"
            " WHERE multi = 0 GROUP BY day, variant ORDER BY day"
        ):
            daily.setdefault(variant, []).append((day, count))
        if not metrics:
            metrics = [r[0] for r in db.execute("SELECT DISTINCT name FROM flagstaff_events ORDER BY name")]
        data = [_metric(db, spec, units) for spec in metrics]
    finally:
        db.close()
    srm_weights = (
        {n: float(weights.get(n, 0.0)) for n in names} if weights is not None else dict.fromkeys(names, 1.0)
    )
    missing = [n for n, w in srm_weights.items() if w <= 0]
    if missing:
        raise AnalysisError(f"{flag!r}: units in variants the experiment gives no weight: {missing}")
    result = report(flag, data, units=units, weights=srm_weights, alpha=alpha)
    return ExperimentReport(flag, names[0], result, units, excluded, {n: tuple(p) for n, p in daily.items()})


def _metric(db: sqlite3.Connection, spec: str, units: Mapping[str, int]) -> MetricData:
    name, kind = _parse_metric(spec)
    if kind is None:
        valued = db.execute(
            "SELECT 1 FROM flagstaff_events WHERE name = ? AND value IS NOT NULL LIMIT 1", (name,)
        ).fetchone()
        kind = MetricKind.MEAN if valued else MetricKind.BINOMIAL
    rows = {r[0]: r[1:] for r in db.execute(_METRIC, (name,))}
    variants = []
    for n in units:
        count = units[n]
        converted, total, squares = rows.get(n, (0, 0.0, 0.0))
        if kind is MetricKind.BINOMIAL:
            variants.append(VariantStats.conversions(n, count, converted or 0))
        else:
            variants.append(VariantStats(n, count, float(total), float(squares)))
    return MetricData(name, kind, tuple(variants))


def report_dict(r: ExperimentReport) -> dict[str, Any]:
    """The JSON shape of a report (``flagstaff report --json`` and the API)."""
    s = r.result.srm
    metrics = []
    for m in r.result.metrics:
        rows = []
        for row in m.rows:
            item: dict[str, Any] = {"variant": row.variant, "units": row.units, "value": row.mean}
            c = row.comparison
            if c is not None:
                item |= {
                    "lift": c.lift,
                    "lift_interval": list(c.lift_interval),
                    "difference": c.difference,
                    "difference_interval": list(c.difference_interval),
                    "p_value": c.p_value,
                    "chance_to_win": c.chance_to_win,
                    "risk": list(c.risk),
                    "credible_interval": list(c.credible_interval),
                    "verdict": c.verdict.value,
                    "cuped": c.cuped,
                    "problem": c.problem,
                }
            rows.append(item)
        metrics.append({"name": m.name, "kind": m.kind.value, "variants": rows})
    return {
        "flag": r.flag,
        "control": r.control,
        "alpha": r.result.alpha,
        "units": dict(r.units),
        "excluded_units": r.excluded,
        "srm": None
        if s is None
        else {
            "units": list(s.units),
            "weights": list(s.weights),
            "statistic": s.statistic,
            "p_value": s.p_value,
            "warning": s.warning,
        },
        "metrics": metrics,
        "daily": {n: [list(p) for p in points] for n, points in r.daily.items()},
    }


def interval_plot(r: ExperimentReport, metric: str | None = None) -> str:
    """The interval plot (SVG) of one metric (default: the first)."""
    chosen = [m for m in r.result.metrics if metric is None or m.name == metric]
    if not chosen:
        raise AnalysisError(f"no metric {metric!r} in the report of {r.flag!r}")
    m = chosen[0]
    return interval_svg(m.comparisons, title=f"{m.name}: relative lift vs {r.control}")


def counts_plot(r: ExperimentReport) -> str:
    """Units first exposed per day, per variant (SVG)."""
    return counts_svg(r.daily, title=f"{r.flag}: units first exposed per day")


def figure_svg(r: ExperimentReport) -> str:
    """Every metric's interval plot, then the counts plot, stacked in one SVG document
    (what ``flagstaff report --plot FILE.svg`` writes)."""
    parts = [
        interval_svg(m.comparisons, title=f"{m.name}: relative lift vs {r.control}") for m in r.result.metrics
    ]
    parts.append(counts_plot(r))
    body: list[str] = []
    y = width = 0
    for svg in parts:
        w, h = (int(_HEIGHT.search(svg).group(i)) for i in (1, 2))  # type: ignore[union-attr]
        body.append(svg.replace("<svg ", f'<svg y="{y}" ', 1))
        y += h
        width = max(width, w)
    head = f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {y}" width="{width}" height="{y}">'
    return "\n".join([head, *body, "</svg>"]) + "\n"
