r"""Figure 3: the stationarity floor against the inner batch D, the step β and the local steps τ.

Drawn from the rate table's rows "floor vs D", "floor vs beta" and "drift vs tau"
(:func:`synthetic.rates.rate_table`, through :mod:`figures._floors`), each isolating one
term of the derived bound (docs/paper.md §5, DERIVATIONS.md §7) on the quadratic task with
exact constants, runs started at the minimiser w*_α, stationary means with batch-means
95 % intervals:

* **D** (D' = D'' = 200, α = 1, β = 0.1): stochastic-gradient + bias-floor terms
  (bias ∝ α²σ_G²/D);
* **β** (τ = 1, D' = 1: gradient noise): the stochastic-gradient term L_F β s²/n;
* **τ** (h = 1, batches 200, β·τ_max fixed): φ(τ) − φ(1), the local-drift term;
* **τ without noise** (r = 1, whole-distribution batches: :func:`synthetic.quadratic.noise_free_cycle`,
  exact): the drift floor φ_∞(τ) itself, at the same β and at a β where Γ ≈ 1.

Each panel: the measured means, the fitted slope with its interval, the predicted slope
(local slope of the derived bound's term, [derived]), the recalled shape's slope
([recalled]), and the row's PASS/FAIL.
"""

from __future__ import annotations

from pathlib import Path

from . import _floors
from .style import OKABE_ITO, save, setup

NAME = "floors"
TITLE = "Stationarity floor against inner batch D, step β and local steps τ"
#: panel -> (rate-table row, x label, y label, colour, marker, caption phrase)
PANELS = {
    "D": (
        "floor vs D",
        "inner batch size D",
        r"floor: stationary mean of $\varphi_k$",
        OKABE_ITO["sky blue"],
        "o",
        "inner batch D (stochastic gradient + bias floor)",
    ),
    "beta": (
        "floor vs beta",
        "outer step β",
        r"floor: stationary mean of $\varphi_k$",
        OKABE_ITO["sky blue"],
        "s",
        "outer step β (stochastic-gradient term)",
    ),
    "tau": (
        "drift vs tau",
        "local steps τ",
        r"drift part: $\varphi(\tau)-\varphi(1)$",
        OKABE_ITO["sky blue"],
        "^",
        "local steps τ (local-drift term)",
    ),
    # the same drift at a β where the bound's step-size factor Γ ≈ 1 (drawn when the rate table has the row)
    "tau_gamma1": (
        "drift vs tau (Gamma~1)",
        "local steps τ (β τ_max small: Γ ≈ 1)",
        r"drift part: $\varphi(\tau)-\varphi(1)$",
        OKABE_ITO["sky blue"],
        "v",
        "local steps τ at Γ ≈ 1 (local-drift term without the 1/Γ factor)",
    ),
    # the drift without noise (closed form, exact): what the noisy τ rows measure, resolved
    "tau_noise_free": (
        "drift vs tau (noise-free)",
        "local steps τ (no noise: r = 1, whole batches)",
        r"drift floor $\varphi_\infty(\tau)$ (exact)",
        OKABE_ITO["bluish green"],
        "D",
        "local steps τ without noise (the local drift alone, exact)",
    ),
    "tau_noise_free_gamma1": (
        "drift vs tau (noise-free, Gamma~1)",
        "local steps τ (no noise; Γ ≈ 1)",
        r"drift floor $\varphi_\infty(\tau)$ (exact)",
        OKABE_ITO["bluish green"],
        "d",
        "local steps τ without noise at Γ ≈ 1 (the drift's τ-shape, exact)",
    ),
}
#: how a panel's points were obtained: noise-free rows are a closed form, the others stationary means of runs
EXACT_LABEL = "exact floor of the noise-free cycle (closed form; no interval)"


def run(root: Path, level: str) -> None:
    """The rate table at ``level`` (reused when saved, e.g. by figure 2) and this figure's manifest."""
    _floors.run_figure(root, NAME, level)


def draw(root: Path, out: Path) -> dict:
    rows, table = _floors.read_rows(root, NAME)
    tol = table["tolerance"]
    panels = [p for p in PANELS.values() if p[0] in rows]
    plt = setup()
    # one column: the index shows figures at most 1100 px wide, so panels stack rather than sit side by side
    fig, axes = plt.subplots(len(panels), 1, figsize=(7.0, 4.85 * len(panels)), squeeze=False)
    parts, notes = [], []
    for i, (ax, (row_name, xlabel, ylabel, color, marker, phrase)) in enumerate(zip(axes.flat, panels)):
        row = rows[row_name]
        kwargs = {"measured_label": EXACT_LABEL} if "noise-free" in row_name else {}
        res = _floors.draw_row(ax, row, xlabel, color, marker, **kwargs)
        ax.set_ylabel(ylabel)
        ax.set_title(f"({'abcdef'[i]}) {row_name}: {_floors.verdict_text(row, tol)}", fontsize=10.5)
        parts.append(_floors.row_sentence(phrase, res))
        notes.append(f"({'abcdef'[i]}) {row['note']}")
    fig.tight_layout()
    files = save(fig, out, "fig3_floors")
    caption = (
        "What it shows: the level at which φ_k = (1/τ)Σ_t ‖∇F(w̄_{k+1,t})‖² settles (stationary mean after a "
        "burn-in, quadratic task, Per-FedAvg (exact HVP) started at the minimiser w*_α, "
        f"{len(table['seeds'])} seed(s) × batch means, 95% intervals; rate table '{table['length']}') when one "
        "knob is turned and the others held, each knob chosen to isolate one term of the derived bound; for τ the "
        "τ = 1 floor is subtracted to leave the local drift. Panels: " + "; ".join(notes) + ". These are the rate "
        "table's rows (`perfedavg check --rates`), not a separate experiment. What the theory predicts: the orange "
        "dashed line has the local slope of the derived explicit bound's relevant term(s) with the task's exact "
        "constants [derived] over the plotted range; the grey dotted line (drawn on top) the recalled shape's slope "
        "[recalled] (D^-1 for the bias, β^+1 for the noise, τ^+2 for the drift); both pass through the data's "
        f"weighted centre (slope guides, not levels). PASS when the predicted slope lies within ±{tol:g} of the "
        "fitted 95% interval ('only within tolerance' when it lies outside the interval itself). Measured: "
        + "; ".join(parts)
        + "."
    )
    return {"files": files, "caption": caption}
