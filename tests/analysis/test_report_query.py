"""flagstaff.report: Query (experiment id, time window, CUPED from the store, ratios), the
covering indexes, ReportCache and the PNG figure, against hand-computed cases."""

from __future__ import annotations

import sqlite3
import struct
from pathlib import Path

import pytest

pytest.importorskip("scipy")

from flagstaff.exposures import Event, EventKind, SQLiteSink
from flagstaff.report import NoExposures, Query, ReportCache, build, parse_time
from flagstaff.stats import AnalysisError, MetricKind, compare, summarize
from tests.analysis.test_report import DAY, T0, _t, _x, write_case

WEIGHTS = {"control_1": 1.0, "treatment": 1.0}


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return write_case(tmp_path / "events.db")


def _metric(path: Path, query: Query) -> dict[str, tuple[tuple[str, int, float], ...]]:
    r = build(path, query, weights=WEIGHTS)
    return {m.name: tuple((row.variant, row.units, row.mean) for row in m.rows) for m in r.result.metrics}


def test_query_is_validated() -> None:
    for bad in (
        {"flag": ""},
        {"flag": "exp", "metrics": ("",)},
        {"flag": "exp", "since": 10.0, "until": 10.0},
        {"flag": "exp", "cuped_days": 0.0},
        {"flag": "exp", "cuped_days": float("nan")},
        {"flag": "exp", "alpha": 1.0},
    ):
        with pytest.raises(AnalysisError):
            Query(**bad)  # type: ignore[arg-type]
    assert Query("exp", ["a", "b"]).metrics == ("a", "b")  # type: ignore[arg-type]  # a list, made a tuple
    assert hash(Query("exp", ("a",))) == hash(Query("exp", ("a",)))
    with pytest.raises(AnalysisError, match="in the Query"):
        build("x.db", Query("exp"), metrics=["a"])


def test_parse_time() -> None:
    assert parse_time("1767225600") == T0
    assert parse_time("2026-01-01") == T0
    assert parse_time("2026-01-01T01:00:00+01:00") == T0
    for bad in ("yesterday", "nan", ""):
        with pytest.raises(AnalysisError, match="not a time"):
            parse_time(bad)


def test_experiment_id(store: Path) -> None:
    # Experiment 8 (a later run of the same flag): u9 control, u10 treatment, u1 moved to treatment.
    sink = SQLiteSink(store)
    sink.write(
        [
            Event(EventKind.EXPOSURE, T0 + 2 * DAY, "u9", "exp", "control_1", 8, 2),
            Event(EventKind.EXPOSURE, T0 + 2 * DAY, "u10", "exp", "treatment", 8, 2),
            Event(EventKind.EXPOSURE, T0 + 2 * DAY, "u1", "exp", "treatment", 8, 2),
        ]
    )
    sink.close()
    seven = build(store, Query("exp", ("signup",), experiment_id=7), weights=WEIGHTS)
    assert (dict(seven.units), seven.excluded) == ({"control_1": 3, "treatment": 3}, 1)
    eight = build(store, Query("exp", ("signup",), experiment_id=8), weights=WEIGHTS)
    assert (dict(eight.units), eight.excluded) == ({"control_1": 1, "treatment": 2}, 0)
    both = build(store, Query("exp", ("signup",)), weights=WEIGHTS)
    assert (dict(both.units), both.excluded) == ({"control_1": 3, "treatment": 4}, 2)  # u1 saw both
    with pytest.raises(NoExposures):
        build(store, Query("exp", experiment_id=9))


def test_until_bounds_exposures_and_events(store: Path) -> None:
    # Before T0+155: u5 not yet exposed, u1's revenue 10 (not its 5 at 160), u4's events (200) not yet.
    got = _metric(store, Query("exp", ("revenue", "signup"), until=T0 + 155))
    assert got == {
        "revenue": (("control_1", 3, pytest.approx(10 / 3)), ("treatment", 2, 0.0)),
        "signup": (("control_1", 3, pytest.approx(1 / 3)), ("treatment", 2, 0.0)),
    }


def test_since_starts_units_later(store: Path) -> None:
    # From T0+120: u1 first exposed at 200 (its revenue at 150 and 160 is before), u6 only ever
    # seen in treatment (at 150), u5 on day 2.
    r = build(store, Query("exp", ("revenue",), since=T0 + 120), weights=WEIGHTS)
    assert (dict(r.units), r.excluded) == ({"control_1": 1, "treatment": 2}, 0)
    (m,) = r.result.metrics
    assert [(row.variant, row.mean) for row in m.rows] == [("control_1", 0.0), ("treatment", 50.0)]


def test_cuped_from_the_store(store: Path) -> None:
    # One day before each first exposure: u2's revenue 7 and signup at T0+50 (first at 100).
    r = build(store, Query("exp", ("revenue", "signup"), cuped_days=1), weights=WEIGHTS)
    revenue, signup = r.result.metrics
    expected = compare(
        MetricKind.MEAN,
        summarize("control_1", [15, 0, 0], pre=[0, 7, 0]),
        summarize("treatment", [20, 0, 0], pre=[0, 0, 0]),
    )
    assert revenue.comparisons[0] == pytest.approx(expected)
    assert expected.cuped  # theta is not 0: the adjustment is real
    expected = compare(
        MetricKind.BINOMIAL,
        summarize("control_1", [1, 0, 0], pre=[0, 1, 0]),
        summarize("treatment", [1, 1, 0], pre=[0, 0, 0]),
    )
    assert signup.comparisons[0] == pytest.approx(expected)
    plain = build(store, Query("exp", ("revenue",)), weights=WEIGHTS).result.metrics[0].comparisons[0]
    assert not plain.cuped and plain.lift_interval != revenue.comparisons[0].lift_interval
    # The pre-period is before the first exposure only: a window too short to reach u2's events.
    short = build(store, Query("exp", ("revenue",), cuped_days=0.0001), weights=WEIGHTS)
    assert not short.result.metrics[0].comparisons[0].cuped


def test_ratio_metric(store: Path) -> None:
    # revenue (summed values) over signup (counted events), after each unit's first exposure.
    r = build(store, Query("exp", ("revenue/signup",)), weights=WEIGHTS)
    (m,) = r.result.metrics
    assert m.name == "revenue/signup" and m.kind is MetricKind.RATIO
    assert [(row.variant, row.mean) for row in m.rows] == [
        ("control_1", pytest.approx(15.0)),
        ("treatment", pytest.approx(20 / 3)),
    ]
    expected = compare(
        MetricKind.RATIO,
        summarize("control_1", [15, 0, 0], denominators=[1, 0, 0]),
        summarize("treatment", [20, 0, 0], denominators=[2, 1, 0]),
    )
    assert m.comparisons[0] == pytest.approx(expected)
    # CUPED leaves a ratio unadjusted (and says so), the other metrics adjusted.
    both = build(store, Query("exp", ("revenue/signup", "revenue"), cuped_days=1), weights=WEIGHTS)
    assert [m.comparisons[0].cuped for m in both.result.metrics] == [False, True]


def test_an_event_named_with_a_slash_is_one_metric(tmp_path: Path) -> None:
    path = write_case(tmp_path / "events.db")
    sink = SQLiteSink(path)
    sink.write([_t(400, "u1", "page/view")])
    sink.close()
    (m,) = build(path, Query("exp", ("page/view",)), weights=WEIGHTS).result.metrics
    assert m.kind is MetricKind.BINOMIAL and m.rows[0].mean == pytest.approx(1 / 3)


def _plan(path: Path, sql: str, *params: object) -> str:
    with sqlite3.connect(path) as db:
        return " ".join(str(r[3]) for r in db.execute("EXPLAIN QUERY PLAN " + sql, params))


def test_covering_indexes_and_migration(store: Path, tmp_path: Path) -> None:
    # The report's scans read the covering indexes alone (no table lookups, no sort).
    plan = _plan(
        store,
        "SELECT key, MIN(variant), MAX(variant), MIN(time) FROM flagstaff_exposures"
        " INDEXED BY flagstaff_exposures_units WHERE flag = ? AND experiment_id = ? GROUP BY key",
        "exp",
        7,
    )
    assert "COVERING INDEX flagstaff_exposures_units" in plan and "TEMP B-TREE" not in plan
    plan = _plan(store, "SELECT key, TOTAL(value) FROM flagstaff_events WHERE name = ? GROUP BY key", "x")
    assert "COVERING INDEX flagstaff_events_units" in plan and "TEMP B-TREE" not in plan
    # A store written before the indexes existed: reported the same (slower), migrated on open.
    old = tmp_path / "old.db"
    with sqlite3.connect(store) as src, sqlite3.connect(old) as dst:
        src.backup(dst)
        dst.execute("DROP INDEX flagstaff_exposures_units")
        dst.execute("DROP INDEX flagstaff_events_units")
    assert build(old, "exp", weights=WEIGHTS) == build(store, "exp", weights=WEIGHTS)
    SQLiteSink(old).close()
    with sqlite3.connect(old) as db:
        names = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"flagstaff_exposures_units", "flagstaff_events_units"} <= names


def test_cache_answers_until_the_store_changes(store: Path) -> None:
    cache = ReportCache(size=2)
    query = Query("exp", ("revenue",))
    first = cache.get(store, query, WEIGHTS)
    assert cache.get(store, query, WEIGHTS) is first
    assert (cache.hits, cache.misses) == (1, 1)
    # A new event invalidates: the next report is computed afresh and sees it.
    sink = SQLiteSink(store)
    sink.write([_t(500, "u3", "revenue", 30.0)])
    sink.close()
    second = cache.get(store, query, WEIGHTS)
    assert second is not first and (cache.hits, cache.misses) == (1, 2)
    assert second.result.metrics[0].rows[0].mean == pytest.approx(45 / 3)
    assert len(cache) == 1  # the stale report was replaced, not kept beside
    # So does a new exposure; different weights and queries are different entries, bounded.
    sink = SQLiteSink(store)
    sink.write([_x(600, "u11", "treatment")])
    sink.close()
    assert dict(cache.get(store, query, WEIGHTS).units)["treatment"] == 4
    cache.get(store, query, {"control_1": 1.0, "treatment": 3.0})
    cache.get(store, Query("exp", ("signup",)), WEIGHTS)
    assert len(cache) == 2 and cache.misses == 5
    with pytest.raises(NoExposures):
        cache.get(store.parent / "missing.db", query)
    with pytest.raises(NoExposures):
        cache.get(store, Query("nothing"))  # errors are raised every time, never cached
    assert len(cache) == 2


def test_cache_sees_a_replaced_file(store: Path, tmp_path: Path) -> None:
    cache = ReportCache()
    query = Query("exp", ("revenue",))
    before = cache.get(store, query, WEIGHTS)
    other = write_case(tmp_path / "other.db")  # the same rows, ids and all: only the file differs
    sink = SQLiteSink(other)
    sink.write([_t(500, "u3", "revenue", 30.0)])
    sink.close()
    db = sqlite3.connect(other)
    with db:
        db.execute("DELETE FROM flagstaff_events WHERE id = (SELECT MAX(id) FROM flagstaff_events)")
        db.execute("DELETE FROM flagstaff_events WHERE id = (SELECT MAX(id) FROM flagstaff_events)")
        db.execute(
            "INSERT INTO flagstaff_events (time, name, key, value) VALUES (?, 'revenue', 'u3', 99)",
            (T0 + 500,),
        )
    db.close()  # the last connection: the WAL is checkpointed and removed, the file complete
    other.replace(store)
    after = cache.get(store, query, WEIGHTS)
    assert after is not before and after.result.metrics[0].rows[0].mean == pytest.approx((15 + 99) / 3)


def test_png_figure(store: Path) -> None:
    pytest.importorskip("matplotlib")
    from flagstaff.report import figure_png

    r = build(store, "exp", weights=WEIGHTS)
    png = figure_png(r)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert png[12:16] == b"IHDR"
    width, height = struct.unpack(">II", png[16:24])
    panels = len(r.result.metrics) + 1  # two metrics, then the counts
    assert (width, height) == (700, 200 + 160 * panels)
