r"""Convergence of Per-FedAvg (docs/paper.md §5, Theorem 4.5 / Corollary 4.6) and FedAvg.

Two versions of the bound on the quantity

.. math:: \Phi_K = \frac{1}{\tau K}\sum_{k=0}^{K-1}\sum_{t=0}^{\tau-1}
          \mathbb{E}\,\|\nabla F(\bar w_{k+1,t})\|^2,
          \qquad \bar w_{k+1,t} = \frac{1}{rn}\sum_{i\in\mathcal{A}_k} w^i_{k+1,t},
          \quad \bar w_{k+1,0} = w_k,

are kept side by side:

* :func:`convergence_bound_recalled` — the paper's *shape* (docs/paper.md §5), with every
  hidden O(1) constant and every "(…)" factor set to 1.  Not a bound: a shape.
* :func:`convergence_bound_derived` — an explicit-constant upper bound derived in
  ``theory/DERIVATIONS.md`` §7, valid under the step-size condition
  6β²τ²L_F² < 1 (:func:`step_size_derived`).  This is what a numeric check compares
  a measurement with.

:func:`fedavg_bound` is the same derivation for α = 0 (FedAvg, local SGD on f), and
the derived bound reduces to it as α → 0.

Past 400 lines because the corollary (:class:`Corollary`) is the theorem's bound with τ and β chosen
for K: kept with the terms it substitutes into, rather than split from them.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from dataclasses import dataclass

import sympy as sp

from perfedavg.algorithms import ALGORITHM_NAMES
from perfedavg.errors import UsageError

from . import lemmas
from .constants import Constants
from .statement import Statement
from .symbols import D, F0_gap, K, L, alpha, beta, gamma_G, n, r, sigma_G, tau

_REF5 = "docs/paper.md §5 (Theorem 4.5)"

#: the corollary's exponent of τ(K) = K^{1/3}
_ONE_THIRD = sp.Rational(1, 3)

#: names of the terms of the derived bound, in printing order
DERIVED_TERMS = ("optimization", "stochastic gradient", "client sampling", "local drift", "bias floor")


def sampling_factor() -> sp.Expr:
    r"""Variance factor of sampling r·n of n users uniformly without replacement:

    .. math:: c_r = \frac{1-r}{r\,(n-1)}

    so that E‖(1/(rn))Σ_{i∈A} x_i − x̄‖² = c_r·(1/n)Σ_i‖x_i − x̄‖².  ``r`` is r, ``n``
    is n; written with max(n−1, 1) so that n = 1 (then r = 1) gives 0.
    """
    return (1 - r) / (r * sp.Max(n - 1, 1))


def local_sgd_bound(LF: sp.Expr, b: sp.Expr, s2: sp.Expr, g2: sp.Expr) -> tuple[tuple[str, sp.Expr], ...]:
    r"""Terms of the explicit bound on Φ_K for local steps w ← w − β d_i with
    ‖E d_i − ∇F_i‖ ≤ b, E‖d_i − ∇F_i‖² ≤ s², F_i L_F-smooth, (1/n)Σ‖∇F_i − ∇F‖² ≤ γ²:

    .. math::
        c = \tfrac{1-r}{r(n-1)},\quad \Gamma = 1 - 6\beta^2\tau^2L_F^2,\quad
        \bar Q = \tfrac{\beta^2(\tau-1)\,[s^2 + (2\tau-1)(\gamma^2+b^2)]}{\Gamma},\quad
        Q_\tau = \tfrac{\beta^2\tau\,[2s^2 + 6\tau(\gamma^2+b^2)]}{\Gamma}

        \Phi_K \le (1+\sqrt c)\Big[\tfrac{2\Delta_0}{\beta\tau K} + \tfrac{L_F\beta s^2}{n}
            + 2b^2 + 2L_F^2\bar Q + \tfrac{L_F c\,Q_\tau}{\beta\tau}\Big] + (c+\sqrt c)L_F^2\bar Q

    Arguments ``LF`` (L_F), ``b``, ``s2`` (s²), ``g2`` (γ²) are sympy expressions;
    ``beta`` β, ``tau`` τ, ``K``, ``r``, ``n``, ``F0_gap`` Δ₀ enter as symbols.
    Returns ``((term name, expr), ...)`` in the order of :data:`DERIVED_TERMS`.
    Derivation: DERIVATIONS.md §7.
    """
    c = sampling_factor()
    sc = sp.sqrt(c)
    den = 1 - 6 * beta**2 * tau**2 * LF**2
    het = g2 + b**2
    qbar = beta**2 * (tau - 1) * (s2 + (2 * tau - 1) * het) / den
    qtau = beta**2 * tau * (2 * s2 + 6 * tau * het) / den
    one = 1 + sc
    return (
        ("optimization", one * 2 * F0_gap / (beta * tau * K)),
        ("stochastic gradient", one * LF * beta * s2 / n),
        ("client sampling", one * LF * c * qtau / (beta * tau) + (c + sc) * LF**2 * qbar),
        ("local drift", one * 2 * LF**2 * qbar),
        ("bias floor", one * 2 * b**2),
    )


def _sum(terms: Iterable[tuple[str, sp.Expr]]) -> sp.Expr:
    return sp.Add(*[e for _, e in terms])


@functools.cache
def convergence_bound_derived(variant: str = "exact") -> Statement:
    r"""Explicit-constant bound on Φ_K for Per-FedAvg (``variant`` = "exact", "fo" or "hf"):
    :func:`local_sgd_bound` with

    * L_F = L(1+αL)² + αρB                     (:func:`theory.lemmas.smoothness_derived`)
    * γ² = (αBγ_H + (1+αL)²γ_G)²               (:func:`theory.lemmas.dissimilarity_derived`)
    * b, s² of the variant's direction          (:func:`theory.lemmas.direction_bias`,
      :func:`theory.lemmas.direction_mse`)

    Valid when 6β²τ²L_F² < 1 (:func:`step_size_derived`); the evaluator returns a
    meaningless number otherwise, so use :func:`theory.checks_api.convergence` which
    returns ``inf`` then.  Symbols: all fields of ``Constants``.  Provenance: derived,
    DERIVATIONS.md §7.
    """
    variant = lemmas._check_variant(variant)
    terms = local_sgd_bound(
        lemmas.smoothness_derived().expr,
        lemmas.direction_bias(variant).expr,
        lemmas.direction_mse(variant).expr,
        lemmas.dissimilarity_derived().expr,
    )
    return Statement(
        "bound_" + variant,
        f"convergence bound, {ALGORITHM_NAMES[variant]}",
        "theory/DERIVATIONS.md §7 (explicit form of " + _REF5 + ")",
        "derived",
        _sum(terms),
        "(1/(τK)) Σ_k Σ_t E‖∇F(w̄_{k+1,t})‖² ≤ value",
        terms,
    )


@functools.cache
def fedavg_bound() -> Statement:
    r"""FedAvg-type bound (α = 0: τ local SGD steps on f with batch D): :func:`local_sgd_bound`
    with L_F = L, b = 0, s² = σ_G²/D, γ² = γ_G².  Bounds (1/(τK))ΣΣ E‖∇f(w̄_{k+1,t})‖².

    Symbols: ``L`` L, ``sigma_G`` σ_G, ``D`` D, ``gamma_G`` γ_G, and β, τ, K, r, n, Δ₀.
    Per-FedAvg's derived bound at α = 0 equals this with D' in place of D.
    Provenance: derived, DERIVATIONS.md §7.
    """
    terms = local_sgd_bound(L, sp.Integer(0), sigma_G**2 / D, gamma_G**2)
    return Statement(
        "bound_fedavg",
        "convergence bound, FedAvg (α = 0)",
        "theory/DERIVATIONS.md §7",
        "derived",
        _sum(terms),
        "(1/(τK)) Σ_k Σ_t E‖∇f(w̄_{k+1,t})‖² ≤ value",
        terms,
    )


@functools.cache
def convergence_bound_recalled(variant: str = "exact") -> Statement:
    r"""The paper's bound in its recalled *shape* (docs/paper.md §5), every O(1) and "(…)" set to 1:

    .. math::
        \frac{4\Delta_0}{\beta\tau K} + \frac{\beta L_F\sigma_F^2}{rn\tau}
        + \beta L_F\frac{1-r}{r(n-1)}\gamma_F^2 + \beta^2\tau^2L_F^2(\sigma_F^2+\gamma_F^2)
        + \frac{\alpha^2L^2\sigma_G^2}{D}\;[+\;\alpha^2L^2B^2 \text{ (FO)}]
        \;[+\;(\alpha\rho\delta B^2)^2 \text{ (HF)}]

    with the *recalled* L_F, σ_F², γ_F².  A shape to compare slopes with, not an upper
    bound.  Symbols: all fields of ``Constants``.  Provenance: recalled.
    """
    variant = lemmas._check_variant(variant)
    LF = lemmas.smoothness_recalled().expr
    s2 = lemmas.variance_recalled().expr
    g2 = lemmas.dissimilarity_recalled().expr
    terms = [
        ("optimization", 4 * F0_gap / (beta * tau * K)),
        ("stochastic gradient", beta * LF * s2 / (r * n * tau)),
        ("client sampling", beta * LF * sampling_factor() * g2),
        ("local drift", beta**2 * tau**2 * LF**2 * (s2 + g2)),
        ("bias floor", alpha**2 * L**2 * sigma_G**2 / D),
    ]
    if variant == "fo":
        terms.append(("FO term", lemmas.fo_term_recalled().expr))
    if variant == "hf":
        terms.append(("HF term", lemmas.hf_term_recalled().expr))
    return Statement(
        "shape_" + variant,
        f"convergence shape, {ALGORITHM_NAMES[variant]}",
        _REF5,
        "recalled",
        _sum(terms),
        "shape of the bound on (1/(τK)) Σ_k Σ_t E‖∇F(w̄_{k+1,t})‖² (O(1) set to 1)",
        tuple(terms),
    )


@functools.cache
def step_size_recalled() -> Statement:
    r"""Step-size condition of Theorem 4.5, recalled: :math:`\beta \le 1/(10\tau L_F)`
    with the recalled L_F = 4L + αρB.  The value is the largest allowed β.

    Symbols: ``tau`` τ, ``L`` L, ``alpha`` α, ``rho`` ρ, ``B`` B.  Provenance: recalled.
    """
    return Statement(
        "beta_max",
        "step-size condition β ≤ 1/(10τL_F)",
        _REF5,
        "recalled",
        1 / (10 * tau * lemmas.smoothness_recalled().expr),
        "β ≤ value",
    )


@functools.cache
def step_size_derived() -> Statement:
    r"""Step-size condition of the derived bound: :math:`\beta < 1/(\sqrt{6}\,\tau L_F)`
    (i.e. 6β²τ²L_F² < 1, which also gives βL_F < 1), L_F = L(1+αL)² + αρB.  The value is
    the supremum of allowed β.  The recalled β ≤ 1/(10τL_F) implies it.

    Symbols: ``tau`` τ, ``L`` L, ``alpha`` α, ``rho`` ρ, ``B`` B.  Provenance: derived,
    DERIVATIONS.md §7.
    """
    return Statement(
        "beta_max",
        "step-size condition 6β²τ²L_F² < 1",
        "theory/DERIVATIONS.md §7",
        "derived",
        1 / (sp.sqrt(6) * tau * lemmas.smoothness_derived().expr),
        "β < value",
    )


# --------------------------------------------------------------------------- corollary
@dataclass(frozen=True)
class Corollary:
    r"""The derived corollary: β and τ as functions of K, and the rate it gives.

    * τ(K) = K^{1/3} (use ⌊K^{1/3}⌋ ≥ 1 in practice; a smaller τ only helps the condition);
    * β(K) = sqrt(2Δ₀ / (τ K C)),  C = L_F s²/n + L_F c (2s² + 6τ(γ² + b²)),
      the β that minimises the optimization term 2Δ₀/(βτK) plus the terms linear in β
      (:attr:`beta_star`, solved with ``sympy.solve``);
    * τ(K) = K^{1/3} is a *choice*, not an optimum: with c·(γ² + b²) > 0 any τ gives the
      K^{-1/2} rate, and K^{1/3} is what gives K^{-2/3} when c·(γ² + b²) = 0;
    * the step-size condition β ≤ 1/(10τL_F) (so also 6β²τ²L_F² < 1) holds for every
      K ≥ K₀ (:meth:`threshold_K`), because Kτ⁻¹C(τ) increases with K;
    * the bound minus its floor (1+√c)·2b² decays like K^e with
      e = −1/2 if c·(γ² + b²) > 0 (partial participation with heterogeneity or bias),
      e = −2/3 otherwise (:meth:`claimed_exponent`).

    ``variant`` is "exact", "fo" or "hf".  Provenance: derived (docs/paper.md's recalled
    corollary gives no formula beyond "polynomial in 1/ε").
    """

    variant: str = "exact"
    tau_exponent: sp.Rational = _ONE_THIRD
    provenance: str = "derived"
    ref: str = "theory/DERIVATIONS.md §8 (explicit form of docs/paper.md §5, Corollary 4.6)"

    # pieces ----------------------------------------------------------------------
    def _pieces(self) -> tuple[sp.Expr, sp.Expr, sp.Expr, sp.Expr]:
        v = lemmas._check_variant(self.variant)
        LF = lemmas.smoothness_derived().expr
        b = lemmas.direction_bias(v).expr
        s2 = lemmas.direction_mse(v).expr
        g2 = lemmas.dissimilarity_derived().expr
        return LF, b, s2, g2

    @property
    def tau_of_K(self) -> sp.Expr:
        r""":math:`\tau(K) = K^{1/3}` (continuous)."""
        return K**self.tau_exponent

    @property
    def linear_coefficient(self) -> sp.Expr:
        r""":math:`C = L_F s^2/n + L_F c\,(2s^2 + 6\tau(\gamma^2 + b^2))` (τ free)."""
        LF, b, s2, g2 = self._pieces()
        c = sampling_factor()
        return LF * s2 / n + LF * c * (2 * s2 + 6 * tau * (g2 + b**2))

    @property
    def beta_star(self) -> sp.Expr:
        r"""β minimising :math:`g(\beta) = 2\Delta_0/(\beta\tau K) + \beta C` (the optimization term against
        the terms linear in β; τ free), **solved with sympy**: the positive root of
        :math:`g'(\beta) = 0` (``sympy.solve``), which is :math:`\sqrt{2\Delta_0/(\tau K C)}` (tested)."""
        return _solve_beta_star(self.variant)

    @property
    def beta_of_K(self) -> sp.Expr:
        r""":math:`\beta(K) = \sqrt{2\Delta_0/(\tau K C)}` (:attr:`beta_star`) with τ = τ(K) substituted."""
        return self.beta_star.subs(tau, self.tau_of_K)

    def bound_of_K(self) -> Statement:
        r"""The derived bound with β = β(K), τ = τ(K): a function of K and the problem constants."""
        st = convergence_bound_derived(self.variant)
        # substitute β first (it contains τ), then τ
        return st.subs({beta: self.beta_star}).subs(
            {tau: self.tau_of_K}, key="corollary_" + st.key, name="corollary bound"
        )

    def floor(self) -> sp.Expr:
        r"""Limit of the bound as K → ∞: :math:`(1+\sqrt c)\,2b^2`."""
        _, b, _, _ = self._pieces()
        return (1 + sp.sqrt(sampling_factor())) * 2 * b**2

    # numbers ---------------------------------------------------------------------
    def _num(self, expr: sp.Expr, constants: Constants, **subs: float) -> float:
        vals = constants.as_dict()
        vals.update(subs)
        return float(expr.subs({s: vals[s.name] for s in expr.free_symbols}))

    def choose(self, constants: Constants, K_value: float) -> tuple[float, int]:
        r"""(β, τ) for ``K_value`` rounds: τ = max(1, ⌊K^{1/3}⌋), β = sqrt(2Δ₀/(τ K C(τ)))."""
        _need_gap(constants)
        t = max(1, math.floor(float(K_value) ** float(self.tau_exponent) + 1e-9))
        C = self._num(self.linear_coefficient, constants, tau=t)
        if C <= 0:
            return 1 / (10 * t * self._num(lemmas.smoothness_derived().expr, constants)), t
        return math.sqrt(2 * constants.F0_gap / (t * float(K_value) * C)), t

    def condition_holds(self, constants: Constants, K_value: float, continuous: bool = True) -> bool:
        r"""Whether β(K) ≤ 1/(10 τ(K) L_F) (continuous τ = K^{1/3} unless ``continuous=False``)."""
        _need_gap(constants)
        LF = self._num(lemmas.smoothness_derived().expr, constants)
        t: float
        if continuous:
            t = float(K_value) ** float(self.tau_exponent)
            C = self._num(self.linear_coefficient, constants, tau=t)
            if C <= 0:
                return True
            bta = math.sqrt(2 * constants.F0_gap / (t * float(K_value) * C))
        else:
            bta, t = self.choose(constants, K_value)
        return bta <= 1 / (10 * t * LF) * (1 + 1e-12)

    def threshold_K(self, constants: Constants) -> float:
        r"""K₀: the smallest K ≥ 1 with β(K) ≤ 1/(10τ(K)L_F) (continuous τ), by bisection
        on the monotone condition 200Δ₀L_F²τ ≤ K·C(τ), τ = K^{1/3}."""
        if self.condition_holds(constants, 1.0):
            return 1.0
        lo, hi = 1.0, 2.0
        while not self.condition_holds(constants, hi):
            lo, hi = hi, hi * 2
            if hi > 1e300:
                return math.inf
        for _ in range(200):
            mid = math.sqrt(lo * hi)
            if self.condition_holds(constants, mid):
                hi = mid
            else:
                lo = mid
            if hi / lo < 1 + 1e-12:
                break
        return hi

    def claimed_exponent(self, constants: Constants) -> float:
        r"""e in bound − floor ~ K^e: −1/2 if c·(γ² + b²) > 0, else −2/3 (τ = K^{1/3})."""
        _, b, _, g2 = self._pieces()
        c = self._num(sampling_factor(), constants)
        het = self._num(g2 + b**2, constants)
        return -0.5 if c * het > 0 else -2.0 / 3.0

    def measured_exponent(self, constants: Constants, K_values: tuple[float, float] = (1e8, 1e12)) -> float:
        r"""Slope of log(bound − floor) against log K between two large K (numpy)."""
        st = self.bound_of_K()
        fl = self._num(self.floor(), constants)
        ys = [math.log(float(st(constants, K=k)) - fl) for k in K_values]
        return (ys[1] - ys[0]) / (math.log(K_values[1]) - math.log(K_values[0]))


#: the linear coefficient C of the corollary as a plain positive symbol, for solving in β
C_LIN = sp.Symbol("C_lin", positive=True)


@functools.cache
def beta_star_in_C() -> sp.Expr:
    r"""sympy.solve of :math:`\frac{d}{d\beta}\big[2\Delta_0/(\beta\tau K) + \beta C\big] = 0` for β > 0, C the
    symbol ``C_LIN``: :math:`\sqrt{2\Delta_0/(\tau K C)}` (the one stationary point of a convex function of β)."""
    b = sp.Symbol("beta_opt", positive=True)
    roots = [x for x in sp.solve(sp.diff(2 * F0_gap / (b * tau * K) + b * C_LIN, b), b) if x.is_positive is not False]
    if len(roots) != 1:  # pragma: no cover - g is strictly convex in b > 0: one stationary point
        raise RuntimeError(f"expected one positive stationary point, got {roots}")
    return roots[0]


@functools.cache
def _solve_beta_star(variant: str) -> sp.Expr:
    """``Corollary.beta_star``: :func:`beta_star_in_C` with the variant's C substituted."""
    return beta_star_in_C().subs(C_LIN, Corollary(variant).linear_coefficient)


def corollary(variant: str = "exact") -> Corollary:
    r"""The derived corollary (τ = K^{1/3}, β = sqrt(2Δ₀/(τKC))) for ``variant``; see :class:`Corollary`."""
    return Corollary(lemmas._check_variant(variant))


def _need_gap(constants: Constants) -> None:
    if constants.F0_gap <= 0:
        raise UsageError("constant F0_gap must be > 0 for the corollary's choice of beta")


def condition_ok(constants: Constants, variant: str = "exact") -> dict[str, bool]:
    r"""Whether β of ``constants`` meets each step-size condition:
    ``{"recalled": β ≤ 1/(10τL_F^rec), "derived": 6β²τ²L_F² < 1}``."""
    return {
        "recalled": constants.beta <= float(step_size_recalled()(constants)),
        "derived": constants.beta < float(step_size_derived()(constants)),
    }


def all_theorem_statements(variant: str = "exact") -> tuple[Statement, ...]:
    r"""Step-size conditions (recalled, derived), the recalled shape, the derived bound
    for ``variant``, and the FedAvg bound (α = 0)."""
    return (
        step_size_recalled(),
        step_size_derived(),
        convergence_bound_recalled(variant),
        convergence_bound_derived(variant),
        fedavg_bound(),
    )


__all__ = [
    "C_LIN",
    "DERIVED_TERMS",
    "Corollary",
    "all_theorem_statements",
    "beta_star_in_C",
    "condition_ok",
    "convergence_bound_derived",
    "convergence_bound_recalled",
    "corollary",
    "fedavg_bound",
    "local_sgd_bound",
    "sampling_factor",
    "step_size_derived",
    "step_size_recalled",
]
