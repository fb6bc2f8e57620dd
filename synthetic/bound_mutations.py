r"""Mutants of the convergence bound itself, judged on the measured Φ_K of ``perfedavg check --tightness``.

:mod:`synthetic.mutations` plants errors in the lemmas; this module plants them in the bound on
Φ_K = (1/(τK)) Σ_k Σ_t E‖∇F(w̄_{k+1,t})‖² that the lemmas feed: the data-dependent form (:mod:`theory.data_dependent`,
DERIVATIONS.md §10, the proof of §7 with constants over the region the run visits), the one a measurement judges
from both sides: on the quadratic rows with τ = 1 it is E Φ_K within the measurement's precision, where the
worst-case bound of §7 lies orders of magnitude above (§10.4) and only an error as large could show.  Each mutant
names its slip in the vocabulary of §7: a wrong power of K, τ, β or D, a lost factor of c = (1−r)/(r(n−1)), the
drift growing like τ instead of τ², a constant 2.

A :class:`BoundMutant` replaces one of the proof's step functions of :mod:`theory.data_dependent` by a wrapped one
(:func:`planted`): the terms of Step 5 (:func:`theory.data_dependent.step_terms`), the descent step
(``descent_coefficients``), the drift recursion (``drift_rms``), the coupling (``gradient_error``), or the
sampling factor c (``sampling_factor_at``, where the mutant is a substitution into the sympy expression
:func:`theory.theorem.sampling_factor`).  The bound is then recomputed by the unchanged machinery
(:func:`theory.data_dependent.data_dependent_bound`, Step 1's ε re-optimised for the mutated formula) on every row's
stored region, and compared with the row's stored measurement.  A mutant is **killed** on a row when

* the mutated bound lies below the measurement beyond its stated uncertainty: below the lower end of the 95 %
  interval of E Φ_K's estimate (quadratic rows), of the measured Φ_K (logistic), or below φ_∞ (noise-free rows,
  exact) (:func:`interval`; the true bound must lie above the upper end, the table's HOLDS), or
* mutated bound / measured (the table's ``data/meas`` column) exceeds the row's loosening factor
  (:func:`loose_factor`): twice what the true formula leaves on that kind of row.

A mutant the rows cannot see is listed with ``survives_because``: why, and the measurement that would kill it.
``perfedavg check --mutations`` prints the table after the lemma mutants' and fails if a mutant without such a
reason survives.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import sympy as sp

from theory import data_dependent as dd
from theory import theorem
from theory.symbols import n as n_symbol
from theory.symbols import r as r_symbol

from .tightness import TightnessRow

#: the loosening factor of a row, by the start of its name: twice the factor bound / measured that the true
#: data-dependent bound leaves on that kind of row (DERIVATIONS.md §10.4), rounded up; above it, a formula is not
#: the one the proof gives
LOOSE_FACTORS = {
    "K-row": 2.0,
    "flagship (exact)": 2.0,
    "flagship (hf)": 2.0,
    "flagship (fo)": 4.0,
    "logistic": 4.0,
    "noise floor": 3.0,
    "identical users": 5.0,
    "noise-free": 15.0,
}

Plant = Callable[[dict[str, Any]], dict[str, Callable[..., Any]]]
#: the name of the stochastic-gradient term in :data:`theory.data_dependent.TERMS`
STOCH = "stochastic gradient"


def loose_factor(row: TightnessRow) -> float:
    """:data:`LOOSE_FACTORS` of ``row`` (by the start of its name); an unknown row is an error."""
    for prefix, factor in LOOSE_FACTORS.items():
        if row.name.startswith(prefix):
            return factor
    raise KeyError(f"no loosening factor for the row {row.name!r}")


@dataclass(frozen=True)
class BoundMutant:
    """A planted error in the bound: ``plant(config)`` gives the step functions of :mod:`theory.data_dependent`
    to replace (by name) for a row with run configuration ``config``; ``survives_because`` documents a mutant the
    rows cannot see (and what would)."""

    name: str
    term: str
    plant: Plant
    loosening: bool = False
    survives_because: str = ""


@contextmanager
def planted(mutant: BoundMutant | None, config: dict[str, Any]) -> Iterator[None]:
    """Within the block, :mod:`theory.data_dependent` computes with ``mutant``'s step functions (none: the true
    ones); the originals are restored on leaving, also on an error."""
    replacements = mutant.plant(config) if mutant is not None else {}
    saved = {name: getattr(dd, name) for name in replacements}
    try:
        for name, fn in replacements.items():
            setattr(dd, name, fn)
        yield
    finally:
        for name, fn in saved.items():
            setattr(dd, name, fn)


# --------------------------------------------------------------------------- how a mutant changes a step
def _term_times(term: str, factor: Callable[[dd.RegionConstants, int, dict[str, Any]], float]) -> Plant:
    """Step 5's ``term`` (:func:`theory.data_dependent.step_terms`) times ``factor(region, K, config)``."""

    def plant(config: dict[str, Any]) -> dict[str, Callable[..., Any]]:
        original = dd.step_terms

        def step_terms(region, avg, kappa, theta):
            parts, V = original(region, avg, kappa, theta)
            return {**parts, term: parts[term] * factor(region, avg.K, config)}, V

        return {"step_terms": step_terms}

    return plant


def _without_step6(config: dict[str, Any]) -> dict[str, Callable[..., Any]]:
    """Step 6's V = L_F²cȲ (the sampled average's distance from the users' average) dropped."""
    original = dd.step_terms

    def step_terms(region, avg, kappa, theta):
        parts, _ = original(region, avg, kappa, theta)
        return parts, 0.0

    return {"step_terms": step_terms}


def _kappa_without_smoothness(config: dict[str, Any]) -> dict[str, Callable[..., Any]]:
    """Step 1's κ without its −L_Fβ/2 (the L_Fβ²/2‖h‖² of smoothness forgotten)."""
    original = dd.descent_coefficients

    def descent_coefficients(L_F, beta, eps):
        kappa, theta = original(L_F, beta, eps)
        return kappa + L_F * beta / 2.0, theta

    return {"descent_coefficients": descent_coefficients}


def _drift(change: Callable[[Callable[..., list[float]], dd.RoundConstants, float, int, int], list[float]]) -> Plant:
    """The drift recursion (``drift_rms``) replaced by ``change(original, rc, beta, tau, n)``."""

    def plant(config: dict[str, Any]) -> dict[str, Callable[..., Any]]:
        original = dd.drift_rms
        return {"drift_rms": lambda rc, beta, tau, n: change(original, rc, beta, tau, n)}

    return plant


def _heterogeneity_in_quadrature(original, rc: dd.RoundConstants, beta: float, tau: int, n: int) -> list[float]:
    """The users' dissimilarity G = γ_F + b_rms added to y_t² in quadrature each step, like the noise, instead of
    to y_t: y_{t+1}² = q²y_t² + β²(G² + (1−1/n)s²), so y_t² grows like t (§7's drift with τ for τ²)."""
    G = rc.gamma_F + rc.b_rms
    noise = rc.s2 + G**2 / (1.0 - 1.0 / n)
    return original(replace(rc, gamma_F=0.0, b_rms=0.0, s2=noise), beta, tau, n)


def _one_step_more(original, rc: dd.RoundConstants, beta: float, tau: int, n: int) -> list[float]:
    """y_{t+1} where the proof has y_t (the first local step counted as drifted: §7's τ − 1 → τ)."""
    return original(rc, beta, tau + 1, n)[1:]


def _noiseless_drift(original, rc: dd.RoundConstants, beta: float, tau: int, n: int) -> list[float]:
    """The drift recursion without its noise β²(1−1/n)s²."""
    return original(replace(rc, s2=0.0), beta, tau, n)


def _coupling_without_drift(config: dict[str, Any]) -> dict[str, Callable[..., Any]]:
    """Step 2's (γ_HF y_t + b_mean)² without γ_HF y_t: the users' drift forgotten in the gradient error."""
    original = dd.gradient_error
    return {"gradient_error": lambda rc, y: original(rc, 0.0)}


def _sampling(change: Callable[[sp.Expr], sp.Expr]) -> Plant:
    """c = (1−r)/(r(n−1)) (:func:`theory.theorem.sampling_factor`) changed by a sympy substitution, evaluated as
    ``sampling_factor_at`` evaluates the true one; a change that leaves the expression as it is is an error."""

    def plant(config: dict[str, Any]) -> dict[str, Callable[..., Any]]:
        true = theorem.sampling_factor()
        expr = change(true)
        if expr == true:
            raise ValueError(f"the change does not alter c = {true}")

        @functools.lru_cache(maxsize=64)
        def sampling_factor_at(r: float, n: int) -> float:
            return float(expr.subs({r_symbol: r, n_symbol: n}))

        return {"sampling_factor_at": sampling_factor_at}

    return plant


def mutants() -> tuple[BoundMutant, ...]:
    """The documented list (module docstring; DERIVATIONS.md §10.5): six slips of the optimization term,
    one of the descent step, two of the stochastic term, three of the drift, one of the coupling, three of the
    client-sampling terms.  Each is killed on a row of ``perfedavg check --tightness`` (§10.5 names it); a mutant
    the rows cannot see must say why in ``survives_because``, and which row would see it."""
    r = r_symbol
    opt, stoch, drift, csamp = "optimization", "stochastic", "drift", "client sampling"
    return (
        BoundMutant("optimization with 1/K^2 for 1/K", opt, _term_times(opt, lambda g, K, c: 1.0 / K)),
        BoundMutant("optimization with 1/sqrt(K) for 1/K", opt, _term_times(opt, lambda g, K, c: math.sqrt(K)), True),
        BoundMutant("optimization without its 1/tau", opt, _term_times(opt, lambda g, K, c: g.tau), True),
        BoundMutant("optimization with 1/tau^2 for 1/tau", opt, _term_times(opt, lambda g, K, c: 1.0 / g.tau)),
        BoundMutant("optimization without its 1/beta", opt, _term_times(opt, lambda g, K, c: g.beta)),
        BoundMutant("optimization with Delta_0 for 2 Delta_0 (a 2 lost)", opt, _term_times(opt, lambda g, K, c: 0.5)),
        BoundMutant("descent: kappa without -L_F beta/2", "descent", _kappa_without_smoothness),
        BoundMutant("stochastic with 1/D^2 for 1/D", stoch, _term_times(STOCH, lambda g, K, c: 1.0 / c["D"])),
        BoundMutant("stochastic without its 1/n", stoch, _term_times(STOCH, lambda g, K, c: g.n), True),
        BoundMutant("drift with tau for tau^2 (added in quadrature)", drift, _drift(_heterogeneity_in_quadrature)),
        BoundMutant("drift with tau for tau - 1 (one step more)", drift, _drift(_one_step_more), True),
        BoundMutant("drift without its noise", drift, _drift(_noiseless_drift)),
        BoundMutant("gradient error without the drift", "coupling", _coupling_without_drift),
        BoundMutant("client sampling: c without its (1 - r)", csamp, _sampling(lambda e: e.xreplace({1 - r: 1})), True),
        BoundMutant("client sampling: c with r for 1/r", csamp, _sampling(lambda e: e.xreplace({1 / r: r}))),
        BoundMutant("client sampling without Step 6's L_F^2 c Ybar", csamp, _without_step6),
    )


# --------------------------------------------------------------------------- judging
def interval(row: TightnessRow) -> tuple[float, float, float]:
    """(lower end, estimate, upper end) of what the row's bound bounds: the 95 % interval of E Φ_K's estimate where
    there is one, else of the measured Φ_K (Student t, symmetric), or the exact value thrice (noise-free rows)."""
    if math.isfinite(row.expected_high):
        point, high = row.expected, row.expected_high
    else:
        point, high = row.measured, row.measured if math.isnan(row.measured_high) else row.measured_high
    return 2.0 * point - high, point, high


@dataclass(frozen=True)
class RowJudgement:
    """A mutated bound on one row: ``bound`` beside the row's measurement; ``below`` (under its interval) or
    ``loose`` (its factor above :func:`loose_factor`)."""

    row: TightnessRow
    bound: float

    @property
    def mutated(self) -> TightnessRow:
        """The row with the mutated bound in place of the data-dependent one."""
        return replace(self.row, data_dependent=self.bound)

    @property
    def below(self) -> bool:
        return self.bound < interval(self.row)[0]

    @property
    def factor(self) -> float:
        """Mutated bound / measured (the table's ``data/meas``)."""
        return self.mutated.data_factor

    @property
    def loose(self) -> bool:
        return self.factor > loose_factor(self.row)


@dataclass(frozen=True)
class BoundVerdict:
    """A mutant's judgements on every row."""

    mutant: BoundMutant
    judged: tuple[RowJudgement, ...]

    @property
    def below(self) -> tuple[RowJudgement, ...]:
        return tuple(j for j in self.judged if j.below)

    @property
    def loose(self) -> tuple[RowJudgement, ...]:
        return tuple(j for j in self.judged if j.loose)

    @property
    def killed(self) -> bool:
        return bool(self.below or self.loose)

    @property
    def how(self) -> str:
        """``below``, ``loose`` or ``survives`` (below first: a bound below a measurement is wrong, not loose)."""
        return "below" if self.below else "loose" if self.loose else "survives"

    @property
    def deciding(self) -> RowJudgement | None:
        """The most telling row: the smallest factor among the rows it falls below, else the largest factor."""
        if self.below:
            return min(self.below, key=lambda j: j.factor)
        if self.loose:
            return max(self.loose, key=lambda j: j.factor / loose_factor(j.row))
        return None

    def as_dict(self) -> dict[str, Any]:
        return {
            "mutant": self.mutant.name,
            "term": self.mutant.term,
            "loosening": self.mutant.loosening,
            "killed": self.killed,
            "how": self.how,
            "survives_because": self.mutant.survives_because,
            "rows": [
                {"row": j.row.name, "bound": j.bound, "true bound": j.row.data_dependent, "factor": j.factor}
                | {"loose_factor": loose_factor(j.row), "below": j.below, "loose": j.loose}
                for j in self.judged
            ],
        }


def bound_of(row: TightnessRow, mutant: BoundMutant | None = None) -> float:
    """The data-dependent bound of ``row`` recomputed from its stored region, with ``mutant`` planted (none: the
    true bound, equal to ``row.data_dependent``)."""
    if row.region is None:
        raise ValueError(f"row {row.name!r} keeps no region: it was not computed by synthetic.tightness")
    K = int(row.K) if math.isfinite(row.K) else None
    with planted(mutant, row.config):
        return dd.data_dependent_bound(row.region, K).value


def judge_bound_mutants(
    rows: Sequence[TightnessRow], mutant_list: Sequence[BoundMutant] | None = None
) -> list[BoundVerdict]:
    """Every mutant (default :func:`mutants`) on every row."""
    return [
        BoundVerdict(m, tuple(RowJudgement(row, bound_of(row, m)) for row in rows))
        for m in (mutants() if mutant_list is None else mutant_list)
    ]


def unexplained(verdicts: Sequence[BoundVerdict]) -> list[BoundVerdict]:
    """The surviving mutants with no documented reason (``perfedavg check --mutations`` fails on one)."""
    return [v for v in verdicts if not v.killed and not v.mutant.survives_because]


def format_bound_mutations(verdicts: Sequence[BoundVerdict]) -> str:
    """Text table, at most :data:`perfedavg.words.MAX_WIDTH` columns: each mutant, KILLED / survives, and below
    it, indented, the deciding row (mutated bound against the measurement) or why it survives."""
    import textwrap

    from perfedavg.words import MAX_WIDTH

    head = f"{'bound mutant':52s} {'term':15s} verdict"
    lines = [head, "    deciding row (tightness table): mutated bound / measured", "-" * len(head)]
    for v in verdicts:
        j = v.deciding
        if j is None:
            changed = sum(x.bound != x.row.data_dependent for x in v.judged)
            why = f"survives on all {len(v.judged)} rows ({changed} changed)"
            why += f": {v.mutant.survives_because}" if v.mutant.survives_because else ": NO DOCUMENTED REASON"
        else:
            true = j.row.data_dependent
            low, point, _ = interval(j.row)
            if j.below:
                what = "measured exactly" if low == point else "the lower end of its 95 % interval"
                why = f"{j.row.name}: bound {j.bound:.5g} (true {true:.5g}) < {low:.5g}, {what}"
            else:
                why = f"{j.row.name}: factor {j.factor:.3g} > {loose_factor(j.row):g} (true {j.row.data_factor:.3g})"
            why += f"; killed on {sum(x.below or x.loose for x in v.judged)} of {len(v.judged)} rows"
        lines.append(f"{v.mutant.name[:52]:52s} {v.mutant.term[:15]:15s} {'KILLED' if v.killed else 'survives'}")
        lines.append(
            textwrap.fill(why, MAX_WIDTH, initial_indent="    ", subsequent_indent="      ", break_on_hyphens=False)
        )
    return "\n".join(lines)


def bound_summary_line(verdicts: Sequence[BoundVerdict]) -> str:
    """``killed k of n`` with how, and how many survive without a documented reason."""
    k, below = sum(v.killed for v in verdicts), sum(bool(v.below) for v in verdicts)
    return (
        f"bound mutants: killed {k} of {len(verdicts)} ({below} below a measurement, {k - below} too loose); "
        f"{len(verdicts) - k} survive, {len(unexplained(verdicts))} unexplained"
    )
