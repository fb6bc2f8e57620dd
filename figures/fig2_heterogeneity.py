r"""Figure 2: the stationarity floor against heterogeneity, measured by TV and by W1.

Drawn from the rate table's rows "floor vs TV" and "floor vs W1"
(:func:`synthetic.rates.rate_table`, through :mod:`figures._floors`): quadratic task,
heterogeneity dial h moving every user's distribution away from the mixture, partial
participation r = 0.2, τ = 1, batches 200, each run started at the minimiser w*_α; the
measured quantity is φ(h) − φ(0), the part of the stationary floor that heterogeneity
adds (batch-means 95 % intervals), against the RMS over users of TV(p_i, p̄) and of
W1(p_i, p̄) (exact, linear program).  The predicted slope is the local slope of the
γ-part of the derived bound's client-sampling term, with γ_G, γ_H from the distance
statements of PAPER.md §6 (γ ≤ 2B·TV, 2L·TV; γ ≤ L_θ·W1, ρ_θ·W1 with L_θ, ρ_θ at w*);
the recalled shape's slope beside it.  Both panels share the same runs.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from . import _floors
from .style import OKABE_ITO, save, setup

NAME = "heterogeneity"
TITLE = "Stationarity floor against heterogeneity (TV and W1)"
#: panel -> (rate-table row, x label, colour, marker)
PANELS = {
    "TV": ("floor vs TV", "RMS over users of TV(p_i, p̄)", OKABE_ITO["blue"], "o"),
    "W1": ("floor vs W1", "RMS over users of W1(p_i, p̄)  (ground metric on θ = (x, y))", OKABE_ITO["vermillion"], "s"),
}


def run(root: Path, level: str) -> None:
    """The rate table at ``level`` (reused when saved) and this figure's manifest naming it."""
    _floors.run_figure(root, NAME, level)


def draw(root: Path, out: Path) -> dict:
    rows, table = _floors.read_rows(root, NAME)
    tol = table["tolerance"]
    plt = setup()
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.0), sharey=True)
    parts = []
    for ax, (dist, (row_name, xlabel, color, marker)) in zip(axes, PANELS.items()):
        row = rows[row_name]
        res = _floors.draw_row(ax, row, xlabel, color, marker)
        hs = row.get("extra", {}).get("h", [])
        ax.set_title(f"floor vs {dist}: {row['verdict']}  (h = {', '.join(f'{h:g}' for h in hs)})", fontsize=10)
        parts.append(_floors.row_sentence(f"against {dist}", res))
    axes[0].set_ylabel(r"heterogeneity part of the floor: $\varphi(h)-\varphi(0)$")
    note = rows[PANELS["TV"][0]]["note"]
    fig.suptitle("Quadratic task, Per-FedAvg (exact HVP), stationary from w*_α; "
                 f"{len(table['seeds'])} seed(s) × batch means, rate table '{table['length']}'\n"
                 + textwrap.shorten(note, 150), fontsize=10)
    fig.tight_layout()
    files = save(fig, out, "fig2_heterogeneity")
    caption = (
        "What it shows: the part of the stationary floor that heterogeneity adds, φ(h) − φ(0) with "
        "φ = (1/τ)Σ_t ‖∇F(w̄_{k+1,t})‖² averaged after a burn-in (runs started at the minimiser w*_α, 95% "
        "intervals by batch means), as the users' distributions move apart, with the heterogeneity measured by "
        "the RMS total variation and the RMS 1-Wasserstein distance between each user's distribution and the "
        "mixture (both exact). These are the rate table's rows 'floor vs TV' and 'floor vs W1' "
        "(`perfedavg check --rates`), not a separate experiment. What the theory predicts: with partial "
        "participation the client-sampling term grows with γ², and the distance statements (PAPER.md §6) bound "
        "γ_G, γ_H linearly by TV or W1; the orange dashed line has the local slope of the γ-part of the derived "
        "bound's client-sampling term with the task's exact constants [derived], the grey dotted one the "
        f"recalled shape's slope [recalled]; PASS when the predicted slope lies within ±{tol:g} of the fitted "
        "95% interval. Measured: " + "; ".join(parts) + "."
    )
    return {"files": files, "caption": caption}
