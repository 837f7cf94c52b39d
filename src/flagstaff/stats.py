"""Experiment analysis over summary statistics: lift, intervals, chance to win, SRM, CUPED.

Everything here is a pure function of per-variant sums (units, sum, sum of squares, and for
ratio metrics and CUPED the cross products), so the same code serves a report over the
event store, the API, and the agreement test against GrowthBook's engine (``gbstats``).

The formulas are GrowthBook's (gbstats 0.8.0), so a number flagstaff prints is the number a
GrowthBook user would see for the same data (docs/analysis.md gives them with references):

- frequentist: relative lift ``(mean_b - mean_a) / mean_a`` with the delta-method variance
  ``var_b / (mean_a² n_b) + var_a mean_b² / (mean_a⁴ n_a)``, a two-sided t interval with
  Welch-Satterthwaite degrees of freedom; the absolute difference with ``var_a/n_a + var_b/n_b``;
- Bayesian: GrowthBook's default (improper, uninformative) prior on the relative effect:
  the posterior is normal with the frequentist point estimate and standard error, chance to
  beat control ``P(effect > 0)`` and risk from the truncated normal;
- SRM: Pearson's chi-square goodness of fit against the configured weights, warning at p < 0.001;
- CUPED (Deng et al. 2013): each arm's mean is adjusted by ``theta`` times its pre-period mean,
  ``theta`` from the two arms pooled, as gbstats' ``RegressionAdjustedStatistic`` does.

Needs scipy (``pip install 'flagstaff[stats]'``).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ._extras import missing_extra
from .errors import FlagstaffError

try:
    import numpy as np
    from scipy import stats as _sp
except ModuleNotFoundError as exc:  # pragma: no cover - exercised in a subprocess
    _top = (exc.name or "").split(".")[0]
    raise missing_extra(exc, _top if _top in {"numpy", "scipy"} else "scipy", "stats", __name__) from None

__all__ = [
    "AnalysisError",
    "Comparison",
    "MetricData",
    "MetricKind",
    "MetricResult",
    "Report",
    "SrmCheck",
    "VariantResult",
    "VariantStats",
    "Verdict",
    "compare",
    "render_text",
    "report",
    "srm",
    "summarize",
]

SRM_THRESHOLD = 0.001
"""A sample-ratio-mismatch p-value below this is a warning (GrowthBook's default)."""


class AnalysisError(FlagstaffError, ValueError):
    """Summary statistics that cannot be analysed as asked (negative units, mismatched arms)."""


class MetricKind(enum.Enum):
    """How a metric's per-unit variance is computed."""

    BINOMIAL = "binomial"  # converted or not: variance p(1 - p)
    MEAN = "mean"  # a value per unit: sample variance (n - 1)
    RATIO = "ratio"  # sum of a numerator over sum of a denominator, by the delta method


class Verdict(enum.Enum):
    """Whether the interval says the treatment is better, worse, or cannot tell."""

    WIN = "win"
    LOSE = "lose"
    FLAT = "flat"


@dataclass(frozen=True, slots=True)
class VariantStats:
    """One variant's sums for one metric.

    ``sum``/``sum_squares`` are over units of the metric's value (for a binomial metric the
    number of converted units, twice). A ratio metric adds its denominator's sums and the
    sum of numerator x denominator products; CUPED adds the pre-period covariate's sums and
    the sum of post x pre products. Validated when built.
    """

    name: str
    units: int
    sum: float
    sum_squares: float
    denominator_sum: float | None = None
    denominator_sum_squares: float | None = None
    sum_products: float | None = None
    pre_sum: float | None = None
    pre_sum_squares: float | None = None
    pre_sum_products: float | None = None

    def __post_init__(self) -> None:
        if self.units < 0:
            raise AnalysisError(f"variant {self.name!r}: units must be >= 0, got {self.units}")
        if self.sum_squares < 0:
            raise AnalysisError(f"variant {self.name!r}: a sum of squares cannot be negative")
        ratio = (self.denominator_sum, self.denominator_sum_squares, self.sum_products)
        if any(v is None for v in ratio) and not all(v is None for v in ratio):
            raise AnalysisError(f"variant {self.name!r}: a ratio needs all three denominator sums")
        pre = (self.pre_sum, self.pre_sum_squares, self.pre_sum_products)
        if any(v is None for v in pre) and not all(v is None for v in pre):
            raise AnalysisError(f"variant {self.name!r}: CUPED needs all three pre-period sums")

    @classmethod
    def conversions(cls, name: str, units: int, conversions: int) -> VariantStats:
        """A binomial metric's sums: ``conversions`` of ``units`` converted."""
        if not 0 <= conversions <= units:
            raise AnalysisError(f"variant {name!r}: conversions must be in [0, units]")
        return cls(name, units, conversions, conversions)

    @property
    def has_pre(self) -> bool:
        return self.pre_sum is not None

    @property
    def mean(self) -> float:
        """The (unadjusted) rate or mean; for a ratio, sum over denominator sum."""
        if self.denominator_sum is not None:
            return self.sum / self.denominator_sum if self.denominator_sum else 0.0
        return self.sum / self.units if self.units else 0.0


def summarize(
    name: str,
    values: Sequence[float],
    *,
    denominators: Sequence[float] | None = None,
    pre: Sequence[float] | None = None,
) -> VariantStats:
    """A variant's sums from its per-unit values (one entry per unit, 0 for a unit with none).

    ``denominators`` (a ratio metric's per-unit denominators) and ``pre`` (the pre-period
    covariate, for CUPED) are per unit too, in the same order. A store that can sum in SQL
    builds :class:`VariantStats` directly instead.
    """
    y = np.asarray(values, dtype=float)
    extra: dict[str, float] = {}
    for label, other in (("denominator", denominators), ("pre", pre)):
        if other is None:
            continue
        x = np.asarray(other, dtype=float)
        if x.shape != y.shape:
            raise AnalysisError(f"variant {name!r}: {label} values must be one per unit")
        if label == "pre":
            extra |= {"pre_sum": x.sum(), "pre_sum_squares": x @ x, "pre_sum_products": x @ y}
        else:
            extra |= {"denominator_sum": x.sum(), "denominator_sum_squares": x @ x, "sum_products": x @ y}
    return VariantStats(name, len(y), float(y.sum()), float(y @ y), **{k: float(v) for k, v in extra.items()})


@dataclass(frozen=True, slots=True)
class MetricData:
    """One metric's sums per variant, the control first. ``inverse``: lower is better."""

    name: str
    kind: MetricKind
    variants: tuple[VariantStats, ...]
    inverse: bool = False

    def __post_init__(self) -> None:
        if len(self.variants) < 2:
            raise AnalysisError(f"metric {self.name!r}: needs a control and at least one treatment")
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise AnalysisError(f"metric {self.name!r}: variant names repeat: {names}")
        for v in self.variants:
            if (self.kind is MetricKind.RATIO) != (v.denominator_sum is not None):
                raise AnalysisError(
                    f"metric {self.name!r}: a ratio metric's variants (and only those) have denominator sums"
                )
            if self.kind is MetricKind.RATIO and v.has_pre:
                raise AnalysisError(f"metric {self.name!r}: CUPED on a ratio metric is not supported")


@dataclass(frozen=True, slots=True)
class Comparison:
    """A treatment against the control on one metric.

    ``lift`` and ``lift_interval`` are relative (0.031 = +3.1%); ``difference`` and its
    interval absolute. ``chance_to_win``, ``risk`` (expected relative loss of choosing
    control, of choosing the treatment) and ``credible_interval`` (relative) are the
    Bayesian engine's. ``problem`` says why
    nothing could be computed (a control mean of 0, no variance); the numbers are then
    GrowthBook's neutral defaults (0, [0, 0], p = 1, chance 0.5).
    """

    variant: str
    lift: float
    lift_interval: tuple[float, float]
    difference: float
    difference_interval: tuple[float, float]
    p_value: float
    chance_to_win: float
    risk: tuple[float, float]
    credible_interval: tuple[float, float] = (0.0, 0.0)
    inverse: bool = False
    cuped: bool = False
    problem: str | None = None

    @property
    def verdict(self) -> Verdict:
        low, high = self.lift_interval
        if self.problem is not None or low <= 0 <= high:
            return Verdict.FLAT
        better = low > 0
        return Verdict.WIN if better != self.inverse else Verdict.LOSE


@dataclass(frozen=True, slots=True)
class SrmCheck:
    """The sample-ratio-mismatch check: chi-square of units against the expected weights."""

    units: tuple[int, ...]
    weights: tuple[float, ...]
    statistic: float
    p_value: float

    @property
    def warning(self) -> bool:
        return self.p_value < SRM_THRESHOLD


@dataclass(frozen=True, slots=True)
class VariantResult:
    """One row of a metric's table: the control has no comparison."""

    variant: str
    units: int
    mean: float
    comparison: Comparison | None


@dataclass(frozen=True, slots=True)
class MetricResult:
    name: str
    kind: MetricKind
    rows: tuple[VariantResult, ...]

    @property
    def comparisons(self) -> tuple[Comparison, ...]:
        return tuple(r.comparison for r in self.rows if r.comparison is not None)


@dataclass(frozen=True, slots=True)
class Report:
    experiment: str
    srm: SrmCheck | None
    metrics: tuple[MetricResult, ...] = field(default_factory=tuple)
    alpha: float = 0.05


# --- per-unit moments, as gbstats' statistics compute them ------------------------------------


def _sample_variance(n: int, total: float, squares: float) -> float:
    return 0.0 if n <= 1 else (squares - total * total / n) / (n - 1)


def _covariance(n: int, sum_a: float, sum_b: float, products: float) -> float:
    return 0.0 if n <= 1 else (products - sum_a * sum_b / n) / (n - 1)


def _post_variance(kind: MetricKind, v: VariantStats) -> float:
    if kind is MetricKind.BINOMIAL:
        p = v.sum / v.units if v.units else 0.0
        return p * (1 - p)
    return _sample_variance(v.units, v.sum, v.sum_squares)


def _ratio_variance(v: VariantStats) -> float:
    # Delta method for sum(m)/sum(d) per unit (gbstats RatioStatistic, both parts as sample means).
    assert v.denominator_sum is not None and v.denominator_sum_squares is not None
    assert v.sum_products is not None
    n = v.units
    mean_d = v.denominator_sum / n if n else 0.0
    if mean_d == 0 or n <= 1:
        return 0.0
    mean_m = v.sum / n
    var_m = _sample_variance(n, v.sum, v.sum_squares)
    var_d = _sample_variance(n, v.denominator_sum, v.denominator_sum_squares)
    cov = _covariance(n, v.sum, v.denominator_sum, v.sum_products)
    return var_m / mean_d**2 - 2 * cov * mean_m / mean_d**3 + mean_m**2 * var_d / mean_d**4


def _theta(kind: MetricKind, a: VariantStats, b: VariantStats) -> float:
    """CUPED's theta from both arms pooled: cov(post, pre) / var(pre); 0 when either has no variance."""
    assert a.pre_sum is not None and b.pre_sum is not None
    assert a.pre_sum_squares is not None and b.pre_sum_squares is not None
    assert a.pre_sum_products is not None and b.pre_sum_products is not None
    n = a.units + b.units
    pooled = VariantStats("pooled", n, a.sum + b.sum, a.sum_squares + b.sum_squares)
    pre_var = _sample_variance(n, a.pre_sum + b.pre_sum, a.pre_sum_squares + b.pre_sum_squares)
    if pre_var <= 0 or _post_variance(kind, pooled) <= 0:
        return 0.0
    cov = _covariance(n, pooled.sum, a.pre_sum + b.pre_sum, a.pre_sum_products + b.pre_sum_products)
    return cov / pre_var


@dataclass(frozen=True, slots=True)
class _Moments:
    n: int
    mean: float  # adjusted by CUPED when theta != 0
    unadjusted_mean: float
    variance: float  # per unit


def _moments(kind: MetricKind, v: VariantStats, theta: float) -> _Moments:
    if kind is MetricKind.RATIO:
        return _Moments(v.units, v.mean, v.mean, _ratio_variance(v))
    mean = v.sum / v.units if v.units else 0.0
    variance = _post_variance(kind, v)
    if theta == 0:
        return _Moments(v.units, mean, mean, variance)
    assert v.pre_sum is not None and v.pre_sum_squares is not None and v.pre_sum_products is not None
    pre_mean = v.pre_sum / v.units if v.units else 0.0
    if v.units > 1:
        pre_var = _sample_variance(v.units, v.pre_sum, v.pre_sum_squares)
        cov = _covariance(v.units, v.sum, v.pre_sum, v.pre_sum_products)
        variance = variance + theta**2 * pre_var - 2 * theta * cov
    else:
        variance = 0.0
    return _Moments(v.units, mean - theta * pre_mean, mean, variance)


def _neutral(variant: str, inverse: bool, cuped: bool, problem: str) -> Comparison:
    zero = (0.0, 0.0)
    return Comparison(variant, 0.0, zero, 0.0, zero, 1.0, 0.5, zero, zero, inverse, cuped, problem)


def compare(
    kind: MetricKind,
    control: VariantStats,
    treatment: VariantStats,
    *,
    alpha: float = 0.05,
    inverse: bool = False,
) -> Comparison:
    """``treatment`` against ``control``: GrowthBook's two-sided t-test and default Bayesian engine.

    CUPED applies when both arms carry pre-period sums (and theta is not 0).
    """
    if not 0 < alpha < 1:
        raise AnalysisError(f"alpha must be in (0, 1), got {alpha}")
    theta = _theta(kind, control, treatment) if control.has_pre and treatment.has_pre else 0.0
    cuped = theta != 0
    a = _moments(kind, control, theta)
    b = _moments(kind, treatment, theta)
    if a.mean == 0 or a.unadjusted_mean == 0:
        return _neutral(treatment.name, inverse, cuped, "the control's mean is 0: no relative lift")
    if a.n == 0 or b.n == 0:
        return _neutral(treatment.name, inverse, cuped, "a variant has no units")
    if a.variance <= 0 or b.variance <= 0:
        return _neutral(treatment.name, inverse, cuped, "a variant has no variance")

    # Relative effect, delta method on the ratio of means (the denominator unadjusted, as gbstats).
    lift = (b.mean - a.mean) / a.unadjusted_mean
    rel_var = b.variance / (a.unadjusted_mean**2 * b.n) + a.variance * b.unadjusted_mean**2 / (
        a.unadjusted_mean**4 * a.n
    )
    abs_var = b.variance / b.n + a.variance / a.n
    # Welch-Satterthwaite on the per-unit variances (gbstats TTest.dof).
    dof = abs_var**2 / (b.variance**2 / (b.n**2 * (b.n - 1)) + a.variance**2 / (a.n**2 * (a.n - 1)))
    t_crit = float(_sp.t.ppf(1 - alpha / 2, dof))
    rel_se = math.sqrt(rel_var)
    abs_se = math.sqrt(abs_var)
    difference = b.mean - a.mean
    p_value = 2 * (1 - float(_sp.t.cdf(abs(lift / rel_se), dof)))

    # Bayesian, improper flat prior: the posterior of the relative effect is N(lift, rel_se²).
    win = float(_sp.norm.sf(0, lift, rel_se))
    chance = 1 - win if inverse else win
    risk = _risk(lift, rel_se)
    if inverse:
        risk = (risk[1], risk[0])
    return Comparison(
        variant=treatment.name,
        lift=lift,
        lift_interval=(lift - t_crit * rel_se, lift + t_crit * rel_se),
        difference=difference,
        difference_interval=(difference - t_crit * abs_se, difference + t_crit * abs_se),
        p_value=p_value,
        chance_to_win=chance,
        risk=risk,
        credible_interval=(
            float(_sp.norm.ppf(alpha / 2, lift, rel_se)),
            float(_sp.norm.ppf(1 - alpha / 2, lift, rel_se)),
        ),
        inverse=inverse,
        cuped=cuped,
    )


def _risk(mu: float, sigma: float) -> tuple[float, float]:
    """Expected loss of choosing control, of choosing the treatment (gbstats get_risk)."""
    p_ctrl_better = float(_sp.norm.cdf(0.0, loc=mu, scale=sigma))
    mean_neg = float(_sp.truncnorm.mean(-math.inf, (0.0 - mu) / sigma, loc=mu, scale=sigma))
    mean_pos = float(_sp.truncnorm.mean((0.0 - mu) / sigma, math.inf, loc=mu, scale=sigma))
    return ((1.0 - p_ctrl_better) * mean_pos, -p_ctrl_better * mean_neg)


def srm(units: Sequence[int], weights: Sequence[float]) -> SrmCheck:
    """Pearson's chi-square of observed ``units`` against ``weights`` (any positive scale)."""
    if len(units) != len(weights) or len(units) < 2:
        raise AnalysisError("srm needs one weight per variant and at least two variants")
    if any(w <= 0 for w in weights) or any(u < 0 for u in units):
        raise AnalysisError("srm needs positive weights and non-negative units")
    total = sum(units)
    if total == 0:
        return SrmCheck(tuple(units), tuple(weights), 0.0, 1.0)
    weight_total = sum(weights)
    expected = [w / weight_total * total for w in weights]
    result = _sp.chisquare(list(units), expected)
    return SrmCheck(tuple(units), tuple(weights), float(result.statistic), float(result.pvalue))


def report(
    experiment: str,
    metrics: Sequence[MetricData],
    *,
    units: Mapping[str, int] | None = None,
    weights: Mapping[str, float] | None = None,
    alpha: float = 0.05,
) -> Report:
    """Every treatment against the control on every metric, and the SRM check.

    ``units`` are the exposed units per variant (default: the first metric's); the SRM check
    runs when ``weights`` (the configured split, by variant name) are given.
    """
    results = []
    for metric in metrics:
        control = metric.variants[0]
        rows = [VariantResult(control.name, control.units, control.mean, None)]
        for treatment in metric.variants[1:]:
            c = compare(metric.kind, control, treatment, alpha=alpha, inverse=metric.inverse)
            rows.append(VariantResult(treatment.name, treatment.units, treatment.mean, c))
        results.append(MetricResult(metric.name, metric.kind, tuple(rows)))
    check = None
    if weights is not None:
        if units is None:
            if not metrics:
                raise AnalysisError("the SRM check needs units or a metric")
            units = {v.name: v.units for v in metrics[0].variants}
        missing = set(weights) ^ set(units)
        if missing:
            raise AnalysisError(f"units and weights name different variants: {sorted(missing)}")
        names = list(weights)
        check = srm([units[n] for n in names], [weights[n] for n in names])
    return Report(experiment, check, tuple(results), alpha)


def _pct(x: float) -> str:
    return f"{x * 100:+.2f}%"


def render_text(result: Report) -> str:
    """A plain-text table per metric, then the SRM line (what ``flagstaff report`` prints)."""
    level = round((1 - result.alpha) * 100)
    lines = [f"experiment {result.experiment}"]
    header = ("variant", "units", "value", "lift", f"{level}% interval", "chance to win", "")
    for metric in result.metrics:
        table = [header]
        for row in metric.rows:
            c = row.comparison
            if c is None:
                table.append((row.variant, f"{row.units:,}", f"{row.mean:.4g}", "control", "", "", ""))
                continue
            low, high = c.lift_interval
            note = c.problem or (c.verdict.value + (" (CUPED)" if c.cuped else ""))
            table.append(
                (
                    row.variant,
                    f"{row.units:,}",
                    f"{row.mean:.4g}",
                    _pct(c.lift),
                    f"[{_pct(low)}, {_pct(high)}]",
                    f"{c.chance_to_win * 100:.1f}%",
                    note,
                )
            )
        widths = [max(len(r[i]) for r in table) for i in range(len(header))]
        lines.append("")
        lines.append(f"metric {metric.name} ({metric.kind.value})")
        for r in table:
            lines.append("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
    if result.srm is not None:
        s = result.srm
        state = "WARNING: sample ratio mismatch" if s.warning else "sample ratio OK"
        lines.append("")
        lines.append(
            f"{state} (chi-square p = {s.p_value:.3g}, units {', '.join(f'{u:,}' for u in s.units)})"
        )
    return "\n".join(lines) + "\n"
