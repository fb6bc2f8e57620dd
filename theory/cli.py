r"""``perfedavg bounds``: evaluate and print the paper's bounds (torch-free).

Prints, for the given constants, every lemma (recalled beside derived), the step-size
conditions, and for each variant the derived explicit convergence bound
(Φ_K = (1/(τK))Σ_kΣ_t E‖∇F(w̄_{k+1,t})‖² ≤ value, term by term, dominant term marked)
beside the paper's recalled shape (O(1) set to 1; not an upper bound), and the derived
corollary (τ = K^{1/3}, β(K), threshold K₀, rate exponent).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import textwrap
from collections.abc import Collection
from typing import TYPE_CHECKING, TypedDict

from perfedavg.algorithms import ALGORITHM_NAMES
from perfedavg.errors import UsageError
from perfedavg.words import MAX_WIDTH, fill_block

from .constants import _RULES, SAMPLE_TWINS, Constants

if TYPE_CHECKING:
    import sympy as sp

    from .statement import Statement

_VARIANTS = ("exact", "fo", "hf")
#: the extra symbols of the distance statements and the HF error (theory.symbols.EXTRA_SYMBOLS), each a flag
_EXTRA_FLAGS = {
    "tv": "RMS over users of TV(p_i, mixture), in [0, 1]: evaluates the TV statements of docs/paper.md §6",
    "w1": "RMS over users of W1(p_i, mixture), >= 0: evaluates the W1 statements (with --L-theta / --rho-theta)",
    "L_theta": "Lipschitz constant in theta of the per-sample gradient, >= 0 (W1 statement for gamma_G)",
    "rho_theta": "Lipschitz constant in theta of the per-sample Hessian, >= 0 (W1 statement for gamma_H)",
    "g_norm": "norm of the vector g of the HF finite difference, >= 0 (HF error rho delta ||g||^2 / 2)",
}


class _CorollaryRow(TypedDict):
    """The corollary at the given K, as printed and as written to JSON."""

    provenance: str
    tau_of_K: str
    beta_of_K: str
    beta_at_K: float
    tau_at_K: int
    threshold_K: float
    rate_exponent: float


def _flag(name: str) -> str:
    """The flag of a constant: kebab-case, the symbol's case kept (sigma_G -> --sigma-G, F0_gap -> --F0-gap)."""
    return "--" + name.replace("_", "-")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
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
            "--constants FILE (TOML, or the JSON written by 'perfedavg reproduce constants') and/or the flags "
            "below (flags win).  A constant the JSON file did not estimate (e.g. rho skipped) is missing: every "
            "value that needs it is printed as 'not evaluable', never computed with 0.  --tv/--w1/--L-theta/"
            "--rho-theta/--g-norm evaluate the heterogeneity statements of docs/paper.md §6 and the HF error."
        ),
    )
    p.add_argument(
        "--task",
        metavar="NAME",
        help="take the problem constants (L, rho, B, sigma_G, sigma_H, gamma_G, gamma_H, F0_gap, n) exactly from a "
        "synthetic task (softmax, logistic, quadratic, nonconvex) with `perfedavg run`'s defaults for the rest; "
        "--set task.KEY=VALUE changes the task, the flags below change any constant",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="with --task: a task option or run option, as `perfedavg run --set` reads it (repeatable), "
        "e.g. --set task.h=0.9",
    )
    p.add_argument(
        "--constants",
        metavar="FILE",
        help="TOML file with the constants (top-level keys or a [constants] table), or the JSON "
        "document of 'perfedavg reproduce constants' (its 'constants' mapping; unestimated "
        "constants are missing)",
    )
    for name, (_, _, integer, help_) in _RULES.items():
        p.add_argument(
            _flag(name), dest=f"c_{name}", metavar="N" if integer else "X", type=float, default=None, help=help_
        )
    for name, help_ in _EXTRA_FLAGS.items():
        p.add_argument(_flag(name), dest=f"e_{name}", metavar="X", type=float, default=None, help=help_)
    p.add_argument(
        "--variant",
        choices=(*_VARIANTS, "all"),
        default="all",
        help="local step: exact second-order, FO, HF, or all three [default: all]",
    )
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument(
        "--latex", action="store_true", help="print the LaTeX of every statement (with provenance) instead of numbers"
    )
    fmt.add_argument("--json", action="store_true", help="print one JSON object for scripts")
    p.set_defaults(func=run)
    return p


def constants_from_args(args: argparse.Namespace, notes: list[str] | None = None) -> Constants:
    r"""A validated :class:`Constants` from ``--constants`` (TOML or the constants JSON,
    :meth:`Constants.from_file`; unestimated constants are missing, NaN), or from ``--task`` (a
    synthetic task's exact constants, through ``args.task_constants``, which the top-level command
    line provides: theory builds no task; it adds to ``notes`` the line saying that r is the fraction
    of users a run samples, m/n with m = floor(r n), when that is not the configured r), and the
    per-field flags (flags win)."""
    flags = {name: getattr(args, f"c_{name}") for name in _RULES if getattr(args, f"c_{name}", None) is not None}
    task = getattr(args, "task", None)
    overrides = getattr(args, "overrides", None) or []
    if task is None and overrides:
        raise UsageError("--set sets a task's option: give the task with --task NAME (e.g. --task softmax)")
    if task is not None:
        if args.constants:
            raise UsageError("--task and --constants both give the constants: give one of them")
        if "n" in flags:
            raise UsageError("--n is the task's number of users with --task: write --set task.n_clients=N")
        provider = getattr(args, "task_constants", None)
        if provider is None:
            raise UsageError("--task needs the tasks (torch): run it as `perfedavg bounds --task NAME`")
        constants: Constants = provider(task, overrides, flags, notes)
        return constants
    if args.constants:
        return Constants.from_file(args.constants, flags)
    return Constants.from_dict(flags)


def extras_from_args(args: argparse.Namespace) -> dict[str, float]:
    r"""``{symbol: value}`` of the given ``--tv/--w1/--L-theta/--rho-theta/--g-norm`` (validated)."""
    out = {}
    for name in _EXTRA_FLAGS:
        value = getattr(args, f"e_{name}", None)
        if value is None:
            continue
        flag = _flag(name)
        if not math.isfinite(value) or value < 0 or (name == "tv" and value > 1):
            allowed = "in [0, 1]" if name == "tv" else "a finite number >= 0"
            raise UsageError(f"{flag}={value:g} is out of range: must be {allowed}")
        out[name] = value
    return out


def _needs(statement: Statement | sp.Expr, missing: Collection[str]) -> list[str]:
    """The missing constants a statement (or one of its terms, a sympy expression) needs."""
    symbols = statement.free_symbols if hasattr(statement, "free_symbols") else statement.expr.free_symbols
    return sorted(s.name for s in symbols if s.name in missing)


def _fmt(x: float) -> str:
    return f"{x:.4g}" if math.isfinite(x) else str(x)


def run(args: argparse.Namespace) -> int:
    r"""Entry point of ``perfedavg bounds``; returns the exit status (0)."""
    from . import checks_api, distances, lemmas, theorem  # here, not at the top: they import sympy, --help does not

    variants = _VARIANTS if args.variant == "all" else (args.variant,)
    if args.latex:
        extras_from_args(args)  # bad flags are errors in every mode
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

    notes: list[str] = []
    c = constants_from_args(args, notes)
    extra = extras_from_args(args)
    # every unknown value: the missing constants and the per-sample twins taken from them
    missing = c.missing | {s for s in c.sample_assumed if SAMPLE_TWINS[s] in c.missing}
    have = set(c.as_dict()) | set(extra)
    lem: dict[str, list[tuple[Statement, float | None, list[str]]]] = {}  # key -> [(statement, value or None, needs)]
    for key, sts in checks_api._lemma_statements().items():
        for st in sts:
            if not set(st.arg_names) <= have:
                continue  # an extra symbol (tv, w1, ...) not given
            needs = _needs(st, missing)
            lem.setdefault(key, []).append((st, None if needs else float(st(c, **extra)), needs))
    reports: dict[str, checks_api.ConvergenceReport] = {}
    unevaluable: dict[str, list[str]] = {}
    for v in variants:
        needs = sorted(
            set(_needs(theorem.convergence_bound_derived(v), missing))
            | set(_needs(theorem.step_size_derived(), missing))
        )
        if needs:
            unevaluable[v] = needs
        else:
            reports[v] = checks_api.convergence(c, v)
    cors: dict[str, _CorollaryRow] = {}
    for v in reports:
        cor = theorem.corollary(v)
        if c.F0_gap > 0:
            b_K, t_K = cor.choose(c, c.K)
            cors[v] = {
                "provenance": "derived",
                "tau_of_K": "floor(K^(1/3)) (a choice, not optimised)",
                "beta_of_K": "sqrt(2*F0_gap/(tau*K*C)) (sympy.solve of d/dbeta = 0)",
                "beta_at_K": b_K,
                "tau_at_K": t_K,
                "threshold_K": cor.threshold_K(c),
                "rate_exponent": cor.claimed_exponent(c),
            }
    fed_needs = _needs(theorem.fedavg_bound(), missing)
    fedavg = None if fed_needs else checks_api.fedavg_convergence(c)
    if args.json:
        out = {
            "constants": {k: _json_num(v) for k, v in c.as_dict().items()},
            "missing": sorted(c.missing),
            "per_sample_assumed": list(c.sample_assumed),
            "notes": notes,
            "extra": extra,
            "lemmas": {
                k: [
                    dict(
                        provenance=st.provenance,
                        name=st.name,
                        ref=st.ref,
                        value=_json_num(val) if val is not None else "not evaluable",
                        needs=needs,
                        meaning=st.meaning,
                        formula=str(st.expr),
                    )
                    for st, val, needs in vals
                ]
                for k, vals in lem.items()
            },
            "convergence": {
                **{v: r.as_dict() for v, r in reports.items()},
                **{v: {"value": "not evaluable", "needs": n} for v, n in unevaluable.items()},
            },
            "fedavg_bound": {
                "provenance": "derived",
                "value": _json_num(fedavg) if fedavg is not None else "not evaluable",
                "needs": fed_needs,
            },
            "corollary": cors,
        }
        print(json.dumps(out, indent=2, ensure_ascii=False))
        return 0

    report = io.StringIO()
    with contextlib.redirect_stdout(report):
        print(
            "Per-FedAvg bounds.  Provenance: [recalled] = reconstructed from memory of the paper "
            "(unverified); [derived] = derived in theory/DERIVATIONS.md."
        )
        print(
            "constants: "
            + ", ".join(f"{k}={v:g}" if k not in missing else f"{k}=MISSING" for k, v in c.as_dict().items())
        )
        for note in notes:
            print(f"note: {note}")
        if missing:
            print(
                f"missing (not estimated): {', '.join(sorted(c.missing))}: every value that needs them is not evaluable"
            )
        if c.sample_assumed:
            print(
                f"per-sample {', '.join(c.sample_assumed)} not given: taken equal to the per-user "
                f"{', '.join(SAMPLE_TWINS[s] for s in c.sample_assumed)} (the HF terms and the TV statements need "
                "per-sample bounds; valid only if the per-user values bound every sample's, as a synthetic task's do)"
            )
        if extra:
            print("distances / extras: " + ", ".join(f"{k}={v:g}" for k, v in extra.items()))
        print("\nLemmas (docs/paper.md §4, §6; alpha <= 1/L):")
        for vals in lem.values():
            for st, val, needs in vals:
                shown = _fmt(val) if val is not None else f"not evaluable (needs {', '.join(needs)})"
                print(_lemma_row(st.label, shown, st.meaning))
        if not any(k in lem for k in ("gamma_G2_tv", "gamma_G2_w1", "hf_hvp_error")):
            print("  (the TV / W1 statements and the HF error need --tv, --w1 with --L-theta/--rho-theta, --g-norm)")
        if reports:
            r0 = next(iter(reports.values()))
            print(f"\nStep-size condition (beta = {c.beta:g}):")
            print(
                f"  [recalled] beta <= 1/(10 tau L_F)   = {_fmt(r0.beta_max['recalled'])}: "
                f"{'holds' if r0.condition['recalled'] else 'VIOLATED'}"
            )
            print(
                f"  [derived]  6 beta^2 tau^2 L_F^2 < 1 <=> beta < {_fmt(r0.beta_max['derived'])}: "
                f"{'holds' if r0.condition['derived'] else 'VIOLATED (derived bound not valid: inf)'}"
            )
        for v, rep in reports.items():
            print(f"\nConvergence, {ALGORITHM_NAMES[v]}: bound on (1/(tau K)) sum_k sum_t E||grad F(w_bar_(k+1,t))||^2")
            _print_terms("DERIVED explicit upper bound [derived]", rep.derived, rep.derived_terms)
            recalled = "RECALLED shape, O(1)=1, not an upper bound [recalled]"
            _print_terms(recalled, rep.recalled_shape, rep.recalled_terms)
            if v in cors:
                co = cors[v]
                print(
                    f"  corollary [derived]: tau = floor(K^(1/3)) = {co['tau_at_K']} (a choice), "
                    f"beta = sqrt(2 F0_gap/(tau K C)) = {_fmt(co['beta_at_K'])} at K = {c.K:g}; "
                    f"condition holds for K >= {_fmt(co['threshold_K'])}; "
                    f"bound - floor ~ K^({co['rate_exponent']:.4g})"
                )
        for v, needs in unevaluable.items():
            print(f"\nConvergence, {ALGORITHM_NAMES[v]}: not evaluable (needs {', '.join(needs)})")
        shown = _fmt(fedavg) if fedavg is not None else f"not evaluable (needs {', '.join(fed_needs)})"
        print(f"\nFedAvg (alpha = 0) bound [derived]: {shown}")
    print(fill_block(report.getvalue().rstrip("\n"), MAX_WIDTH))
    return 0


def _lemma_row(label: str, value: str, meaning: str) -> str:
    """One lemma's line: its label, its value, then what it bounds, wrapped under its own column."""
    head = f"  {label:40s} {value:>11s}   "
    return textwrap.fill(
        meaning, MAX_WIDTH, initial_indent=head, subsequent_indent=" " * len(head), break_on_hyphens=False
    )


def _json_num(x: float) -> float | str:
    return x if math.isfinite(x) else str(x)


def _print_terms(title: str, total: float, terms: dict[str, float]) -> None:
    dom = max(terms, key=lambda k: terms[k]) if terms else ""
    print(f"  {title}: total = {_fmt(total)}")
    for k, val in terms.items():
        share = f"{100 * val / total:5.1f}%" if math.isfinite(total) and total > 0 else "    -"
        print(f"    {k:22s} {_fmt(val):>11s}  {share}{'  <- dominates' if k == dom else ''}")
