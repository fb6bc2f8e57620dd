r"""What a numeric check harness calls: numbers of every bound, with provenance.

Typical use (``synthetic/`` builds ``perfedavg check`` on this)::

    from theory.checks_api import lemma_bounds, compare, format_rows
    bounds = lemma_bounds(constants, g_norm=1.3, tv=0.2, L_theta=2.0, w1=0.1, rho_theta=0.5)
    rows = [compare(bounds["L_F"][i], measured_LF) for i in range(2)]   # recalled, derived
    print(format_rows(rows))

Keys of :func:`lemma_bounds` (each maps to a tuple of :class:`BoundValue`, recalled
form first when there is one): ``L_F``, ``bias``, ``sigma_F2``, ``gamma_F2`` (the four
lemmas of docs/paper.md §4), ``bias_fo``, ``mse_fo``, ``bias_hf``, ``mse_hf`` (the FO / HF
direction against ∇F_i), ``hf_hvp_error`` (needs ``g_norm``), ``gamma_G2_tv``,
``gamma_H2_tv`` (need ``tv``), ``gamma_G2_w1`` (needs ``w1``, ``L_theta``),
``gamma_H2_w1`` (needs ``w1``, ``rho_theta``).  What each bounds is its ``meaning``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from . import distances, lemmas, theorem
from .constants import Constants
from .statement import Statement

VERDICT_HOLDS = "HOLDS"
VERDICT_FAILS = "FAILS"


@dataclass(frozen=True)
class BoundValue:
    r"""A statement evaluated on constants: ``value`` is the bound (a float; ``inf`` if
    its hypothesis fails).  ``meaning`` says what is bounded, e.g.
    "E‖∇̃F_i(w) − ∇F_i(w)‖² ≤ value"."""

    key: str
    name: str
    ref: str
    provenance: str
    value: float
    meaning: str
    formula: str

    @property
    def label(self) -> str:
        """``"name [provenance]"``."""
        return f"{self.name} [{self.provenance}]"


def evaluate(statement: Statement, constants: Constants, **extra: float) -> BoundValue:
    r"""``statement`` evaluated on ``constants`` (and extra symbols) as a :class:`BoundValue`:
    value = expr(constants, **extra), e.g. L_F = L(1+αL)² + αρB for the derived smoothness."""
    return BoundValue(
        statement.key,
        statement.name,
        statement.ref,
        statement.provenance,
        float(statement(constants, **extra)),
        statement.meaning,
        str(statement.expr),
    )


def lemma_statements() -> dict[str, tuple[Statement, ...]]:
    r"""The statements behind each key of :func:`lemma_bounds`, recalled form first (e.g. ``"L_F"``: L_F = 4L + αρB
    [recalled], L_F = L(1+αL)² + αρB [derived]); a check that keeps its inputs re-judges them on a changed map."""
    return {
        "L_F": (lemmas.smoothness_recalled(), lemmas.smoothness_derived()),
        "bias": (lemmas.bias_recalled(), lemmas.bias_derived()),
        "sigma_F2": (lemmas.variance_recalled(), lemmas.variance_derived()),
        "gamma_F2": (lemmas.dissimilarity_recalled(), lemmas.dissimilarity_derived()),
        "bias_fo": (lemmas.direction_bias("fo"),),
        "mse_fo": (lemmas.direction_mse("fo"),),
        "bias_hf": (lemmas.direction_bias("hf"),),
        "mse_hf": (lemmas.direction_mse("hf"),),
        "hf_hvp_error": (lemmas.hf_hvp_error(),),
        "gamma_G2_tv": (distances.tv_gradient_bound(),),
        "gamma_H2_tv": (distances.tv_hessian_bound(),),
        "gamma_G2_w1": (distances.w1_gradient_bound(),),
        "gamma_H2_w1": (distances.w1_hessian_bound(),),
    }


#: the former private name, still read by ``perfedavg bounds``
_lemma_statements = lemma_statements


def lemma_bounds(
    constants: Constants,
    *,
    g_norm: float | None = None,
    tv: float | None = None,
    w1: float | None = None,
    L_theta: float | None = None,
    rho_theta: float | None = None,
) -> dict[str, tuple[BoundValue, ...]]:
    r"""Numeric value of every lemma-level bound on ``constants`` (a ``Constants``).

    Keyword arguments (optional; a statement whose value they supply is left out when
    they are ``None``): ``g_norm`` ‖g‖ for the HF error ρδ‖g‖²/2; ``tv`` the RMS over
    users of TV(p_i, p̄); ``w1`` the RMS of W1(p_i, p̄); ``L_theta``, ``rho_theta`` the
    Lipschitz constants in θ of ∇l and ∇²l.

    Returns ``{key: (BoundValue, ...)}`` (recalled form first, then derived); see the
    module docstring for the keys.  Formulas: L_F = L(1+αL)² + αρB (derived) vs 4L + αρB
    (recalled), etc., as in :mod:`theory.lemmas` and :mod:`theory.distances`.
    """
    extra = {
        k: v
        for k, v in dict(g_norm=g_norm, tv=tv, w1=w1, L_theta=L_theta, rho_theta=rho_theta).items()
        if v is not None
    }
    have = set(constants.as_dict()) | set(extra)
    out: dict[str, tuple[BoundValue, ...]] = {}
    for key, sts in lemma_statements().items():
        vals = tuple(evaluate(s, constants, **extra) for s in sts if set(s.arg_names) <= have)
        if vals:
            out[key] = vals
    return out


@dataclass(frozen=True)
class ConvergenceReport:
    r"""Both versions of the convergence bound on (1/(τK))ΣΣE‖∇F(w̄_{k+1,t})‖² on constants.

    ``derived``: value of the explicit bound (``inf`` if 6β²τ²L_F² ≥ 1; NaN if a constant it
    needs is missing, :meth:`theory.constants.Constants.with_missing`);
    ``derived_terms``: {term: value}; ``recalled_shape``/``recalled_terms``: the paper's
    shape with O(1) = 1 (not a bound); ``condition``: {"recalled": bool, "derived": bool};
    ``beta_max``: {"recalled": 1/(10τL_F^rec), "derived": 1/(√6 τL_F)}.
    """

    variant: str
    derived: float
    derived_terms: dict[str, float] = field(default_factory=dict)
    recalled_shape: float = math.nan
    recalled_terms: dict[str, float] = field(default_factory=dict)
    condition: dict[str, bool] = field(default_factory=dict)
    beta_max: dict[str, float] = field(default_factory=dict)

    @staticmethod
    def dominant(terms: dict[str, float]) -> str:
        """Name of the largest term."""
        return max(terms, key=lambda k: terms[k]) if terms else ""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary (``inf`` becomes the string "inf")."""

        def f(x: float) -> float | str:
            return x if math.isfinite(x) else str(x)

        return {
            "variant": self.variant,
            "derived": {
                "provenance": "derived",
                "value": f(self.derived),
                "terms": {k: f(v) for k, v in self.derived_terms.items()},
                "dominant": self.dominant(self.derived_terms),
                "valid": self.condition.get("derived", False),
            },
            "recalled_shape": {
                "provenance": "recalled",
                "value": f(self.recalled_shape),
                "terms": {k: f(v) for k, v in self.recalled_terms.items()},
                "dominant": self.dominant(self.recalled_terms),
                "note": "paper's shape with every O(1) set to 1; not an upper bound",
            },
            "condition": dict(self.condition),
            "beta_max": {k: f(v) for k, v in self.beta_max.items()},
        }


def convergence(constants: Constants, variant: str = "exact") -> ConvergenceReport:
    r"""Evaluate the derived bound Φ_K ≤ (1+√c)[2Δ₀/(βτK) + L_Fβs²/n + 2b² + 2L_F²Q̄ +
    L_F c Q_τ/(βτ)] + (c+√c)L_F²Q̄ and the recalled shape for ``variant`` ("exact",
    "fo", "hf") on ``constants``; see :class:`ConvergenceReport`."""
    derived = theorem.convergence_bound_derived(variant)
    shape = theorem.convergence_bound_recalled(variant)
    cond = theorem.condition_ok(constants, variant)
    if math.isnan(theorem.step_size_derived()(constants)):  # a constant is missing (NaN): not evaluable,
        dterms = dict.fromkeys(theorem.DERIVED_TERMS, math.nan)  # not "condition fails"
        dval = math.nan
    elif cond["derived"]:
        dterms = {k: float(v) for k, v in derived.evaluate_terms(constants).items()}  # scalar constants: floats
        dval = float(sum(dterms.values()))
    else:
        dterms = dict.fromkeys(theorem.DERIVED_TERMS, math.inf)
        dval = math.inf
    rterms = {k: float(v) for k, v in shape.evaluate_terms(constants).items()}
    return ConvergenceReport(
        variant=lemmas._check_variant(variant),
        derived=dval,
        derived_terms=dterms,
        recalled_shape=float(sum(rterms.values())),
        recalled_terms=rterms,
        condition=cond,
        beta_max={
            "recalled": float(theorem.step_size_recalled()(constants)),
            "derived": float(theorem.step_size_derived()(constants)),
        },
    )


def fedavg_convergence(constants: Constants) -> float:
    r"""Derived FedAvg bound (α = 0, batch D) on constants: :func:`theory.theorem.fedavg_bound`
    (``inf`` if 6β²τ²L² ≥ 1)."""
    if 6 * (constants.beta * constants.tau * constants.L) ** 2 >= 1:
        return math.inf
    return float(theorem.fedavg_bound()(constants))


# --------------------------------------------------------------------------- rows
def upper_bound_holds(measured: float, bound: float, measured_high: float | None = None) -> bool:
    r"""The project's one verdict rule for "measured quantity ≤ bound" (every check uses it).

    HOLDS iff :math:`U \le \text{bound}`, where U is the upper confidence limit of the
    measurement (``measured_high``; the point estimate itself when the measurement is exact,
    e.g. a supremum over sampled pairs or a quantity computed from full data).

    Why the upper limit: the check *certifies* a bound, so "HOLDS" must be what the data
    show, not merely what they fail to refute.  With U the upper end of a (1 − a) interval,
    HOLDS is a one-sided test that rejects "measured > bound" at level a/2; a measurement
    whose interval straddles the bound is not evidence that the bound holds and is reported
    as FAILS (rerun with more samples to resolve it).  Using the lower end instead
    (FAILS only on a significant violation) would let a wrong bound pass whenever the
    Monte Carlo noise is large.  The printed margin bound / U is consistent with it:
    HOLDS ⇔ margin ≥ 1.
    """
    upper = measured if measured_high is None else measured_high
    return bool(upper <= bound)


@dataclass(frozen=True)
class CheckRow:
    r"""One line of a check: measured ≤ bound?  ``ratio`` = measured / bound; the verdict
    is :func:`upper_bound_holds` (``measured_high``, an upper confidence limit, when given)."""

    statement: str
    provenance: str
    measured: float
    bound: float
    measured_high: float | None = None

    @property
    def ratio(self) -> float:
        """measured / bound (``inf`` for a zero bound and positive measurement)."""
        if self.bound == 0:
            return 0.0 if self.measured == 0 else math.inf
        return self.measured / self.bound

    @property
    def holds(self) -> bool:
        """:func:`upper_bound_holds`: measured (or its upper confidence limit) ≤ bound."""
        return upper_bound_holds(self.measured, self.bound, self.measured_high)

    @property
    def verdict(self) -> str:
        """ "HOLDS" or "FAILS"."""
        return VERDICT_HOLDS if self.holds else VERDICT_FAILS


def compare(bound: BoundValue, measured: float, measured_high: float | None = None) -> CheckRow:
    r"""A :class:`CheckRow` for ``measured`` ≤ ``bound.value``."""
    return CheckRow(
        bound.label,
        bound.provenance,
        float(measured),
        float(bound.value),
        None if measured_high is None else float(measured_high),
    )


def format_rows(rows: Iterable[CheckRow]) -> str:
    r"""Text table: statement, provenance, measured, bound, ratio = measured/bound, verdict."""
    head = f"{'statement':44s} {'provenance':10s} {'measured':>11s} {'bound':>11s} {'ratio':>7s}  verdict"
    lines = [head]
    for r in rows:
        lines.append(
            f"{r.statement[:44]:44s} {r.provenance:10s} {r.measured:11.4g} {r.bound:11.4g} {r.ratio:7.3f}  {r.verdict}"
        )
    return "\n".join(lines)


def must_hold(row: CheckRow) -> bool:
    r"""True when a failure of ``row`` (measured ≤ bound is false) is an error (provenance "sure" or "derived");
    a failing "recalled" statement is a finding to report, not an error."""
    return row.provenance in ("sure", "derived")
