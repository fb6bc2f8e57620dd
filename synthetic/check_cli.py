"""``perfedavg check``: the lemmas measured against their bounds; ``--rates``: the rate table.

No torch at import time (``perfedavg --help`` loads this module): the modules that compute are
imported inside :func:`main`.
"""

from __future__ import annotations

import argparse
import json
import sys

from perfedavg.errors import UsageError
from perfedavg.outputs import output_dir


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "check",
        help="measure every lemma on synthetic tasks with exact constants and compare with its bound",
        description=(
            "Without --rates: one row per statement of docs/paper.md §4/§6 (theory/) and point measured: task, "
            "the step size α of the point (a statement is measured at two, or along a run), statement, provenance, "
            "measured value, high = the upper end of its 99.7% Monte Carlo interval (the value itself where "
            "exact), bound, HOLDS/FAILS (HOLDS iff high <= bound) and margin = bound / high, on the default "
            "synthetic tasks (logistic, nonconvex, softmax); --json adds the ratio measured/bound and each point. "
            "Exit status 1 if a 'derived' or 'sure' statement FAILS; a "
            "failing 'recalled' statement is printed as a finding (exit 0). Beside them, the witnesses: tiny tasks "
            "where each derived bound is attained within a factor 2, measured exactly (theory/DERIVATIONS.md, "
            "'Witnesses'), each statement's witness margins printed beside its smallest margin on the default tasks. "
            "With --mutations: plausible formula errors planted one at a time in the statements, the measurements "
            "kept; each mutant with the checks that now FAIL, and 'killed k of n'; then errors planted in the "
            "convergence bound, judged on the --tightness rows (a few minutes more); exit status 1 if a lemma "
            "mutant survives or a bound mutant survives without a documented reason. "
            "With --rates: the table of predicted rates (exponents in K, beta, tau, D, heterogeneity, alpha, "
            "delta) with fitted exponents, intervals, equivalence margins, Holm-corrected p-values and verdicts "
            "PASS / FAIL / INCONCLUSIVE, plus the derived explicit bound checked "
            "against the measured (1/(tau K)) sum ||grad F(w_bar)||^2 at every K (and FedAvg's own bound against "
            "FedAvg's (1/(tau K)) sum ||grad f(w_bar)||^2); runs land in --out. "
            "How long each takes, and on what load, is in the README's table 'What it measures, and how long it "
            "takes' (--rates --full: an hour or more on two cores: 40 mixing times per floor, 4-5 points per row, "
            "5 seeds); every --rates run is resumable: rerun the same command to continue. "
            "With --speed-sweep [DIR]: the 100 configurations x 5 seeds logistic sweep (progress bar, "
            "resumable), printing one JSON timing record."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--json",
        nargs="?",
        const="-",
        default=None,
        metavar="PATH",
        help="print JSON instead of the text table; with --rates, --json PATH writes the table's JSON (per-row "
        "verdicts, p-values, intervals, margins, correction) to PATH beside the text table",
    )
    parser.add_argument(
        "--mutations",
        action="store_true",
        help="judge the documented formula errors (synthetic/mutations.py) on the same measurements: "
        "which check kills each; 'killed k of n'; then the convergence bound's (synthetic/bound_mutations.py) on "
        "the --tightness rows (--seeds S as there)",
    )
    parser.add_argument(
        "--samples",
        type=int,
        default=4000,
        metavar="N",
        help="Monte Carlo draws per (point, user, variant) for bias / variance (>= 100) [default: 4000]",
    )
    parser.add_argument("--rates", action="store_true", help="print the rate table instead of the lemma checks")
    parser.add_argument(
        "--tightness",
        action="store_true",
        help="print the worst-case and the data-dependent bound on Phi_K beside the measured Phi_K on every "
        "stochastic Phi_K row and the noise-free drift rows, with both factors (--seeds S sets the seeds of "
        "every stochastic row [default: 5]; --json for JSON); exit 1 "
        "if a data-dependent bound lies below its measurement",
    )
    parser.add_argument(
        "--new-users",
        action="store_true",
        help="new users at a chosen TV / W1 distance from the training users' mixture: their personalized "
        "gradient gap, exact, against the derived bound (smallest margins per task; the gap's exponent in the "
        "distance against the bound's 1); --json for JSON; exit 1 if a bound fails",
    )
    parser.add_argument(
        "--full",
        action="store_true",
        help="with --rates: the full version (4-5 points per row, 40 mixing times per floor, 5 seeds; "
        "an hour or more on 2 cores; resumable: rerun the same command to continue)",
    )
    parser.add_argument(
        "--speed-sweep",
        nargs="?",
        const="runs/speed",
        default=None,
        metavar="DIR",
        help="time the 100 configurations x 5 seeds logistic sweep (seed-vectorized, progress, "
        "resumable) into DIR [default: runs/speed, outside version control] and print JSON timing",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        default=None,
        metavar="S",
        help="with --rates: seeds per configuration (>= 2) [default: 3 quick, 5 full]",
    )
    parser.add_argument(
        "--out",
        default=None,
        metavar="DIR",
        help="with --rates: folder of the run directories [default: runs/rates-quick or "
        "runs/rates-full]; finished runs found there are reused (resumable)",
    )
    parser.add_argument("--no-progress", action="store_true", help="do not show progress bars")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """The check, with one torch thread except for the rate table and the speed sweep (their batched runs and
    sweep workers choose their own): the lemma, witness, mutation, new-user and tightness checks compute on
    tensors too small to share between threads (perfedavg.runs.threads)."""
    from perfedavg.runs.threads import SYNTHETIC_THREADS, torch_threads

    many = args.rates or args.speed_sweep is not None
    with torch_threads(None if many else SYNTHETIC_THREADS):
        return _check(args)


def _check(args: argparse.Namespace) -> int:
    if args.samples < 100:
        raise UsageError(f"--samples={args.samples} is out of range: must be >= 100")
    if args.seeds is not None and args.seeds < 2:
        raise UsageError(f"--seeds={args.seeds} is out of range: must be >= 2 (a confidence interval needs two)")
    if args.full and not args.rates:
        raise UsageError("--full only applies with --rates")
    if args.mutations and (args.rates or args.speed_sweep is not None):
        raise UsageError("--mutations is a command of its own: give it without --rates or --speed-sweep")
    if args.json not in (None, "-") and not args.rates:
        raise UsageError("--json PATH only applies with --rates (without it, --json prints JSON)")
    if args.tightness:
        if args.rates or args.speed_sweep is not None or args.mutations or args.new_users:
            raise UsageError("--tightness is a separate command: give it alone (with --seeds or --json if wanted)")
        from .tightness_cli import main_tightness  # torch

        return main_tightness(args)
    if args.new_users:
        if args.rates or args.speed_sweep is not None or args.tightness or args.mutations:
            raise UsageError("--new-users is a separate command: give it alone (with --json if wanted)")
        from .new_users import main_new_users  # torch

        return main_new_users(args)
    if args.speed_sweep is not None:
        if args.rates:
            raise UsageError("--speed-sweep and --rates are separate commands: give one")
        from .speed import speed_sweep  # here, not at the top: torch

        out = output_dir(args.speed_sweep, "--speed-sweep")
        print(json.dumps(speed_sweep(out, seeds=args.seeds or 5, progress=not args.no_progress), indent=2))
        return 0
    if args.rates:
        from .rates import main_rates  # torch

        return main_rates(args)
    if args.mutations:
        from .mutations import main_mutations  # torch

        return main_mutations(args)
    from .checks import run_checks  # torch
    from .rows import LEGEND, format_table, summary
    from .witnesses import format_witnesses, witness_rows, wrap_line

    rows = run_checks(samples=args.samples, show_progress=not args.no_progress)
    witnessed = witness_rows()
    info, winfo = summary(rows), summary(witnessed)
    if args.json:
        # the row list last: summary()'s "rows" is only their count (kept as "row_count")
        witnesses = {**winfo, "rows": [r.as_dict() for r in witnessed]}
        print(
            json.dumps(
                {**info, "row_count": info["rows"], "witnesses": witnesses, "rows": [r.as_dict() for r in rows]},
                indent=2,
            )
        )
    else:
        print(format_table(rows))
        print(LEGEND)
        print()
        derived = [r for r in rows if r.provenance == "derived"]
        print(
            f"{len(rows)} rows; {sum(r.holds for r in derived)}/{len(derived)} derived statements hold; "
            f"smallest derived margin {info['smallest_derived_margin']:.3g}"
        )
        print()
        print(format_witnesses(rows, witnessed))
        for f in info["findings"] + winfo["findings"]:
            print(
                wrap_line(
                    f"FINDING (recalled statement fails): {f['task']}: {f['statement']} measured "
                    f"{f['measured']:.4g} > bound {f['bound']:.4g} at {f['where']}"
                )
            )
        for e in info["errors"] + winfo["errors"]:
            print(
                wrap_line(
                    f"ERROR (derived/sure statement fails): {e['task']}: {e['statement']} measured "
                    f"{e['measured']:.4g} > bound {e['bound']:.4g} at {e['where']}"
                ),
                file=sys.stderr,
            )
    return 1 if info["errors"] or winfo["errors"] else 0
