"""flagstaff.stats on its own: textbook values, SRM, CUPED, validation, the report and its table."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sp

from flagstaff.stats import (
    AnalysisError,
    MetricData,
    MetricKind,
    VariantStats,
    Verdict,
    compare,
    render_text,
    report,
    srm,
    summarize,
)


def test_two_proportions_textbook() -> None:
    # 200/1000 vs 250/1000: difference 0.05, Wald standard error sqrt(.2*.8/1000 + .25*.75/1000)
    # = 0.018641, 95% interval 0.05 +- 1.96 * 0.018641 = (0.01346, 0.08654), z = 2.682, p = 0.0073.
    # flagstaff (like GrowthBook) uses t with Welch's ~1990 degrees of freedom: equal to 1e-4.
    c = compare(
        MetricKind.BINOMIAL,
        VariantStats.conversions("a", 1000, 200),
        VariantStats.conversions("b", 1000, 250),
    )
    assert c.difference == pytest.approx(0.05)
    assert c.difference_interval == pytest.approx((0.01346, 0.08654), abs=1e-4)
    assert c.lift == pytest.approx(0.25)
    # Relative: delta-method standard error sqrt(p_b(1-p_b)/(p_a² n) + p_a(1-p_a) p_b²/(p_a⁴ n)).
    se = math.sqrt(0.25 * 0.75 / (0.04 * 1000) + 0.2 * 0.8 * 0.0625 / (0.0016 * 1000))
    assert se == pytest.approx(0.104583, abs=1e-6)
    assert c.lift_interval == pytest.approx((0.25 - 1.9612 * se, 0.25 + 1.9612 * se), abs=1e-4)
    assert c.chance_to_win == pytest.approx(sp.norm.cdf(0.25 / se))
    assert c.verdict is Verdict.WIN


def test_absolute_interval_of_a_mean_is_welchs() -> None:
    # Against scipy's Welch t-test on the raw values the sums were taken from.
    rng = np.random.default_rng(7)
    a, b = rng.normal(10, 3, 400), rng.normal(10.6, 4, 350)

    def sums(name: str, x: np.ndarray) -> VariantStats:
        return VariantStats(name, len(x), float(x.sum()), float((x * x).sum()))

    c = compare(MetricKind.MEAN, sums("a", a), sums("b", b))
    welch = sp.ttest_ind(b, a, equal_var=False).confidence_interval(0.95)
    assert c.difference == pytest.approx(b.mean() - a.mean())
    assert c.difference_interval == pytest.approx((welch.low, welch.high), abs=1e-9)


def test_srm_flags_52_48_at_100k_and_passes_50_1_49_9() -> None:
    bad = srm([52_000, 48_000], [0.5, 0.5])
    assert bad.statistic == pytest.approx(160.0)  # 2 * 2000² / 50000
    assert bad.warning and bad.p_value < 1e-30
    ok = srm([50_100, 49_900], [50, 50])
    assert ok.statistic == pytest.approx(0.4)
    assert not ok.warning and ok.p_value == pytest.approx(0.5271, abs=1e-4)
    assert srm([0, 0], [1, 1]).p_value == 1.0


def test_srm_refuses_bad_weights() -> None:
    with pytest.raises(AnalysisError):
        srm([10, 10], [1, 0])
    with pytest.raises(AnalysisError):
        srm([10, 10, 10], [1, 1])


def _with_pre(name: str, x: np.ndarray, y: np.ndarray) -> VariantStats:
    return VariantStats(
        name,
        len(y),
        float(y.sum()),
        float((y * y).sum()),
        pre_sum=float(x.sum()),
        pre_sum_squares=float((x * x).sum()),
        pre_sum_products=float((x * y).sum()),
    )


def _plain(v: VariantStats) -> VariantStats:
    return VariantStats(v.name, v.units, v.sum, v.sum_squares)


def test_cuped_narrows_the_interval_when_the_pre_period_correlates() -> None:
    rng = np.random.default_rng(11)
    n = 3000
    xa, xb = rng.normal(50, 10, n), rng.normal(50, 10, n)
    ya = 0.9 * xa + rng.normal(0, 4, n)
    yb = 0.9 * xb + rng.normal(1.0, 4, n)
    a, b = _with_pre("a", xa, ya), _with_pre("b", xb, yb)
    adjusted = compare(MetricKind.MEAN, a, b)
    plain = compare(MetricKind.MEAN, _plain(a), _plain(b))
    assert adjusted.cuped and not plain.cuped

    def width(c: object) -> float:
        low, high = c.lift_interval  # type: ignore[attr-defined]
        return float(high - low)

    # corr(x, y) ~ 0.91: variance shrinks by 1 - rho² ~ 0.16, the interval to ~0.4 of its width.
    assert width(adjusted) < 0.5 * width(plain)
    assert adjusted.verdict is Verdict.WIN

    # An unrelated pre-period changes (almost) nothing.
    za, zb = rng.normal(0, 1, n), rng.normal(0, 1, n)
    unrelated = compare(MetricKind.MEAN, _with_pre("a", za, ya), _with_pre("b", zb, yb))
    assert width(unrelated) == pytest.approx(width(plain), rel=0.02)


def test_summarize_takes_the_sums_compare_needs() -> None:
    rng = np.random.default_rng(3)
    y, d, x = rng.normal(5, 2, 200), rng.integers(1, 4, 200), rng.normal(4, 2, 200)
    v = summarize("a", y.tolist(), denominators=d.tolist(), pre=x.tolist())
    assert (v.units, v.sum, v.sum_squares) == (200, pytest.approx(y.sum()), pytest.approx((y * y).sum()))
    assert v.denominator_sum == pytest.approx(d.sum()) and v.sum_products == pytest.approx((y * d).sum())
    assert v.pre_sum_products == pytest.approx((y * x).sum()) and v.pre_sum_squares == pytest.approx(
        (x * x).sum()
    )
    assert summarize("b", [1, 0, 1]) == VariantStats("b", 3, 2.0, 2.0)
    with pytest.raises(AnalysisError):
        summarize("c", [1, 2], pre=[1])


def test_inverse_metric_flips_chance_and_verdict() -> None:
    a, b = VariantStats.conversions("a", 10_000, 1000), VariantStats.conversions("b", 10_000, 800)
    lower_is_better = compare(MetricKind.BINOMIAL, a, b, inverse=True)
    higher_is_better = compare(MetricKind.BINOMIAL, a, b)
    assert lower_is_better.chance_to_win == pytest.approx(1 - higher_is_better.chance_to_win)
    assert (lower_is_better.verdict, higher_is_better.verdict) == (Verdict.WIN, Verdict.LOSE)


def test_flat_and_degenerate_comparisons() -> None:
    flat = compare(
        MetricKind.BINOMIAL, VariantStats.conversions("a", 500, 50), VariantStats.conversions("b", 500, 52)
    )
    assert flat.verdict is Verdict.FLAT and flat.problem is None
    none = compare(
        MetricKind.BINOMIAL, VariantStats.conversions("a", 50, 0), VariantStats.conversions("b", 50, 1)
    )
    assert none.problem and none.verdict is Verdict.FLAT and none.chance_to_win == 0.5


def test_validation() -> None:
    with pytest.raises(AnalysisError):
        VariantStats.conversions("a", 10, 11)
    with pytest.raises(AnalysisError):
        VariantStats("a", -1, 0, 0)
    with pytest.raises(AnalysisError):
        VariantStats("a", 10, 1, 1, pre_sum=1.0)
    with pytest.raises(AnalysisError):
        MetricData("m", MetricKind.BINOMIAL, (VariantStats.conversions("a", 1, 1),))
    with pytest.raises(AnalysisError):
        MetricData("m", MetricKind.RATIO, (VariantStats("a", 2, 1, 1), VariantStats("b", 2, 1, 1)))
    with pytest.raises(AnalysisError):
        compare(MetricKind.MEAN, VariantStats("a", 2, 1, 1), VariantStats("b", 2, 1, 1), alpha=1.5)


def test_report_and_its_table() -> None:
    conversion = MetricData(
        "signup",
        MetricKind.BINOMIAL,
        (
            VariantStats.conversions("control", 50_000, 5_000),
            VariantStats.conversions("blue", 50_100, 5_400),
            VariantStats.conversions("red", 49_900, 4_700),
        ),
    )
    result = report("checkout", [conversion], weights={"control": 1, "blue": 1, "red": 1})
    assert result.srm is not None and not result.srm.warning
    (metric,) = result.metrics
    assert [r.variant for r in metric.rows] == ["control", "blue", "red"]
    assert metric.rows[0].comparison is None and metric.rows[0].mean == pytest.approx(0.1)
    assert [c.verdict for c in metric.comparisons] == [Verdict.WIN, Verdict.LOSE]
    text = render_text(result)
    assert "metric signup (binomial)" in text
    assert "blue" in text and "+7.78%" in text and "win" in text and "lose" in text
    assert "sample ratio OK" in text

    skewed = report(
        "checkout",
        [conversion],
        units={"control": 52_000, "blue": 48_000, "red": 50_000},
        weights={"control": 1, "blue": 1, "red": 1},
    )
    assert skewed.srm is not None and skewed.srm.warning
    assert "WARNING: sample ratio mismatch" in render_text(skewed)
    with pytest.raises(AnalysisError):
        report("checkout", [conversion], weights={"control": 1, "blue": 1})


@pytest.mark.parametrize("package", ["scipy", "numpy"])
def test_missing_scipy_or_numpy_names_the_stats_extra(package: str) -> None:
    probe = (
        f"import sys\nsys.modules[{package!r}] = None\n"
        "try:\n    import flagstaff.stats\nexcept ModuleNotFoundError as e:\n    print(e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert "pip install 'flagstaff[stats]'" in out.stdout
    assert "flagstaff.stats" in out.stdout and package in out.stdout


GBSTATS_MISSING = """
import sys
sys.modules["gbstats"] = None
try:
    import tests.analysis.test_stats_gbstats
except ImportError:
    print("failed")
except BaseException as exc:
    print(type(exc).__name__)
"""


@pytest.mark.parametrize(("ci", "outcome"), [("true", "failed"), ("", "Skipped")])
def test_gbstats_agreement_skips_only_outside_ci(ci: str, outcome: str) -> None:
    repo = Path(__file__).resolve().parents[2]
    path = os.pathsep.join(p for p in (str(repo), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "CI": ci, "PYTHONPATH": path}
    proc = subprocess.run(
        [sys.executable, "-c", GBSTATS_MISSING],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env=env,
    )
    assert proc.stdout.strip() == outcome
