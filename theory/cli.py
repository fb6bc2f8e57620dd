r"""``perfedavg bounds``: evaluate and print the paper's bounds (torch-free).

Prints, for the given constants, every lemma (recalled beside derived), the step-size
conditions, and for each variant the derived explicit convergence bound
(Φ_K = (1/(τK))Σ_kΣ_t E‖∇F(w̄_{k+1,t})‖² ≤ value, term by term, dominant term marked)
beside the paper's recalled shape (O(1) set to 1; not an upper bound), and the derived
corollary (τ = K^{1/3}, β(K), threshold K₀, rate exponent).
"""

from __future__ import annotations

import argparse
import json
import math

from perfedavg.errors import UsageError

from .constants import _RULES, Constants

_VARIANTS = ("exact", "fo", "hf")


def register(subparsers) -> argparse.ArgumentParser:
    r"""Add the ``bounds`` subcommand to an argparse ``subparsers`` object; sets ``func``."""
    p = subparsers.add_parser(
        "bounds",
        help="evaluate the paper's bounds (recalled) and the derived explicit bounds",
        description=(
            "Evaluate Per-FedAvg's bounds on given constants: each lemma (recalled form "
            "beside the derived one), the step-size conditions, the convergence bound on "
            "(1/(tau K)) sum_k sum_t E||grad F(w_{k+1,t})||^2 term by term (DERIVED explicit "
            "upper bound, and the RECALLED shape of the paper with O(1) constants set to 1, "
            "which is not an upper bound), and the derived corollary.  Constants come from "
            "--constants FILE.toml and/or the flags below (flags win)."
        ),
    )
    p.add_argument("--constants", metavar="FILE.toml",
                   help="TOML file with the constants (top-level keys or a [constants] table)")
    for name, (_, _, integer, help_) in _RULES.items():
        p.add_argument(f"--{name}", dest=f"c_{name}", metavar="N" if integer else "X",
                       type=float, default=None, help=help_)
    p.add_argument("--variant", choices=_VARIANTS + ("all",), default="all",
                   help="local step: exact second-order, FO, HF, or all three (default: all)")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--latex", action="store_true",
                     help="print the LaTeX of every statement (with provenance) instead of numbers")
    fmt.add_argument("--json", action="store_true", help="print one JSON object for scripts")
    p.set_defaults(func=run)
    return p


def constants_from_args(args) -> Constants:
    r"""A validated :class:`Constants` from ``--constants`` and the per-field flags."""
    flags = {name: getattr(args, f"c_{name}") for name in _RULES
             if getattr(args, f"c_{name}", None) is not None}
    if args.constants:
        return Constants.from_toml(args.constants, flags)
    return Constants.from_dict(flags)


def _fmt(x: float) -> str:
    return f"{x:.4g}" if math.isfinite(x) else str(x)


def run(args) -> int:
    r"""Entry point of ``perfedavg bounds``; returns the exit status (0)."""
    from . import checks_api, distances, lemmas, theorem

    variants = _VARIANTS if args.variant == "all" else (args.variant,)
    if args.latex:
        statements = list(lemmas.all_lemmas()) + list(distances.all_distance_bounds())
        statements += [theorem.step_size_recalled(), theorem.step_size_derived()]
        for v in variants:
            statements += [theorem.convergence_bound_recalled(v), theorem.convergence_bound_derived(v)]
        statements.append(theorem.fedavg_bound())
        for st in statements:
            print(f"% {st.label} -- {st.ref}")
            print(f"% bounds: {st.meaning}")
            print(f"{st.key} = {st.latex}\n")
        return 0

    c = constants_from_args(args)
    lem = checks_api.lemma_bounds(c)
    reports = {v: checks_api.convergence(c, v) for v in variants}
    cors = {}
    for v in variants:
        cor = theorem.corollary(v)
        if c.F0_gap > 0:
            b_K, t_K = cor.choose(c, c.K)
            cors[v] = {"provenance": "derived", "tau_of_K": "floor(K^(1/3))",
                       "beta_of_K": "sqrt(2*F0_gap/(tau*K*C))", "beta_at_K": b_K, "tau_at_K": t_K,
                       "threshold_K": cor.threshold_K(c), "rate_exponent": cor.claimed_exponent(c)}
    if args.json:
        out = {
            "constants": c.as_dict(),
            "lemmas": {k: [dict(provenance=b.provenance, name=b.name, ref=b.ref, value=b.value,
                                meaning=b.meaning, formula=b.formula) for b in vals]
                       for k, vals in lem.items()},
            "convergence": {v: r.as_dict() for v, r in reports.items()},
            "fedavg_bound": {"provenance": "derived", "value": _json_num(checks_api.fedavg_convergence(c))},
            "corollary": cors,
        }
        print(json.dumps(out, indent=2, ensure_ascii=False))
        return 0

    print("Per-FedAvg bounds.  Provenance: [recalled] = reconstructed from memory of the paper "
          "(unverified); [derived] = derived in theory/DERIVATIONS.md.")
    print("constants: " + ", ".join(f"{k}={v:g}" for k, v in c.as_dict().items()))
    print("\nLemmas (PAPER.md §4; alpha <= 1/L):")
    for vals in lem.values():
        for b in vals:
            print(f"  {b.label:48s} {_fmt(b.value):>11s}   {b.meaning}")
    r0 = next(iter(reports.values()))
    print("\nStep-size condition (beta = %g):" % c.beta)
    print(f"  [recalled] beta <= 1/(10 tau L_F)   = {_fmt(r0.beta_max['recalled'])}: "
          f"{'holds' if r0.condition['recalled'] else 'VIOLATED'}")
    print(f"  [derived]  6 beta^2 tau^2 L_F^2 < 1 <=> beta < {_fmt(r0.beta_max['derived'])}: "
          f"{'holds' if r0.condition['derived'] else 'VIOLATED (derived bound not valid: inf)'}")
    for v, rep in reports.items():
        print(f"\nConvergence, Per-FedAvg ({v.upper()}): bound on (1/(tau K)) sum_k sum_t E||grad F(w_bar_(k+1,t))||^2")
        _print_terms("DERIVED explicit upper bound [derived]", rep.derived, rep.derived_terms)
        _print_terms("RECALLED shape, O(1)=1, not an upper bound [recalled]",
                     rep.recalled_shape, rep.recalled_terms)
        if v in cors:
            co = cors[v]
            print(f"  corollary [derived]: tau = floor(K^(1/3)) = {co['tau_at_K']}, "
                  f"beta = sqrt(2 F0_gap/(tau K C)) = {_fmt(co['beta_at_K'])} at K = {c.K:g}; "
                  f"condition holds for K >= {_fmt(co['threshold_K'])}; "
                  f"bound - floor ~ K^({co['rate_exponent']:.4g})")
    print(f"\nFedAvg (alpha = 0) bound [derived]: {_fmt(checks_api.fedavg_convergence(c))}")
    return 0


def _json_num(x: float):
    return x if math.isfinite(x) else str(x)


def _print_terms(title: str, total: float, terms: dict) -> None:
    dom = max(terms, key=lambda k: terms[k]) if terms else ""
    print(f"  {title}: total = {_fmt(total)}")
    for k, val in terms.items():
        share = f"{100 * val / total:5.1f}%" if math.isfinite(total) and total > 0 else "    -"
        print(f"    {k:22s} {_fmt(val):>11s}  {share}{'  <- dominates' if k == dom else ''}")
