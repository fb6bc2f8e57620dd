r"""The rows of the rate table (``perfedavg check --rates``): :class:`RateRow`, the row builders
(:func:`points_row`, :func:`replicates_row`), and the recipes of the optimization row, the exact noise-free
drift and the drift at Γ ≈ 1 (the HF rows: :mod:`synthetic.rate_hf`; the exact bias: :mod:`synthetic.rate_bias`).

A row compares a measured curve with the predicted law T(x) (the derived explicit bound's relevant term(s)
with the task's exact constants, ``theory.checks_api.convergence``: never a hard-coded power, except the
Taylor laws of the HF and bias rows) by the statistics of :mod:`synthetic.rate_stats`; its equivalence margin is
:data:`synthetic.rate_stats.MARGIN_FRACTION` of the exponent gap to a named competing law, fixed before
any data.  The recalled shape's local exponent is printed beside the derived one, and the goodness of fit of
each candidate law (predicted, recalled, competitor) by amplitude fit is recorded in ``extra["laws"]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from perfedavg.runs.resolve import resolve

from . import rate_stats
from .common import rms
from .measure import task_module
from .quadratic import noise_free_cycle
from .rate_runs import _config, _domain_ok, bound_terms, mu_F, run_sweep, theory_LF
from .rate_stats import FAMILY_LEVEL, Judgement, Point, judge_exact, judge_points, judge_replicates, local_slope

#: what a row's comparison assumes (printed with each row): the bound-term rows
ASSUMPTION = "comparing an upper bound's slope assumes the bound is tight up to a constant on the grid"
#: ... and the rows whose predicted law is a Taylor expansion (HF error, exact bias)
TAYLOR_ASSUMPTION = "a Taylor law: assumes its next order is negligible on the grid"
#: the exponent interval printed and saved: the (1 − 2·level) interval that the equivalence test uses
INTERVAL_LEVEL = 1 - 2 * FAMILY_LEVEL


@dataclass
class RateRow:
    """One line of the rate table: the predicted law's local exponent, the fitted exponent with its interval,
    the equivalence margin, the Holm-corrected p-values and the verdict (``judgement``)."""

    name: str
    predicted: float  # local exponent of the predicted law T on the grid
    xs: list
    means: list
    halfwidths: list  # 95 % Student-t half-widths of the points (display)
    judgement: Judgement
    competitor: str
    note: str = ""
    extra: dict = field(default_factory=dict)
    assumption: str = ASSUMPTION

    @property
    def fitted(self) -> float:
        return self.predicted + self.judgement.q

    @property
    def low(self) -> float:
        return self.predicted + self.judgement.q_low

    @property
    def high(self) -> float:
        return self.predicted + self.judgement.q_high

    @property
    def verdict(self) -> str:
        return self.judgement.verdict

    @property
    def passed(self) -> bool:
        return self.verdict == "PASS"

    def as_dict(self) -> dict:
        j = self.judgement
        return {
            "name": self.name,
            "verdict": self.verdict,
            "reason": j.reason,
            "predicted": self.predicted,
            "fitted": self.fitted,
            "low": self.low,
            "high": self.high,
            "interval_level": INTERVAL_LEVEL,
            "margin": j.margin,
            "competitor": self.competitor,
            "method": j.method,
            "dof": j.dof,
            "p_pass": j.p_equiv,
            "p_fail": j.p_fail,
            "p_pass_holm": j.p_equiv_holm,
            "p_fail_holm": j.p_fail_holm,
            "p_law": j.p_law,
            "p_model": j.p_model,
            "correction": f"Holm over the PASS and FAIL p-values of every sampled row, family-wise level {FAMILY_LEVEL}"
            if j.method != "exact"
            else "none (exact: no sampling error)",
            "assumption": self.assumption,
            "pass_needs_tolerance": False,
            "xs": self.xs,
            "means": self.means,
            "halfwidths": self.halfwidths,
            "note": self.note,
            "extra": {**self.extra, "judgement": j.extra},
        }


def _laws(xs, points: list[Point], laws: dict) -> dict:
    """Goodness-of-fit p-value of each candidate law by amplitude fit (one amplitude fitted)."""
    y, se = [p.mean for p in points], [p.se for p in points]
    nu = min(p.dof for p in points)
    return {k: rate_stats.law_p_value(rate_stats.amplitude_fit(y, se, v)[1], len(y), 1, nu) for k, v in laws.items()}


def competitor_law(xs, pred, competitor) -> list[float]:
    """The competing law's values at ``xs``: ``competitor = (name, values)``, or ``(name, k)`` for the predicted
    law times x^k (an exponent off by k)."""
    _, law = competitor
    if isinstance(law, (int, float)):
        return [v * x**law for v, x in zip(pred, xs)]
    return list(map(float, law))


def points_row(name, xs, points: list[Point], pred, recalled, competitor, note="", **extra):
    """A row of independent points (stationary floors of separate runs): the predicted law ``pred`` (bound term
    values at ``xs``), the recalled shape ``recalled``, the competitor (:func:`competitor_law`)."""
    xs = list(map(float, xs))
    comp_name = competitor[0]
    comp = competitor_law(xs, pred, competitor)
    m = rate_stats.margin(xs, pred, comp)
    laws = {"predicted": pred, comp_name: comp}
    if all(v > 0 for v in recalled):
        laws["recalled"] = recalled
    extra = {
        "recalled_shape_slope": local_slope(xs, recalled) if all(v > 0 for v in recalled) else math.nan,
        "laws": _laws(xs, points, laws),
        **extra,
    }
    return RateRow(
        name,
        local_slope(xs, pred),
        xs,
        [p.mean for p in points],
        [p.halfwidth() for p in points],
        judge_points(xs, points, pred, m),
        comp_name,
        note,
        extra,
    )


def replicates_row(name, xs, curves, pred, recalled, competitor, note="", **extra):
    """A row whose points share runs (``curves``: one row per seed): one exponent per seed, Student t."""
    xs = list(map(float, xs))
    comp_name = competitor[0]
    m = rate_stats.margin(xs, pred, competitor_law(xs, pred, competitor))
    curves = np.asarray(curves, float)
    pts = [rate_stats.mean_se(c) for c in curves.T]
    extra = {"recalled_shape_slope": local_slope(xs, recalled), **extra}
    judgement = judge_replicates(rate_stats.replicate_exponents(xs, curves, pred), m)
    return RateRow(
        name,
        local_slope(xs, pred),
        xs,
        [p.mean for p in pts],
        [p.halfwidth() for p in pts],
        judgement,
        comp_name,
        note,
        extra,
    )


#: the optimization row's K, in mixing times T = 1/(β_min τ μ_F) of its smallest β: the mean iterate's transient
#: ‖∇F(w_k)‖² decays at least as (1 − βμ_F)^{2k} ≈ e^{−2k/T} (a quadratic, exact HVPs), so after 4 T less than
#: e^{−8} ≈ 3e−4 of the transient's sum is left out, far below the seeds' spread
OPT_MIXING = 4


def opt_term_row(betas, seeds, out, floors, progress: bool, domain: list, executor=None) -> RateRow:
    r"""The optimization term against β: per seed, :math:`K(\Phi_K - \text{floor}) = \sum_k(\varphi_k -
    \text{floor})` from w_0 = 0 (batches 100) at a K where every β's transient is over (:data:`OPT_MIXING`), the
    floor the stationary mean at the same β (``floors``, :func:`synthetic.rates.rate_table`'s runner).  Predicted
    law: the derived optimization term 2Δ₀/(βτK)·K ∝ 1/β; competitor β⁰ (a transient whose sum does not shrink
    with the step: a method that does not converge at the bound's rate).  Unlike Φ_K against K (whose 1/K any
    converging method shows: the Cesàro mean of a summable transient), this exponent is the method's rate: gradient
    descent on a quadratic sums ‖∇F(w_k)‖² to Δ₀/(β(1 − βλ/2)) along each eigenvalue λ."""
    cfgs = [_config({"K": 1, "beta": b}) for b in betas]
    K = math.ceil(OPT_MIXING / (min(betas) * cfgs[0].tau * mu_F(cfgs[0])))
    cfgs = [c.replace(K=K) for c in cfgs]
    res = run_sweep(cfgs, seeds, out / "opt", track_inner=True, progress=progress, executor=executor)
    domain.append(_domain_ok(res, cfgs))
    _, _, fstats = floors("K-floor", [{"beta": b} for b in betas])
    curves = np.stack([K * (r["stationarity"][:, K - 1] - f[0].mean) for r, f in zip(res, fstats)], 1)
    terms = [bound_terms(c) for c in cfgs]
    pred = [K * t[0]["optimization"] for t in terms]
    ratio = [p / m for p, m in zip(pred, curves.mean(0))]
    return replicates_row(
        "opt. term vs beta",
        betas,
        curves,
        pred,
        [K * t[1]["optimization"] for t in terms],
        ("beta^0 (a transient sum that does not shrink with the step)", 1.0),
        f"K·(Φ_K − floor) per seed, w_0 = 0, K = {K} ({OPT_MIXING} mixing times of β = {min(betas):g}), "
        f"batches 100, τ = 1, r = 1; floors {', '.join(f'{f[0].mean:.2g}' for f in fstats)}; derived term / "
        f"measured = {', '.join(f'{v:.3g}' for v in ratio)}",
        bound_over_measured=ratio,
    )


def drift_noise_free_rows(taus) -> list[RateRow]:
    r"""The drift measured without noise: :func:`synthetic.quadratic.noise_free_cycle` (every user in every
    round, whole-distribution batches: a closed form, no seeds, exact to round-off) gives the floor φ_∞(τ), which
    is then the local drift alone (φ_∞(1) = 0).  Its exponent relative to the derived drift term with s = b = 0
    (:func:`synthetic.rate_runs.bound_terms` ``noise_free``) is exact, judged against the margin directly
    (:func:`synthetic.rate_stats.judge_exact`; competitor: the recalled τ² shape).  Two rows: at the drift row's
    β·τ_max = 0.16 (Γ down to ≈ 0.2, where the derived 1/Γ steepens the term) and at β·τ_max = 0.06 (Γ ≥ 0.89:
    the polynomial (τ−1)(2τ−1) alone).  Each also checks the value: the noise-free derived bound (all its terms,
    K → ∞) above φ_∞(τ) at every τ."""

    rows = []
    for label, beta_tau_max in (("", 0.16), (", Gamma~1", 0.06)):
        beta = beta_tau_max / max(taus)
        cfgs = [_config({"tau": t, "beta": beta, "task": {"h": 1.0}}) for t in taus]
        _, task = resolve(cfgs[0])
        phis = [noise_free_cycle(task.train, c.alpha, beta, c.tau).phi for c in cfgs]
        terms = [bound_terms(c, noise_free=True) for c in cfgs]
        bounds = [sum(v for name, v in t[0].items() if name != "optimization") for t in terms]  # K -> infinity
        gammas = [1 - 6 * (c.beta * c.tau * theory_LF(c)) ** 2 for c in cfgs]
        pred = [t[0]["local drift"] for t in terms]
        recalled = [t[1]["local drift"] for t in terms]
        m = rate_stats.margin(taus, pred, recalled)
        row = RateRow(
            f"drift vs tau (noise-free{label})",
            local_slope(taus, pred),
            list(map(float, taus)),
            phis,
            [0.0] * len(taus),
            judge_exact(local_slope(taus, np.divide(phis, pred)), m),
            "recalled tau^2",
            f"φ_∞(τ) of the noise-free cycle (r = 1, whole-distribution batches, closed form), h = 1, "
            f"β = {beta:g}, Γ = {', '.join(f'{g:.2f}' for g in gammas)}; φ_∞/(β²(τ−1)²) = "
            f"{', '.join(f'{p / (beta * (t - 1)) ** 2:.3g}' for p, t in zip(phis, taus))}; "
            "derived noise-free "
            f"bound / φ_∞ = {', '.join(f'{b / p:.3g}' for b, p in zip(bounds, phis))}",
            {
                "recalled_shape_slope": local_slope(taus, recalled),
                "Gamma": gammas,
                "bound": bounds,
                "bound_holds": all(b >= p for b, p in zip(bounds, phis)),
            },
        )
        rows.append(row)
    return rows


def distances_of(cfgs) -> tuple[list[float], list[float], list]:
    """RMS over users of TV(p_i, p̄) and W1(p_i, p̄) (the task module's exact LP) and the start w* of each config."""

    tvs, w1s, starts = [], [], []
    for cfg in cfgs:
        _, task = resolve(cfg)
        tvs.append(task.constants["tv_rms"])
        w1s.append(rms(task_module(task).w1_to_mixture(task.train)))
        starts.append(task.init_params(torch.Generator()))
    return tvs, w1s, starts


def drift_gamma1_row(taus, floors) -> RateRow:
    r"""The drift row at Γ ≈ 1 (``--full`` only; ``floors`` is :func:`synthetic.rates.rate_table`'s floor runner).

    At β τ_max = 0.06, Γ = 1 − 6β²τ²L_F² ≥ 0.89 for every τ, so the derived τ-shape (τ−1)(2τ−1) is nearly free
    of 1/Γ: this row tells the derived τ-exponent from the recalled τ² where the step-size factor plays no
    part.  Batches of 1000 (support 1000): the drift (∝ β²) is small against the noise floor (∝ β)."""
    beta_small = 0.06 / max(taus)
    big = {"D": 1000, "D1": 1000, "D2": 1000}
    cfgs, _, stats = floors(
        "tau-gamma1",
        [{"tau": t, "beta": beta_small, **big, "task": {"h": 1.0, "support": 1000}} for t in [1, *taus]],
    )
    base = stats[0][0]
    terms = [bound_terms(c) for c in cfgs[1:]]
    gammas = [1 - 6 * (c.beta * c.tau * theory_LF(c)) ** 2 for c in cfgs[1:]]
    recalled = [t[1]["local drift"] for t in terms]
    return points_row(
        "drift vs tau (Gamma~1)",
        taus,
        [rate_stats.difference(s[0], base) for s in stats[1:]],
        [t[0]["local drift"] for t in terms],
        recalled,
        ("recalled tau^2", recalled),
        f"as the drift row at β = {beta_small:g}: Γ = 1 − 6β²τ²L_F² = "
        f"{', '.join(f'{g:.3f}' for g in gammas)} (φ(1) = {base.mean:.3g} ± {base.halfwidth():.2g})",
        lag1=[s[1] for s in stats],
        Gamma=gammas,
    )
