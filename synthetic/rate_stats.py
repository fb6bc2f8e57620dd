r"""Statistics of the rate table (``perfedavg check --rates``): amplitude fits, equivalence tests, Holm.

Every row compares a measured curve :math:`y(x)` (means with standard errors) with the shape
:math:`T(x)` of a bound term (the *predicted law*, known only up to its amplitude).  The comparison is made
in linear space, on the batch means themselves, never on logarithms of noisy differences.

Amplitude fit.  For a law :math:`y = A\,g(x)` the weighted least-squares amplitude is
:math:`\hat A = \sum w_i y_i g_i / \sum w_i g_i^2` (:math:`w_i = 1/s_i^2`), and
:math:`\chi^2 = \sum w_i (y_i - \hat A g_i)^2` has :math:`n - 1` degrees of freedom (one amplitude
fitted).  The standard errors :math:`s_i` are themselves estimated (batch means, :math:`\nu` degrees of
freedom), so :math:`\chi^2/(n-1)` is referred to :math:`F(n-1, \nu)` rather than to
:math:`\chi^2_{n-1}/(n-1)` (:func:`law_p_value`).

Exponent relative to the law.  The model :math:`y = A\,T(x)\,(x/x_g)^q` (:math:`x_g` the geometric mean
of the grid) has local exponent ``slope(T) + q``; :math:`q = 0` is the predicted law, and the bound term's
own curvature (a :math:`1/\Gamma`, a :math:`(\tau-1)(2\tau-1)`) is in :math:`T`, not in :math:`q`.
:math:`q` is fitted by profiling :math:`A` out of :math:`\chi^2(q)`; its interval is the profile set
:math:`\chi^2(q) - \chi^2_{\min} \le t_{\nu}^2` (Student t with the standard errors' :math:`\nu`).

Three verdicts, with an equivalence margin :math:`m` declared per row before any data (:func:`margin`):

* PASS: the two one-sided tests of :math:`q \ge m` and :math:`q \le -m` (signed-root profile statistic,
  :math:`t_\nu`) both reject: the exponent lies within the margin (equivalently the
  :math:`1-2\alpha` interval lies inside :math:`[-m, m]`), and the exponent model itself fits;
* FAIL: every law :math:`A\,T\,x^q` with :math:`|q| \le m` is rejected, by either of two tests
  (Bonferroni between them): the exponent's two-sided interval lies outside the margin (signed-root profile
  statistic at the nearer edge), or the goodness-of-fit test rejects each of those laws (the largest of their
  p-values is small: the predicted shape is wrong in a way no exponent within the margin repairs);
* INCONCLUSIVE: neither.

Multiplicity: the PASS and the FAIL p-value of every row of a table form one family, Holm-corrected at
:data:`FAMILY_LEVEL` (:func:`holm`, :func:`assign_verdicts`): the chance that *any* decisive verdict of
the table is wrong is at most that level.  Rows without sampling error (closed forms) carry no p-values:
their exponent is exact and is compared with the margin directly.

Rows whose points share runs (the K-row's Φ_K at several K are averages of one trajectory; the HF errors
at every δ use the same batches) are not independent points: there the unit is the seed
(:func:`judge_replicates`: one exponent per seed, Student t with S − 1 degrees of freedom).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize, stats

#: family-wise error level of the table's decisive verdicts (PASS and FAIL together), Holm-corrected
FAMILY_LEVEL = 0.05
#: equivalence margin = this fraction of the exponent gap between the predicted law and the row's named
#: competing law: with a quarter, a PASS for one law and a PASS for the other are separated by half the gap,
#: so a PASS tells the predicted law from its competitor; declared per row from the bound terms, before data
MARGIN_FRACTION = 0.25
#: the relative exponent q is searched in [-Q_RANGE, Q_RANGE]; the table's exponents are within ±4 of their
#: predictions, and an interval end that reaches this bound is reported as unbounded (the data cannot decide)
Q_RANGE = 8.0


@dataclass(frozen=True)
class Point:
    """A measured mean with its standard error and the degrees of freedom of that standard error."""

    mean: float
    se: float
    dof: float

    def halfwidth(self, level: float = 0.95) -> float:
        """Half-width of the two-sided Student-t interval at ``level``."""
        if not math.isfinite(self.dof) or self.dof <= 0:
            return math.inf if self.se > 0 else 0.0
        return float(stats.t.ppf(0.5 + level / 2, self.dof) * self.se)


def mean_se(values) -> Point:
    """Mean, standard error and degrees of freedom (n − 1) of independent values."""
    v = np.asarray(values, float).ravel()
    if len(v) < 2:
        return Point(float(v.mean()), math.inf, 0.0)
    return Point(float(v.mean()), float(v.std(ddof=1) / math.sqrt(len(v))), float(len(v) - 1))


def difference(a: Point, b: Point) -> Point:
    """``a − b`` of independent estimates: standard errors in quadrature, Welch–Satterthwaite degrees of freedom."""
    se2 = a.se**2 + b.se**2
    if se2 == 0:
        return Point(a.mean - b.mean, 0.0, math.inf)
    terms = [p.se**4 / p.dof for p in (a, b) if p.se > 0]
    return Point(a.mean - b.mean, math.sqrt(se2), se2**2 / sum(terms) if terms else math.inf)


def local_slope(xs, values) -> float:
    """Least-squares slope of log(value) on log(x) over the grid: a positive curve's local exponent there."""
    lx, ly = np.log(np.asarray(xs, float)), np.log(np.asarray(values, float))
    return float(np.polyfit(lx, ly, 1)[0])


def margin(xs, predicted, competitor) -> float:
    """The equivalence margin of a row: :data:`MARGIN_FRACTION` of the gap between the local exponents of the
    predicted law and of the named competing law on the row's grid (both positive curves)."""
    return MARGIN_FRACTION * abs(local_slope(xs, competitor) - local_slope(xs, predicted))


def amplitude_fit(y, se, shape) -> tuple[float, float]:
    r"""Weighted least-squares amplitude of ``y ≈ A·shape`` (weights 1/se²) and its :math:`\chi^2`."""
    y, g = np.asarray(y, float), np.asarray(shape, float)
    w = 1.0 / np.asarray(se, float) ** 2
    A = float((w * y * g).sum() / (w * g * g).sum())
    return A, float((w * (y - A * g) ** 2).sum())


def law_p_value(chi2: float, n_points: int, n_fitted: int, dof_se: float) -> float:
    r"""p-value of a :math:`\chi^2` with ``n_points − n_fitted`` degrees of freedom when the standard errors
    are estimated with ``dof_se`` degrees of freedom: :math:`F(k, \nu)` (:math:`\chi^2_k` when ν = ∞)."""
    k = n_points - n_fitted
    if k <= 0:
        return 1.0
    if not math.isfinite(dof_se):
        return float(stats.chi2.sf(chi2, k))
    return float(stats.f.sf(chi2 / k, k, dof_se))


def _chi2_of_q(xs, y, se, shape):
    """χ²(q) of the amplitude fit of ``y ≈ A·shape·(x/x_g)^q``; accepts a scalar q or an array of them."""
    x = np.asarray(xs, float)
    scaled = np.log(x / math.exp(np.log(x).mean()))
    g0, y, w = np.asarray(shape, float), np.asarray(y, float), 1.0 / np.asarray(se, float) ** 2

    def chi2(q):
        g = g0 * np.exp(np.multiply.outer(np.asarray(q, float), scaled))
        A = (w * y * g).sum(-1) / (w * g * g).sum(-1)
        out = (w * (y - A[..., None] * g) ** 2).sum(-1)
        return float(out) if np.ndim(out) == 0 else out

    return chi2


def _minimise(chi2) -> tuple[float, float]:
    grid = np.linspace(-Q_RANGE, Q_RANGE, 641)
    values = chi2(grid)
    i = int(np.argmin(values))
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    res = optimize.minimize_scalar(chi2, bounds=(lo, hi), method="bounded", options={"xatol": 1e-10})
    return (float(res.x), float(res.fun)) if res.fun <= values[i] else (float(grid[i]), float(values[i]))


def _profile_end(chi2, q_hat: float, level: float, direction: int) -> float:
    """Where the profile χ²(q) − χ²(q̂) first reaches ``level`` going ``direction`` from q̂ (±inf: never in range)."""
    edge = direction * Q_RANGE
    if chi2(edge) < level:
        return direction * math.inf
    a, b = sorted((q_hat, edge))
    return float(optimize.brentq(lambda q: chi2(q) - level, a, b, xtol=1e-10))


@dataclass
class Judgement:
    """The statistics of one row; ``verdict`` is set by :func:`assign_verdicts` (Holm across the table)."""

    method: str  # "points", "replicates" or "exact"
    q: float  # fitted exponent minus the predicted local exponent
    q_low: float  # (1 − 2·FAMILY_LEVEL) interval of q (TOST-matched; unadjusted)
    q_high: float
    margin: float
    dof: float
    p_equiv: float | None  # TOST p-value of |q| >= margin (small: PASS)
    p_fail: float | None  # p-value of "some law with |q| <= margin holds" (small: FAIL)
    p_law: float | None = None  # amplitude-fit goodness of fit of the predicted law itself (q = 0)
    p_model: float | None = None  # goodness of fit of the best exponent model (q = q̂)
    extra: dict = field(default_factory=dict)
    p_equiv_holm: float | None = None
    p_fail_holm: float | None = None
    verdict: str = "INCONCLUSIVE"
    reason: str = ""

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def judge_points(xs, points: list[Point], shape, margin_: float) -> Judgement:
    """Statistics of a row of independent points (module docstring): q̂, its interval, the TOST p-value and the
    FAIL p-value (the exponent outside the margin, or no law within it fitting: Bonferroni of the two)."""
    y = np.array([p.mean for p in points])
    se = np.array([p.se for p in points])
    if not (np.all(np.isfinite(se)) and np.all(se > 0)):
        raise ValueError("judge_points needs finite positive standard errors (exact rows: judge_exact)")
    nu = float(min(p.dof for p in points))
    n = len(points)
    chi2 = _chi2_of_q(xs, y, se, shape)
    q_hat, chi2_min = _minimise(chi2)
    t2 = float(stats.t.ppf(1 - FAMILY_LEVEL, nu)) ** 2 if math.isfinite(nu) else stats.norm.ppf(1 - FAMILY_LEVEL) ** 2
    low = _profile_end(lambda q: chi2(q) - chi2_min, q_hat, t2, -1)
    high = _profile_end(lambda q: chi2(q) - chi2_min, q_hat, t2, +1)

    def signed_root(q0: float) -> float:
        return math.copysign(math.sqrt(max(chi2(q0) - chi2_min, 0.0)), q_hat - q0)

    cdf = (lambda r: stats.t.cdf(r, nu)) if math.isfinite(nu) else stats.norm.cdf
    p_equiv = max(float(cdf(signed_root(margin_))), float(1 - cdf(signed_root(-margin_))))
    inside = np.unique(
        np.concatenate([np.linspace(-margin_, margin_, 201), [float(np.clip(q_hat, -margin_, margin_))]])
    )
    best_inside = float(np.min(chi2(inside)))
    p_shape = law_p_value(best_inside, n, 1, nu)  # no law within the margin fits
    edge = float(np.clip(q_hat, -margin_, margin_))  # the exponent outside the margin (two-sided at the edge)
    p_out = 1.0 if edge == q_hat else float(2 * (1 - cdf(abs(signed_root(edge)))))
    return Judgement(
        "points",
        q_hat,
        low,
        high,
        margin_,
        nu,
        p_equiv,
        min(1.0, 2 * min(p_shape, p_out)),  # either test rejects every law within the margin: Bonferroni
        p_law=law_p_value(chi2(0.0), n, 1, nu),
        p_model=law_p_value(chi2_min, n, 2, nu),
        extra={"chi2_law": chi2(0.0), "chi2_min": chi2_min, "n_points": n, "p_shape": p_shape, "p_outside": p_out},
    )


def replicate_exponents(xs, curves, shape) -> np.ndarray:
    """One relative exponent per replicate: the least-squares slope of log(curve / shape) on log(x) (NaN for a
    replicate with a value <= 0: its exponent is undefined)."""
    out = []
    for c in np.asarray(curves, float):
        out.append(local_slope(xs, c / np.asarray(shape, float)) if np.all(c > 0) else math.nan)
    return np.array(out)


def judge_replicates(q_per_replicate, margin_: float) -> Judgement:
    """Statistics of a row whose points share runs: the replicates' exponents (one per seed) are the independent
    units; Student t with S − 1 degrees of freedom for TOST and for the distance of q̄ from the margin."""
    q = np.asarray(q_per_replicate, float)
    if len(q) < 2 or not np.all(np.isfinite(q)):
        return Judgement("replicates", math.nan, -math.inf, math.inf, margin_, len(q) - 1.0, 1.0, 1.0)
    p = mean_se(q)
    nu = p.dof
    if p.se == 0:
        inside = abs(p.mean) <= margin_
        return Judgement("replicates", p.mean, p.mean, p.mean, margin_, nu, 0.0 if inside else 1.0, 1.0 - inside)
    half = float(stats.t.ppf(1 - FAMILY_LEVEL, nu) * p.se)
    p_equiv = max(float(stats.t.sf((p.mean + margin_) / p.se, nu)), float(stats.t.sf((margin_ - p.mean) / p.se, nu)))
    distance = max(abs(p.mean) - margin_, 0.0)
    p_fail = float(2 * stats.t.sf(distance / p.se, nu))
    return Judgement(
        "replicates",
        p.mean,
        p.mean - half,
        p.mean + half,
        margin_,
        nu,
        p_equiv,
        min(p_fail, 1.0),
        extra={"q": q.tolist()},
    )


def judge_exact(q: float, margin_: float) -> Judgement:
    """A row without sampling error (a closed form): PASS when the exact exponent lies within the margin, else
    FAIL; no p-values, outside the Holm family."""
    j = Judgement("exact", q, q, q, margin_, math.inf, None, None)
    j.verdict = "PASS" if abs(q) <= margin_ else "FAIL"
    j.reason = f"exact exponent {'within' if j.verdict == 'PASS' else 'outside'} the margin ±{margin_:.3g}"
    return j


def holm(pvalues) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error control), in the input order."""
    p = np.asarray(pvalues, float)
    order = np.argsort(p)
    adjusted = np.empty_like(p)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[i]))
        adjusted[i] = running
    return adjusted.tolist()


def assign_verdicts(judgements: list[Judgement], level: float = FAMILY_LEVEL) -> None:
    """Holm across the table: every sampled row's PASS and FAIL p-values form one family at ``level``; a row
    FAILs when its adjusted FAIL p-value is <= level, PASSes when its adjusted PASS p-value is <= level and
    its exponent model fits (p_model > level), and is INCONCLUSIVE otherwise (exact rows keep their verdict)."""
    sampled = [j for j in judgements if j.method != "exact"]
    adjusted = holm([p for j in sampled for p in (j.p_equiv, j.p_fail)])
    for k, j in enumerate(sampled):
        j.p_equiv_holm, j.p_fail_holm = adjusted[2 * k], adjusted[2 * k + 1]
        model_fits = j.p_model is None or j.p_model > level
        if j.p_fail_holm <= level:
            j.verdict, j.reason = "FAIL", "every law within the margin rejected"
        elif j.p_equiv_holm <= level and model_fits:
            j.verdict, j.reason = "PASS", "exponent within the margin"
        else:
            j.verdict = "INCONCLUSIVE"
            j.reason = "the exponent model does not fit" if not model_fits else "the data cannot decide"
