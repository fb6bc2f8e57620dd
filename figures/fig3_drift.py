r"""Figure 3b: the local drift against the local steps τ, with noise and without.

Drawn from the rate table's rows (:func:`synthetic.rates.rate_table`, through :mod:`figures._floors`) on the
quadratic task with exact constants (docs/paper.md §5, DERIVATIONS.md §7):

* **τ** (h = 1, batches 200, β·τ_max fixed): φ(τ) − φ(1), the local-drift term, measured in runs;
* **τ without noise** (r = 1, whole-distribution batches: :func:`synthetic.quadratic.noise_free_cycle`,
  exact): the drift floor φ_∞(τ) itself, at the same β and at a β where Γ ≈ 1.

Each panel: the measured (or exact) floors, the fitted, predicted [derived] and recalled [recalled] slopes,
the row's PASS/FAIL and the derived bound's ratio to the floor (:mod:`figures._floor_figure`).
"""

from __future__ import annotations

from pathlib import Path

from . import _floors
from ._floor_figure import draw_floor_figure
from .style import OKABE_ITO

NAME = "drift"
TITLE = "Local drift against the local steps τ, with and without noise"
#: panel -> (rate-table row, x label, y label, colour, marker, short title, caption phrase); the first three
#: the rate table has are drawn (the noisy row at Γ ≈ 1 exists only in the full table)
PANELS = {
    "tau": (
        "drift vs tau",
        "local steps τ",
        r"drift part: $\varphi(\tau)-\varphi(1)$",
        OKABE_ITO["sky blue"],
        "^",
        "τ, with noise",
        "local steps τ (local-drift term)",
    ),
    "tau_gamma1": (
        "drift vs tau (Gamma~1)",
        "local steps τ (Γ ≈ 1)",
        r"drift part: $\varphi(\tau)-\varphi(1)$",
        OKABE_ITO["sky blue"],
        "v",
        "τ at Γ ≈ 1",
        "local steps τ at Γ ≈ 1 (local-drift term without the 1/Γ factor)",
    ),
    "tau_noise_free": (
        "drift vs tau (noise-free)",
        "local steps τ (no noise)",
        r"drift floor $\varphi_\infty(\tau)$ (exact)",
        OKABE_ITO["bluish green"],
        "D",
        "τ, no noise",
        "local steps τ without noise (the local drift alone, exact)",
    ),
    "tau_noise_free_gamma1": (
        "drift vs tau (noise-free, Gamma~1)",
        "local steps τ (no noise, Γ ≈ 1)",
        r"drift floor $\varphi_\infty(\tau)$ (exact)",
        OKABE_ITO["bluish green"],
        "d",
        "τ, no noise, Γ ≈ 1",
        "local steps τ without noise at Γ ≈ 1 (the drift's τ-shape, exact)",
    ),
}


def run(root: Path, level: str) -> None:
    """The rate table at ``level`` (reused when saved, e.g. by figure 2) and this figure's manifest."""
    _floors.run_figure(root, NAME, level)


def draw(root: Path, out: Path) -> dict:
    return draw_floor_figure(root, out, NAME, "fig3_drift", PANELS, "the local steps τ", "§5")
