"""flagstaff.report: the SQL summary of an event store against a hand-computed case."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("scipy")

from flagstaff.exposures import Event, EventKind, SQLiteSink
from flagstaff.report import NoExposures, build, report_dict
from flagstaff.stats import AnalysisError, MetricKind

T0 = 1767225600.0  # 2026-01-01 00:00 UTC
DAY = 86400.0


def _x(t: float, key: str, variant: str, flag: str = "exp") -> Event:
    return Event(EventKind.EXPOSURE, T0 + t, key, flag, variant, 7, 1)


def _t(t: float, key: str, name: str, value: float | None = None) -> Event:
    return Event(EventKind.TRACK, T0 + t, key, name=name, value=value)


def write_case(path: Path) -> Path:
    """control_1: u1 u2 u3; treatment: u4 u5 u7; u6 saw both (excluded); u8 is another flag's.

    signup (no values): converted after exposure u1 (control), u4 and u5 (treatment); u2's is
    before its exposure. revenue: u1 10 + 5, u2 7 before exposure (0), u4 20; u6's 100 excluded.
    """
    sink = SQLiteSink(path)
    sink.write(
        [
            _x(100, "u1", "control_1"),
            _x(200, "u1", "control_1"),
            _x(100, "u2", "control_1"),
            _x(100, "u3", "control_1"),
            _x(100, "u4", "treatment"),
            _x(DAY + 100, "u5", "treatment"),
            _x(100, "u6", "control_1"),
            _x(150, "u6", "treatment"),
            _x(100, "u7", "treatment"),
            _x(100, "u8", "control_1", flag="other"),
            _t(150, "u1", "signup"),
            _t(50, "u2", "signup"),
            _t(200, "u4", "signup"),
            _t(210, "u4", "signup"),
            _t(DAY + 200, "u5", "signup"),
            _t(300, "u6", "signup"),
            _t(150, "u1", "revenue", 10.0),
            _t(160, "u1", "revenue", 5.0),
            _t(50, "u2", "revenue", 7.0),
            _t(200, "u4", "revenue", 20.0),
            _t(300, "u6", "revenue", 100.0),
            _t(300, "u8", "revenue", 1000.0),
        ]
    )
    sink.close()
    return path


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return write_case(tmp_path / "events.db")


def test_units_conversions_and_means_by_hand(store: Path) -> None:
    r = build(store, "exp", weights={"control_1": 50, "treatment": 50})
    assert r.control == "control_1"
    assert dict(r.units) == {"control_1": 3, "treatment": 3}
    assert r.excluded == 1
    metrics = {m.name: m for m in r.result.metrics}
    assert list(metrics) == ["revenue", "signup"]  # default: every event name, sorted
    signup = metrics["signup"]
    assert signup.kind is MetricKind.BINOMIAL
    assert [(row.variant, row.units, row.mean) for row in signup.rows] == [
        ("control_1", 3, pytest.approx(1 / 3)),
        ("treatment", 3, pytest.approx(2 / 3)),
    ]
    assert signup.comparisons[0].lift == pytest.approx(1.0)
    revenue = metrics["revenue"]
    assert revenue.kind is MetricKind.MEAN
    assert [(row.variant, row.mean) for row in revenue.rows] == [
        ("control_1", pytest.approx(5.0)),
        ("treatment", pytest.approx(20 / 3)),
    ]
    assert revenue.comparisons[0].lift == pytest.approx((20 / 3) / 5 - 1)
    assert r.result.srm is not None and r.result.srm.units == (3, 3)
    assert r.result.srm.p_value == pytest.approx(1.0)
    assert dict(r.daily) == {
        "control_1": (("2026-01-01", 3),),
        "treatment": (("2026-01-01", 2), ("2026-01-02", 1)),
    }


def test_metric_kind_control_and_weights(store: Path) -> None:
    r = build(
        store,
        "exp",
        metrics=["revenue:conversion"],
        control="treatment",
        weights={"control_1": 1, "treatment": 3},
    )
    (m,) = r.result.metrics
    assert m.kind is MetricKind.BINOMIAL and m.name == "revenue"
    assert [(row.variant, row.mean) for row in m.rows] == [
        ("treatment", pytest.approx(1 / 3)),
        ("control_1", pytest.approx(1 / 3)),
    ]
    assert r.result.srm is not None and r.result.srm.weights == (3.0, 1.0)
    assert r.result.srm.p_value < 0.5  # 3:3 against 3:1
    d = report_dict(r)
    assert d["excluded_units"] == 1 and d["control"] == "treatment"
    assert d["metrics"][0]["variants"][1]["verdict"] == "flat"


def test_errors(store: Path, tmp_path: Path) -> None:
    with pytest.raises(NoExposures):
        build(store, "nothing")
    with pytest.raises(NoExposures):
        build(tmp_path / "missing.db", "exp")
    with pytest.raises(AnalysisError, match="control"):
        build(store, "exp", control="nope")
    with pytest.raises(AnalysisError, match="no weight"):
        build(store, "exp", weights={"control_1": 50, "b": 50})
    with pytest.raises(AnalysisError, match="only"):
        build(store, "other")
