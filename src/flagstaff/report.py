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
  (0 for a unit that sent none). ``NAME:conversion`` / ``NAME:mean`` chooses explicitly;
  ``NUM/DEN`` is a *ratio* of two per-unit sums (delta method).
* **daily**: units first exposed per UTC day, per variant (for :func:`flagstaff.plots.counts_svg`).

A :class:`Query` narrows the report: one experiment id, a time window, CUPED with a
pre-period read from the same store. The control is ``control_1`` when present, else the
first variant (``control=`` chooses). The sample-ratio check runs against the experiment's
weights when given (the CLI and the API read them from the flag), else against an equal split.
:class:`ReportCache` answers a repeated report from memory until the store changes.
"""

from __future__ import annotations

import datetime as _dt
import io
import math
import os
import re
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from flagstaff._extras import missing_extra
from flagstaff.plots import COLOURS, counts_svg, interval_svg
from flagstaff.stats import AnalysisError, MetricData, MetricKind, Report, VariantStats, report

__all__ = [
    "ExperimentReport",
    "NoExposures",
    "Query",
    "ReportCache",
    "build",
    "counts_plot",
    "figure_png",
    "figure_svg",
    "interval_plot",
    "parse_time",
    "report_dict",
]

DEFAULT_CONTROL = "control_1"
DAY = 86400.0
_HEIGHT = re.compile(r'width="(\d+)" height="(\d+)"')
# The covering indexes SQLiteSink creates (exposures.py's schema): used by name when present,
# so the planner cannot pick the narrower (experiment_id, time) or (name, time) index instead.
_EXPOSURES_INDEX = "flagstaff_exposures_units"
_EVENTS_INDEX = "flagstaff_events_units"


class NoExposures(AnalysisError):
    """The event store holds no exposure of the experiment (nothing to analyse)."""


@dataclass(frozen=True, slots=True)
class Query:
    """What to report on. Validated when built (:class:`~flagstaff.stats.AnalysisError`).

    ``metrics``: event names, ``NAME:conversion`` / ``NAME:mean``, or ``NUM/DEN`` for a
    ratio (default: every event name in the store). ``experiment_id``: only exposures that
    carry this experiment id. ``since`` / ``until`` (epoch seconds, UTC): only exposures in
    ``[since, until)``, and only metric events before ``until``. ``cuped_days``: CUPED with
    each unit's same metric in the ``cuped_days`` days before its first exposure as the
    pre-period covariate (conversion and mean metrics; a ratio is reported unadjusted).
    """

    flag: str
    metrics: tuple[str, ...] = ()
    control: str | None = None
    experiment_id: int | None = None
    since: float | None = None
    until: float | None = None
    cuped_days: float | None = None
    alpha: float = 0.05

    def __post_init__(self) -> None:
        if not isinstance(self.flag, str) or not self.flag:
            raise AnalysisError("a report needs a flag name")
        object.__setattr__(self, "metrics", tuple(self.metrics))  # a list would not hash (cache keys)
        for spec in self.metrics:
            if not isinstance(spec, str) or not spec.strip():
                raise AnalysisError(f"a metric is an event name, not {spec!r}")
        for label in ("since", "until"):
            value = getattr(self, label)
            if value is not None and (isinstance(value, bool) or not math.isfinite(value)):
                raise AnalysisError(f"{label} must be epoch seconds, not {value!r}")
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise AnalysisError("since must be before until")
        if self.cuped_days is not None and not (math.isfinite(self.cuped_days) and self.cuped_days > 0):
            raise AnalysisError(f"cuped_days must be a positive number of days, not {self.cuped_days!r}")
        if not 0 < self.alpha < 1:
            raise AnalysisError(f"alpha must be in (0, 1), got {self.alpha}")


def parse_time(text: str) -> float:
    """Epoch seconds from ``text``: a number of epoch seconds, or an ISO 8601 date or time
    (UTC unless it names an offset). :class:`~flagstaff.stats.AnalysisError` otherwise."""
    try:
        return float(text) if math.isfinite(float(text)) else _bad_time(text)
    except ValueError:
        pass
    try:
        stamp = _dt.datetime.fromisoformat(text.strip())
    except ValueError:
        return _bad_time(text)
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=_dt.UTC)
    return stamp.timestamp()


def _bad_time(text: str) -> float:
    raise AnalysisError(f"not a time: {text!r} (epoch seconds or ISO 8601, e.g. 2026-01-31T12:00)")


@dataclass(frozen=True, slots=True)
class ExperimentReport:
    """The statistics plus what the store said about units: exclusions and exposures per day."""

    flag: str
    control: str
    result: Report
    units: Mapping[str, int]
    excluded: int
    daily: Mapping[str, tuple[tuple[str, int], ...]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Metric:
    """One metric as the SQL computes it: ``name`` (and ``denominator``, a ratio's) events."""

    label: str
    kind: MetricKind
    name: str
    denominator: str | None = None
    valued: tuple[bool, bool] = (True, True)  # a ratio's sides: sum of values, else count of events


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
CREATE TEMP TABLE report_units (key TEXT PRIMARY KEY, variant TEXT, first REAL) WITHOUT ROWID;
CREATE TEMP TABLE report_daily (variant TEXT, day TEXT, n INTEGER, PRIMARY KEY (variant, day)) WITHOUT ROWID;
CREATE TEMP TABLE report_ratio (key TEXT PRIMARY KEY, variant TEXT, y REAL, d REAL) WITHOUT ROWID;
"""
_DAILY = """
INSERT INTO report_daily
SELECT variant, date(first, 'unixepoch'), 1 FROM report_units WHERE variant IS NOT NULL
ON CONFLICT DO UPDATE SET n = n + 1
"""
# A unit of one variant has MIN(variant) = MAX(variant), its first exposure's; any other unit
# is excluded (variant NULL), so which variant it would have is moot (cheaper than
# COUNT(DISTINCT)). Through the covering index the rows arrive in key order: no sort, and
# the temporary table is filled in its own key order.
_FILL = """
INSERT INTO report_units
SELECT key, CASE WHEN MIN(variant) = MAX(variant) THEN MIN(variant) END, MIN(time)
FROM flagstaff_exposures {indexed}
WHERE flag = :flag AND key IS NOT NULL AND variant IS NOT NULL{where}
GROUP BY key
"""


# Every event name, sorted: one index seek per name (a skip scan of the (name, ...) index),
# where SELECT DISTINCT would read every event's index entry.
_NAMES = """
WITH RECURSIVE names(name) AS (
    SELECT MIN(name) FROM flagstaff_events
    UNION ALL
    SELECT (SELECT MIN(name) FROM flagstaff_events WHERE name > names.name) FROM names WHERE name IS NOT NULL
)
SELECT name FROM names WHERE name IS NOT NULL
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
    flag: str | Query,
    *,
    metrics: Sequence[str] = (),
    control: str | None = None,
    weights: Mapping[str, float] | None = None,
    alpha: float = 0.05,
) -> ExperimentReport:
    """The report of ``flag``'s experiment from the event store at ``path``.

    ``flag`` is the flag's name, or a :class:`Query` (which then holds the metrics, the
    control and alpha too). ``metrics``: event names (``NAME:conversion`` / ``NAME:mean``
    to choose the kind, ``NUM/DEN`` for a ratio); default: every event name in the store.
    Raises :class:`NoExposures` when the store has no exposure of the flag,
    :class:`~flagstaff.stats.AnalysisError` when it cannot be analysed (one variant only, a
    control that is not a variant, units in a variant the weights do not name).
    """
    if isinstance(flag, Query):
        if metrics or control is not None or alpha != 0.05:
            raise AnalysisError("with a Query, give metrics, control and alpha in the Query")
        query = flag
    else:
        query = Query(flag, tuple(metrics), control, alpha=alpha)
    db = _connect(path)
    try:
        return _build(db, query, weights)
    finally:
        db.close()


def _build(db: sqlite3.Connection, query: Query, weights: Mapping[str, float] | None) -> ExperimentReport:
    flag = query.flag
    db.execute("PRAGMA temp_store = MEMORY")
    db.execute("PRAGMA cache_size = -262144")  # 256 MiB at most, for the sorts and the units table
    indexes = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    covered = _EXPOSURES_INDEX in indexes and _EVENTS_INDEX in indexes
    db.executescript(_UNITS)
    where, params = "", dict[str, Any](flag=flag)
    if query.experiment_id is not None:
        where += " AND experiment_id = :experiment_id"
        params["experiment_id"] = query.experiment_id
    if query.since is not None:
        where += " AND time >= :since"
        params["since"] = query.since
    if query.until is not None:
        where += " AND time < :until"
        params["until"] = query.until
    indexed = f"INDEXED BY {_EXPOSURES_INDEX}" if covered else ""
    db.execute(_FILL.format(indexed=indexed, where=where), params)
    # Units per variant and UTC day of first exposure, counted into a small table keyed by
    # (variant, day): GROUP BY would sort every unit's row first (0.6 s for 800k units, this
    # 0.4 s). Excluded units (variant NULL) are counted apart: NULLs never conflict in a key.
    db.execute(_DAILY)
    excluded = db.execute("SELECT COUNT(*) FROM report_units WHERE variant IS NULL").fetchone()[0]
    counted: dict[str, int] = {}
    days: dict[str, list[tuple[str, int]]] = {}
    for variant, day, count in db.execute("SELECT variant, day, n FROM report_daily ORDER BY variant, day"):
        counted[variant] = counted.get(variant, 0) + count
        days.setdefault(variant, []).append((day, count))
    if not counted and not excluded:
        narrowed = " of that experiment id or in that window" if where else ""
        raise NoExposures(f"no exposures of {flag!r}{narrowed} in the event store")
    names = _order(list(counted), weights, query.control)
    if len(names) < 2:
        raise AnalysisError(
            f"{flag!r}: a report needs a control and a treatment; exposures show only {names}"
        )
    units = {n: counted.get(n, 0) for n in names}
    daily = {n: tuple(days.get(n, ())) for n in names}
    specs = query.metrics or tuple(r[0] for r in db.execute(_NAMES))
    plans = [_plan(db, spec) for spec in specs]
    data = [_metric(db, m, units, query, covered) for m in plans]
    srm_weights = (
        {n: float(weights.get(n, 0.0)) for n in names} if weights is not None else dict.fromkeys(names, 1.0)
    )
    missing = [n for n, w in srm_weights.items() if w <= 0]
    if missing:
        raise AnalysisError(f"{flag!r}: units in variants the experiment gives no weight: {missing}")
    result = report(flag, data, units=units, weights=srm_weights, alpha=query.alpha)
    return ExperimentReport(flag, names[0], result, units, excluded, daily)


def _valued(db: sqlite3.Connection, name: str) -> bool:
    """Whether any event called ``name`` carries a value."""
    found = db.execute(
        "SELECT 1 FROM flagstaff_events WHERE name = ? AND value IS NOT NULL LIMIT 1", (name,)
    ).fetchone()
    return found is not None


def _plan(db: sqlite3.Connection, spec: str) -> _Metric:
    name, kind = _parse_metric(spec)
    if kind is None and "/" in spec:
        known = db.execute("SELECT 1 FROM flagstaff_events WHERE name = ? LIMIT 1", (spec,)).fetchone()
        numerator, _, denominator = spec.partition("/")
        if known is None and numerator and denominator:  # an event literally named a/b stays one metric
            valued = (_valued(db, numerator), _valued(db, denominator))
            return _Metric(spec, MetricKind.RATIO, numerator, denominator, valued)
    if kind is None:
        kind = MetricKind.MEAN if _valued(db, name) else MetricKind.BINOMIAL
    return _Metric(name, kind, name)


def _metric(
    db: sqlite3.Connection, m: _Metric, units: Mapping[str, int], query: Query, covered: bool
) -> MetricData:
    """One metric's sums per variant, in one pass over its events (two for a ratio).

    The inner query walks the metric's events in key order (the covering index), each joined
    to its unit by the units table's primary key (CROSS JOIN: the events stay the outer
    loop), and sums them per unit: ``y`` the value after the first exposure, ``x`` the
    pre-period's (CUPED), ``d`` a ratio's denominator (the sum of its values when its events
    carry values, else their number). The outer query sums those per
    variant with one conditional aggregate per variant (no sort: SQLite's GROUP BY would
    sort every unit's row). Units that sent no event add 0 to every sum.
    """
    params: dict[str, Any] = {"name": m.name, "denominator": m.denominator}
    cuped = query.cuped_days is not None and m.kind is not MetricKind.RATIO
    where = ["v.variant IS NOT NULL"]
    if cuped:
        where.append("e.time >= v.first - :pre")
        params["pre"] = (query.cuped_days or 0) * DAY
    else:
        where.append("e.time >= v.first")
    if query.until is not None:
        where.append("e.time < :until")
        params["until"] = query.until
    indexed = f"INDEXED BY {_EVENTS_INDEX}" if covered else ""
    per_unit = (
        f"FROM flagstaff_events e {indexed} CROSS JOIN report_units v ON v.key = e.key"
        f" WHERE e.name = {{}} AND {' AND '.join(where)} GROUP BY e.key"
    )
    post = "e.time >= v.first"
    sums = ["y", "y * y"]
    if m.kind is MetricKind.RATIO:
        # Each side in its own key-ordered pass, into a table keyed by unit (the denominator's
        # pass updates the numerator's rows in key order): one pass over both events' rows
        # would have to sort them by unit first (twice the time).
        side = (
            "TOTAL(e.value)" if m.valued[0] else "COUNT(*)",
            "TOTAL(e.value)" if m.valued[1] else "COUNT(*)",
        )
        db.execute("DELETE FROM report_ratio")
        db.execute(
            f"INSERT INTO report_ratio SELECT e.key, v.variant, {side[0]}, 0 {per_unit.format(':name')}",
            params,
        )
        db.execute(
            f"INSERT INTO report_ratio SELECT e.key, v.variant, 0, {side[1]}"
            f" {per_unit.format(':denominator')} ON CONFLICT (key) DO UPDATE SET d = excluded.d",
            params,
        )
        source = "report_ratio"
        sums += ["d", "d * d", "y * d"]
    else:
        if m.kind is MetricKind.BINOMIAL:
            columns = {"y": f"MAX({post})", "x": "MAX(e.time < v.first)"} if cuped else {"y": "1"}
        elif cuped:
            columns = {
                "y": f"TOTAL(CASE WHEN {post} THEN e.value END)",
                "x": "TOTAL(CASE WHEN e.time < v.first THEN e.value END)",
            }
        else:
            columns = {"y": "TOTAL(e.value)"}
        if cuped:
            sums += ["x", "x * x", "x * y"]
        inner = ", ".join(f"{expr} AS {col}" for col, expr in columns.items())
        source = f"(SELECT v.variant AS variant, {inner} {per_unit.format(':name')})"
    outer = []
    for i, variant in enumerate(units):
        params[f"v{i}"] = variant
        outer += [f"TOTAL(CASE WHEN variant = :v{i} THEN {s} END)" for s in sums]
    sql = f"SELECT {', '.join(outer)} FROM {source}"
    row = db.execute(sql, params).fetchone()
    variants = []
    width = len(sums)
    for i, n in enumerate(units):
        got = [float(v) for v in row[i * width : (i + 1) * width]]
        count = units[n]
        extra: dict[str, float] = {}
        if cuped:
            extra = {"pre_sum": got[2], "pre_sum_squares": got[3], "pre_sum_products": got[4]}
        if m.kind is MetricKind.RATIO:
            extra = {"denominator_sum": got[2], "denominator_sum_squares": got[3], "sum_products": got[4]}
        if m.kind is MetricKind.BINOMIAL and not extra:
            variants.append(VariantStats.conversions(n, count, round(got[0])))
        else:
            variants.append(VariantStats(n, count, got[0], got[1], **extra))
    return MetricData(m.label, m.kind, tuple(variants))


def _stamp(path: str | os.PathLike[str]) -> tuple[int, ...]:
    """What changes whenever the store's content does: the file's identity (a replaced file)
    and both tables' lowest and highest row id (rows added, or old rows deleted). Four
    lookups at the ends of the row-id B-trees: microseconds at any size."""
    info = os.stat(path)
    db = _connect(path)
    try:
        row = db.execute(
            "SELECT (SELECT MIN(id) FROM flagstaff_exposures), (SELECT MAX(id) FROM flagstaff_exposures),"
            " (SELECT MIN(id) FROM flagstaff_events), (SELECT MAX(id) FROM flagstaff_events)"
        ).fetchone()
    finally:
        db.close()
    return (info.st_dev, info.st_ino, *(-1 if v is None else int(v) for v in row))


class ReportCache:
    """Reports kept in memory, so that an unchanged store answers a repeated report at once.

    A bounded LRU (``size`` reports at most, the least recently used forgotten first) keyed
    on the store's path, the :class:`Query` and the weights, each report kept with a stamp of
    the store read on every call (row ids at both ends of both tables, the file's identity):
    any event written since, or a replaced file, is a miss and a fresh report that replaces
    the stale one. The stamp is
    read before the report is computed, so a cached report is never older than its key says
    (an event landing in between only costs one more computation). Errors are not cached.
    Safe from any thread; two threads missing the same key at once both compute it.
    """

    def __init__(self, size: int = 16) -> None:
        self.size = max(1, size)
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()
        self._reports: OrderedDict[tuple[Any, ...], tuple[tuple[int, ...], ExperimentReport]] = OrderedDict()

    def get(
        self, path: str | os.PathLike[str], query: Query, weights: Mapping[str, float] | None = None
    ) -> ExperimentReport:
        """The report :func:`build` would give for ``query``: from memory when the store has
        not changed since it was computed. Raises what :func:`build` raises."""
        if not os.path.exists(path):
            raise NoExposures(f"nothing recorded yet: no event store at {os.fspath(path)!r}")
        key = (os.path.realpath(path), query, None if weights is None else tuple(weights.items()))
        stamp = _stamp(path)
        with self._lock:
            found = self._reports.get(key)
            if found is not None and found[0] == stamp:
                self._reports.move_to_end(key)
                self.hits += 1
                return found[1]
            self.misses += 1
        result = build(path, query, weights=weights)
        with self._lock:
            self._reports[key] = (stamp, result)  # replaces the stale report of the same query
            self._reports.move_to_end(key)
            while len(self._reports) > self.size:
                self._reports.popitem(last=False)
        return result

    def clear(self) -> None:
        with self._lock:
            self._reports.clear()

    def __len__(self) -> int:
        return len(self._reports)


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


PNG_WIDTH = 7.0  # inches, at PNG_DPI: 700 pixels wide
PNG_DPI = 100


def figure_png(r: ExperimentReport) -> bytes:
    """The same figure as :func:`figure_svg` drawn by matplotlib as PNG bytes (the ``plots``
    extra): one panel per metric's lift intervals, then the units first exposed per day.
    700 pixels wide and ``200 + 160 x (metrics + 1)`` high (a fixed size, no tight bbox)."""
    try:
        import matplotlib  # type: ignore[import-not-found, unused-ignore]

        matplotlib.use("Agg")  # no display: render to memory
        from matplotlib import pyplot  # type: ignore[import-not-found, unused-ignore]
    except ModuleNotFoundError as exc:
        raise missing_extra(exc, "matplotlib", "plots", __name__) from None
    metrics = r.result.metrics
    panels = len(metrics) + 1
    fig, axes = pyplot.subplots(panels, 1, figsize=(PNG_WIDTH, 2 + 1.6 * panels), dpi=PNG_DPI, squeeze=False)
    try:
        for ax, m in zip(axes[:, 0], metrics, strict=False):
            comps = m.comparisons
            for i, c in enumerate(comps):
                low, high = c.lift_interval
                colour = COLOURS[c.verdict.value]
                ax.plot([low * 100, high * 100], [i, i], linewidth=6, color=colour, alpha=0.75)
                ax.plot([c.lift * 100], [i], "|", color=colour, markersize=14)
            ax.axvline(0, color="black", linewidth=1)
            ax.set_yticks(range(len(comps)), [c.variant for c in comps])
            ax.set_ylim(-0.5, max(len(comps), 1) - 0.5)
            ax.set_title(f"{m.name}: relative lift (%) vs {r.control}")
        ax = axes[-1, 0]
        for variant, points in r.daily.items():
            ax.plot([d for d, _ in points], [n for _, n in points], marker="o", label=variant)
        ax.set_title(f"{r.flag}: units first exposed per day")
        ax.legend(loc="upper right")
        fig.tight_layout()
        out = io.BytesIO()
        fig.savefig(out, format="png", dpi=PNG_DPI)
    finally:
        pyplot.close(fig)
    return out.getvalue()
