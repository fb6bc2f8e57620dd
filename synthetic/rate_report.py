r"""The rate table's output: text (:func:`format_rates`), JSON (:func:`table_json`), and the command
(:func:`main_rates`, ``perfedavg check --rates [--json [PATH]]``)."""

from __future__ import annotations

import json
import math
import time

from perfedavg.outputs import output_dir, output_file

from .rate_rows import ASSUMPTION, INTERVAL_LEVEL, TAYLOR_ASSUMPTION, RateRow
from .rate_stats import FAMILY_LEVEL, MARGIN_FRACTION


def _p(value) -> str:
    return "-" if value is None else f"{value:.2g}"


def _interval(lo: float, hi: float) -> str:
    return f"[{lo:+7.3f}, {hi:+7.3f}]" if lo != hi else f"exact {lo:+8.3f}"


def format_rates(rows: list[RateRow], bound: dict) -> str:
    r"""The rate table as text: the predicted law's local exponent, the recalled shape's (n/a: none recalled), the
    fitted exponent with its interval, the equivalence margin, the Holm-adjusted p-values of PASS and FAIL, the
    verdict, then the measured points and the row's note."""
    width = max([20] + [len(r.name) for r in rows])
    level = f"{INTERVAL_LEVEL:.0%}"
    lines = [
        f"{'rate':{width}s} {'predicted':>9s} {'recalled':>8s} {'fitted':>8s} {level + ' interval':>18s} "
        f"{'margin':>6s} {'p(PASS)':>7s} {'p(FAIL)':>7s}  verdict"
    ]
    for r in rows:
        d = r.as_dict()
        rec = r.extra.get("recalled_shape_slope", math.nan)
        recalled = f"{rec:+8.2f}" if math.isfinite(rec) else f"{'n/a':>8s}"  # no recalled form of this rate
        lines.append(
            f"{r.name:{width}s} {r.predicted:+9.2f} {recalled} {r.fitted:+8.3f} {_interval(r.low, r.high):>18s} "
            f"{d['margin']:6.3f} {_p(d['p_pass_holm']):>7s} {_p(d['p_fail_holm']):>7s}  {r.verdict}"
        )
        pts = ", ".join(f"{x:.3g}: {m:.3g}±{h:.2g}" for x, m, h in zip(r.xs, r.means, r.halfwidths))
        laws = r.extra.get("laws")
        law_text = "; amplitude-fit p: " + ", ".join(f"{k} {v:.2g}" for k, v in laws.items()) if laws else ""
        lines.append(f"{'':{width}s} points (x: mean ± 95%): {pts}{law_text}")
        lines.append(f"{'':{width}s} margin vs competitor {r.competitor}; {d['reason']}; {r.assumption}")
        if r.note:
            lines.append(f"{'':{width}s} {r.note}")
    lines.append("")
    lines.append(
        f"PASS: the exponent is within the row's margin (two one-sided tests; the {level} interval lies inside "
        "±margin around the prediction) and the exponent model fits; FAIL: every law within the margin is rejected "
        "by its goodness of fit (amplitude fit, F test); else INCONCLUSIVE. p(PASS), p(FAIL): Holm-adjusted over "
        f"every sampled row's two p-values, family-wise level {FAMILY_LEVEL}; exact rows (closed forms) carry no "
        f"p-value. Margin: {MARGIN_FRACTION:g} x the exponent gap to the row's competitor, fixed before the data. "
        "Each row states what its comparison assumes."
    )
    lines.append(f"every run stayed in the domain ||w|| <= W of B, sigma_G: {bound.get('domain_respected', 'n/a')}")
    lines.append(
        "derived explicit bound [derived] vs measured Φ_K = (1/(τK)) ΣΣ ‖∇F(w̄_{k+1,t})‖² "
        f"(holds at every K = 1..{bound['rows'][-1]['K']}: {bound['holds_at_every_K']}; "
        "shown at powers of 2):"
    )
    for b in bound["rows"]:
        if b["K"] & (b["K"] - 1):
            continue
        lines.append(
            f"  K = {b['K']:4d}: measured {b['measured']:.4g} ± {b['halfwidth']:.2g}  "
            f"bound {b['derived_bound']:.4g} ({b['dominant_term']} dominates)  "
            f"{'HOLDS' if b['holds'] else 'FAILS'}  margin {b['margin']:.3g}"
        )
    fed = bound.get("fedavg")
    if fed:
        lines.append(
            f"FedAvg's own stationarity (1/(τK)) ΣΣ ‖∇f(w̄_{{k+1,t}})‖² vs {fed['statement']} "
            f"(holds at every K = 1..{fed['rows'][-1]['K']}: {fed['holds_at_every_K']}; powers of 2; "
            f"‖∇F‖² of FedAvg's iterates at α = {fed['config']['alpha_of_F']:g} beside it):"
        )
        for b in fed["rows"]:
            if b["K"] & (b["K"] - 1):
                continue
            lines.append(
                f"  K = {b['K']:4d}: measured {b['measured']:.4g} ± {b['halfwidth']:.2g}  bound "
                f"{b['derived_bound']:.4g}  {'HOLDS' if b['holds'] else 'FAILS'}  margin {b['margin']:.3g}  "
                f"(‖∇F‖²: {b['measured_grad_F']:.4g} ± {b['halfwidth_grad_F']:.2g})"
            )
    return "\n".join(lines)


def _finite(obj):
    """JSON has no inf/nan: they become strings ("inf", "-inf", "nan")."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def table_json(rows: list[RateRow], bound: dict, seconds: float, out) -> dict:
    """The table as one JSON object: per-row verdicts with their p-values, intervals, margins and the correction."""
    counts = {v: sum(r.verdict == v for r in rows) for v in ("PASS", "FAIL", "INCONCLUSIVE")}
    return _finite(
        {
            "statistics": {
                "family_level": FAMILY_LEVEL,
                "correction": "Holm over the PASS and FAIL p-values of every sampled row",
                "interval_level": INTERVAL_LEVEL,
                "margin_rule": f"{MARGIN_FRACTION:g} x the exponent gap between the predicted law and the competitor",
                "assumptions": [ASSUMPTION, TAYLOR_ASSUMPTION],
            },
            "verdicts": counts,
            "rows": [r.as_dict() for r in rows],
            "derived_bound": bound,
            "seconds": seconds,
            "out": str(out),
        }
    )


def main_rates(args) -> int:
    """``perfedavg check --rates``: the table as text; ``--json`` prints JSON instead, ``--json PATH`` writes it
    to PATH (atomically) beside the text table.  Exit status 1 when the derived bound fails or a run left the
    domain of its constants (a rate verdict alone does not set it)."""
    from perfedavg.runs.rundir import atomic_write_json

    from .rates import rate_table

    json_arg = getattr(args, "json", None)
    json_path = output_file(json_arg, "--json") if json_arg not in (None, "-") else None
    seeds = list(range(args.seeds or (5 if args.full else 3)))
    out = output_dir(args.out or ("runs/rates-full" if args.full else "runs/rates-quick"), "--out")
    start = time.perf_counter()
    rows, bound = rate_table(out, seeds, full=args.full, progress=not args.no_progress)
    elapsed = time.perf_counter() - start
    record = table_json(rows, bound, elapsed, out)
    if json_arg == "-":
        print(json.dumps(record, indent=2))
    else:
        print(format_rates(rows, bound))
        counts = ", ".join(f"{n} {v}" for v, n in record["verdicts"].items())
        print(f"\n{len(rows)} rates: {counts}; runs in {out} ({elapsed:.0f} s)")
        if json_path is not None:
            atomic_write_json(json_path, record)
            print(f"JSON: {json_path}")
    fed_ok = bound.get("fedavg", {}).get("holds_at_every_K", True)
    return 0 if bound["holds_at_every_K"] and fed_ok and bound.get("domain_respected", True) else 1
