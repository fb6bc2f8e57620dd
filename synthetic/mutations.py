r"""``perfedavg check --mutations``: plausible formula errors planted one at a time; does a check notice?

Each :class:`Mutant` changes one derived statement's formula alone (a sympy substitution on the
:class:`theory.statement.Statement`'s expression, or the expression times a factor), never the
measurements: the records of ``perfedavg check`` (:func:`synthetic.checks.collect`) and of the witnesses
(:func:`synthetic.witnesses.witness_records`) are measured once and re-judged with the mutant in place of
the statement (:func:`synthetic.rows.judge`).  A mutant is **killed** when

* some row of its key now FAILS (the mutated bound is below a measurement: the formula is too small), or
* some witness row of its key is now looser than its witness's factor (:func:`synthetic.witnesses.factor_of`,
  2): the formula is too large to be the tight statement the witness attains.

The list (:func:`mutants`) holds the errors a derivation plausibly makes: a dropped factor (L_F without
(1+αL)²), an unsquared factor, a dropped term (σ_F² without the Hessian noise, γ_F² without αBγ_H, the FO
bias without αLB), a wrong power (the bias with 1/D for 1/√D, the HF error with δ² or ‖g‖), a constant off
by 2-4 (σ_F² halved, TV with B² for 4B², the HF error /6 for /2), a per-user constant where the proof
needs a per-sample one (TV with B for B_s) and the whole-formula slip γ_F² = γ_G²; and three
loosenings (a constant 3-4x too large), which only the witnesses' factor can catch.

The convergence bound that these lemmas feed has its own mutants (a wrong power of K, τ, β or D, a lost
factor of the sampling variance, the drift growing like τ instead of τ², a constant 2): they cannot be judged
on these measurements, only on measured Φ_K.  :mod:`synthetic.bound_mutations` plants them in the
data-dependent bound and judges them on the rows of ``perfedavg check --tightness``; ``--mutations`` prints
that table after this one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sympy as sp

from theory.statement import Statement
from theory.symbols import (
    B,
    B_sample,
    D,
    L,
    L_sample,
    alpha,
    delta,
    g_norm,
    gamma_G,
    gamma_H,
    rho,
    rho_theta,
    sigma_G,
    sigma_H,
)

from .rows import Record, Row, Statements, default_statements, judge
from .witnesses import TASK, factor_of


@dataclass(frozen=True)
class Mutant:
    """A planted error: ``key``'s derived statement with its expression changed by ``change``."""

    name: str
    key: str
    change: Callable[[sp.Expr], sp.Expr]
    loosening: bool = False

    def apply(self, statement: Statement) -> Statement:
        """The mutated statement; a change that leaves the formula as it is (the formula moved on) is an error."""
        expr = self.change(statement.expr)
        if expr == statement.expr:  # structural: a substitution that matches nothing returns the same tree
            raise ValueError(f"mutant {self.name!r} does not change {statement.key}: {statement.expr}")
        return Statement(statement.key, statement.name, statement.ref, statement.provenance, expr, statement.meaning)


def _subs(mapping: dict[Any, Any]) -> Callable[[sp.Expr], sp.Expr]:
    return lambda e: e.subs(mapping)


def _times(factor: sp.Expr | float) -> Callable[[sp.Expr], sp.Expr]:
    return lambda e: e * factor


def _sum_of_squares(e: sp.Expr) -> sp.Expr:
    """(a + b)² -> a² + b² (the cross term dropped)."""
    base = e.base if isinstance(e, sp.Pow) and e.exp == 2 else None
    if base is None or not isinstance(base, sp.Add):
        raise ValueError(f"not a square of a sum: {e}")
    return sp.Add(*[t**2 for t in base.args])


_A = 1 + alpha * L
_HALF = sp.Rational(1, 2)


def mutants() -> tuple[Mutant, ...]:
    """The documented list (module docstring)."""
    return (
        Mutant("L_F without (1+aL)^2", "L_F", _subs({_A**2: 1})),
        Mutant("L_F with (1+aL) unsquared", "L_F", _subs({_A**2: _A})),
        Mutant("L_F without a*rho*B", "L_F", _subs({rho: 0})),
        Mutant("L_F with a*rho*B/2", "L_F", _subs({rho: rho / 2})),
        Mutant("bias with 1/D for 1/sqrt(D)", "bias", _subs({sp.sqrt(D): D})),
        Mutant("bias without (1+aL)", "bias", _subs({_A: 1})),
        Mutant("bias halved", "bias", _times(_HALF)),
        Mutant("sigma_F^2 without the Hessian-noise term", "sigma_F2", _subs({sigma_H: 0})),
        Mutant("sigma_F^2 halved", "sigma_F2", _times(_HALF)),
        Mutant("sigma_F^2 without (1+aL)^2", "sigma_F2", _subs({_A**2: 1})),
        Mutant("sigma_F^2 with (1+aL) unsquared", "sigma_F2", _subs({_A**2: _A})),
        Mutant("sigma_F^2 without the inner-batch term a^2L^2/D", "sigma_F2", _subs({D: sp.oo})),
        Mutant("sigma_F^2 Hessian term without B^2", "sigma_F2", _subs({B: 0})),
        Mutant("gamma_F^2 = gamma_G^2", "gamma_F2", lambda e: gamma_G**2),
        Mutant("gamma_F^2 without a*B*gamma_H", "gamma_F2", _subs({gamma_H: 0})),
        Mutant("gamma_F^2 with (1+aL) unsquared", "gamma_F2", _subs({_A**2: _A})),
        Mutant("gamma_F^2 without the cross term", "gamma_F2", _sum_of_squares),
        Mutant("FO bias without a*L*B", "bias_fo", _subs({B: 0})),
        Mutant("FO bias without the noise term", "bias_fo", _subs({sigma_G: 0})),
        Mutant("FO MSE without a*L*B", "mse_fo", _subs({B: 0})),
        Mutant("HF error /6 for /2", "hf_hvp_error", _times(sp.Rational(1, 3))),
        Mutant("HF error with delta^2", "hf_hvp_error", _subs({delta: delta**2})),
        Mutant("HF error with |g| unsquared", "hf_hvp_error", _subs({g_norm**2: g_norm})),
        Mutant("HF bias without a*rho*delta*B^2/2", "bias_hf", _subs({delta: 0})),
        Mutant("HF MSE without its HF term", "mse_hf", _subs({delta: 0})),
        Mutant("HF MSE without sigma_F", "mse_hf", _subs({sigma_G: 0, sigma_H: 0})),
        Mutant("TV gamma_G^2 with B^2 for 4B^2", "gamma_G2_tv", _times(sp.Rational(1, 4))),
        Mutant("TV gamma_H^2 with L^2 for 4L^2", "gamma_H2_tv", _times(sp.Rational(1, 4))),
        Mutant("TV gamma_G^2 with the per-user B for B_sample", "gamma_G2_tv", _subs({B_sample: B})),
        Mutant("TV gamma_H^2 with the per-user L for L_sample", "gamma_H2_tv", _subs({L_sample: L})),
        Mutant("W1 gamma_G^2 with (L_theta w1/2)^2", "gamma_G2_w1", _times(sp.Rational(1, 4))),
        Mutant("W1 gamma_H^2 with rho_theta/2", "gamma_H2_w1", _subs({rho_theta: rho_theta / 2})),
        Mutant("bias 4x too large", "bias", _times(4), loosening=True),
        Mutant("sigma_F^2 with Young's factor 3 on each term", "sigma_F2", _times(3), loosening=True),
        Mutant("TV gamma_G^2 with (2B*2TV)^2 for (2B*TV)^2", "gamma_G2_tv", _times(4), loosening=True),
    )


@dataclass(frozen=True)
class Verdict:
    """A mutant's fate: the rows of its key that now FAIL, the witness rows now looser than their factor."""

    mutant: Mutant
    failing: tuple[Row, ...]
    loose: tuple[Row, ...]

    @property
    def killed(self) -> bool:
        return bool(self.failing or self.loose)

    def as_dict(self) -> dict[str, Any]:
        return {
            "mutant": self.mutant.name,
            "key": self.mutant.key,
            "loosening": self.mutant.loosening,
            "killed": self.killed,
            "failing": [r.as_dict() for r in self.failing],
            "loose": [{**r.as_dict(), "factor": factor_of(r)} for r in self.loose],
        }


def mutated(statements: Statements, mutant: Mutant) -> Statements:
    """``statements`` with ``mutant.key``'s derived statement(s) replaced by the mutant."""
    out = dict(statements)
    out[mutant.key] = tuple(mutant.apply(s) if s.provenance == "derived" else s for s in statements[mutant.key])
    return out


def judge_mutants(records: list[Record]) -> list[Verdict]:
    """Every mutant judged on the same ``records`` (module docstring)."""
    base = default_statements()
    keyed: dict[str, list[Record]] = {}
    for r in records:
        keyed.setdefault(r.key, []).append(r)
    verdicts = []
    for m in mutants():
        rows = [r for r in judge(keyed.get(m.key, []), mutated(base, m)) if r.provenance == "derived"]
        failing = tuple(r for r in rows if not r.holds)
        loose = tuple(r for r in rows if r.task == TASK and r.holds and r.margin > factor_of(r))
        verdicts.append(Verdict(m, failing, loose))
    return verdicts


def _first(rows: tuple[Row, ...]) -> Row:
    """The most telling row: the smallest margin (a FAIL), or the largest (a loose witness)."""
    return min(rows, key=lambda r: r.margin)


def format_mutations(verdicts: list[Verdict]) -> str:
    """Text table, at most :data:`perfedavg.words.MAX_WIDTH` columns: each mutant, KILLED / survives, and below
    it, indented, by which check(s) (the point a row was measured at can be long: wrapped)."""
    import textwrap

    from perfedavg.words import MAX_WIDTH, plural

    head = f"{'mutant':52s} {'key':13s} verdict"
    lines = [head, "    killed by", "-" * len(head)]
    for v in verdicts:
        why = []
        if v.failing:
            r = _first(v.failing)
            why.append(
                f"{plural(len(v.failing), 'row')} {'FAILS' if len(v.failing) == 1 else 'FAIL'}, e.g. {r.task} "
                f"{r.where}: measured {r.high:.4g} > bound {r.bound:.4g}"
            )
        if v.loose:
            r = max(v.loose, key=lambda r: r.margin)
            why.append(
                f"{plural(len(v.loose), 'witness', 'witnesses')} looser than {factor_of(r):g}x, e.g. {r.where}: "
                f"margin {r.margin:.3g}"
            )
        lines.append(f"{v.mutant.name[:52]:52s} {v.mutant.key:13s} {'KILLED' if v.killed else 'survives'}")
        lines.append(
            textwrap.fill(
                "; ".join(why) if why else "no check fails",
                MAX_WIDTH,
                initial_indent="    ",
                subsequent_indent="      ",
                break_on_hyphens=False,
            )
        )
    return "\n".join(lines)


def summary_line(verdicts: list[Verdict]) -> str:
    """``killed k of n`` with how."""
    k = sum(v.killed for v in verdicts)
    by_fail = sum(bool(v.failing) for v in verdicts)
    by_loose = sum(bool(v.loose) and not v.failing for v in verdicts)
    return (
        f"killed {k} of {len(verdicts)} ({by_fail} by a failing bound, {by_loose} by a witness looser than its factor)"
    )


def main_mutations(args: Any) -> int:
    """``perfedavg check --mutations``: measure once (default tasks and witnesses) and judge every lemma mutant;
    then measure the tightness rows (:func:`synthetic.tightness.tightness_table`, ``--seeds`` as for
    ``--tightness``) and judge every mutant of the convergence bound (:mod:`synthetic.bound_mutations`).  Exit status
    1 if a lemma mutant survives, or a bound mutant survives without a documented reason (a check lost the power
    to see it)."""
    import json
    import sys

    from . import tightness
    from .bound_mutations import bound_summary_line, format_bound_mutations, judge_bound_mutants, unexplained
    from .checks import collect
    from .witnesses import witness_records

    records = collect(samples=args.samples, show_progress=not args.no_progress) + witness_records()
    verdicts = judge_mutants(records)
    if not args.no_progress:
        print("measuring the tightness rows for the bound mutants (minutes)", file=sys.stderr)
    rows = tightness.tightness_table(tuple(range(args.seeds)) if args.seeds else tightness.SEEDS)
    bound_verdicts = judge_bound_mutants(rows)
    if args.json:
        killed = sum(v.killed for v in verdicts)
        bound = {
            "killed": sum(v.killed for v in bound_verdicts),
            "mutants": len(bound_verdicts),
            "unexplained": [v.mutant.name for v in unexplained(bound_verdicts)],
            "verdicts": [v.as_dict() for v in bound_verdicts],
        }
        out = {"killed": killed, "mutants": len(verdicts), "verdicts": [v.as_dict() for v in verdicts]}
        print(json.dumps({**out, "bound_mutants": bound}, indent=2))
    else:
        print(format_mutations(verdicts))
        print()
        print(summary_line(verdicts))
        print()
        print(format_bound_mutations(bound_verdicts))
        print()
        print(bound_summary_line(bound_verdicts))
    return 0 if all(v.killed for v in verdicts) and not unexplained(bound_verdicts) else 1
