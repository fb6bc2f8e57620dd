r"""``perfedavg check --rates``: predicted rates of docs/paper.md §5 against measured ones.

Every row but the smooth HF row and the exact-bias row (logistic task) runs on the quadratic task (runs,
floors and bound terms: :mod:`synthetic.rate_runs`); each row's measured curve is judged against its
predicted law by the statistics of :mod:`synthetic.rate_stats` (amplitude fits, an exponent relative to the
predicted law, equivalence tests with a margin declared per row, three verdicts PASS / FAIL / INCONCLUSIVE,
Holm across the table); the row builders and the recipes that do not share the floor runs are in
:mod:`synthetic.rate_rows`, :mod:`synthetic.rate_hf` and :mod:`synthetic.rate_bias`, the text and JSON
output in :mod:`synthetic.rate_report`.

=====================  ===============================================  ===============================  ===========
row                    measured                                         predicted law (bound term)       competitor
=====================  ===============================================  ===============================  ===========
opt. term vs β         K·(Φ_K − floor), w_0 = 0, transient over (seeds)  optimization 2Δ₀/(βτK)           β^0
floor vs β             stationary φ, τ = 1, D' = 1 (gradient noise)     stochastic gradient L_Fβs²/n     β²
drift vs τ             φ(τ) − φ(1), h = 1, batches 200, β·τ_max fixed   local drift 2L_F²Q̄(τ)           recalled τ²
noise-free drift (2)   φ_∞(τ) of the noise-free cycle, h = 1 (exact)    local drift, s = b = 0           recalled τ²
floor vs D             stationary φ, D' = D'' = 200, α = 1, D varied    stochastic grad. + bias floor    ×D^1/2
drift vs τ (Γ~1)       as drift vs τ at β τ_max = 0.06, batches 1000    local drift, 1/Γ ≈ 1 (--full)    recalled τ²
floor vs TV            φ(h) − φ(0), r = 0.2 (client sampling)           γ-part of client sampling (TV)   TV^1
floor vs W1            φ(h=1,s) − φ(h=0,s), label shift s, TV fixed     γ-part of client sampling (W1)   W1^1
FO floor vs α          stationary φ of FO, h = 1, batches 200           bias floor of FO 2b_FO²          ×α^-1
HF error vs δ          ‖d_HF − d_exact‖ (logistic, ρ > 0), per seed     Taylor δ² (central difference)   δ^1
HF vs δ (Lipschitz)    central difference at a Hessian kink (exact)     ρδ‖g‖²/2 (theory's HF bound)     δ²
exact bias vs D        ‖E d − ∇F_i‖, every inner batch (ρ > 0, exact)   Taylor D^-1 (second order)       b_F's D^-1/2
=====================  ===============================================  ===============================  ===========

Each row's margin is a quarter of the exponent gap between its predicted law and its competitor on the
row's grid (:func:`synthetic.rate_stats.margin`), fixed before any data.  An upper bound's slope is compared
with the measured one: that assumes the bound is tight up to a constant on the grid (printed with every row).

Plus the derived explicit bound with the task's exact constants, checked to lie above the measured Φ_K (upper
end of its interval) at every K of the K-row's run, and the same for FedAvg
(:func:`synthetic.rate_runs.fedavg_bound_check`).
"""

from __future__ import annotations

from pathlib import Path

from . import rate_stats
from .rate_bias import exact_bias_row
from .rate_hf import hf_delta_row, hf_kink_row
from .rate_report import format_rates, main_rates
from .rate_rows import (
    RateRow,
    distances_of,
    drift_gamma1_row,
    drift_noise_free_rows,
    opt_term_row,
    points_row,
)
from .rate_runs import (
    BASE,
    BATCHES,
    BURN,
    GRID,
    MEASURE,
    _config,
    _domain_ok,
    bound_terms,
    derived_bound_check,
    fedavg_bound_check,
    floor_config,
    run_ahead,
    run_sweep,
    stationary_floor,
    theory_LF,
)
from .rate_stats import difference

__all__ = [
    "BASE",
    "BATCHES",
    "BURN",
    "GRID",
    "MEASURE",
    "RateRow",
    "bound_terms",
    "drift_noise_free_rows",
    "format_rates",
    "hf_delta_row",
    "main_rates",
    "rate_table",
    "theory_LF",
]


def _sum_terms(terms: dict, names) -> float:
    return float(sum(terms[k] for k in names))


#: β·τ_max of the drift row: fixed, inside the derived step-size condition
DRIFT_BETA_TAU = 0.16
#: batches of 200 (D = D' = D''): low noise, so that a floor's drift or heterogeneity part stands out
BIG = {"D": 200, "D1": 200, "D2": 200}
#: the heterogeneity rows' runs: client sampling r = 0.2, batches 200
HET = {"r": 0.2, **BIG}


def floor_sweeps(length: str) -> dict[str, list[dict]]:
    """The stationary-floor sweeps of rows 2 to 6 at ``length``: each sweep's name (its directory under the table's
    ``out``) with the changes to :data:`BASE` of its configs (:func:`synthetic.rate_runs.floor_config`), in order."""
    grid = GRID[length]
    taus = list(grid["tau"])
    # W1 on its own: h = 1 fixed (TV fixed at its h = 1 value), the per-cone label shift s varied, so the supports
    # move apart in y and W1(p_i, p̄) on θ = (x, y) grows while TV does not move; x (hence L, H_i, μ_F and the
    # mixing time) is unchanged.  Measured: φ(h=1, s) − φ(h=0, s) (same s: the noise floor moves with s too).
    wide = {"w_radius": 5.0}  # ||w*|| reaches 3.6 at s = 4
    fo = {"algorithm": "fo", "beta": 0.08, **BIG, "task": {"h": 1.0}}
    return {
        "beta": [{"beta": b, "D1": 1} for b in grid["beta"]],
        "tau": [{"tau": t, "beta": DRIFT_BETA_TAU / max(taus), **BIG, "task": {"h": 1.0}} for t in [1, *taus]],
        # alpha = 1: the inner points w - alpha grad l reach ||.|| ~ 2.03 around w*, past W = 2, so B and sigma_G
        # are stated on ||w|| <= 3 here (the recorded max ||w_bar|| is checked against it as everywhere)
        "D": [{"D": d, "D1": 200, "D2": 200, "alpha": 1.0, "beta": 0.1, "task": {"w_radius": 3.0}} for d in grid["D"]],
        "h": [{**HET, "task": {"h": h}} for h in [0.0, *grid["h"]]],
        "w1": [{**HET, "task": {"h": hv, "shift": sv, **wide}} for sv in grid["shift"] for hv in (0.0, 1.0)],
        "alpha": [{**fo, "alpha": a} for a in grid["alpha"]],
    }


def rate_table(
    out: Path,
    seeds: list[int],
    full: bool = False,
    progress: bool = True,
    length: str | None = None,
    executor=None,
) -> tuple[list[RateRow], dict]:
    """Every row of the module docstring's table with its verdict (Holm across the table), and the
    derived-bound check; ``length`` is one of :data:`GRID`'s keys (default "full" if ``full`` else "quick").
    ``executor`` (an object with :meth:`concurrent.futures.Executor.map`) runs each sweep's configs side by side
    (:func:`synthetic.rate_runs.run_sweep`); the table is the same with or without it."""
    length = length or ("full" if full else "quick")
    grid = GRID[length]
    rows: list[RateRow] = []
    domain = []
    sweeps = floor_sweeps(length)
    if executor is not None:  # every run of rows 2-6 starts now, longest first; each row below reads its own back
        run_ahead(
            [(floor_config(ch, length)[0], out / name) for name, chs in sweeps.items() for ch in chs], seeds, executor
        )

    def floors(name, changes_list):
        built = [floor_config(ch, length) for ch in changes_list]
        cfgs = [c for c, _ in built]
        res = run_sweep(cfgs, seeds, out / name, track_inner=True, progress=progress, executor=executor)
        domain.append(_domain_ok(res, cfgs))
        return cfgs, res, [stationary_floor(r, b) for r, (_, b) in zip(res, built)]

    # 1. optimization term: the transient's whole sum K·(Φ_K − floor) against β (opt_term_row); the K-run from
    # w_0 = 0 (low noise) checks the derived bound at every K
    rows.append(opt_term_row(list(grid["beta"]), seeds, out, floors, progress, domain, executor))
    K_max = int(max(grid["K"]))
    cfg_K = _config({"K": K_max})
    (res,) = run_sweep([cfg_K], seeds, out / "K", track_inner=True, progress=progress, executor=executor)
    domain.append(_domain_ok([res], [cfg_K]))
    st = res["stationarity"]
    bound_check = derived_bound_check(cfg_K, st, list(range(1, K_max + 1)))
    cfg_fedavg = _config({"K": K_max, "algorithm": "fedavg"})
    (res_f,) = run_sweep([cfg_fedavg], seeds, out / "K-fedavg", track_inner=True, progress=progress, executor=executor)
    domain.append(_domain_ok([res_f], [cfg_fedavg]))
    bound_check["fedavg"] = fedavg_bound_check(cfg_fedavg, res_f, list(range(1, K_max + 1)))

    # 2. floor vs β (gradient noise: D' = 1)
    betas = list(grid["beta"])
    cfgs, _, stats = floors("beta", sweeps["beta"])
    terms = [bound_terms(c) for c in cfgs]
    rows.append(
        points_row(
            "floor vs beta",
            betas,
            [s[0] for s in stats],
            [t[0]["stochastic gradient"] for t in terms],
            [t[1]["stochastic gradient"] for t in terms],
            ("beta^2 (a drift-like floor)", 1.0),
            "τ = 1, r = 1, D' = 1, D = D'' = 100: stochastic-gradient term L_Fβs²/n",
            lag1=[s[1] for s in stats],
        )
    )

    # 3. drift vs τ (heterogeneous, low noise, β τ_max fixed inside the derived condition)
    taus = list(grid["tau"])
    beta_tau = DRIFT_BETA_TAU / max(taus)
    cfgs, _, stats = floors("tau", sweeps["tau"])
    base = stats[0][0]  # τ = 1: no drift, the same per-step noise floor
    terms = [bound_terms(c) for c in cfgs[1:]]
    recalled = [t[1]["local drift"] for t in terms]
    rows.append(
        points_row(
            "drift vs tau",
            taus,
            [difference(s[0], base) for s in stats[1:]],
            [t[0]["local drift"] for t in terms],
            recalled,
            ("recalled tau^2", recalled),
            f"φ(τ) − φ(1) (φ(1) = {base.mean:.3g} ± {base.halfwidth():.2g}), h = 1, r = 1, batches 200, "
            f"β = {beta_tau:g}: local-drift term 2L_F²Q̄ ∝ (τ−1)(2τ−1)/Γ",
            lag1=[s[1] for s in stats],
        )
    )

    # 3a. the same without noise (closed form, milliseconds): exact exponents, no p-values
    rows.extend(drift_noise_free_rows(taus))

    # 3b. the drift at Γ ≈ 1: costly (β 2.7x smaller, batches 5x larger than the drift row), so only with --full
    if "tau_gamma1" in grid:
        rows.append(drift_gamma1_row(grid["tau_gamma1"], floors))

    # 4. floor vs inner batch D
    Ds = list(grid["D"])
    cfgs, _, stats = floors("D", sweeps["D"])
    terms = [bound_terms(c) for c in cfgs]
    names = ("stochastic gradient", "bias floor")
    rows.append(
        points_row(
            "floor vs D",
            Ds,
            [s[0] for s in stats],
            [_sum_terms(t[0], names) for t in terms],
            [_sum_terms(t[1], names) for t in terms],
            ("the predicted law times D^1/2 (1/sqrt(D) in place of 1/D)", 0.5),
            "α²σ_G²/D: inner batch D, D' = D'' = 200, α = 1, β = 0.1; terms: stochastic gradient + bias floor",
            lag1=[s[1] for s in stats],
        )
    )

    # 5. floor vs heterogeneity (client sampling), TV and W1 axes
    hs = list(grid["h"])
    cfgs, _, stats = floors("h", sweeps["h"])
    base = stats[0][0]
    tvs, _, _ = distances_of(cfgs[1:])
    sampling = "client sampling"
    tv_terms = [(bound_terms(c)[0][sampling] - bound_terms(c, "none")[0][sampling]) for c in cfgs[1:]]
    tv_rec = [(bound_terms(c)[1][sampling] - bound_terms(c, "none")[1][sampling]) for c in cfgs[1:]]
    rows.append(
        points_row(
            "floor vs TV",
            tvs,
            [difference(s[0], base) for s in stats[1:]],
            tv_terms,
            tv_rec,
            ("TV^1", -1.0),
            f"φ(h) − φ(0) (φ(0) = {base.mean:.3g} ± {base.halfwidth():.2g}), r = 0.2, τ = 1, batches 200: γ-part "
            "of the client-sampling term, ∝ TV² exactly (γ_G, γ_H from the TV statements); the measured side is "
            "not a pure TV² law: at a fixed w the user gradients ∇F_i(w) are cubic polynomials in h (A_i = "
            "I − αH_i and H_i are affine in h), so their dissimilarity has odd powers from h³ on, and w*_α moves "
            "with h",
            h=hs,
        )
    )
    # W1 on its own (floor_sweeps): h = 0 and 1 at each label shift s, so W1 moves while TV stays fixed
    shifts = list(grid["shift"])
    cfgs_w, _, stats_w = floors("w1", sweeps["w1"])
    top_w = cfgs_w[1::2]
    tvs_w, w1s, wstars = distances_of(top_w)
    w1_terms = [
        (bound_terms(c, "w1", w1, w)[0][sampling] - bound_terms(c, "none")[0][sampling])
        for c, w1, w in zip(top_w, w1s, wstars)
    ]
    w1_rec = [
        (bound_terms(c, "w1", w1, w)[1][sampling] - bound_terms(c, "none")[1][sampling])
        for c, w1, w in zip(top_w, w1s, wstars)
    ]
    rows.append(
        points_row(
            "floor vs W1",
            w1s,
            [difference(b[0], a[0]) for a, b in zip(stats_w[0::2], stats_w[1::2])],
            w1_terms,
            w1_rec,
            ("W1^1", -1.0),
            f"φ(h=1, s) − φ(h=0, s), label shift s = {', '.join(f'{v:g}' for v in shifts)} at fixed TV = "
            f"{tvs_w[0]:.3g} (W1 moves alone), r = 0.2, W = 5; W1 by linear program on θ = (x, y); "
            "γ from the W1 statements with L_θ, ρ_θ at w*",
            shift=shifts,
            tv=tvs_w,
        )
    )

    # 6. FO floor vs α (heterogeneous Hessians, large batches)
    alphas = list(grid["alpha"])
    cfgs, _, stats = floors("alpha", sweeps["alpha"])
    terms = [bound_terms(c) for c in cfgs]
    rows.append(
        points_row(
            "FO floor vs alpha",
            alphas,
            [s[0] for s in stats],
            [t[0]["bias floor"] for t in terms],
            [t[1]["FO term"] for t in terms],
            ("the predicted law over alpha (one power of alpha fewer)", -1.0),
            "FO, h = 1, batches 200, β = 0.08, start at w*_α: bias-floor term 2b_FO², b_FO = αL(σ_G/√D + B)",
            lag1=[s[1] for s in stats],
        )
    )

    rows.append(hf_delta_row(seeds))
    rows.append(hf_kink_row())
    rows.append(exact_bias_row())
    rate_stats.assign_verdicts([r.judgement for r in rows])
    bound_check["domain_respected"] = bool(all(domain))
    return rows, bound_check
