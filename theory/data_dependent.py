r"""The data-dependent convergence bound: the proof of DERIVATIONS.md §7 redone with region constants (§10).

The worst-case bound (:func:`theory.theorem.convergence_bound_derived`) takes every constant as a sup over all
w and all data.  Here the same quantity

.. math:: \Phi_K = \frac{1}{\tau K}\sum_{k<K}\sum_{t<\tau}\mathbb E\|\nabla F(\bar w_{k+1,t})\|^2

is bounded with constants taken over the **region the run visits** (DERIVATIONS.md §10): per round k, sups
over the users' iterates, their inner points w̃ and HF points w ± δg of that round; Δ₀ = F(w₀) − F*; the bias as
min(first order, second order); a discrete Gronwall recursion in place of the recursion's 1/Γ; the Hessian
dissimilarity of the F_i in the coupling step; the Young parameters chosen optimally.  Every function here is
one step's formula on plain floats (no sympy, no torch); a task measures the constants
(``synthetic.region``).

Provenance: derived (DERIVATIONS.md §10).  The bound holds under the hypothesis that the region measured
contains every point the proof evaluates (the measurement takes the sup over the points of several seeds).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from . import theorem
from .symbols import n as n_symbol
from .symbols import r as r_symbol

_REF = "theory/DERIVATIONS.md §10"

#: points of the log grid over which Step 1's ε search (:func:`data_dependent_bound`) scans ε before refining it
_EPS_GRID = 400
#: relative width at which the golden-section refinement of ε stops (the bound is flat near its optimum)
_EPS_RTOL = 1e-9


# --------------------------------------------------------------------------- direction statistics (§10.1)
def inner_bias_region(L_in: float, rho: float, alpha: float, sigma_G2: float, D: float) -> float:
    r""":math:`\|\mathbb E\tilde v - \nabla f_i(\tilde w^*)\| \le \min\big(\alpha L_{in}\sigma_G/\sqrt D,\;
    \rho\alpha^2\sigma_G^2/(2D)\big)`: the error of the outer gradient at the random inner point, first order
    (smoothness, Jensen) or second order (the first-order term has mean zero; Hessian Lipschitz).  ``L_in``:
    sup of ‖∇²f_i‖ over the inner points; ``sigma_G2``: σ_G,i²(w) at the client point.  DERIVATIONS.md §10.1."""
    first = alpha * L_in * math.sqrt(max(sigma_G2, 0.0) / D)
    second = rho * alpha**2 * max(sigma_G2, 0.0) / (2.0 * D)
    return min(first, second)


def bias_exact_region(A_norm: float, inner_bias: float) -> float:
    r"""Bias of the exact direction, :math:`\|\mathbb E d - \nabla F_i(w)\| \le \|A\|\cdot`
    :func:`inner_bias_region` with :math:`\|A\| = \|I - \alpha\nabla^2 f_i(w)\|` at the point (independence of
    the batches: :math:`\mathbb E d = A\,\mathbb E\tilde v`).  DERIVATIONS.md §10.1."""
    return A_norm * inner_bias


def hf_error_region(alpha: float, rho: float, delta: float, B_s2: float) -> float:
    r""":math:`\alpha\rho\delta B_s^2/2`: the HF direction's extra error, ‖α e_δ‖ with
    ‖e_δ‖ ≤ ρδ‖ṽ‖²/2 (DERIVATIONS.md §5) and ‖ṽ‖ ≤ B_s, the largest per-sample gradient norm at the inner
    points of the round.  DERIVATIONS.md §10.1."""
    return alpha * rho * delta * B_s2 / 2.0


def outer_mse_region(L_in: float, alpha: float, sigma_G2_w: float, sigma_G2_in: float, D: float, D1: float) -> float:
    r""":math:`\mathbb E\|\tilde v - \nabla f_i(\tilde w^*)\|^2 \le \sigma_{G,in}^2/D'
    + \alpha^2L_{in}^2\sigma_G^2(w)/D` (zero-mean cross term given D; smoothness on the inner segment; batch
    variance), with σ_G,in² the sup of σ_G,i² over the round's inner points.  It bounds the variance of the
    FO direction.  DERIVATIONS.md §10.1."""
    return sigma_G2_in / D1 + alpha**2 * L_in**2 * sigma_G2_w / D


def variance_exact_region(
    A_norm: float, alpha: float, outer_mse: float, sigma_H2: float, outer_second_moment: float, D2: float
) -> float:
    r"""Variance of the exact direction d = Ãṽ at a client point:

    .. math:: \mathrm{Var}\,d \le \mathbb E\|d - Av\|^2 = \alpha^2\mathbb E\|(\tilde H-H)\tilde v\|^2
              + \mathbb E\|A(\tilde v - v)\|^2
              \le \frac{\alpha^2\sigma_H^2}{D''}\,\mathbb E\|\tilde v\|^2 + \|A\|^2\,\mathrm{MSE}_{out}

    (§3 with ‖A‖ and σ_H² at the point; ``outer_mse`` is :func:`outer_mse_region`; ``outer_second_moment``
    bounds E‖ṽ‖² ≤ σ_G,in²/D' + B_in², B_in² the sup of ‖∇f_i‖² over the round's inner points).
    DERIVATIONS.md §10.1."""
    return alpha**2 * sigma_H2 / D2 * outer_second_moment + A_norm**2 * outer_mse


def variance_hf_region(variance_exact: float, hf_error: float) -> float:
    r"""Variance of the HF direction: :math:`(\sqrt{\mathrm{Var}_{exact}} + \alpha\rho\delta B_s^2/2)^2`
    (Minkowski in L²; the HF direction is the exact one minus α e_δ).  DERIVATIONS.md §10.1."""
    return (math.sqrt(max(variance_exact, 0.0)) + hf_error) ** 2


# --------------------------------------------------------------------------- the constants of a run
@dataclass(frozen=True)
class RoundConstants:
    r"""Constants of one round k: sups over the points the run visits in round k (DERIVATIONS.md §10.2).

    ``s2``: mean over users of the sup over the round of the variance of the direction;
    ``gamma_F``: sup over the round of :math:`(\frac1n\sum_i\|\nabla F_i(u_t)-\nabla F(u_t)\|^2)^{1/2}` at the
    users' average u_t; ``gamma_HF``: sup of :math:`(\frac1n\sum_i\|M_i-\nabla^2F(u_t)\|^2)^{1/2}` with M_i the
    Hessian of F_i between u_t and the user's iterate (Hessian dissimilarity); ``contraction``: sup over users
    of ‖I − βM_i‖; ``b_mean``: sup of the norm of the users' mean bias; ``b_rms``: sup of the RMS over users of
    the bias norms."""

    s2: float
    gamma_F: float
    gamma_HF: float
    contraction: float
    b_mean: float
    b_rms: float


@dataclass(frozen=True)
class RegionConstants:
    r"""A run's constants for :func:`data_dependent_bound`: ``L_F`` the sup of ‖∇²F‖ over the points the run
    visits (users' averages, sampled averages, server models); ``Delta0`` = F(w₀) − F*; step size ``beta``,
    local steps ``tau``, fraction ``r`` of the ``n`` users; ``rounds[k]`` the :class:`RoundConstants` of round k
    (K = len(rounds))."""

    L_F: float
    Delta0: float
    beta: float
    tau: int
    r: float
    n: int
    rounds: tuple[RoundConstants, ...]

    @property
    def c(self) -> float:
        r""":math:`c = (1-r)/(r(n-1))` (:func:`theory.theorem.sampling_factor`)."""
        return sampling_factor_at(self.r, self.n)


@functools.lru_cache(maxsize=64)
def sampling_factor_at(r: float, n: int) -> float:
    """:func:`theory.theorem.sampling_factor` at (r, n), evaluated once per pair (sympy is slow)."""
    return float(theorem.sampling_factor().subs({r_symbol: r, n_symbol: n}))


# --------------------------------------------------------------------------- the proof's steps
def descent_coefficients(L_F: float, beta: float, eps: float) -> tuple[float, float]:
    r"""Step 1 with Young's parameter ε (DERIVATIONS.md §10.3): for a = ∇F(u), h = a − e,

    .. math:: -\beta\langle a,h\rangle + \tfrac{L_F\beta^2}2\|h\|^2 \le -\beta\kappa\|a\|^2 + \beta\theta\|e\|^2,
              \quad \kappa = 1 - \tfrac{L_F\beta}2 - \tfrac{|1-L_F\beta|\,\varepsilon}2,
              \quad \theta = \tfrac{|1-L_F\beta|}{2\varepsilon} + \tfrac{L_F\beta}2 .

    ε = 1 is the polarisation of §7 (κ = θ = ½ when L_Fβ ≤ 1).  Returns (κ, θ)."""
    g = abs(1.0 - L_F * beta)
    return 1.0 - L_F * beta / 2.0 - g * eps / 2.0, g / (2.0 * eps) + L_F * beta / 2.0


def drift_rms(rc: RoundConstants, beta: float, tau: int, n: int) -> list[float]:
    r"""Step 3 (DERIVATIONS.md §10.3): y_t ≥ (E Ξ_t)^{1/2}, the RMS distance of the users' iterates from their
    average after t local steps, t = 0..τ, from the one-step recursion

    .. math:: y_0 = 0,\qquad y_{t+1}^2 = \big(q\,y_t + \beta(\gamma_F + b_{rms})\big)^2 + \beta^2(1-\tfrac1n)s^2,
              \qquad q = \|I-\beta M\| + \beta\gamma_{HF}

    (its closed-form solution is bounded by :func:`drift_gronwall`)."""
    q = rc.contraction + beta * rc.gamma_HF
    G = rc.gamma_F + rc.b_rms
    noise = beta**2 * (1.0 - 1.0 / n) * rc.s2
    ys = [0.0]
    for _ in range(tau):
        ys.append(math.sqrt((q * ys[-1] + beta * G) ** 2 + noise))
    return ys


def drift_gronwall(rc: RoundConstants, beta: float, t: int, n: int) -> float:
    r"""The discrete Gronwall bound on :func:`drift_rms`'s y_t² (DERIVATIONS.md §10.3): with Q = max(q, 1),
    G = γ_F + b_rms, σ² = (1 − 1/n)s²,

    .. math:: y_t^2 \le Q^{2t}\,\beta^2\big(tG + \sqrt{t}\,\sigma\big)^2
              \le e^{2\beta t(\lambda^- + \gamma_{HF})}\,\beta^2\big(tG + \sqrt t\,\sigma\big)^2

    (induction: (Q y_t + βG)² + β²σ² ≤ Q^{2(t+1)}β²[((t+1)G + √t σ)² + σ²] ≤ Q^{2(t+1)}β²((t+1)G + √(t+1) σ)²),
    finite for every β (the §7 recursion's 1/Γ is not)."""
    q = max(rc.contraction + beta * rc.gamma_HF, 1.0)
    G = rc.gamma_F + rc.b_rms
    return q ** (2 * t) * beta**2 * (t * G + math.sqrt(t * (1.0 - 1.0 / n) * rc.s2)) ** 2


def gradient_error(rc: RoundConstants, y: float) -> float:
    r"""Step 2 (DERIVATIONS.md §10.3), the coupling of the users' average to their iterates:
    :math:`\mathbb E\|\nabla F(u_t) - h_t\|^2 \le (\gamma_{HF}\,y_t + b_{mean})^2`: since Σ_i(w^i − u) = 0,
    (1/n)Σ_i[∇F_i(w^i) − ∇F_i(u)] = (1/n)Σ_i(M_i − ∇²F(u))(w^i − u), whose norm is ≤ γ_HF Ξ^{1/2}
    (Cauchy–Schwarz): the Hessian dissimilarity replaces §7's L_F."""
    return (rc.gamma_HF * y + rc.b_mean) ** 2


@dataclass(frozen=True)
class DataDependentBound:
    r"""Value of the data-dependent bound on Φ_K and its terms (names as :data:`TERMS`), with the Young
    parameters used: ``eps`` (Step 1) and ``eps_avg`` (Step 6); ``kappa``, ``theta`` of Step 1."""

    value: float
    terms: dict[str, float] = field(default_factory=dict)
    eps: float = math.nan
    eps_avg: float = math.nan
    kappa: float = math.nan
    theta: float = math.nan


#: the terms of :func:`data_dependent_bound`, in printing order
TERMS = ("optimization", "stochastic gradient", "gradient error (drift + bias)", "client sampling")


@dataclass(frozen=True)
class RoundAverages:
    """Round averages over the first K rounds: s̄², Ē (gradient error), mean y_τ², mean Ȳ = (1/τ)Σ_{t<τ} y_t²."""

    K: int
    s2: float
    err: float
    y_tau2: float
    ybar: float


def _round_averages(region: RegionConstants) -> list[RoundAverages]:
    """:class:`RoundAverages` of the first K rounds for every K = 1..len(rounds) (prefix sums: one pass)."""
    out, acc = [], [0.0, 0.0, 0.0, 0.0]
    for k, rc in enumerate(region.rounds, start=1):
        ys = drift_rms(rc, region.beta, region.tau, region.n)
        acc[0] += rc.s2
        acc[1] += sum(gradient_error(rc, y) for y in ys[:-1]) / region.tau
        acc[2] += ys[-1] ** 2
        acc[3] += sum(y * y for y in ys[:-1]) / region.tau
        out.append(RoundAverages(k, *(a / k for a in acc)))
    return out


def step_terms(
    region: RegionConstants, avg: RoundAverages, kappa: float, theta: float
) -> tuple[dict[str, float], float]:
    r"""Step 5's terms of U for the first K = ``avg.K`` rounds (names as :data:`TERMS`) and Step 6's
    :math:`V = L_F^2 c\,\bar Y` (DERIVATIONS.md §10.3), with Step 1's κ, θ:

    .. math:: U = \frac1\kappa\Big[\frac{\Delta_0}{\beta\tau K} + \frac{L_F\beta\bar s^2}{2n} + \theta\bar E
              + \frac{L_F c\,\overline{y_\tau^2}}{2\beta\tau}\Big]"""
    L, beta, tau, K = region.L_F, region.beta, region.tau, avg.K
    c = region.c
    parts = {
        "optimization": region.Delta0 / (beta * tau * K) / kappa,
        "stochastic gradient": L * beta * avg.s2 / (2 * region.n) / kappa,
        "gradient error (drift + bias)": theta * avg.err / kappa,
        "client sampling": L * c * avg.y_tau2 / (2 * beta * tau) / kappa,
    }
    return parts, L**2 * c * avg.ybar


def _bound(region: RegionConstants, avg: RoundAverages, eps: float) -> DataDependentBound:
    r"""Steps 4–6 (DERIVATIONS.md §10.3) for the first K = ``avg.K`` rounds at Step 1's parameter ``eps``:

    .. math::
        U = \frac1\kappa\Big[\frac{\Delta_0}{\beta\tau K} + \frac{L_F\beta\bar s^2}{2n} + \theta\bar E
            + \frac{L_F c\,\overline{y_\tau^2}}{2\beta\tau}\Big],\qquad
        \Phi_K \le \big(\sqrt U + \sqrt{L_F^2 c\,\bar Y}\big)^2

    (the second: Step 6's Young parameter ε₂ = (L_F²cȲ/U)^{1/2}, optimal).  ``inf`` when κ ≤ 0."""
    kappa, theta = descent_coefficients(region.L_F, region.beta, eps)
    if kappa <= 0:
        return DataDependentBound(math.inf, dict.fromkeys(TERMS, math.inf), eps, math.nan, kappa, theta)
    parts, V = step_terms(region, avg, kappa, theta)
    U = sum(parts.values())
    eps_avg = math.sqrt(V / U) if U > 0 and V > 0 else 0.0
    terms = {k: (1 + eps_avg) * v for k, v in parts.items()}
    if V > 0:
        terms["client sampling"] += (1 + 1 / eps_avg) * V if eps_avg > 0 else math.inf
    return DataDependentBound(sum(terms.values()), terms, eps, eps_avg, kappa, theta)


def bound_at(region: RegionConstants, K: int, eps: float) -> DataDependentBound:
    """The bound for the first ``K`` rounds at Step 1's parameter ``eps`` (:func:`_bound`)."""
    _check_K(region, K)
    return _bound(region, _round_averages(region)[K - 1], eps)


def _check_K(region: RegionConstants, K: int) -> None:
    if not 1 <= K <= len(region.rounds):
        raise ValueError(f"K={K} is out of range: the region has {len(region.rounds)} rounds")


def _best(region: RegionConstants, avg: RoundAverages) -> DataDependentBound:
    r"""Step 1's ε minimising :func:`_bound` (every ε with κ > 0 gives a valid bound; DERIVATIONS.md §10.3):
    a log grid on (0, ε_max), ε_max = (2 − L_Fβ)/|1 − L_Fβ| (κ > 0), refined by golden section."""
    g = abs(1.0 - region.L_F * region.beta)
    hi = (2.0 - region.L_F * region.beta) / g if g > 0 else 1e12
    lo = hi * 1e-12
    grid = [lo * (hi / lo) ** (j / _EPS_GRID) for j in range(1, _EPS_GRID)]
    values = [_bound(region, avg, e).value for e in grid]
    j = min(range(len(grid)), key=values.__getitem__)
    a, b = grid[max(j - 1, 0)], grid[min(j + 1, len(grid) - 1)]
    phi = (math.sqrt(5.0) - 1.0) / 2.0
    while b - a > _EPS_RTOL * b:
        x1, x2 = b - phi * (b - a), a + phi * (b - a)
        if _bound(region, avg, x1).value <= _bound(region, avg, x2).value:
            b = x2
        else:
            a = x1
    refined = _bound(region, avg, (a + b) / 2.0)
    return refined if refined.value <= values[j] else _bound(region, avg, grid[j])


def data_dependent_bound(region: RegionConstants, K: int | None = None) -> DataDependentBound:
    r"""The data-dependent bound on Φ_K for the first ``K`` rounds (default: all of ``region.rounds``), with
    Step 1's ε chosen optimally (grid and golden section) and Step 6's in closed form.  Provenance: derived,
    DERIVATIONS.md §10."""
    K = len(region.rounds) if K is None else K
    _check_K(region, K)
    return _best(region, _round_averages(region)[K - 1])


def bound_curve(region: RegionConstants, Ks: Sequence[int]) -> list[float]:
    """:func:`data_dependent_bound` at every K of ``Ks`` (a figure's curve; one pass over the rounds)."""
    for K in Ks:
        _check_K(region, K)
    averages = _round_averages(region)
    return [_best(region, averages[K - 1]).value for K in Ks]


__all__ = [
    "TERMS",
    "DataDependentBound",
    "RegionConstants",
    "RoundAverages",
    "RoundConstants",
    "bias_exact_region",
    "bound_at",
    "bound_curve",
    "data_dependent_bound",
    "descent_coefficients",
    "drift_gronwall",
    "drift_rms",
    "gradient_error",
    "hf_error_region",
    "inner_bias_region",
    "outer_mse_region",
    "sampling_factor_at",
    "step_terms",
    "variance_exact_region",
    "variance_hf_region",
]
